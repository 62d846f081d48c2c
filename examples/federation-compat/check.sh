#!/usr/bin/env bash
# Apollo's subgraph compatibility suite against this engine, offline: serve.sh in the background
# on $PORT (4001), then scripts/federation/run-compat-offline.sh (the reference users and
# inventory subgraphs, @apollo/gateway on :4000, the package's jest tests). Prints one line per
# test and "N passed, M failed"; exits non-zero unless every test passed. Ends what it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PORT=${PORT:-4001}
LOGS=${TMPDIR:-/tmp}/fraiseql-compat
mkdir -p "$LOGS"
(cd "$root" && cargo build --release -q -p fraiseql)
server=
stop() {
  [ -n "$server" ] || return 0
  kill -TERM "$server" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop EXIT
PORT=$PORT "$here/serve.sh" >"$LOGS/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$LOGS/server.log" >&2; echo "compat: the subgraph did not start" >&2; exit 1; }
  sleep 0.5
done
out=$LOGS/suite.txt
PRODUCTS_URL="http://127.0.0.1:$PORT/graphql" "$root/scripts/federation/run-compat-offline.sh" | tee "$out"
last=$(tail -n1 "$out")
case "$last" in
  *" passed, 0 failed") echo "compat: $last" ;;
  *) echo "compat: FAILED ($last; logs in $LOGS and target/federation-tools)" >&2; exit 1 ;;
esac
