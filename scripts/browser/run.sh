#!/usr/bin/env bash
# GraphiQL in headless Chromium, as a newcomer meets it: prepares the SaaS example
# (scripts/setup.sh), starts `fraiseql run` with the development profile on a free port, takes
# the GraphiQL link the banner prints (a development token in its fragment), and runs
# scripts/browser/graphiql.test.mjs against it with every non-loopback request blocked. Exits
# non-zero if anything fails; ends the server it started. Self-contained and safe to run again:
#   - Chromium: Debian's `chromium` (installed with apt-get when missing and running as root);
#   - playwright-core (pinned in scripts/browser/package-lock.json): installed once into
#     target/browser-tools (again only when the lock file changes); it downloads no browser.
# Logs: ${TMPDIR:-/tmp}/fraiseql-browser/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=$ROOT/target/browser-tools
LOGS=${TMPDIR:-/tmp}/fraiseql-browser
mkdir -p "$LOGS"

fail() {
  echo "browser test: $*" >&2
  exit 1
}

# --- tools -----------------------------------------------------------------------------------
command -v node >/dev/null && command -v npm >/dev/null \
  || fail "node and npm are needed (Debian: apt-get install -y nodejs npm)"
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
if [ -z "$CHROMIUM" ]; then
  [ "$(id -u)" = 0 ] || fail "chromium is not installed: apt-get install -y chromium (as root)"
  echo "installing Debian's chromium (apt-get)..."
  apt-get update -qq >"$LOGS/apt.log" 2>&1 || { tail -20 "$LOGS/apt.log" >&2; fail "apt-get update failed"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >>"$LOGS/apt.log" 2>&1 \
    || { tail -20 "$LOGS/apt.log" >&2; fail "apt-get install chromium failed"; }
  CHROMIUM=$(command -v chromium) || fail "chromium is still not on PATH after apt-get"
fi
echo "browser: $("$CHROMIUM" --version 2>/dev/null | head -n1) ($CHROMIUM)"

mkdir -p "$TOOLS"
if ! cmp -s scripts/browser/package-lock.json "$TOOLS/package-lock.json" \
  || [ ! -f "$TOOLS/node_modules/playwright-core/package.json" ]; then
  echo "installing playwright-core into target/browser-tools (npm ci)..."
  cp scripts/browser/package.json scripts/browser/package-lock.json "$TOOLS/"
  (cd "$TOOLS" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
    >"$LOGS/npm.log" 2>&1 || { cat "$LOGS/npm.log" >&2; rm -f "$TOOLS/package-lock.json"; fail "npm ci failed"; }
fi
echo "playwright-core $(node -p "require('$TOOLS/node_modules/playwright-core/package.json').version")"

# --- the server ------------------------------------------------------------------------------
echo "preparing the example (scripts/setup.sh; log: $LOGS/setup.log)..."
scripts/setup.sh >"$LOGS/setup.log" 2>&1 || { tail -30 "$LOGS/setup.log" >&2; fail "scripts/setup.sh failed"; }

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER_LOG=$LOGS/server.log
server=
stop_server() {
  [ -n "$server" ] || return 0
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$server" 2>/dev/null; then
      echo "the server (pid $server) did not stop on SIGTERM; killing it" >&2
      kill -KILL "$server" 2>/dev/null || true
    fi
  fi
  wait "$server" 2>/dev/null || true
  server=
}
trap stop_server EXIT

FRAISEQL_CONFIG=examples/saas/fraiseql.toml FRAISEQL_PROFILE=development PORT=$PORT \
  target/release/fraiseql run >"$SERVER_LOG" 2>&1 &
server=$!
LINK=
for _ in $(seq 300); do
  LINK=$(sed -n 's/^GraphiQL (development token for [a-z0-9_]*): \(http[^ ]*\)$/\1/p' "$SERVER_LOG" | head -n1)
  [ -n "$LINK" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$SERVER_LOG" >&2; fail "fraiseql run exited before printing its GraphiQL link"; }
  sleep 0.1
done
[ -n "$LINK" ] || { cat "$SERVER_LOG" >&2; fail "no GraphiQL link in the banner after 30 s"; }
echo "server: pid $server on port $PORT; banner:"
sed -e '/^GraphiQL (/s/token=.*/token=<jwt>/' "$SERVER_LOG" | grep -v '^\s*$' | grep -E '^(🍓|GraphQL|Multi|NATS|Tenants|GraphiQL)' | sed 's/^/  /'

# --- the browser -----------------------------------------------------------------------------
rc=0
GRAPHIQL_LINK=$LINK BROWSER_TOOLS=$TOOLS CHROMIUM=$CHROMIUM \
  node --test --test-reporter=spec scripts/browser/graphiql.test.mjs || rc=$?
stop_server
if [ "$rc" != 0 ]; then
  echo "--- server log ($SERVER_LOG) ---" >&2
  sed -e 's/token=[^ ]*/token=<jwt>/' "$SERVER_LOG" | tail -30 >&2
  fail "GraphiQL test failed"
fi
echo "browser test: GraphiQL passed"
