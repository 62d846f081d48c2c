#!/usr/bin/env bash
# Prepares the SaaS example (idempotent): services up, fraiseql built, the master and analytics
# databases created, the tenants acme_corp and global_corp provisioned, every migration applied,
# demo data loaded into acme_corp. scripts/up.sh and examples/saas/federation.sh start from here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
cargo build --release -p fraiseql
BIN=target/release/fraiseql
export FRAISEQL_CONFIG=examples/saas/fraiseql.toml
PSQL=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt)
export PGSSLMODE=disable
for db in fraiseql_master shared_analytics; do
  if [ -z "$("${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE $db"
  fi
done
for tenant in acme_corp global_corp; do
  scripts/create-tenant.sh "$tenant"
done
"$BIN" migrate
# Demo data for acme_corp (global_corp starts empty, as in the walkthrough).
read -r ID DB SCHEMA < <("${PSQL[@]}" -F ' ' -d fraiseql_master \
  -c "SELECT id, database, schema_name FROM fraiseql_tenant WHERE key = 'acme_corp'")
PGOPTIONS="-c search_path=$SCHEMA" "${PSQL[@]}" -d "$DB" -v tenant_id="$ID" -f examples/saas/seed.sql
