#!/usr/bin/env bash
# Serves the compatibility suite's products subgraph through fraiseql, in the foreground, on
# http://127.0.0.1:${PORT:-4001}/graphql: builds the binary, creates and migrates its database
# (idempotent), then runs the server. Point the suite at it with
#   PRODUCTS_URL=http://127.0.0.1:4001/graphql ../../../shared/federation/run-compat-offline.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
"$root/scripts/services.sh" >/dev/null
export PGSSLMODE=disable
DB=${COMPAT_DB:-fraiseql_federation_compat}
export COMPAT_DB_URL=${COMPAT_DB_URL:-postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable}
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
if [ -z "$("${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE \"$DB\""
fi
(cd "$root" && cargo build --release -q -p fraiseql)
BIN="$root/target/release/fraiseql"
export FRAISEQL_CONFIG="$here/fraiseql.toml"
"$BIN" migrate
exec "$BIN" run
