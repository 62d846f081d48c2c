#!/usr/bin/env bash
# Provisions one tenant (database or schema, login role, migrations, RLS, registry row).
# Idempotent: running it again resumes or re-checks. Usage: scripts/create-tenant.sh <key>
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <tenant-key>" >&2; exit 2; }
cd "$(dirname "$0")/.."
BIN=target/release/fraiseql
[ -x "$BIN" ] || cargo build --release -p fraiseql
exec "$BIN" --config "${FRAISEQL_CONFIG:-examples/saas/fraiseql.toml}" tenant create "$1"
