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
# against the budget, server peak memory, CPU per request of the server and of PostgreSQL, and
# the server's registry reads per second (look-ups on a miss, records refreshed). Each load is
# measured after a warm-up of WARM seconds (default 20): PostgreSQL plans a prepared statement afresh on its first five executions, and
# with 1,000 tenants each connection meets every one of its tenants' statements that many times
# only after a while; the figures are the steady state, not the start. schema_per_tenant and
# row_level alternate, ROUNDS times each (default 3), after VACUUM (ANALYZE) of the new tables;
# the table gives each one's median round.
# For schema_per_tenant and row_level, PostgreSQL alone doing the same (bench/tenant_limit.py):
# the transaction the server sends, captured from PostgreSQL's log, as pgbench scripts, one per
# tenant, split over the server's affinity groups, 32 connections, pipelined and prepared.
# Fails if any request failed or a peak passed the budget; prints schema_per_tenant / row_level
# for the server and for PostgreSQL alone. Writes bench/results/tenants.json.
#   bench/tenants.sh [N] [seconds] [M]   (env: WARM, ROUNDS, CONNECTION_BUDGET, PGLOG)
# The budget defaults to 80: this PostgreSQL's max_connections is 100, and the registry, the
# sampler and pgbench need a few.
set -euo pipefail
N=${1:-1000}
SECS=${2:-20}
M=${3:-100}
BUDGET=${CONNECTION_BUDGET:-80}
WARM=${WARM:-20}
# schema_per_tenant and row_level alternate, ROUNDS times each; the table gives the medians.
ROUNDS=${ROUNDS:-3}
# The server's affinity groups (one per 4 connections of the budget: connections/pool.rs).
AFF_GROUPS=$(( BUDGET / 4 > 0 ? BUDGET / 4 : 1 ))
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

# CPU clock ticks (user + system) of PostgreSQL's processes now. A backend that exits during a
# measured run takes its ticks with it, so under connection churn this undercounts.
pg_ticks() {
  local p
  for p in $(pgrep -x postgres); do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{s += $1} END {print s + 0}'
}

# per_1k TICKS0 TICKS1 RPS: CPU seconds per 1,000 requests of a measured run of SECS seconds.
per_1k() {
  awk -v a="$1" -v b="$2" -v t="$(getconf CLK_TCK)" -v r="$3" -v s="$SECS" \
    'BEGIN {printf "%.3f", (b - a) / t / (r * s) * 1000}'
}

# The server's registry reads so far: "LOOKUPS REFRESHED" (fraiseql_registry_reads_total).
registry_reads() {
  curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk '/^fraiseql_registry_reads_total\{path="lookup"\}/ {l = $2}
         /^fraiseql_registry_reads_total\{path="refresh"\}/ {r = $2}
         END {print l + 0, r + 0}'
}

