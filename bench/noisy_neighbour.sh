#!/usr/bin/env bash
# Benchmark: the noisy neighbour. Tenant A (acme_corp, tier free, a plan of A_PLAN requests/s)
# floods at 10x its plan while tenant B (global_corp, tier pro) sends its normal load of
# B_RATE requests/s; both read `{ organizations { name } }` (database_per_tenant, JWT auth).
#   1. B alone, SECS seconds (after a warm-up);
#   2. B again, SECS seconds, while A floods (A starts 2 s before and stops after).
# Each client paces itself (wrk's delay(): a connection waits its turn between requests), so
# the rates are the offered ones, not as many as the server can answer. Reports B's p50/p99
# alone and beside the flood (the target: p99 within 1.5x), A's offered and admitted rates
# against its plan, and A's share of the answers. Writes bench/results/noisy_neighbour.json.
# Not a test: the figures depend on the machine (run it on a quiet one; the load average is
# recorded).
#   bench/noisy_neighbour.sh [seconds]   (env: A_PLAN, B_RATE)
set -euo pipefail
SECS=${1:-20}
A_PLAN=${A_PLAN:-100}
B_RATE=${B_RATE:-100}
A_RATE=$(( A_PLAN * 10 ))
BENCH_PORT=${BENCH_PORT:-18095}
source "$(dirname "$0")/lib.sh"
# Events off (this measures the request path); the free plan is A's, pro is generous.
export OBSERVERS_ENABLED=false FREE_TIER_RPS=$A_PLAN
OUT=bench/results/noisy_neighbour.json
mkdir -p bench/results
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# A world of its own names (registry fraiseql_noisy, tenants noisy_*), so that it never drops
# another benchmark's.
export TENANT_PREFIX=noisy_
export MASTER_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_noisy" SHARED_DB_URL="postgres://postgres@127.0.0.1:5432/fraiseql_noisy"
for db in fraiseql_noisy noisy_acme_corp noisy_global_corp; do
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fraiseql_noisy"
"$BIN" tenant create acme_corp >/dev/null
"$BIN" tenant create global_corp --tier pro >/dev/null
"$BIN" migrate >/dev/null
TOKEN_A=$("$BIN" token --tenant acme_corp --role admin)
TOKEN_B=$("$BIN" token --tenant global_corp --role admin)
start_server
TMP=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; kill "${FLOOD:-}" 2>/dev/null || true; rm -rf "$TMP"' EXIT
URL="http://127.0.0.1:$PORT/graphql"
for t in "acme_corp $TOKEN_A" "global_corp $TOKEN_B"; do
  set -- $t
  for i in 1 2 3; do
    curl -sf -H 'Content-Type: application/json' -H "X-Tenant-ID: $1" -H "Authorization: Bearer $2" \
      -d "{\"query\": \"mutation { createOrganization(name: \\\"Org $i\\\") { id } }\"}" "$URL" >/dev/null
  done
done

# paced TENANT TOKEN DELAY_MS: a wrk script whose connections each wait DELAY_MS between requests,
# counting answers by status; prints "RESULT rps p50_ms p99_ms ok limited other".
paced() {
  cat <<LUA
threads = {}
setup = function(thread) table.insert(threads, thread) end
request = function()
  return wrk.format("POST", "/graphql", {
    ["Content-Type"] = "application/json",
    ["X-Tenant-ID"] = "$1",
    ["Authorization"] = "Bearer $2",
  }, '{"query": "{ organizations { name } }"}')
end
delay = function() return $3 end
ok, limited, other = 0, 0, 0
response = function(status, headers, body)
  if status == 200 and not string.find(body, '"errors"', 1, true) then ok = ok + 1
  elseif status == 429 then limited = limited + 1
  else other = other + 1 end
end
done = function(summary, latency, requests)
  local o, l, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); l = l + t:get("limited"); x = x + t:get("other") end
  x = x + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, o, l, x))
end
LUA
}

# B: 4 connections, each pacing for B_RATE / 4 requests a second.
B_CONNS=4
paced global_corp "$TOKEN_B" $(( 1000 * B_CONNS / B_RATE )) >"$TMP/b.lua"
# A: 20 connections pacing for 10x its plan (429s are answered at once, so the pace holds).
A_CONNS=20
paced acme_corp "$TOKEN_A" $(( 1000 * A_CONNS / A_RATE )) >"$TMP/a.lua"

