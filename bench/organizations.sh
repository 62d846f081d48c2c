#!/usr/bin/env bash
# Benchmark: the example's `organizations` query and a nested `projectsByOrg` query for tenant
# acme_corp (database_per_tenant, RLS on, JWT auth) through fraiseql (wrk, HTTP POST) next to pgbench running
# what fraiseql runs per request, as the tenant's own role on the same data:
#   BEGIN; SELECT set_config('app.tenant_id', <id>, true); <the generated statement>; COMMIT;
# at 1, 16 and 32 connections. Prints requests/s, p50/p99, the ratio and the server's memory.
# Not a test: the figures depend on the machine.   bench/organizations.sh [seconds-per-run]
set -euo pipefail
SECS=${1:-6}
ROUNDS=${ROUNDS:-3}
source "$(dirname "$0")/lib.sh"
# Events off: this measures the request path (bench/events.sh measures events, on its own NATS).
export OBSERVERS_ENABLED=false
bench_world
read -r ID ROLE PASSWORD < <("${PSQL[@]}" -F ' ' -d fraiseql_bench \
  -c "SELECT id, role_name, role_password FROM fraiseql_tenant WHERE key = 'acme_corp'")
"${PSQL[@]}" -d bench_acme_corp -v tenant_id="$ID" -f examples/saas/seed.sql
"${PSQL[@]}" -d bench_acme_corp -c "VACUUM ANALYZE"
start_server
trap 'kill $SERVER 2>/dev/null || true' EXIT

ORG=$(psql -h 127.0.0.1 -U postgres -qAt -d bench_acme_corp -c "SELECT id FROM tb_organization WHERE identifier = 'acme-labs'")
# Each query, and the statement fraiseql generates for it (see the planner's snapshots) with the
# parameters inlined.
QUERIES=(
  '{ organizations { id name subscriptionTier memberCount } }'
  "{ projectsByOrg(orgId: \\\"$ORG\\\") { name organization { name } taskCount } }"
)
SQLS=(
  "SELECT coalesce(json_agg(json_build_object('id', t0.\"data\"->'id', 'name', t0.\"data\"->'name', 'subscriptionTier', t0.\"data\"->'subscription_tier', 'memberCount', ((SELECT count(*) FROM tb_member m WHERE m.fk_org = t0.pk_org)))), '[]'::json)::text FROM (SELECT * FROM \"v_organization\" t0 ORDER BY t0.\"name\" LIMIT 50 OFFSET 0) t0;"
  "SELECT coalesce(json_agg(json_build_object('name', t0.\"data\"->'name', 'organization', (SELECT json_build_object('name', t1.\"data\"->'name') FROM \"v_organization\" t1 WHERE t1.\"pk_org\" = t0.\"fk_org\" LIMIT 1), 'taskCount', ((SELECT count(*) FROM tb_task t WHERE t.fk_project = t0.pk_project)))), '[]'::json)::text FROM (SELECT * FROM \"v_project\" t0 WHERE t0.\"org_id\" = '$ORG' ORDER BY t0.\"name\" LIMIT 100 OFFSET 0) t0;"
)
# pgbench connects as the tenant's role, like the server (RLS applies; superusers bypass it).
export PGPASSWORD="$PASSWORD"
LUA=$(mktemp --suffix .lua)
PGB=$(mktemp --suffix .sql)
for i in "${!QUERIES[@]}"; do
  BODY=$(printf '{"query": "%s"}' "${QUERIES[$i]}")
  ANSWER=$(curl -s -H 'Content-Type: application/json' -H 'X-Tenant-ID: acme_corp' -H "Authorization: Bearer $TOKEN" -d "$BODY" "http://127.0.0.1:$PORT/graphql")
  printf '\nquery: %s\nanswer: %s...\n' "${QUERIES[$i]}" "${ANSWER:0:120}"
  case "$ANSWER" in *'"Acme Labs"'*) ;; *) echo "unexpected answer" >&2; exit 1 ;; esac
  cat >"$LUA" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-ID"] = "acme_corp"
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.body = [[$BODY]]
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
  printf "BEGIN;\nSELECT set_config('app.tenant_id', '%s', true);\n%s\nCOMMIT;\n" "$ID" "${SQLS[$i]}" >"$PGB"
  printf '%-6s %-9s %10s %9s %9s %8s\n' "conns" "target" "req/s" "p50 ms" "p99 ms" "ratio"
  for c in 1 16 32; do
    threads=$(( c < 2 ? 1 : 2 ))
    # Warm-up: open the pool's connections and prepare statements outside the measured windows
    # (pgbench's tps likewise excludes its connection time).
    wrk -t"$threads" -c"$c" -d2s -s "$LUA" "http://127.0.0.1:$PORT/graphql" >/dev/null
    PG=() FR=() P50=() P99=()
    # Alternating rounds; medians are reported (two cores shared by everything make single runs noisy).
    for _ in $(seq 1 "$ROUNDS"); do
      pg=$(pgbench -h 127.0.0.1 -U "$ROLE" -n -M prepared -c "$c" -j "$threads" -T "$SECS" -f "$PGB" bench_acme_corp 2>/dev/null)
      PG+=("$(echo "$pg" | awk '/^tps/ {print int($3)}')")
      read -r _ rps p50 p99 errs < <(wrk -t"$threads" -c"$c" -d"${SECS}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/graphql" | grep '^RESULT')
      [ "$errs" = "0" ] || echo "warning: $errs HTTP errors"
      FR+=("$rps") P50+=("$p50") P99+=("$p99")
    done
    pg_tps=$(median "${PG[@]}") rps=$(median "${FR[@]}") p50=$(median "${P50[@]}") p99=$(median "${P99[@]}")
    printf '%-6s %-9s %10s %9s %9s\n' "$c" "pgbench" "$pg_tps" "-" "-"
    awk -v a="$rps" -v b="$pg_tps" -v c="$c" -v p50="$p50" -v p99="$p99" \
      'BEGIN { printf "%-6s %-9s %10s %9s %9s %7.2fx\n", c, "fraiseql", a, p50, p99, a / b }'
  done
done
echo
echo "server peak memory (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
rm -f "$LUA" "$PGB"
