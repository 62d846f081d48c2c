#!/usr/bin/env bash
# The seed page's walkthrough, steps 5-9, against a running server (scripts/up.sh, on
# http://localhost:${PORT:-8080}): the server answers; tenant A (acme_corp) creates an
# organization; tenant B (global_corp) lists its organizations and gets the empty list; A creates
# a project; the project's analytics.project_created event lands in
# shared_analytics.tb_analytics_event (outbox -> NATS JetStream -> consumer group analytics_sync).
# Each step prints its command, then the answer. Exits non-zero, naming the step, if an answer is
# wrong.
#
# Safe to run again on the same databases: "Acme Corp" is created by the first run; a later run
# shows the UNIQUE_VIOLATION the README describes, looks the organization up, and names its
# project "Project Alpha <UTC time>" (project names are unique per organization), so each run
# has an event of its own to find.
#
#   PORT (8080); SHARED_DB_URL, MASTER_DB_URL, TENANT_DB_URL as in examples/saas/fraiseql.toml
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=${PORT:-8080}
BASE=http://localhost:$PORT
URL=$BASE/graphql
BIN=$PWD/target/release/fraiseql
export FRAISEQL_CONFIG=examples/saas/fraiseql.toml
SHARED_DB_URL=${SHARED_DB_URL:-postgres://postgres@127.0.0.1:5432/shared_analytics?sslmode=disable}
MASTER_DB_URL=${MASTER_DB_URL:-postgres://postgres@127.0.0.1:5432/fraiseql_master?sslmode=disable}
TENANT_DB_URL=${TENANT_DB_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
EVENT_WAIT_SECS=${EVENT_WAIT_SECS:-30}

fail() {
  echo "walkthrough FAILED: $*" >&2
  exit 1
}
for tool in curl psql python3; do
  command -v "$tool" >/dev/null || fail "\`$tool\` is not installed"
done
[ -x "$BIN" ] || fail "$BIN is missing: build it with \`cargo build --release -p fraiseql\` (scripts/up.sh does)"

step() { printf '\n== %s ==\n' "$*"; }

# json ANSWER EXPR [ARG...]: prints a Python expression over the parsed answer `d` (extra
# arguments are sys.argv[3:]); `sys.exit("...")` in it fails the call.
json() {
  python3 -c 'import json, sys
d = json.loads(sys.argv[1])
print(eval(sys.argv[2]))' "$@"
}

# gql TENANT TOKEN_NAME BODY: prints the seed's curl command (the token by its variable name),
# runs it, prints the answer and leaves it in $ANSWER.
gql() {
  local tenant=$1 token_name=$2 body=$3 out status
  printf '$ curl -s -X POST %s \\\n' "$URL"
  printf '    -H "Content-Type: application/json" \\\n'
  printf '    -H "X-Tenant-ID: %s" \\\n' "$tenant"
  printf '    -H "Authorization: Bearer $%s" \\\n' "$token_name"
  printf "    -d '%s'\n" "$body"
  out=$(mktemp)
  status=$(curl -s -o "$out" -w '%{http_code}' --max-time 30 -X POST "$URL" \
    -H "Content-Type: application/json" \
    -H "X-Tenant-ID: $tenant" \
    -H "Authorization: Bearer ${!token_name}" \
    -d "$body") || { rm -f "$out"; fail "cannot reach $URL: is the server running (scripts/up.sh)?"; }
  ANSWER=$(cat "$out")
  rm -f "$out"
  echo "$ANSWER"
  [ "$status" = 200 ] || fail "HTTP $status from $URL"
}

# --- 5. The server ---------------------------------------------------------------------------
step "5. Start FraiseQL server (fraiseql run, here scripts/up.sh): it answers"
echo "\$ curl -s $BASE/health"
HEALTH=$(curl -s --max-time 10 "$BASE/health") \
  || fail "step 5: nothing answers on $BASE: start the server first (scripts/up.sh)"
echo "$HEALTH"
[ "$(json "$HEALTH" 'd.get("status")')" = ok ] || fail "step 5: /health answered $HEALTH"
echo "\$ curl -s $BASE/ready"
READY=$(curl -s --max-time 15 "$BASE/ready") || fail "step 5: /ready did not answer"
echo "$READY"
[ "$(json "$READY" 'd.get("status")')" = ready ] || fail "step 5: the server is not ready: $READY"

echo
echo "\$ export FRAISEQL_CONFIG=$FRAISEQL_CONFIG"
echo "\$ export TOKEN_A=\$(fraiseql token --tenant acme_corp --role admin)"
echo "\$ export TOKEN_B=\$(fraiseql token --tenant global_corp --role admin)"
TOKEN_A=$("$BIN" token --tenant acme_corp --role admin) || fail "fraiseql token --tenant acme_corp failed"
TOKEN_B=$("$BIN" token --tenant global_corp --role admin) || fail "fraiseql token --tenant global_corp failed"

# --- 6. An organization as tenant A ----------------------------------------------------------
step "6. Create organization as tenant A"
gql acme_corp TOKEN_A '{"query": "mutation { createOrganization(name: \"Acme Corp\") { id name subscriptionTier } }"}'
FRESH=yes
if [ "$(json "$ANSWER" '(d.get("errors") or [{}])[0].get("extensions", {}).get("code")')" = UNIQUE_VIOLATION ]; then
  FRESH=no
  echo '(Organization names are unique per tenant: "Acme Corp" exists since an earlier run. Looking it up:)'
  gql acme_corp TOKEN_A '{"query": "query { organizations(limit: 1000) { id name } }"}' >/dev/null
  ORG=$(json "$ANSWER" 'next((o["id"] for o in d["data"]["organizations"] if o["name"] == "Acme Corp"), "")')
  [ -n "$ORG" ] || fail "step 6: \"Acme Corp\" exists (UNIQUE_VIOLATION) but organizations does not list it: $ANSWER"
  echo "Acme Corp: $ORG"
else
  json "$ANSWER" '"ok" if d.get("errors") is None and d["data"]["createOrganization"]["name"] == "Acme Corp" and d["data"]["createOrganization"]["subscriptionTier"] == "free" else sys.exit("wrong")' >/dev/null \
    || fail "step 6: expected the organization \"Acme Corp\" on tier free, got $ANSWER"
  ORG=$(json "$ANSWER" 'd["data"]["createOrganization"]["id"]')
fi

# --- 7. Tenant B sees none of it -------------------------------------------------------------
step "7. Verify tenant isolation (tenant B cannot see tenant A's data)"
# global_corp starts empty (scripts/setup.sh). examples/saas/federation.sh creates organizations
# "Federated global_corp <run>" there and deletes them when it ends: one running now is waited
# for; one that was killed left its rows behind, removed here once its run (a nanosecond clock)
# is an hour old.
WAITED=0
while :; do
  ANSWER=$(curl -s --max-time 30 -X POST "$URL" -H "Content-Type: application/json" \
    -H "X-Tenant-ID: global_corp" -H "Authorization: Bearer $TOKEN_B" \
    -d '{"query": "query { organizations { id name } }"}') || fail "step 7: cannot reach $URL"
  [ "$ANSWER" = '{"data":{"organizations":[]}}' ] && break
  OTHERS=$(json "$ANSWER" '" ".join(o["name"] for o in d["data"]["organizations"] if not o["name"].startswith(("Federated global_corp ", "Subs B ")))' 2>/dev/null) \
    || fail "step 7: expected {\"data\":{\"organizations\":[]}}, got $ANSWER"
  [ -z "$OTHERS" ] || fail "step 7: global_corp has organizations nothing here created ($OTHERS): expected {\"data\":{\"organizations\":[]}}, got $ANSWER"
  STALE=$(json "$ANSWER" '" ".join(n.split()[-1] for n in (o["name"] for o in d["data"]["organizations"]) if n.split()[-1].isdigit() and int(n.split()[-1]) < (__import__("time").time() - 3600) * 1e9)')
  if [ -n "$STALE" ]; then
    read -r DB SCHEMA < <(psql "$MASTER_DB_URL" -X -qAt -F ' ' \
      -c "SELECT database, schema_name FROM fraiseql_tenant WHERE key = 'global_corp'") \
      || fail "step 7: cannot read the tenant registry"
    for run in $STALE; do
      echo "(removing what a killed examples/saas/federation.sh or scripts/subscriptions/run.sh run $run left in global_corp)"
      PGOPTIONS="-c search_path=$SCHEMA" psql "$TENANT_DB_URL" -X -q -v ON_ERROR_STOP=1 \
        -c "\\connect $DB" \
        -c "DELETE FROM tb_project WHERE name = 'Launch $run'; DELETE FROM tb_project p USING tb_organization o WHERE p.fk_org = o.pk_org AND o.name = 'Subs B $run'; DELETE FROM tb_organization WHERE name IN ('Federated global_corp $run', 'Subs B $run');" >/dev/null \
        || fail "step 7: cannot remove federation.sh's or the subscription clients' leftovers"
    done
    continue
  fi
  [ "$WAITED" -lt 120 ] || fail "step 7: federation.sh's or the subscription clients' organizations are still in global_corp after 120 s: $ANSWER"
  [ "$WAITED" -gt 0 ] || echo "(waiting for a running examples/saas/federation.sh to delete its own organizations in global_corp)"
  sleep 1
  WAITED=$((WAITED + 1))
done
gql global_corp TOKEN_B '{"query": "query { organizations { id name } }"}'
[ "$ANSWER" = '{"data":{"organizations":[]}}' ] \
  || fail "step 7: expected {\"data\":{\"organizations\":[]}}, got $ANSWER"

# --- 8. A project, and its event -------------------------------------------------------------
step "8. Create project and verify event is published"
PROJECT_NAME="Project Alpha"
[ "$FRESH" = yes ] || PROJECT_NAME="Project Alpha $(date -u +%Y-%m-%dT%H:%M:%SZ)"
gql acme_corp TOKEN_A "{\"query\": \"mutation { createProject(orgId: \\\"$ORG\\\", name: \\\"$PROJECT_NAME\\\") { id name taskCount } }\"}"
json "$ANSWER" '"ok" if d.get("errors") is None and d["data"]["createProject"]["name"] == sys.argv[3] and d["data"]["createProject"]["taskCount"] == 0 else sys.exit("wrong")' "$PROJECT_NAME" >/dev/null \
  || fail "step 8: expected the project \"$PROJECT_NAME\" with taskCount 0, got $ANSWER"
PROJECT=$(json "$ANSWER" 'd["data"]["createProject"]["id"]')

echo
echo "Wait for NATS event (outbox -> JetStream -> analytics_sync -> shared_analytics; polled, at most ${EVENT_WAIT_SECS} s):"
SQL="SELECT event_type, tenant_id, data->>'project_id' AS project_id, recorded_at FROM tb_analytics_event WHERE tenant_id = 'acme_corp' AND data->>'project_id' = '$PROJECT';"
START=$(date +%s%N)
while :; do
  N=$(psql "$SHARED_DB_URL" -X -qAt -c "SELECT count(*) FROM tb_analytics_event WHERE tenant_id = 'acme_corp' AND event_type = 'analytics.project_created' AND data->>'project_id' = '$PROJECT'") \
    || fail "step 9: cannot query shared_analytics ($SHARED_DB_URL)"
  [ "$N" -ge 1 ] && break
  [ $(( ($(date +%s%N) - START) / 1000000000 )) -lt "$EVENT_WAIT_SECS" ] \
    || fail "step 9: no analytics.project_created row for project $PROJECT after ${EVENT_WAIT_SECS} s (is NATS up? see the server's log)"
  sleep 0.2
done
echo "arrived after $(( ($(date +%s%N) - START) / 1000000 )) ms"

# --- 9. The event in analytics ---------------------------------------------------------------
step "9. Verify event in analytics"
echo "\$ psql -h 127.0.0.1 -U postgres -d shared_analytics -c \\"
echo "  \"$SQL\""
psql "$SHARED_DB_URL" -X -c "$SQL"
[ "$N" = 1 ] || fail "step 9: expected one analytics.project_created row for project $PROJECT, found $N"

echo
echo "walkthrough: steps 5-9 answered as the seed says"