# load NAME STRATEGY PREFIX KEYPREFIX COUNT PROVISION_MS: the server under round-robin load.
load() {
  local name=$1 strategy=$2 prefix=$3 kp=$4 count=$5 prov=$6 peakf rps p50 p99 errs peak hwm cpu0 cpu1 cpu pg0 pg1 pgcpu l0 r0 l1 r1 regs
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
  echo "== $name: $count tenants round-robin, budget $BUDGET, 32 client connections, ${WARM}s warm-up, ${SECS}s"
  wrk -t2 -c32 -d"${WARM}s" -s "$LUA" "http://127.0.0.1:$PORT/graphql" >/dev/null
  cpu0=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  pg0=$(pg_ticks)
  read -r l0 r0 < <(registry_reads)
  read -r _ rps p50 p99 errs < <(wrk -t2 -c32 -d"${SECS}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
  # The server's CPU (user + system, clock ticks) per 1,000 requests of the measured run.
  cpu1=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  pg1=$(pg_ticks)
  read -r l1 r1 < <(registry_reads)
  # Registry reads per second of the measured run: one by one on a miss / in refresh batches.
  regs=$(awk -v a="$l0" -v b="$l1" -v c="$r0" -v d="$r1" -v s="$SECS" \
    'BEGIN {printf "%.0f/%.0f", (b - a) / s, (d - c) / s}')
  cpu=$(per_1k "$cpu0" "$cpu1" "$rps")
  pgcpu=$(per_1k "$pg0" "$pg1" "$rps")
  kill "$WATCH" 2>/dev/null || true
  wait "$WATCH" 2>/dev/null || true
  WATCH=
  peak=$(cat "$peakf")
  hwm=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER/status")
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=
  rm -f "$peakf" "$LUA"
  echo "provisioning ${prov} ms/tenant; ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms, ${errs} failed, peak ${peak} connections, ${hwm} MiB, CPU s per 1,000 requests: server ${cpu}, PostgreSQL ${pgcpu}; registry reads/s (look-ups/refreshed) ${regs}"
  echo "$name $strategy $count $prov $rps $p50 $p99 $errs $peak $hwm $cpu $pgcpu $regs" >>"$RESULTS"
}

echo "== provisioning $N schema_per_tenant tenants"
prov_schema=$(provision schema_per_tenant bms_ t "$N" "$HOST_URL")
echo "== provisioning $N row_level tenants"
prov_row=$(provision row_level bmr_ r "$N" "$HOST_URL")
# Statistics for the new tables now, so autovacuum's catching up does not fall into a load.
"${PSQL[@]}" -d fraiseql_bench_host -c "VACUUM (ANALYZE)"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  load schema_per_tenant schema_per_tenant bms_ t "$N" "$prov_schema"
  load row_level row_level bmr_ r "$N" "$prov_row"
done

# capture STRATEGY PREFIX KEYPREFIX LOGIN: the server answers one request of the first tenant
# (twice: the first prepares) while LOGIN's statements are logged; sets CAP_OFFSET.
PGLOG=${PGLOG:-$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 {print $7}')}
capture() {
  local strategy=$1 prefix=$2 kp=$3 login=$4 tok
  CAP_OFFSET=$(stat -c %s "$PGLOG")
  "${PSQL[@]}" -d postgres -c "ALTER ROLE \"$login\" SET log_statement = 'all'"
  TENANCY_STRATEGY=$strategy TENANT_PREFIX=$prefix "$BIN" run >/tmp/fraiseql-tenants.log 2>&1 &
  SERVER=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
  tok=$("$BIN" token --tenant "${kp}1" --role admin)
  for _ in 1 2; do
    curl -sf -X POST "http://127.0.0.1:$PORT/graphql" -H "Content-Type: application/json" \
      -H "X-Tenant-ID: ${kp}1" -H "Authorization: Bearer $tok" \
      -d '{"query": "{ organizations { name } }"}' >/dev/null
  done
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=
  "${PSQL[@]}" -d postgres -c "ALTER ROLE \"$login\" RESET log_statement"
  sleep 0.5
}
limit_tps() {
  local strategy=$1 prefix=$2 kp=$3 login=$4
  capture "$strategy" "$prefix" "$kp" "$login"
  python3 bench/tenant_limit.py "$PGLOG" "$CAP_OFFSET" "$login" fraiseql_bench_host \
    fraiseql_bench_many "$strategy" "$AFF_GROUPS" 32 "$SECS"
}
lim_schema= lim_row=
if [ -n "$PGLOG" ] && [ -r "$PGLOG" ]; then
  echo "== PostgreSQL alone: the server's transaction per tenant, $AFF_GROUPS affinity groups, 32 connections, ${SECS}s"
  lim_schema=$(limit_tps schema_per_tenant bms_ t bms_authenticator)
  lim_row=$(limit_tps row_level bmr_ r bmr_app)
  echo "schema_per_tenant $lim_schema tps; row_level $lim_row tps"
else
  echo "== PostgreSQL alone: skipped (no readable PostgreSQL log; set PGLOG)"
fi
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

python3 - "$RESULTS" "$OUT" "$BUDGET" "$SECS" "$cconn" "$lim_schema" "$lim_row" "$WARM" "$AFF_GROUPS" "$ROUNDS" <<'PY'
import json, sys
rows, out, budget, secs, cconn = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lim_schema, lim_row = float(sys.argv[6] or 0), float(sys.argv[7] or 0)
warm, groups, rounds = int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
runs = {}
for line in open(rows):
    name, strategy, count, prov, rps, p50, p99, errs, peak, hwm, cpu, pgcpu, regs = line.split()
    lookups, refreshed = regs.split("/")
    runs.setdefault(name, []).append(
        {"tenants": int(count), "provision_ms_per_tenant": int(prov), "rps": float(rps),
         "p50_ms": float(p50), "p99_ms": float(p99), "failed": int(errs),
         "peak_connections": int(peak), "peak_rss_mib": float(hwm),
         "server_cpu_s_per_1k": float(cpu), "postgresql_cpu_s_per_1k": float(pgcpu),
         "registry_lookups_per_s": int(lookups), "registry_records_refreshed_per_s": int(refreshed)})
# Per strategy: the round of median req/s (its latencies with it); failures summed, peaks maxed.
res = {}
for name, rs in runs.items():
    med = sorted(rs, key=lambda r: r["rps"])[(len(rs) - 1) // 2]
    res[name] = dict(med, failed=sum(r["failed"] for r in rs),
                     peak_connections=max(r["peak_connections"] for r in rs),
                     peak_rss_mib=max(r["peak_rss_mib"] for r in rs),
                     rounds_rps=[r["rps"] for r in rs])
ratio = res["schema_per_tenant"]["rps"] / res["row_level"]["rps"]
lim_ratio = round(lim_schema / lim_row, 3) if lim_schema and lim_row else None
doc = {"budget": budget, "secs": secs, "warm_up_secs": warm, "rounds": rounds, "client_connections": 32,
       "results": res, "schema_per_tenant_over_row_level": round(ratio, 3),
       "pgbench_C_tps": float(cconn or 0),
       "postgresql_alone": {"affinity_groups": groups, "connections": 32,
                            "schema_per_tenant_tps": lim_schema, "row_level_tps": lim_row,
                            "schema_per_tenant_over_row_level": lim_ratio}}
json.dump(doc, open(out, "w"), indent=2)
print()
print("| tenants | strategy | provisioning / tenant | req/s | p50 | p99 | failed | peak connections (budget %d) | server memory | CPU s / 1k req (server / PostgreSQL) | registry reads/s (look-ups / refreshed) |" % budget)
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, r in res.items():
    print(f"| {r['tenants']:,} | `{name}` | {r['provision_ms_per_tenant']} ms | {r['rps']:,.0f} | {r['p50_ms']} ms | {r['p99_ms']} ms | {r['failed']} | {r['peak_connections']} | {r['peak_rss_mib']} MiB | {r['server_cpu_s_per_1k']} / {r['postgresql_cpu_s_per_1k']} | {r['registry_lookups_per_s']} / {r['registry_records_refreshed_per_s']} |")
print(f"\nschema_per_tenant / row_level: {ratio:.2f}x;  pgbench -C: {float(cconn or 0):,.0f} connections/s")
if lim_ratio:
    print(f"PostgreSQL alone (the server's transaction per tenant, {groups} affinity groups, 32 connections, pgbench pipelined and prepared): "
          f"schema_per_tenant {lim_schema:,.0f} tps, row_level {lim_row:,.0f} tps ({lim_ratio:.2f}x)")
print(f"written {out}")
bad = [n for n, r in res.items() if r["failed"] > 0 or r["peak_connections"] > budget]
if bad:
    sys.exit(f"FAILED: failed requests or connections over the budget in {bad}")
PY
cleanup_world
