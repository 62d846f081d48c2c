#!/usr/bin/env bash
# Benchmark: subscriptions, in one run on one machine (PostgreSQL, NATS, the server and the load
# generator share its cores). The example's server (`fraiseql run`, database_per_tenant) with 10
# tenants, its own nats-server (port 14223, temporary store), and saas-subscription-load
# (examples/saas/src/bin/subscription_load.rs: graphql-transport-ws clients of projectCreated):
#   (a) 10,000 WebSocket subscriptions (1,000 per tenant, one per connection; `ulimit -n` is
#       raised here): the server's RSS idle and with them live, and the RSS per subscription.
#   (b) fan-out: 1,000 subscribers over the 10 tenants, 100 projects created a second (round
#       robin): latency from the change's write (the outbox row's clock_timestamp(), taken in the
#       mutation's transaction just before its COMMIT, from PostgreSQL) to the receipt at the
#       client, p50/p99; the server's CPU per delivered event (user+system of the process, which
#       also serves the 100 mutations a second); every event delivered once, to its tenant only.
#   (c) 1,000 clients reconnecting at once with their last positions after 500 projects were
#       created in their absence: every missed event delivered once, and how long it took.
# Targets: 10,000 subscriptions within 100 MiB of server memory; p99 <= 100 ms at (b); 0 lost,
# 0 duplicated. Writes bench/results/subscriptions.json; prints the table docs/benchmarks.md and
# the README show. Not a test: the figures depend on the machine.
#   bench/subscriptions.sh [fanout-seconds]   (env: HOLD=10000 FANOUT=1000 RESUME=1000)
set -euo pipefail
SECS=${1:-20}
HOLD=${HOLD:-10000}
FANOUT=${FANOUT:-1000}
RESUME=${RESUME:-1000}
RATE=100
NATS_PORT=${BENCH_NATS_PORT:-14223}
export BENCH_PORT=${BENCH_PORT:-18380}
source "$(dirname "$0")/lib.sh"
LOG=/tmp/fraiseql-bench-subscriptions.log
start_server() { # as lib.sh's, with a log of its own
  "$BIN" run >"$LOG" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.2
  done
  echo "the server did not start:" >&2
  tail -5 "$LOG" >&2
  exit 1
}
# 10,000 sockets on each side, plus the server's database connections and files.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((HOLD + 1000)) ] || { echo "ulimit -n is $(ulimit -n): too few for $HOLD connections" >&2; exit 1; }
cargo build --release -p fraiseql-example-saas --bin saas-subscription-load --quiet
LOAD=target/release/saas-subscription-load
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
TMP=$(mktemp -d)
"$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/nats" >/dev/null 2>&1 &
NATS=$!
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
SERVER=
trap 'kill $SERVER $NATS 2>/dev/null || true; rm -rf "$TMP"' EXIT

# A world of this benchmark's own (registry fraiseql_bench_subs, tenants benchsub_s0..s9), so
# it never touches another benchmark's databases.
TENANTS=(s0 s1 s2 s3 s4 s5 s6 s7 s8 s9)
export TENANT_PREFIX=benchsub_
export MASTER_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_subs" SHARED_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_bench_subs"
for db in fraiseql_bench_subs "${TENANTS[@]/#/benchsub_}"; do
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null
done
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_bench_subs"
for k in "${TENANTS[@]}"; do "$BIN" tenant create "$k" >/dev/null; done
"$BIN" migrate >/dev/null
: >"$TMP/tokens"
for k in "${TENANTS[@]}"; do echo "$k $("$BIN" token --tenant "$k" --role admin)" >>"$TMP/tokens"; done
start_server
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 ~ "^"m {s += $2} END {print s + 0}'; }

# --- (a) memory -------------------------------------------------------------------------------
# A request of every kind first, so the idle figure includes the caches and pools they fill.
"$LOAD" --port "$PORT" --tokens "$TMP/tokens" --clients 10 --mode fanout --mutations 10 --rate 10 >/dev/null
IDLE=$(rss_mib)
coproc HOLDING { "$LOAD" --port "$PORT" --tokens "$TMP/tokens" --clients "$HOLD" --mode hold; }
read -r live _ <&"${HOLDING[0]}" || { echo "the load generator stopped" >&2; exit 1; }
[ "$live" = LIVE ] || { echo "unexpected: $live" >&2; exit 1; }
sleep 2 # let the allocator settle before reading RSS
HELD=$(rss_mib)
ACTIVE=$(metric fraiseql_subscriptions_active)
exec {HOLDING[1]}>&-
wait "$HOLDING_PID" || true
echo "(a) idle ${IDLE} MiB; ${ACTIVE} subscriptions live: ${HELD} MiB"

# --- (b) fan-out ------------------------------------------------------------------------------
MUTATIONS=$((SECS * RATE))
before=$(cpu_ticks)
"$LOAD" --port "$PORT" --tokens "$TMP/tokens" --clients "$FANOUT" --mode fanout \
  --mutations "$MUTATIONS" --rate "$RATE" --out "$TMP/fanout.log" | tee "$TMP/fanout.out"
after=$(cpu_ticks)
CPU_S=$(python3 -c "import os; print(($after - $before) / os.sysconf('SC_CLK_TCK'))")
: >"$TMP/commits"
for k in "${TENANTS[@]}"; do
  "${PSQL[@]}" -F ' ' -d "benchsub_$k" -c "SELECT payload->>'key', extract(epoch FROM (payload->>'timestamp')::timestamptz) FROM fraiseql_outbox WHERE subject LIKE 'fraiseql.changes.%'" >>"$TMP/commits"
done

# --- (c) reconnection storm -------------------------------------------------------------------
"$LOAD" --port "$PORT" --tokens "$TMP/tokens" --clients "$RESUME" --mode resume \
  --mutations 500 --rate "$RATE" | tee "$TMP/resume.out"

python3 bench/subscriptions.py \
  --hold "$HOLD" --idle "$IDLE" --held "$HELD" --active "$ACTIVE" \
  --fanout-out "$TMP/fanout.out" --fanout-log "$TMP/fanout.log" --commits "$TMP/commits" \
  --cpu-s "$CPU_S" --rate "$RATE" --secs "$SECS" --resume-out "$TMP/resume.out" \
  --json bench/results/subscriptions.json
