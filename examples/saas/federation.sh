#!/usr/bin/env bash
# The SaaS example as a federated system: the tenant subgraph (this example, tenant databases)
# and the analytics subgraph (analytics/, shared_analytics, multi-tenant by rows), two fraiseql
# processes behind a Federation v2 gateway (@apollo/gateway, forwarding X-Tenant-ID and
# Authorization). It composes them, creates a project for acme_corp and one for global_corp
# through the gateway, waits for their analytics events (outbox -> NATS -> analytics_sync), and
# queries across both subgraphs as each tenant, printing the answers. Exits non-zero if any
# answer is wrong; ends everything it started. Safe to run again.
#   TENANT_PORT (4101), ANALYTICS_PORT (4102), GATEWAY_PORT (4100)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >/dev/null
TOOLS=$(scripts/federation/install.sh)
BIN=$PWD/target/release/fraiseql
TENANT_PORT=${TENANT_PORT:-4101}
ANALYTICS_PORT=${ANALYTICS_PORT:-4102}
GATEWAY_PORT=${GATEWAY_PORT:-4100}
LOGS=${TMPDIR:-/tmp}/fraiseql-federation
mkdir -p "$LOGS"
RUN=$(date +%s%N)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # What this run created goes again, so the walkthrough still finds global_corp empty.
  for tenant in acme_corp global_corp; do
    read -r db schema < <(psql -h 127.0.0.1 -U postgres -qAt -F ' ' -d fraiseql_master \
      -c "SELECT database, schema_name FROM fraiseql_tenant WHERE key = '$tenant'") || continue
    PGOPTIONS="-c search_path=$schema" psql -h 127.0.0.1 -U postgres -qAt -d "$db" -c \
      "DELETE FROM tb_project WHERE name = 'Launch $RUN'; DELETE FROM tb_organization WHERE name = 'Federated $tenant $RUN';" >/dev/null || true
  done
}
trap cleanup EXIT

FRAISEQL_CONFIG=examples/saas/fraiseql.toml PORT=$TENANT_PORT "$BIN" run >"$LOGS/tenant.log" 2>&1 &
pids+=($!)
FRAISEQL_CONFIG=examples/saas/analytics/fraiseql.toml PORT=$ANALYTICS_PORT "$BIN" run >"$LOGS/analytics.log" 2>&1 &
pids+=($!)
wait_for() { # url what
  for _ in $(seq 60); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$2 did not come up; see $LOGS" >&2; exit 1
}
wait_for "http://127.0.0.1:$TENANT_PORT/health" "the tenant subgraph"
wait_for "http://127.0.0.1:$ANALYTICS_PORT/health" "the analytics subgraph"

echo "== composition (@apollo/composition) =="
node "$TOOLS/compose.mjs" -o "$LOGS/supergraph.graphql" \
  "tenant=http://127.0.0.1:$TENANT_PORT/graphql" "analytics=http://127.0.0.1:$ANALYTICS_PORT/graphql"

SUBGRAPHS="tenant=http://127.0.0.1:$TENANT_PORT/graphql,analytics=http://127.0.0.1:$ANALYTICS_PORT/graphql" \
  PORT=$GATEWAY_PORT node "$TOOLS/gateway.mjs" >"$LOGS/gateway.log" 2>&1 &
pids+=($!)
GATEWAY=http://127.0.0.1:$GATEWAY_PORT/
for _ in $(seq 60); do
  curl -sf -H 'content-type: application/json' -d '{"query":"{__typename}"}' "$GATEWAY" >/dev/null 2>&1 && break
  sleep 0.5
done

export FRAISEQL_CONFIG=examples/saas/fraiseql.toml
TOKEN_A=$("$BIN" token --tenant acme_corp --role admin)
TOKEN_B=$("$BIN" token --tenant global_corp --role admin)

# gql TENANT TOKEN QUERY [VARIABLES]: the gateway's answer.
gql() {
  python3 - "$GATEWAY" "$1" "$2" "$3" "${4:-{\}}" <<'PY'
import json, sys, urllib.request
url, tenant, token, query, variables = sys.argv[1:]
req = urllib.request.Request(url, data=json.dumps({"query": query, "variables": json.loads(variables)}).encode(),
    headers={"content-type": "application/json", "x-tenant-id": tenant, "authorization": f"Bearer {token}"})
print(urllib.request.urlopen(req).read().decode())
PY
}
# field JSON PATH: a value of an answer (python expression over `d`), failing on GraphQL errors.
field() {
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); e=d.get("errors"); sys.exit("errors: "+json.dumps(e)) if e else print(eval(sys.argv[2]))' "$1" "$2"
}

