#!/usr/bin/env bash
# Benchmark: `{ organizations { id name subscriptionTier memberCount } }` through fraiseql (wrk,
# HTTP POST) next to pgbench running the SAME SQL statement on the same data, at 1 and 32
# connections. Prints requests/s, p50/p99 and the ratio. Not a test: figures depend on the machine.
#   bench/organizations.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${BENCH_PORT:-18080}
DB=fraiseql_bench
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
scripts/services.sh
cargo build --release -p fraiseql --quiet
BIN=target/release/fraiseql

"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
export TENANT_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" SHARED_DB_URL="postgres://postgres@127.0.0.1:5432/$DB" PORT
"$BIN" --config examples/saas/fraiseql.toml migrate >/dev/null
"${PSQL[@]}" -d "$DB" -f examples/saas/seed.sql
"${PSQL[@]}" -d "$DB" -c "VACUUM ANALYZE"

"$BIN" --config examples/saas/fraiseql.toml run >/tmp/fraiseql-bench.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done

QUERY='{ organizations { id name subscriptionTier memberCount } }'
BODY=$(printf '{"query": "%s"}' "$QUERY")
# The statement fraiseql generates for QUERY (see the planner's snapshots), params inlined.
SQL=$(cat <<'SQL'
SELECT coalesce(json_agg(json_build_object('id', t0."data"->'id', 'name', t0."data"->'name', 'subscriptionTier', t0."data"->'subscription_tier', 'memberCount', ((SELECT count(*) FROM tb_member m WHERE m.fk_org = t0.pk_org)))), '[]'::json)::text FROM (SELECT * FROM "v_organization" t0 ORDER BY t0."name" LIMIT 50 OFFSET 0) t0;
SQL
)
echo "answer: $(curl -s -H 'Content-Type: application/json' -d "$BODY" "http://127.0.0.1:$PORT/graphql" | head -c 200)..."

LUA=$(mktemp --suffix .lua)
cat >"$LUA" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
PGB=$(mktemp --suffix .sql)
printf '%s\n' "$SQL" >"$PGB"

printf '\n%-11s %-10s %10s %9s %9s\n' "conns" "target" "req/s" "p50 ms" "p99 ms"
for c in 1 32; do
  threads=$(( c < 2 ? 1 : 2 ))
  read -r _ rps p50 p99 errs < <(wrk -t"$threads" -c"$c" -d"${SECS}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
  [ "$errs" = "0" ] || echo "warning: $errs HTTP errors"
  pg=$(pgbench -h 127.0.0.1 -U postgres -n -M prepared -c "$c" -j "$threads" -T "$SECS" -r -f "$PGB" "$DB" 2>/dev/null)
  pg_tps=$(echo "$pg" | awk '/^tps/ {print int($3)}')
  pg_lat=$(echo "$pg" | awk '/^latency average/ {print $4}')
  printf '%-11s %-10s %10s %9s %9s\n' "$c" "fraiseql" "$rps" "$p50" "$p99"
  printf '%-11s %-10s %10s %9s %9s\n' "$c" "pgbench" "$pg_tps" "(avg $pg_lat)" "-"
  awk -v a="$rps" -v b="$pg_tps" -v c="$c" 'BEGIN { printf "%-11s ratio      %9.2fx\n", c, a / b }'
done
echo
echo "server peak memory (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
rm -f "$LUA" "$PGB"
