#!/usr/bin/env bash
# Checks the Prometheus rules, their unit tests, the Prometheus config and the Grafana dashboard
# offline with promtool (Prometheus 2.x) and python3. Runs from any directory; exits non-zero on
# the first failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for tool in promtool python3; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool not found on PATH" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

echo "== promtool test rules deploy/prometheus/alerts.test.yml"
promtool test rules deploy/prometheus/alerts.test.yml

echo "== promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

dashboard=deploy/grafana/fraiseql-dashboard.json
echo "== $dashboard: JSON and structure"
python3 -m json.tool "$dashboard" >/dev/null
# Writes every PromQL expression of the dashboard (panel targets, query variables) as a
# recording rule, with Grafana's interval macros replaced by 5m; other $variables are only used
# inside label matcher strings, where they stay as they are (anywhere else they fail to parse).
python3 - "$dashboard" "$tmp/dashboard-rules.yml" <<'PY'
import json, re, sys

path, out = sys.argv[1], sys.argv[2]
with open(path) as f:
    d = json.load(f)

errors = []
def fail(msg):
    errors.append(msg)

if d.get("schemaVersion") != 39:
    fail(f"schemaVersion is {d.get('schemaVersion')!r}, want 39")

variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    fail("no `datasource` variable of type datasource for prometheus")
tenant = variables.get("tenant")
if not tenant or tenant.get("type") != "query" or not tenant.get("multi") or not tenant.get("includeAll"):
    fail("no `tenant` query variable with multi and includeAll")

exprs = []  # (where, expr)
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", q)
    if m:
        q = m.group(1)
    else:
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
        if m:
            q = m.group(1)
        elif re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", q):
            continue
    if tenant is v and "fraiseql_tenant_requests_total" not in q:
        fail("the tenant variable does not read fraiseql_tenant_requests_total")
    exprs.append((f"variable {name}", q))

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

ids = set()
for p in walk(d.get("panels", [])):
    pid, title = p.get("id"), p.get("title", "?")
    if pid in ids:
        fail(f"panel id {pid} used twice")
    ids.add(pid)
    if p.get("type") == "row":
        continue
    if (p.get("datasource") or {}).get("uid") != "${datasource}":
        fail(f"panel {title!r}: datasource is not ${{datasource}}")
    targets = p.get("targets", [])
    if not targets:
        fail(f"panel {title!r} has no targets")
    for t in targets:
        where = f"panel {title!r} target {t.get('refId')}"
        uid = (t.get("datasource") or p.get("datasource") or {}).get("uid")
        if uid != "${datasource}":
            fail(f"{where}: datasource uid is {uid!r}, want ${{datasource}}")
        if not (t.get("expr") or "").strip():
            fail(f"{where}: no expr")
            continue
        exprs.append((where, t["expr"]))

macros = re.compile(r"\$(?:\{__(?:rate_interval|interval|range)(?::[a-z]+)?\}|__(?:rate_interval|interval|range)\b)")
with open(out, "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, e) in enumerate(exprs):
        e = macros.sub("5m", e)
        f.write(f"      # {where}\n      - record: dashboard:expr_{i}\n        expr: {json.dumps(e)}\n")

if errors:
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    sys.exit(1)
print(f"  SUCCESS: {len(ids)} panels, {len(exprs)} expressions")
PY

echo "== promtool check rules (the dashboard's expressions)"
promtool check rules "$tmp/dashboard-rules.yml"

echo "== all checks passed"