run_b() { wrk -t1 -c$B_CONNS -d"${1}s" --latency -s "$TMP/b.lua" "$URL" | grep '^RESULT'; }

run_b 5 >/dev/null                                   # warm-up: connections, prepared statements
read -r _ b_rps b_p50 b_p99 b_ok b_lim b_other < <(run_b "$SECS")
wrk -t1 -c$A_CONNS -d"$(( SECS + 4 ))s" -s "$TMP/a.lua" "$URL" | grep '^RESULT' >"$TMP/a.out" &
FLOOD=$!
sleep 2
read -r _ f_rps f_p50 f_p99 f_ok f_lim f_other < <(run_b "$SECS")
wait "$FLOOD"
read -r _ a_rps _ _ a_ok a_lim a_other <"$TMP/a.out"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
limited_total=$(curl -sf "http://127.0.0.1:$PORT/metrics" |
  awk '/^fraiseql_tenant_rate_limited_total\{tenant_id="acme_corp",limit="requests"\}/ {print $2}')

python3 - "$OUT" "$SECS" "$A_PLAN" "$A_RATE" "$B_RATE" "$b_rps" "$b_p50" "$b_p99" "$b_ok" "$b_lim" "$b_other" \
  "$f_rps" "$f_p50" "$f_p99" "$f_ok" "$f_lim" "$f_other" "$a_rps" "$a_ok" "$a_lim" "$a_other" \
  "$LOAD_BEFORE" "$LOAD_AFTER" "${limited_total:-0}" <<'PY'
import json, sys
(out, secs, a_plan, a_rate, b_rate, b_rps, b_p50, b_p99, b_ok, b_lim, b_other,
 f_rps, f_p50, f_p99, f_ok, f_lim, f_other, a_rps, a_ok, a_lim, a_other,
 load_before, load_after, limited_total) = sys.argv[1:]
secs, a_plan, a_rate, b_rate = int(secs), int(a_plan), int(a_rate), int(b_rate)
a_secs = secs + 4
a_admitted = int(a_ok) / a_secs
res = {
    "seconds": secs, "a_plan_rps": a_plan, "a_offered_target_rps": a_rate, "b_target_rps": b_rate,
    "b_alone": {"rps": float(b_rps), "p50_ms": float(b_p50), "p99_ms": float(b_p99),
                "ok": int(b_ok), "limited": int(b_lim), "failed": int(b_other)},
    "b_with_flood": {"rps": float(f_rps), "p50_ms": float(f_p50), "p99_ms": float(f_p99),
                     "ok": int(f_ok), "limited": int(f_lim), "failed": int(f_other)},
    "a_flood": {"offered_rps": float(a_rps), "admitted_rps": round(a_admitted, 1),
                "admitted_vs_plan": round(a_admitted / a_plan, 3), "ok": int(a_ok),
                "limited": int(a_lim), "failed": int(a_other),
                "rate_limited_metric": float(limited_total)},
    "p99_ratio": round(float(f_p99) / float(b_p99), 2),
    "p50_ratio": round(float(f_p50) / float(b_p50), 2),
    "a_share_of_answers": round(int(a_ok) / a_secs / (int(a_ok) / a_secs + int(f_ok) / secs), 3),
    "load_average_before": load_before, "load_average_after": load_after,
}
json.dump(res, open(out, "w"), indent=2)
print(json.dumps(res, indent=2))
b, f, a = res["b_alone"], res["b_with_flood"], res["a_flood"]
print()
print("| | B req/s | B p50 | B p99 | A offered | A admitted (plan) | A's share of answers |")
print("|---|---|---|---|---|---|---|")
print(f"| B alone | {b['rps']:.0f} | {b['p50_ms']:.2f} ms | {b['p99_ms']:.2f} ms | - | - | - |")
print(f"| B + A flooding | {f['rps']:.0f} | {f['p50_ms']:.2f} ms | {f['p99_ms']:.2f} ms | {a['offered_rps']:.0f}/s | "
      f"{a['admitted_rps']:.0f}/s ({a_plan}/s) | {res['a_share_of_answers']:.0%} |")
print(f"\nB's p99 with A flooding: {res['p99_ratio']}x alone (target <= 1.5x); "
      f"A admitted {a['admitted_vs_plan']}x its plan; load average {load_before} -> {load_after}")
bad = b["failed"] + f["failed"] + b["limited"] + f["limited"] + a["failed"]
if bad:
    sys.exit(f"{bad} of B's answers failed or were limited, or A's failed otherwise than 429")
PY
