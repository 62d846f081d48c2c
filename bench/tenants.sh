#!/usr/bin/env bash
# Benchmark: many tenants under one connection budget, in one run on the same machine.
#   1. N schema_per_tenant tenants (default 1000) in one host database: round-robin requests
#      (each request a different tenant than the last), 32 client connections.
#   2. N row_level tenants in the same host database, the same load.
#   3. M database_per_tenant tenants (default 100: a database each), the same load: a connection
#      belongs to its database, so with more tenants than the budget nearly every request opens
#      a connection; next to it, `pgbench -C` (a new connection per transaction) on one of them.
# For each: provisioning time per tenant, requests/s, p50/p99, failed responses (HTTP errors and
# GraphQL errors), the peak of open tenant connections (pg_stat_activity, sampled every 0.25 s)
# against the budget, server peak memory. Fails if any request failed or a peak passed the
# budget; prints schema_per_tenant / row_level. Writes bench/results/tenants.json.
#   bench/tenants.sh [N] [seconds] [M]
# The budget defaults to 80: this PostgreSQL's max_connections is 100, and the registry, the
# sampler and pgbench need a few.
set -euo pipefail
N=${1:-1000}
SECS=${2:-20}
M=${3:-100}
BUDGET=${CONNECTION_BUDGET:-80}
BENCH_PORT=${BENCH_PORT:-18090}
source "$(dirname "$0")/lib.sh"
export CONNECTION_BUDGET=$BUDGET OBSERVERS_ENABLED=false RUST_LOG=warn
export MASTER_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_many?sslmode=disable"
export SHARED_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_shared?sslmode=disable"
HOST_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_host?sslmode=disable"
ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
OUT=bench/results/tenants.json
mkdir -p bench/results
RESULTS=$(mktemp)

cleanup_world() {
  for db in $("${PSQL[@]}" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'bmd\_%' OR datname IN ('fraiseql_bench_many', 'fraiseql_bench_host', 'fraiseql_bench_shared')"); do
    "${PSQL[@]}" -d postgres -c "DROP DATABASE \"$db\" WITH (FORCE)"
  done
  for r in $("${PSQL[@]}" -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'bms\_%' OR rolname LIKE 'bmd\_%' OR rolname LIKE 'bmr\_%'"); do
    "${PSQL[@]}" -d postgres -c "DROP ROLE \"$r\""
  done
}
SERVER= WATCH= LUA=
finish() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null || true
  rm -f "$LUA" "$RESULTS"
}
trap finish EXIT
cleanup_world
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_many"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_host"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_shared"
# The analytics database's migrations (no tenant exists yet, so only the shared ones run).
"$BIN" migrate >/dev/null

# provision STRATEGY PREFIX KEYPREFIX COUNT URL: creates the tenants, one organization each (so
# every answer is non-empty and the tenant's own); prints ms per tenant.
provision() {
  local strategy=$1 prefix=$2 kp=$3 count=$4 url=$5 start end
  start=$(date +%s.%N)
  for i in $(seq 1 "$count"); do
    TENANCY_STRATEGY=$strategy TENANT_PREFIX=$prefix TENANT_DB_URL=$url "$BIN" tenant create "$kp$i" >/dev/null
  done
  end=$(date +%s.%N)
  "${PSQL[@]}" -F ' ' -d fraiseql_bench_many -c "SELECT key, id, database, schema_name FROM fraiseql_tenant WHERE strategy = '$strategy'" |
    while read -r key id db schema; do
      echo "INSERT INTO \"$schema\".tb_organization (identifier, tenant_id, name) VALUES ('$key', '$id', '$key') ON CONFLICT DO NOTHING;" |
        "${PSQL[@]}" -d "$db"
    done
  awk -v a="$start" -v b="$end" -v n="$count" 'BEGIN { printf "%.0f", (b - a) * 1000 / n }'
}

# lua KEYPREFIX COUNT: a wrk script sending each request as the next tenant, with its token.
lua() {
  local kp=$1 count=$2
  LUA=$(mktemp --suffix .lua)
  {
    echo "tokens = {}"
    for i in $(seq 1 "$count"); do
      echo "tokens[$i] = \"$("$BIN" token --tenant "$kp$i" --role admin)\""
    done
    cat <<LUA
n = $count
threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) counter = math.random(n); bad = 0 end
request = function()
  counter = counter + 1
  local i = (counter % n) + 1
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["X-Tenant-ID"] = "$kp" .. i,
    ["Authorization"] = "Bearer " .. tokens[i],
  }, '{"query": "{ organizations { name } }"}')
