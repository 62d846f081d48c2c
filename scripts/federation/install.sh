#!/usr/bin/env bash
# Installs the federation test tools (package.json beside this file, exact versions) into
# ${FEDERATION_TOOLS:-target/federation-tools} once; prints that folder. Needs node >= 20 and the
# npm registry. --ignore-scripts: the compatibility suite's postinstall downloads rover, which
# cannot work offline and is not needed (its jest files are run directly).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${FEDERATION_TOOLS:-$root/target/federation-tools}
mkdir -p "$dir"
if ! cmp -s "$here/package.json" "$dir/package.json" || [ ! -d "$dir/node_modules/@apollo/gateway" ]; then
  cp "$here/package.json" "$dir/package.json"
  (cd "$dir" && npm install --silent --no-audit --no-fund --ignore-scripts >/dev/null)
fi
cp "$here/gateway.mjs" "$here/compose.mjs" "$here/apq.mjs" "$dir/"
echo "$dir"
