#!/usr/bin/env bash
# The admin API's curl examples of docs/operations.md ("The admin API"), run against a running
# example started with the admin listener, e.g.
#   export FRAISEQL_ADMIN_TOKEN=$(openssl rand -hex 32)
#   ADMIN_LISTEN=127.0.0.1:9200 scripts/up.sh
#   examples/saas/admin.sh [key]          (env: ADMIN_URL, default http://127.0.0.1:9200)
# Signs a customer up, waits until it is provisioned, changes its tier, suspends and resumes it,
# backs it up and lists the tenants; fails on any unexpected status.
set -euo pipefail
KEY=${1:-initech}
URL=${ADMIN_URL:-http://127.0.0.1:9200}
: "${FRAISEQL_ADMIN_TOKEN:?set FRAISEQL_ADMIN_TOKEN to the [admin] token of the server}"
A="Authorization: Bearer $FRAISEQL_ADMIN_TOKEN"
J='Content-Type: application/json'

# call EXPECTED_STATUS METHOD PATH [BODY]: prints the answer, fails on another status.
call() {
  local want=$1 method=$2 path=$3 body=${4:-} out status
  out=$(mktemp)
  if [ -n "$body" ]; then
    status=$(curl -s -o "$out" -w '%{http_code}' -X "$method" "$URL$path" -H "$A" -H "$J" -d "$body")
  else
    status=$(curl -s -o "$out" -w '%{http_code}' -X "$method" "$URL$path" -H "$A")
  fi
  echo "$method $path -> $status $(cat "$out")"
  rm -f "$out"
  [[ " $want " == *" $status "* ]] || { echo "expected $want" >&2; exit 1; }
}

call "200 202" POST /admin/tenants "{\"key\": \"$KEY\", \"tier\": \"free\"}"
for _ in $(seq 1 120); do
  curl -s "$URL/admin/tenants/$KEY" -H "$A" | grep -q '"status":"active"' && break
  sleep 0.5
done
call 200 GET "/admin/tenants/$KEY"
call 200 PUT "/admin/tenants/$KEY/tier" '{"tier": "pro"}'
call 200 POST "/admin/tenants/$KEY/suspend"
call 200 POST "/admin/tenants/$KEY/resume"
call 201 POST "/admin/tenants/$KEY/backup"
call 200 GET /admin/tenants
status=$(curl -s -o /dev/null -w '%{http_code}' "$URL/admin/tenants" -H 'Authorization: Bearer wrong')
echo "GET /admin/tenants with a wrong token -> $status"
[ "$status" = 401 ] || { echo "expected 401" >&2; exit 1; }
echo "admin API: ok"