end
-- A response with GraphQL errors (e.g. DATABASE_UNAVAILABLE) counts as a failure too.
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status
  for _, t in ipairs(threads) do failed = failed + t:get("bad") end
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed))
end
LUA
  } >"$LUA"
}

# load NAME STRATEGY PREFIX KEYPREFIX COUNT PROVISION_MS: the server under round-robin load.
load() {
  local name=$1 strategy=$2 prefix=$3 kp=$4 count=$5 prov=$6 peakf rps p50 p99 errs peak hwm
  lua "$kp" "$count"
  TENANCY_STRATEGY=$strategy TENANT_PREFIX=$prefix "$BIN" run >/tmp/fraiseql-tenants.log 2>&1 &
  SERVER=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
  peakf=$(mktemp)
  echo 0 >"$peakf"
  ( while true; do
      n=$("${PSQL[@]}" -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE '${prefix//_/\\_}%'")
      [ "$n" -gt "$(cat "$peakf")" ] && echo "$n" >"$peakf"
      sleep 0.25
    done ) &
  WATCH=$!
  echo "== $name: $count tenants round-robin, budget $BUDGET, 32 client connections, ${SECS}s"
  wrk -t2 -c32 -d2s -s "$LUA" "http://127.0.0.1:$PORT/graphql" >/dev/null
  read -r _ rps p50 p99 errs < <(wrk -t2 -c32 -d"${SECS}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
  kill "$WATCH" 2>/dev/null || true
  wait "$WATCH" 2>/dev/null || true
  WATCH=
  peak=$(cat "$peakf")
  hwm=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER/status")
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=
  rm -f "$peakf" "$LUA"
  echo "provisioning ${prov} ms/tenant; ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, ${errs} failed, peak ${peak} connections, ${hwm} MiB"
  echo "$name $strategy $count $prov $rps $p50 $p99 $errs $peak $hwm" >>"$RESULTS"
}

echo "== provisioning $N schema_per_tenant tenants"
prov=$(provision schema_per_tenant bms_ t "$N" "$HOST_URL")
load schema_per_tenant schema_per_tenant bms_ t "$N" "$prov"
# PostgreSQL's own cost of the pattern: a prepared statement run under another tenant's
# search_path each time is re-analysed and re-planned (the plan names that schema's tables).
# pgbench, pipelined and prepared like the server, the organizations statement over tenant
# schemas: always the same schema, then a random one of the N each transaction.
SP=$(mktemp)
cat >"$SP" <<'SQL'
\set n random(1, :tenants)
\startpipeline
BEGIN READ ONLY;
SELECT set_config('search_path', 'bms_t' || :n, true);
SELECT coalesce(json_agg(json_build_object('name', t0."data"->'name')), '[]'::json)::text FROM (SELECT * FROM "v_organization" t0 ORDER BY t0."name" LIMIT 50 OFFSET 0) t0;
COMMIT;
\endpipeline
SQL
sp_tps() {
  PGOPTIONS="-c search_path=bms_t1" pgbench -h 127.0.0.1 -U postgres -n -M prepared -c 32 -j 2 -T "$SECS" \
    -D tenants="$1" -f "$SP" fraiseql_bench_host 2>&1 | awk '/^tps = / {printf "%.0f", $3}'
}
echo "== pgbench (PostgreSQL alone): one schema vs a random one of $N per transaction, 32 clients, ${SECS}s"
sp_one=$(sp_tps 1)
sp_many=$(sp_tps "$N")
rm -f "$SP"
echo "pgbench, one schema: $sp_one tps; a random one of $N: $sp_many tps"

echo "== provisioning $N row_level tenants"
prov=$(provision row_level bmr_ r "$N" "$HOST_URL")
load row_level row_level bmr_ r "$N" "$prov"
echo "== provisioning $M database_per_tenant tenants"
prov=$(provision database_per_tenant bmd_ d "$M" "$ADMIN_URL")
load database_per_tenant database_per_tenant bmd_ d "$M" "$prov"

echo "== pgbench -C (a new connection per transaction) as one database_per_tenant tenant, 32 clients, ${SECS}s"
read -r role pw db < <("${PSQL[@]}" -F ' ' -d fraiseql_bench_many -c "SELECT login_role, login_password, database FROM fraiseql_tenant WHERE key = 'd1'")
SQL=$(mktemp)
echo "SELECT 1;" >"$SQL"
cconn=$(PGPASSWORD=$pw pgbench -h 127.0.0.1 -U "$role" -n -C -c 32 -j 2 -T "$SECS" -f "$SQL" "$db" 2>&1 |
  awk '/^tps = / {printf "%.0f", $3}')
rm -f "$SQL"
echo "pgbench -C: $cconn connections (transactions) per second"

python3 - "$RESULTS" "$OUT" "$BUDGET" "$SECS" "$cconn" "$sp_one" "$sp_many" <<'PY'
import json, sys
rows, out, budget, secs, cconn = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sp_one, sp_many = float(sys.argv[6] or 0), float(sys.argv[7] or 0)
res = {}
for line in open(rows):
    name, strategy, count, prov, rps, p50, p99, errs, peak, hwm = line.split()
    res[name] = {"tenants": int(count), "provision_ms_per_tenant": int(prov), "rps": float(rps),
                 "p50_ms": float(p50), "p99_ms": float(p99), "failed": int(errs),
                 "peak_connections": int(peak), "peak_rss_mib": float(hwm)}
ratio = res["schema_per_tenant"]["rps"] / res["row_level"]["rps"]
doc = {"budget": budget, "secs": secs, "client_connections": 32, "results": res,
       "schema_per_tenant_over_row_level": round(ratio, 3), "pgbench_C_tps": float(cconn or 0),
       "pgbench_schema_switch": {"one_schema_tps": sp_one, "random_schema_tps": sp_many,
                                 "ratio": round(sp_many / sp_one, 3) if sp_one else None}}
json.dump(doc, open(out, "w"), indent=2)
print()
print("| tenants | strategy | provisioning / tenant | req/s | p50 | p99 | failed | peak connections (budget %d) | server memory |" % budget)
print("|---|---|---|---|---|---|---|---|---|")
for name, r in res.items():
    print(f"| {r['tenants']:,} | `{name}` | {r['provision_ms_per_tenant']} ms | {r['rps']:,.0f} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['failed']} | {r['peak_connections']} | {r['peak_rss_mib']} MiB |")
print(f"\nschema_per_tenant / row_level: {ratio:.2f}x;  pgbench -C: {float(cconn or 0):,.0f} connections/s")
if sp_one:
    print(f"PostgreSQL alone (pgbench, prepared, pipelined): one schema {sp_one:,.0f} tps, a random schema per transaction {sp_many:,.0f} tps ({sp_many / sp_one:.2f}x)")
print(f"written {out}")
bad = [n for n, r in res.items() if r["failed"] > 0 or r["peak_connections"] > budget]
if bad:
    sys.exit(f"FAILED: failed requests or connections over the budget in {bad}")
PY
cleanup_world
