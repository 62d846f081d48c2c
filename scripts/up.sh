#!/usr/bin/env bash
# Brings up the SaaS example (scripts/setup.sh: build, databases, tenants acme_corp and
# global_corp, migrations, demo data) and runs the server in the foreground on $PORT (default
# 8080). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BIN=target/release/fraiseql
export FRAISEQL_CONFIG=examples/saas/fraiseql.toml
echo
echo "Tokens for the walkthrough:"
echo "  export TOKEN_A=$("$BIN" token --tenant acme_corp --role admin)"
echo "  export TOKEN_B=$("$BIN" token --tenant global_corp --role admin)"
echo
exec "$BIN" run
