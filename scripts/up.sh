#!/usr/bin/env bash
# Brings up the SaaS example: builds fraiseql, creates and migrates its databases, loads demo data,
# and runs the server in the foreground on $PORT (default 8080). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo build --release -p fraiseql
BIN=target/release/fraiseql
CONFIG=examples/saas/fraiseql.toml
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
for db in tenant_acme_corp shared_analytics; do
  if [ -z "$("${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $db"
  fi
done
"$BIN" --config "$CONFIG" migrate
"${PSQL[@]}" -d tenant_acme_corp -f examples/saas/seed.sql
exec "$BIN" --config "$CONFIG" run
