#!/usr/bin/env bash
# Benchmark: creating 1,000 projects with ONE bulkCreateProjects request against 1,000
# createProject requests, for tenant acme_corp (database_per_tenant, RLS on, JWT auth).
#   - bulk: one request with 1,000 names (median of ROUNDS, each with new names)
#   - singles, 1 connection: 1,000 createProject requests one after another on one keep-alive
#     connection (curl)
#   - singles, 16 connections: createProject throughput with 16 concurrent clients (wrk, unique
#     names per request), and the time 1,000 take at that rate
# Not a test: the figures depend on the machine.   bench/mutations.sh
set -euo pipefail
ROUNDS=${ROUNDS:-5}
source "$(dirname "$0")/lib.sh"
# Events off: this measures the request path (bench/events.sh measures events, on its own NATS).
export OBSERVERS_ENABLED=false
bench_world
start_server
TMP=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$TMP"' EXIT
URL="http://127.0.0.1:$PORT/graphql"
post() {
  curl -s -H 'Content-Type: application/json' -H 'X-Tenant-ID: acme_corp' -H "Authorization: Bearer $TOKEN" "$@" "$URL"
}
ORG=$(post -d '{"query": "mutation { createOrganization(name: \"Bench Org\") { id } }"}' | sed -E 's/.*"id" ?: ?"([^"]+)".*/\1/')
[ "${#ORG}" = 36 ] || { echo "could not create the organization" >&2; exit 1; }
count() { "${PSQL[@]}" -d bench_acme_corp -c "SELECT count(*) FROM tb_project"; }

# Warm-up (pool connections, prepared statements).
post -d "{\"query\": \"mutation { bulkCreateProjects(orgId: \\\"$ORG\\\", names: [\\\"warm\\\"]) { id } }\"}" >/dev/null

# Bulk: 1,000 names per request.
BULK=()
for r in $(seq 1 "$ROUNDS"); do
  python3 -c "import json,sys; print(json.dumps({'query': 'mutation(\$o: ID!, \$n: [String!]!) { bulkCreateProjects(orgId: \$o, names: \$n) { id name } }', 'variables': {'o': sys.argv[1], 'n': ['bulk %d %04d' % (int(sys.argv[2]), i) for i in range(1000)]}}))" "$ORG" "$r" >"$TMP/bulk.json"
  before=$(count)
  t=$(post -o "$TMP/bulk.out" -w '%{time_total}' --data-binary @"$TMP/bulk.json")
  grep -q '"errors"' "$TMP/bulk.out" && { echo "bulk failed: $(head -c 300 "$TMP/bulk.out")" >&2; exit 1; }
  [ $(( $(count) - before )) = 1000 ] || { echo "bulk did not create 1000 projects" >&2; exit 1; }
  BULK+=("$(awk -v t="$t" 'BEGIN { printf "%.1f", t * 1000 }')")
done

# Singles on one keep-alive connection: one curl process, 1,000 requests.
: >"$TMP/singles.cfg"
for i in $(seq 1 1000); do
  [ "$i" = 1 ] || echo next >>"$TMP/singles.cfg"
  printf 'url = "%s"\nheader = "Content-Type: application/json"\nheader = "X-Tenant-ID: acme_corp"\nheader = "Authorization: Bearer %s"\ndata = "{\\"query\\": \\"mutation { createProject(orgId: \\\\\\"%s\\\\\\", name: \\\\\\"single %04d\\\\\\") { id name } }\\"}"\noutput = "/dev/null"\n' \
    "$URL" "$TOKEN" "$ORG" "$i" >>"$TMP/singles.cfg"
done
before=$(count)
start=$(date +%s%N)
curl -s -K "$TMP/singles.cfg"
SINGLES_MS=$(( ($(date +%s%N) - start) / 1000000 ))
created=$(( $(count) - before ))
[ "$created" = 1000 ] || { echo "singles created $created projects, not 1000" >&2; exit 1; }

# Singles with 16 concurrent connections: unique names from a per-thread counter.
cat >"$TMP/create.lua" <<LUA
local counter = 0
local id = 0
setup = function(thread) id = id + 1; thread:set("tid", id) end
request = function()
  counter = counter + 1
  local body = string.format('{"query": "mutation { createProject(orgId: \\\\"$ORG\\\\", name: \\\\"wrk %d %d\\\\") { id name } }"}', tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Tenant-ID"] = "acme_corp", ["Authorization"] = "Bearer $TOKEN"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
before=$(count)
read -r _ RPS P50 P99 ERRS < <(wrk -t2 -c16 -d5s --latency -s "$TMP/create.lua" "$URL" | grep '^RESULT')
[ "$ERRS" = "0" ] || echo "warning: $ERRS HTTP errors"
echo "(wrk created $(( $(count) - before )) projects)"

echo
printf '%-44s %12s\n' "1,000 projects" "wall time"
printf '%-44s %10s ms\n' "bulkCreateProjects, 1 request (median of $ROUNDS)" "$(median "${BULK[@]}")"
printf '%-44s %10s ms\n' "createProject x 1,000, 1 connection" "$SINGLES_MS"
awk -v r="$RPS" 'BEGIN { printf "%-44s %10.0f ms   (%d creates/s)\n", "createProject x 1,000, 16 connections", 1000000 / r, r }'
echo "createProject at 16 connections: p50 $P50 ms, p99 $P99 ms"
echo "server peak memory (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