echo "== acme_corp and global_corp each create an organization and a project through the gateway =="
for t in A B; do
  tenant=$([ $t = A ] && echo acme_corp || echo global_corp)
  token=$([ $t = A ] && echo "$TOKEN_A" || echo "$TOKEN_B")
  org=$(gql "$tenant" "$token" 'mutation($n: String!) { createOrganization(name: $n) { id } }' "{\"n\": \"Federated $tenant $RUN\"}")
  org_id=$(field "$org" 'd["data"]["createOrganization"]["id"]')
  p=$(gql "$tenant" "$token" 'mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id name } }' "{\"o\": \"$org_id\", \"n\": \"Launch $RUN\"}")
  echo "$tenant: $p"
  declare "PROJECT_$t=$(field "$p" 'd["data"]["createProject"]["id"]')"
done

QUERY='query($id: ID!) { project(id: $id) { name organization { name } eventCount events { eventType } analytics { eventType } } }'
echo "== waiting for the analytics events (outbox -> NATS -> analytics_sync -> shared_analytics) =="
for t in A B; do
  tenant=$([ $t = A ] && echo acme_corp || echo global_corp)
  token=$([ $t = A ] && echo "$TOKEN_A" || echo "$TOKEN_B")
  id_var=PROJECT_$t
  for i in $(seq 60); do
    a=$(gql "$tenant" "$token" "$QUERY" "{\"id\": \"${!id_var}\"}")
    [ "$(field "$a" 'd["data"]["project"]["eventCount"]')" = "1" ] && break
    [ "$i" = 60 ] && { echo "no analytics event for $tenant's project: $a" >&2; exit 1; }
    sleep 0.5
  done
  echo "$tenant, one query across both subgraphs:"
  echo "  $QUERY"
  echo "  $a"
  field "$a" '(d["data"]["project"]["events"] == [{"eventType": "analytics.project_created"}] and d["data"]["project"]["analytics"] == [{"eventType": "analytics.project_created"}]) or sys.exit("wrong events")' >/dev/null
done

echo "== each tenant sees only its own rows =="
LIST='{ organizations(limit: 100) { name projects(limit: 100) { id name eventCount } } }'
for t in A B; do
  tenant=$([ $t = A ] && echo acme_corp || echo global_corp)
  token=$([ $t = A ] && echo "$TOKEN_A" || echo "$TOKEN_B")
  other=$([ $t = A ] && echo global_corp || echo acme_corp)
  mine=PROJECT_$t
  theirs=PROJECT_$([ $t = A ] && echo B || echo A)
  a=$(gql "$tenant" "$token" "$LIST")
  echo "$tenant: $a"
  field "$a" "all('$other' not in o['name'] for o in d['data']['organizations']) or sys.exit('another tenant\\'s organization')" >/dev/null
  field "$a" "any(p['id'] == '${!mine}' and p['eventCount'] == 1 for o in d['data']['organizations'] for p in o['projects']) or sys.exit('own project missing')" >/dev/null
  field "$a" "all(p['id'] != '${!theirs}' for o in d['data']['organizations'] for p in o['projects']) or sys.exit('another tenant\\'s project')" >/dev/null
  # The other tenant's project id, asked of the analytics subgraph directly: no events leak.
  e=$(python3 - "http://127.0.0.1:$ANALYTICS_PORT/graphql" "$tenant" "$token" "${!theirs}" <<'PY'
import json, sys, urllib.request
url, tenant, token, pid = sys.argv[1:]
q = 'query($r: [_Any!]!) { _entities(representations: $r) { ... on Project { eventCount events { id } } } }'
body = {"query": q, "variables": {"r": [{"__typename": "Project", "id": pid}]}}
req = urllib.request.Request(url, data=json.dumps(body).encode(),
    headers={"content-type": "application/json", "x-tenant-id": tenant, "authorization": f"Bearer {token}"})
print(urllib.request.urlopen(req).read().decode())
PY
)
  echo "$tenant asks for $other's project's analytics: $e"
  field "$e" "d['data']['_entities'] == [{'eventCount': 0, 'events': []}] or sys.exit('analytics leaked across tenants')" >/dev/null
done
echo "federation: all answers as expected"
