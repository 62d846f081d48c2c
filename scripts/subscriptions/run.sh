#!/usr/bin/env bash
# The npm subscription clients (graphql-ws 6, graphql-sse 2; exact versions in
# scripts/subscriptions/package-lock.json) against the SaaS example's server on $PORT, as
# scripts/up.sh runs it: two tenants (acme_corp, global_corp), each must get its own changes
# only; a graphql-ws client resumes from its last position. Tokens come from `fraiseql token`.
# The clients are installed once into target/subscription-tools (again when the lock changes).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=$ROOT/target/subscription-tools
PORT=${PORT:-8080}
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "subscriptions: node and npm are needed" >&2; exit 1; }
mkdir -p "$TOOLS"
if ! cmp -s scripts/subscriptions/package-lock.json "$TOOLS/package-lock.json" \
  || [ ! -f "$TOOLS/node_modules/graphql-ws/package.json" ]; then
  echo "installing graphql-ws and graphql-sse into target/subscription-tools (npm ci)..."
  cp scripts/subscriptions/package.json scripts/subscriptions/package-lock.json "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error) >&2 \
    || { rm -f "$TOOLS/package-lock.json"; echo "subscriptions: npm ci failed" >&2; exit 1; }
fi
cp scripts/subscriptions/clients.mjs "$TOOLS/"
BIN=${FRAISEQL_BIN:-target/release/fraiseql}
export FRAISEQL_CONFIG=${FRAISEQL_CONFIG:-examples/saas/fraiseql.toml}
RUN=$(date +%s%N)
cleanup() {
  # What this run created goes again, so the walkthrough, run again on this machine, still
  # finds global_corp empty (examples/saas/federation.sh does the same).
  for tenant in acme_corp global_corp; do
    read -r db schema < <(psql -h 127.0.0.1 -U postgres -qAt -F ' ' -d fraiseql_master \
      -c "SELECT database, schema_name FROM fraiseql_tenant WHERE key = '$tenant'") || continue
    PGOPTIONS="-c search_path=$schema" psql -h 127.0.0.1 -U postgres -qAt -d "$db" -c \
      "DELETE FROM tb_project p USING tb_organization o WHERE p.fk_org = o.pk_org AND o.name LIKE 'Subs _ $RUN'; DELETE FROM tb_organization WHERE name LIKE 'Subs _ $RUN';" >/dev/null || true
  done
}
trap cleanup EXIT
TOKEN_A=$("$BIN" token --tenant acme_corp --role admin)
TOKEN_B=$("$BIN" token --tenant global_corp --role admin)
echo "graphql-ws $(node -p "require('$TOOLS/node_modules/graphql-ws/package.json').version"), graphql-sse $(node -p "require('$TOOLS/node_modules/graphql-sse/package.json').version") against port $PORT"
RUN=$RUN PORT=$PORT TOKEN_A=$TOKEN_A TOKEN_B=$TOKEN_B \
  node --test --test-reporter=spec "$TOOLS/clients.mjs"
