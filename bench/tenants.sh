#!/usr/bin/env bash
# Benchmark: provisioning time per tenant, then N tenants (default 1000) under round-robin load
# with a connection budget: requests/s, p50/p99, peak server connections, server memory.
#   bench/tenants.sh [tenants] [seconds]
# Tenants are schema_per_tenant (1,000 databases would need ~8 GB of disk); a handful of
# database_per_tenant tenants are provisioned too, to time that strategy. The budget defaults to
# 80: PostgreSQL's default max_connections is 100 and the registry and pgbench need a few.
set -euo pipefail
N=${1:-1000}
SECS=${2:-20}
BUDGET=${CONNECTION_BUDGET:-80}
BENCH_PORT=${BENCH_PORT:-18090}
source "$(dirname "$0")/lib.sh"
export CONNECTION_BUDGET=$BUDGET OBSERVERS_ENABLED=false
export MASTER_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_many"

cleanup_world() {
  for db in $("${PSQL[@]}" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'bmd\_%' OR datname IN ('fraiseql_bench_many', 'fraiseql_bench_host')"); do
    "${PSQL[@]}" -d postgres -c "DROP DATABASE \"$db\" WITH (FORCE)"
  done
  for r in $("${PSQL[@]}" -d postgres -c "SELECT rolname FROM pg_roles WHERE rolname LIKE 'bms\_%' OR rolname LIKE 'bmd\_%' OR rolname LIKE 'bmr\_%'"); do
    "${PSQL[@]}" -d postgres -c "DROP ROLE \"$r\""
  done
}
cleanup_world
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_many"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_host"

echo "== provisioning"
start=$(date +%s.%N)
for i in $(seq 1 5); do
  TENANT_PREFIX=bmd_ TENANCY_STRATEGY=database_per_tenant "$BIN" tenant create "t$i" >/dev/null
done
mid=$(date +%s.%N)
awk -v a="$start" -v b="$mid" 'BEGIN { printf "database_per_tenant: %.0f ms per tenant (5 tenants)\n", (b - a) * 1000 / 5 }'
export TENANT_PREFIX=bms_ TENANCY_STRATEGY=schema_per_tenant TENANT_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_host"
start=$(date +%s.%N)
for i in $(seq 1 "$N"); do
  "$BIN" tenant create "t$i" >/dev/null
done
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v n="$N" 'BEGIN { printf "schema_per_tenant: %.0f ms per tenant (%d tenants, %.0f s)\n", (b - a) * 1000 / n, n, b - a }'
# One organization per tenant, so every answer is non-empty and tenant-specific.
"${PSQL[@]}" -d fraiseql_bench_many -c "SELECT key || ' ' || id FROM fraiseql_tenant WHERE key LIKE 't%' AND strategy = 'schema_per_tenant'" |
  awk -v p=bms_ '{ printf "INSERT INTO %s%s.tb_organization (identifier, tenant_id, name) VALUES (%c%s%c, %c%s%c, %c%s%c) ON CONFLICT DO NOTHING;\n", p, $1, 39, $1, 39, 39, $2, 39, 39, $1, 39 }' |
  "${PSQL[@]}" -d fraiseql_bench_host

echo "== tokens"
LUA=$(mktemp --suffix .lua)
{
  echo "tokens = {}"
  for i in $(seq 1 "$N"); do
    echo "tokens[$i] = \"$("$BIN" token --tenant "t$i" --role admin)\""
  done
  cat <<LUA
n = $N
threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) counter = math.random(n); bad = 0 end
request = function()
  counter = counter + 1
  local i = (counter % n) + 1
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["X-Tenant-ID"] = "t" .. i,
    ["Authorization"] = "Bearer " .. tokens[i],
  }, '{"query": "{ organizations { name } }"}')
end
-- A response with GraphQL errors (e.g. DATABASE_UNAVAILABLE) counts as a failure too.
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  for _, t in ipairs(threads) do failed = failed + t:get("bad") end
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed))
end
LUA
} >"$LUA"

load() { # $1 = strategy label, $2 = role LIKE pattern for counting connections
"$BIN" run >/tmp/fraiseql-tenants.log 2>&1 &
SERVER=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
PEAKF=$(mktemp)
echo 0 >"$PEAKF"
( while true; do
    n=$(psql -h 127.0.0.1 -U postgres -qAt -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE '$2'")
    [ "$n" -gt "$(cat "$PEAKF")" ] && echo "$n" >"$PEAKF"
    sleep 0.25
  done ) &
WATCH=$!
echo "== $1: $N tenants round-robin, budget $BUDGET connections, 32 client connections, ${SECS}s"
wrk -t2 -c32 -d2s -s "$LUA" "http://127.0.0.1:$PORT/graphql" >/dev/null
read -r _ rps p50 p99 errs < <(wrk -t2 -c32 -d"${SECS}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
kill $WATCH 2>/dev/null || true
echo "requests/s: $rps   p50: ${p50} ms   p99: ${p99} ms   failed responses: $errs"
echo "peak tenant connections (pg_stat_activity; budget $BUDGET): $(cat "$PEAKF")"
echo "server peak memory (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
kill $SERVER
wait $SERVER 2>/dev/null || true
}
trap 'kill $SERVER 2>/dev/null || true; kill $WATCH 2>/dev/null || true; rm -f "$LUA"' EXIT
load schema_per_tenant 'bms\_%'

echo "== row_level: $N more tenants (registry rows; one shared role)"
export TENANT_PREFIX=bmr_ TENANCY_STRATEGY=row_level
start=$(date +%s.%N)
for i in $(seq 1 "$N"); do
  "$BIN" tenant create "r$i" >/dev/null
done
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v n="$N" 'BEGIN { printf "row_level: %.0f ms per tenant (%d tenants)\n", (b - a) * 1000 / n, n }'
"${PSQL[@]}" -d fraiseql_bench_many -c "SELECT key || ' ' || id FROM fraiseql_tenant WHERE strategy = 'row_level'" |
  awk '{ printf "INSERT INTO public.tb_organization (identifier, tenant_id, name) VALUES (%c%s%c, %c%s%c, %c%s%c) ON CONFLICT DO NOTHING;\n", 39, $1, 39, 39, $2, 39, 39, $1, 39 }' |
  "${PSQL[@]}" -d fraiseql_bench_host
sed -i 's/"t" \.\. i/"r" .. i/' "$LUA"
{
  echo "tokens = {}"
  for i in $(seq 1 "$N"); do
    echo "tokens[$i] = \"$("$BIN" token --tenant "r$i" --role admin)\""
  done
} >"$LUA.tokens"
grep -v '^tokens\[' "$LUA" | grep -v '^tokens = {}' >>"$LUA.tokens"
mv "$LUA.tokens" "$LUA"
load row_level 'bmr\_%'
cleanup_world
