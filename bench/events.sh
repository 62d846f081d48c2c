#!/usr/bin/env bash
# Benchmark: events from mutation commit to analytics row. Tenant acme_corp (database_per_tenant,
# RLS, JWT) creates projects; each commit writes an outbox row, the relay publishes it to
# JetStream, the analytics_sync consumer group inserts it into tb_analytics_event.
#   - latency: recorded_at - the event's timestamp (both from the same PostgreSQL clock), p50/p99
#   - sustained events/s: analytics rows per second while wrk creates projects as fast as it can
# Runs its own nats-server (port 14222, temporary store) so the stream and the consumer group are
# the benchmark's alone. Not a test: the figures depend on the machine.
#   bench/events.sh [seconds-per-run]
set -euo pipefail
SECS=${1:-10}
NATS_PORT=${BENCH_NATS_PORT:-14222}
source "$(dirname "$0")/lib.sh"
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
TMP=$(mktemp -d)
"$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/nats" >/dev/null 2>&1 &
NATS=$!
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
bench_world
start_server
trap 'kill $SERVER $NATS 2>/dev/null || true; rm -rf "$TMP"' EXIT
URL="http://127.0.0.1:$PORT/graphql"
ORG=$(curl -s -H 'Content-Type: application/json' -H 'X-Tenant-ID: acme_corp' -H "Authorization: Bearer $TOKEN" \
  -d '{"query": "mutation { createOrganization(name: \"Bench Org\") { id } }"}' "$URL" | sed -E 's/.*"id" ?: ?"([^"]+)".*/\1/')
[ "${#ORG}" = 36 ] || { echo "could not create the organization" >&2; exit 1; }

cat >"$TMP/create.lua.in" <<LUA
local counter = 0
run = "RUN"
local id = 0
setup = function(thread) id = id + 1; thread:set("tid", id) end
request = function()
  counter = counter + 1
  local body = string.format('{"query": "mutation { createProject(orgId: \\\\"$ORG\\\\", name: \\\\"%s %d %d\\\\") { id } }"}', run, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Tenant-ID"] = "acme_corp", ["Authorization"] = "Bearer $TOKEN"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %d\n", summary.requests / (summary.duration / 1e6),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

rows() { "${PSQL[@]}" -d fraiseql_bench -c "SELECT count(*) FROM tb_analytics_event"; }
printf '%-12s %12s %12s %14s %14s %10s\n' "connections" "mutations/s" "events/s" "latency p50" "latency p99" "errors"
for c in 1 16; do
  threads=$(( c < 2 ? 1 : 2 ))
  sed "s/^run = \"RUN\"/run = \"c$c\"/" "$TMP/create.lua.in" >"$TMP/create.lua"
  "${PSQL[@]}" -d fraiseql_bench -c "TRUNCATE tb_analytics_event"
  read -r _ rps errs < <(wrk -t"$threads" -c"$c" -d"${SECS}s" -s "$TMP/create.lua" "$URL" | grep '^RESULT')
  expected=$("${PSQL[@]}" -d bench_acme_corp -c "SELECT count(*) FROM fraiseql_outbox WHERE payload->>'name' LIKE 'c$c %'")
  for _ in $(seq 1 600); do [ "$(rows)" -ge "$expected" ] && break; sleep 0.1; done
  read -r events p50 p99 < <("${PSQL[@]}" -F ' ' -d fraiseql_bench -c "
    SELECT round(count(*) / greatest(extract(epoch FROM max(recorded_at) - min(recorded_at)), 0.001)),
           round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - (data->>'timestamp')::timestamptz)))::numeric, 1),
           round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM recorded_at - (data->>'timestamp')::timestamptz)))::numeric, 1)
    FROM tb_analytics_event")
  got=$(rows)
  [ "$got" = "$expected" ] || echo "warning: $got analytics rows for $expected events"
  printf '%-12s %12s %12s %11s ms %11s ms %10s\n' "$c" "$rps" "$events" "$p50" "$p99" "$errs"
done
echo "server peak memory (VmHWM): $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$SERVER/status)"
