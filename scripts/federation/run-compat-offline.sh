#!/usr/bin/env bash
# (Copied from the shared federation tools, verified there; here the tools come from install.sh.)
# Runs Apollo's public subgraph compatibility tests (npm @apollo/federation-subgraph-compatibility-tests)
# OFFLINE against a products subgraph already listening on $PRODUCTS_URL.
# The package's own CLI (fedtest) cannot run here: it downloads rover and the Apollo Router at run time.
# Instead: the package's reference `users` (:4002) and `inventory` (:4003) subgraphs, @apollo/gateway
# (gateway.mjs beside this file) on :4000 in place of the router, then the package's jest suite.
# Last line: "N passed, M failed". Exit status: jest's.
# Usage: PRODUCTS_URL=http://127.0.0.1:4001/graphql run-compat-offline.sh [WORKDIR]
set -u
here=$(cd "$(dirname "$0")" && pwd)
PRODUCTS_URL=${PRODUCTS_URL:-http://127.0.0.1:4001/graphql}
W=${1:-$("$here/install.sh")}
mkdir -p "$W" && cd "$W" || exit 2
if [ ! -d node_modules/@apollo/federation-subgraph-compatibility-tests ]; then
  [ -f package.json ] || npm init -y >/dev/null
  # --ignore-scripts: the CLI's postinstall would download rover (no network here).
  npm install --silent --ignore-scripts @apollo/federation-subgraph-compatibility-tests@1.2.1 \
    @apollo/gateway@2.14.4 @apollo/server@5.5.1 @apollo/subgraph@2.14.4 graphql@16 >/dev/null || exit 2
fi
C="$W/node_modules/@apollo/federation-subgraph-compatibility-tests"
pids=(); trap 'kill "${pids[@]}" 2>/dev/null' EXIT
(cd "$C/dist/subgraphs/users" && exec node index.js) >"$W/users.log" 2>&1 & pids+=($!)
(cd "$C/dist/subgraphs/inventory" && exec node index.js) >"$W/inventory.log" 2>&1 & pids+=($!)
up() { curl -sf -H 'content-type: application/json' -d '{"query":"{__typename}"}' "$1" >/dev/null; }
for u in http://127.0.0.1:4002/ http://127.0.0.1:4003/ "$PRODUCTS_URL"; do
  for _ in $(seq 30); do up "$u" && break; sleep 1; done
done
cp "$here/gateway.mjs" "$W/gateway.mjs"
SUBGRAPHS="products=$PRODUCTS_URL,users=http://127.0.0.1:4002/,inventory=http://127.0.0.1:4003/" PORT=4000 \
  node "$W/gateway.mjs" >"$W/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 30); do up http://127.0.0.1:4000/ && break; sleep 1; done
PRODUCTS_URL=$PRODUCTS_URL node node_modules/jest/bin/jest.js "$C/dist/tests" --ci \
  --config "$C/federation-jest.config.js" --json --outputFile="$W/jest.json" 2>"$W/jest.stderr"
rc=$?
node -e 'const r=require(process.argv[1]);for(const t of r.testResults)for(const a of t.assertionResults)console.log((a.status==="passed"?"PASS ":"FAIL ")+a.fullName);console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed`)' "$W/jest.json"
exit $rc
