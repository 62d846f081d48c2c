#!/usr/bin/env bash
# The end-to-end checks, each against real processes on this machine (scripts/test.sh runs them
# after the Rust tests; each can also be run on its own):
#   0. scripts/check-docs.py        links and anchors in README.md and docs/, README's length,
#                                   the benchmark chart drawn from its committed JSON
#   1. deploy/check.sh              Prometheus alerts and their unit tests, the Grafana dashboard
#   2. scripts/check-containers.sh  Dockerfile / docker-compose.yml / .env.example, offline
#   3. scripts/up.sh + examples/saas/walkthrough.sh   the README's first command, then the
#                                   seed's steps 5-9 against it, then the npm subscription
#                                   clients (scripts/subscriptions/run.sh)
#   4. scripts/browser/run.sh       GraphiQL in headless Chromium (a subscription too)
#   5. examples/saas/federation.sh  two subgraphs behind @apollo/gateway, per tenant
#   6. examples/federation-compat/check.sh   Apollo's subgraph compatibility suite
# Missing Debian tools (promtool, chromium) are installed with apt-get when running as root.
# Exits non-zero if any check fails; ends every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
LOGS=${TMPDIR:-/tmp}/fraiseql-e2e
mkdir -p "$LOGS"

need_deb() { # command package
  command -v "$1" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || { echo "e2e: $1 is missing (apt-get install -y $2)" >&2; return 1; }
  echo "e2e: installing $2 (apt-get)..."
  apt-get install -y -qq "$2" >"$LOGS/apt-$2.log" 2>&1 \
    || { apt-get update -qq >>"$LOGS/apt-$2.log" 2>&1 && apt-get install -y -qq "$2" >>"$LOGS/apt-$2.log" 2>&1; } \
    || { tail -20 "$LOGS/apt-$2.log" >&2; return 1; }
}

section() { printf '\n######## %s\n' "$*"; }
started=$(date +%s)
took() { echo "($(($(date +%s) - started)) s so far)"; }

section "0. scripts/check-docs.py"
python3 scripts/check-docs.py
took

section "1. deploy/check.sh"
need_deb promtool prometheus
deploy/check.sh
took

section "2. scripts/check-containers.sh"
scripts/check-containers.sh
took

section "3. scripts/up.sh, then examples/saas/walkthrough.sh"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=
stop_server() {
  [ -n "$server" ] || return 0
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server" 2>/dev/null; then
    echo "e2e: the server (pid $server) did not stop on SIGTERM; killing it" >&2
    kill -KILL "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
  server=
}
trap stop_server EXIT
# Built first, in the foreground: a cold release build alone can outlast the wait for /health.
cargo build --release -p fraiseql
# up.sh ends with `exec fraiseql run`, so its pid is the server's.
PORT=$PORT scripts/up.sh >"$LOGS/up.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { tail -30 "$LOGS/up.log" >&2; echo "e2e: scripts/up.sh stopped" >&2; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { tail -30 "$LOGS/up.log" >&2; echo "e2e: no server after 300 s" >&2; exit 1; }
grep -E "FraiseQL|GraphQL endpoint|Multi-tenancy|NATS|Tenants" "$LOGS/up.log" || true
PORT=$PORT examples/saas/walkthrough.sh
section "3b. scripts/subscriptions/run.sh (graphql-ws and graphql-sse against the same server)"
PORT=$PORT scripts/subscriptions/run.sh
stop_server
took

section "4. scripts/browser/run.sh"
need_deb chromium chromium
scripts/browser/run.sh
took

section "5. examples/saas/federation.sh"
examples/saas/federation.sh
took

section "6. examples/federation-compat/check.sh"
examples/federation-compat/check.sh
took

echo
echo "e2e: every check passed"
