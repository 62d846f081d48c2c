#!/usr/bin/env python3
"""The benchmark harness (run it through bench/compare.sh).

In one run, on one PostgreSQL cluster of its own and the same data, for each query and each
number of connections, in alternating rounds:

  pgbench plain       the statements fraiseql sends for the request, one after another
  pgbench pipelined   the same statements in one \\startpipeline ... \\endpipeline (the limit)
  fraiseql            over HTTP (wrk)
  postgraphile        PostGraphile v5 over HTTP (wrk), as the same tenant role
  http                fraiseql's GET /health (wrk): HTTP alone, no GraphQL and no PostgreSQL

From the pipelined transaction and HTTP alone comes the ceiling for any server that answers the
request over HTTP on this machine: their costs per request add (latency at one connection, CPU
on the shared cores beyond it), so ceiling = 1 / (1 / pipelined + 1 / http).

The statements are captured from the server (PostgreSQL's log, log_statement = all, while
fraiseql answers each query once), never copied by hand. Every client connects without TLS.
Answers are checked equal across the targets before any load. Figures: requests/s, p50/p99,
CPU seconds per 1,000 requests of the servers and of PostgreSQL, peak RSS; medians of the
rounds. Results go to bench/results/latest.json, and bench/chart.py draws them beside it as
bench/results/latest.svg (the chart in the README).
"""

import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

import chart  # bench/chart.py, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/fraiseql")
WORK = os.environ.get("BENCH_WORK", "/tmp/fraiseql-bench")
PGPORT = int(os.environ.get("BENCH_PG_PORT", "55432"))
HTTP_PORT = int(os.environ.get("BENCH_PORT", "18080"))
PGL_PORT = int(os.environ.get("BENCH_PGL_PORT", "18081"))
SECS = int(os.environ.get("BENCH_SECS", "6"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CONNS = [int(c) for c in os.environ.get("BENCH_CONNS", "1,16,64").split(",")]
ONLY = [q for q in os.environ.get("BENCH_QUERIES", "").split(",") if q]
TARGETS = [t for t in os.environ.get("BENCH_TARGETS", "plain,pipelined,fraiseql,postgraphile,http").split(",") if t]
CLK = os.sysconf("SC_CLK_TCK")

ENV = dict(os.environ, PGSSLMODE="disable")


def log(*a):
    print(*a, flush=True)


def run(cmd, check=True, capture=True, env=None, **kw):
    r = subprocess.run(cmd, check=False, text=True, capture_output=capture, env=env or ENV, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def pg_bin(name):
    d = run(["pg_config", "--bindir"]).stdout.strip()
    return os.path.join(d, name)


def url(db, user="postgres", password=None):
    auth = user if password is None else f"{user}:{password}"
    return f"postgres://{auth}@127.0.0.1:{PGPORT}/{db}?sslmode=disable"


def psql(db, sql, user="postgres", password=None):
    env = dict(ENV, PGPASSWORD=password or "")
    return run(["psql", "-h", "127.0.0.1", "-p", str(PGPORT), "-U", user, "-d", db, "-v",
                "ON_ERROR_STOP=1", "-qAt", "-c", sql], env=env).stdout.strip()


# ---- the cluster -------------------------------------------------------------------------------

PGDATA = os.path.join(WORK, "pg")
PGLOG = os.path.join(WORK, "pg.log")


def start_cluster():
    stop_cluster()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    if os.geteuid() == 0:
        run(["chown", "-R", "postgres:postgres", WORK])
    run(as_postgres([pg_bin("initdb"), "-D", PGDATA, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync"]))
    with open(os.path.join(PGDATA, "postgresql.conf"), "a") as f:
        # Room for pgbench at 64 clients next to both servers' pools; no TLS at all.
        f.write(f"""
port = {PGPORT}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{WORK}'
max_connections = 400
shared_buffers = 256MB
ssl = off
log_line_prefix = '%p|%u|%d| '
log_statement = 'none'
""")
    run(as_postgres([pg_bin("pg_ctl"), "-D", PGDATA, "-l", PGLOG, "-w", "-t", "60", "start"]))


def stop_cluster():
    if os.path.exists(os.path.join(PGDATA, "postmaster.pid")):
        run(as_postgres([pg_bin("pg_ctl"), "-D", PGDATA, "-m", "fast", "-w", "stop"]), check=False)


def postmaster_pid():
    with open(os.path.join(PGDATA, "postmaster.pid")) as f:
        return int(f.readline())


# ---- processes and their CPU -------------------------------------------------------------------

def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime, stime, and the children's (PostgreSQL's exited backends)
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total


def children(pid):
    r = run(["ps", "-o", "pid=", "--ppid", str(pid)], check=False)
    return [int(p) for p in r.stdout.split()]


def postgres_pids():
    pm = postmaster_pid()
    return [pm] + children(pm)


def vm_hwm_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        pass
    return None


def wait_http(port, path="/health", timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}")


def post(port, body, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps(body).encode(),
                                 headers=dict({"Content-Type": "application/json",
                                               "Accept": "application/json"}, **headers))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        raise SystemExit(f"port {port}: HTTP {e.code}: {text[:500]}")


# ---- the world: registry, tenants, data --------------------------------------------------------

def fraiseql_env():
    return dict(ENV,
                FRAISEQL_CONFIG=os.path.join(ROOT, "examples/saas/fraiseql.toml"),
                TENANT_DB_URL=url("postgres"), MASTER_DB_URL=url("bench_master"),
                SHARED_DB_URL=url("bench_shared"), TENANT_PREFIX="bench_",
                OBSERVERS_ENABLED="false", PORT=str(HTTP_PORT), TENANT_POOL_MAX="64",
                CONNECTION_BUDGET="200", MAX_IN_FLIGHT="4096", RUST_LOG="warn")


def make_world():
    for db in ["bench_master", "bench_shared"]:
        psql("postgres", f"CREATE DATABASE {db}")
    env = fraiseql_env()
    for t in ["acme_corp", "global_corp"]:
        run([BIN, "tenant", "create", t], env=env)
    run([BIN, "migrate"], env=env)
    rows = psql("bench_master", "SELECT key, id, database, role_name, role_password FROM fraiseql_tenant ORDER BY key")
    tenants = {}
    for line in rows.splitlines():
        key, tid, db, role, pw = line.split("|")
        tenants[key] = {"id": tid, "db": db, "role": role, "password": pw}
    acme, other = tenants["acme_corp"], tenants["global_corp"]
    # 100 organizations x 10 members, 10 projects x 20 tasks each, for two tenants in acme's
    # tables (row-level security hides the other's).
    seed = f"""
INSERT INTO tb_organization (identifier, tenant_id, name, subscription_tier)
SELECT t.k || '-org-' || i, t.id, 'Org ' || lpad(i::text, 3, '0'), CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END
FROM (VALUES ('a', '{acme["id"]}'::uuid), ('b', '{other["id"]}'::uuid)) t(k, id), generate_series(1, 100) i;
INSERT INTO tb_member (identifier, tenant_id, fk_org, name, email)
SELECT o.identifier || '-m' || i, o.tenant_id, o.pk_org, 'Member ' || i, 'm' || i || '@x.test'
FROM tb_organization o, generate_series(1, 10) i;
INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
SELECT o.identifier || '-p' || i, o.tenant_id, o.pk_org, 'Project ' || lpad(i::text, 2, '0')
FROM tb_organization o, generate_series(1, 10) i;
INSERT INTO tb_task (identifier, tenant_id, fk_project, title)
SELECT p.identifier || '-t' || i, p.tenant_id, p.pk_project, 'Task ' || i
FROM tb_project p, generate_series(1, 20) i;
"""
    psql(acme["db"], seed)
    with open(os.path.join(ROOT, "bench/postgraphile/computed.sql")) as f:
        computed = f.read()
    psql(acme["db"], computed)
    psql(acme["db"], "VACUUM ANALYZE")
    # The connection page's project: 100,000 tasks, one a second (a unique creation time: both
    # servers order them alike), in global_corp's own database (database_per_tenant), so its
    # statistics describe it and not the many small projects above (with one project of 100,000
    # tasks among 2,000 of 20, PostgreSQL estimates any project's tasks at about 70 rows, and
    # whether a plan sorts them all then depends on that guess).
    psql(other["db"], f"""
INSERT INTO tb_organization (identifier, tenant_id, name) VALUES ('g-org', '{other["id"]}', 'Global');
INSERT INTO tb_project (identifier, tenant_id, fk_org, name)
SELECT 'g-deep', tenant_id, pk_org, 'Deep' FROM tb_organization WHERE identifier = 'g-org';
INSERT INTO tb_task (identifier, tenant_id, fk_project, title, status, created_at)
SELECT 'g-deep-t' || i, p.tenant_id, p.pk_project, 'Task ' || lpad(i::text, 6, '0'),
       (ARRAY['todo', 'in_progress', 'done'])[1 + i % 3], '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 second'
FROM tb_project p, generate_series(1, {DEEP_TASKS}) i WHERE p.identifier = 'g-deep';
""")
    psql(other["db"], computed)
    psql(other["db"], "VACUUM ANALYZE")
    tokens = {t: run([BIN, "token", "--tenant", t, "--role", "admin"], env=env).stdout.strip()
              for t in ["acme_corp", "global_corp"]}
    org = psql(acme["db"], f"SELECT id FROM tb_organization WHERE tenant_id = '{acme['id']}' AND name = 'Org 001'")
    # Projects are created in another organization, so the read queries' answers stay fixed.
    org2 = psql(acme["db"], f"SELECT id FROM tb_organization WHERE tenant_id = '{acme['id']}' AND name = 'Org 002'")
    deep = psql(other["db"], "SELECT id FROM tb_project WHERE identifier = 'g-deep'")
    return tenants, tokens, org, org2, deep


# ---- the servers --------------------------------------------------------------------------------

class Server:
    def __init__(self, cmd, env, port, name):
        self.name = name
        self.log = open(os.path.join(WORK, f"{name}.log"), "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=ROOT)
        wait_http(port, "/health" if name == "fraiseql" else "/graphql")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_fraiseql():
    return Server([BIN, "run"], fraiseql_env(), HTTP_PORT, "fraiseql")


def pgl_port(tenant):
    """PostGraphile serves one database: one server per tenant's database."""
    return PGL_PORT if tenant == "acme_corp" else PGL_PORT + 2


def pgl_name(tenant):
    return "postgraphile" if tenant == "acme_corp" else f"postgraphile@{tenant}"


def start_postgraphile(tenants, tenant):
    pgl = os.path.join(ROOT, "bench/postgraphile")
    if not os.path.isdir(os.path.join(pgl, "node_modules")):
        run(["npm", "ci", "--prefix", pgl, "--silent", "--no-audit", "--no-fund"])
    t = tenants[tenant]
    env = dict(ENV, DATABASE_URL=url(t["db"], t["role"], t["password"]), PORT=str(pgl_port(tenant)),
               POOL="64", TENANTS=f"{tenant}={t['id']}")
    return Server(["node", os.path.join(pgl, "server.mjs")], env, pgl_port(tenant), pgl_name(tenant))


def tenant_of(q):
    """The tenant a query is sent as (acme_corp unless it says)."""
    return q.get("tenant", "acme_corp")


def fq_headers(tokens, tenant):
    return {"X-Tenant-ID": tenant, "Authorization": f"Bearer {tokens[tenant]}"}


# ---- the queries --------------------------------------------------------------------------------

DEEP_TASKS = 100_000
# The filtered, ordered connection page: tasks of one project with `status in [..]` and
# `createdAt gte`, newest first, 20 a page, after the cursor that ends the first 40 matching rows
# (each server's own cursor for that row: `__AFTER__`, filled in once the servers run), as
# global_corp, whose database holds the project.
TASKS_WHERE = 'status: {in: ["todo", "in_progress"]}, createdAt: {gte: "2026-01-01T06:00:00Z"}'
TASKS_FILTER = 'status: {in: ["todo", "in_progress"]}, createdAt: {greaterThanOrEqualTo: "2026-01-01T06:00:00Z"}'


def queries(org, org2, deep):
    return {
        "organizations": {
            "fraiseql": "{ organizations { id name subscriptionTier memberCount } }",
            "postgraphile": "{ allTbOrganizations(first: 50, orderBy: NAME_ASC) { nodes { id: rowId name subscriptionTier memberCount } } }",
            "pick": lambda d: d["organizations"],
            "pick_pgl": lambda d: d["allTbOrganizations"]["nodes"],
        },
        "projectsByOrg": {
            "fraiseql": f'{{ projectsByOrg(orgId: "{org}") {{ name organization {{ name }} taskCount }} }}',
            "postgraphile": f'{{ tbOrganizationByRowId(rowId: "{org}") {{ tbProjectsByFkOrg(first: 100, orderBy: NAME_ASC) {{ nodes {{ name organization: tbOrganizationByFkOrg {{ name }} taskCount }} }} }} }}',
            "pick": lambda d: d["projectsByOrg"],
            "pick_pgl": lambda d: d["tbOrganizationByRowId"]["tbProjectsByFkOrg"]["nodes"],
        },
        "tasksPage": {
            "tenant": "global_corp",
            "fraiseql": f'{{ project(id: "{deep}") {{ tasksConnection(first: 20, after: "__AFTER__", where: {{{TASKS_WHERE}}}) {{ edges {{ cursor node {{ id title status }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}',
            "postgraphile": f'{{ tbProjectByRowId(rowId: "{deep}") {{ tbTasksByFkProject(first: 20, after: "__AFTER__", orderBy: [CREATED_AT_DESC], filter: {{{TASKS_FILTER}}}) {{ edges {{ cursor node {{ id: rowId title status }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}',
            # Where the page starts: the end of the first 40 matching rows, asked of each server.
            "after": {
                "fraiseql": (f'{{ project(id: "{deep}") {{ tasksConnection(first: 40, where: {{{TASKS_WHERE}}}) {{ pageInfo {{ endCursor }} }} }} }}',
                             lambda d: d["project"]["tasksConnection"]["pageInfo"]["endCursor"]),
                "postgraphile": (f'{{ tbProjectByRowId(rowId: "{deep}") {{ tbTasksByFkProject(first: 40, orderBy: [CREATED_AT_DESC], filter: {{{TASKS_FILTER}}}) {{ pageInfo {{ endCursor }} }} }} }}',
                                 lambda d: d["tbProjectByRowId"]["tbTasksByFkProject"]["pageInfo"]["endCursor"]),
            },
            # Cursors are each server's own: the rows and hasNextPage are compared.
            "pick": lambda d: [e["node"] for e in d["project"]["tasksConnection"]["edges"]]
            + [d["project"]["tasksConnection"]["pageInfo"]["hasNextPage"]],
            "pick_pgl": lambda d: [e["node"] for e in d["tbProjectByRowId"]["tbTasksByFkProject"]["edges"]]
            + [d["tbProjectByRowId"]["tbTasksByFkProject"]["pageInfo"]["hasNextPage"]],
        },
        "createProject": {
            # Variables, as clients send them: one document, a new name each time.
            "fraiseql": "mutation($o: ID!, $n: String!) { createProject(orgId: $o, name: $n) { id name } }",
            "postgraphile": "mutation($o: UUID!, $n: String!) { createProject(input: {orgId: $o, name: $n}) { result { id: rowId name } } }",
            "variables": {"o": org2, "n": "__NAME__"},
            "pick": lambda d: {"name": d["createProject"]["name"]},
            "pick_pgl": lambda d: {"name": d["createProject"]["result"]["name"]},
            "mutation": True,
        },
    }


def resolve_cursors(qs, tokens):
    """Fills `__AFTER__` in the queries that page after a cursor with each server's own cursor."""
    for q in qs.values():
        tenant = tenant_of(q)
        for target, (doc, pick) in q.get("after", {}).items():
            if target == "postgraphile" and "postgraphile" not in TARGETS:
                continue
            if target == "fraiseql":
                answer = post(HTTP_PORT, {"query": doc}, fq_headers(tokens, tenant))
            else:
                answer = post(pgl_port(tenant), {"query": doc}, {"X-Tenant-ID": tenant})
            if "errors" in answer:
                raise SystemExit(f"{target}: {answer}")
            q[target] = q[target].replace("__AFTER__", pick(answer["data"]))


# ---- capturing what fraiseql sends --------------------------------------------------------------

PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")


def parse_params(detail):
    return {int(m.group(1)): (None if m.group(2) == "NULL" else m.group(2)[1:-1].replace("''", "'"))
            for m in PARAM.finditer(detail)}


def capture(tenants, tokens, qs):
    """Sends each query once to fraiseql with log_statement = all; returns its statements."""
    roles = {name: tenants[tenant_of(q)]["role"] for name, q in qs.items()}
    psql("postgres", "ALTER SYSTEM SET log_statement = 'all'")
    psql("postgres", "SELECT pg_reload_conf()")
    time.sleep(0.5)
    answers = {}
    for name, q in qs.items():
        headers = fq_headers(tokens, tenant_of(q))
        # Once to warm the connection and its prepared statements, then the captured one.
        post(HTTP_PORT, request_body(q, "fraiseql", "capture-warm-up"), headers)
        time.sleep(0.2)
        psql("postgres", f"SELECT 'fraiseql-bench-mark {name}'")
        answers[name] = post(HTTP_PORT, request_body(q, "fraiseql", "capture-unique-name"), headers)
        time.sleep(0.3)
        psql("postgres", "SELECT 'fraiseql-bench-mark end'")
    psql("postgres", "ALTER SYSTEM RESET log_statement")
    psql("postgres", "SELECT pg_reload_conf()")
    with open(PGLOG) as f:
        lines = f.read().splitlines()
    # Statements may span lines: a line without the `pid|user|db|` prefix continues the last.
    joined = []
    for line in lines:
        if re.match(r"^\d+\|", line) or not joined:
            joined.append(line)
        else:
            joined[-1] += "\n" + line
    captured, current, pending = {}, None, None
    for line in joined:
        m = re.search(r"fraiseql-bench-mark (\w+)", line)
        if m and "statement:" in line:
            current = None if m.group(1) == "end" else m.group(1)
            if current:
                captured[current] = []
            continue
        prefix = line.split(" ", 1)[0]
        parts = prefix.split("|")
        if current is None or len(parts) < 3 or parts[1] != roles[current]:
            continue
        body = line.split(" ", 1)[1] if " " in line else ""
        m = re.match(r"LOG:\s+execute [^:]+: (.*)$", body, re.S)
        if m:
            pending = {"sql": m.group(1), "params": {}}
            captured[current].append(pending)
            continue
        m = re.match(r"DETAIL:\s+parameters: (.*)$", body)
        if m and pending is not None:
            pending["params"] = parse_params(m.group(1))
    for name, stmts in captured.items():
        if not stmts:
            raise SystemExit(f"nothing captured for {name} (see {PGLOG})")
    return captured, answers


def pgbench_script(stmts, pipelined, mutation):
    """A pgbench script of the statements, their parameters as -D variables."""
    lines, defines = [], {}
    if mutation:
        lines.append("\\set n random(1, 9000000000000000000)")
    if pipelined:
        lines.append("\\startpipeline")
    for i, st in enumerate(stmts):
        def sub(m):
            k = int(m.group(1))
            v = st["params"].get(k)
            if v is None:
                return "NULL"
            if mutation and v == "capture-unique-name":
                return ":n"
            name = f"s{i}p{k}"
            defines[name] = v
            return f":{name}"
        # pgbench reads one command per line.
        lines.append(re.sub(r"\$(\d+)", sub, st["sql"]).replace("\n", " ") + ";")
    if pipelined:
        lines.append("\\endpipeline")
    return "\n".join(lines) + "\n", defines


# ---- load ---------------------------------------------------------------------------------------

def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def statement_timeout_ms():
    """The statement_timeout fraiseql's connections log in with (`[limits] request_timeout_ms`):
    pgbench logs in with it too, so PostgreSQL arms the same timer per statement for both."""
    with open(os.path.join(ROOT, "examples/saas/fraiseql.toml"), "rb") as f:
        return int(tomllib.load(f).get("limits", {}).get("request_timeout_ms", 30000))


PGBENCH_OPTIONS = f"-c statement_timeout={statement_timeout_ms()}"


def run_pgbench(script, defines, conns, secs, tenants, tenant="acme_corp"):
    acme = tenants[tenant]
    d = tempfile.mkdtemp(dir=WORK)
    path = os.path.join(d, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(PGPORT), "-U", acme["role"], "-n", "-M", "prepared",
           "-c", str(conns), "-j", str(min(conns, 2)), "-T", str(secs), "-f", path,
           "--log", "--log-prefix", os.path.join(d, "lat")]
    for k, v in defines.items():
        cmd += ["-D", f"{k}={v}"]
    cmd.append(acme["db"])
    env = dict(ENV, PGPASSWORD=acme["password"], PGOPTIONS=PGBENCH_OPTIONS)
    r = run(cmd, env=env, check=False, cwd=d)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", r.stdout)
    if r.returncode != 0 or not m:
        raise SystemExit(f"pgbench failed:\n{r.stdout}\n{r.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    lat = []
    for name in os.listdir(d):
        if name.startswith("lat"):
            with open(os.path.join(d, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]) / 1000)
    shutil.rmtree(d, ignore_errors=True)
    return {"rps": float(m.group(1)), "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "failed": int(failed.group(1)) if failed else 0, "requests": len(lat)}


WRK_LUA = r"""
wrk.method = "METHOD"
wrk.path = "PATH"
wrk.headers["Content-Type"] = "application/json"
HEADERS
local body = BODY
local mutation = MUTATION
-- Globals: wrk reads them from each thread (thread:get).
counter = 0
tid = 0
bad = 0
local threads = {}
setup = function(thread) tid = tid + 1; thread:set("tid", tid); table.insert(threads, thread) end
init = function(args) math.randomseed(os.time() + tid * 7919) end
request = function()
  if mutation then
    counter = counter + 1
    local name = "bench-" .. tid .. "-" .. counter .. "-" .. math.random(1, 1000000000)
    return wrk.format(nil, nil, nil, (string.gsub(body, "__NAME__", name)))
  end
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, b)
  if status ~= 200 or string.find(b, '"errors"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status
  for _, t in ipairs(threads) do failed = failed + t:get("bad") end
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, failed, summary.requests))
end
"""


def lua_string(s):
    return "[==[" + s + "]==]"


def request_body(q, target, name=None):
    """The JSON request for `target`; `__NAME__` in it becomes `name` (wrk replaces it itself)."""
    body = {"query": q[target]}
    if q.get("variables"):
        body["variables"] = q["variables"]
    text = json.dumps(body)
    return json.loads(text.replace("__NAME__", name)) if name else body


def run_wrk(port, body, headers, conns, secs, mutation, path="/graphql"):
    """Loads POST `path` with `body` (GET without a body when `body` is None)."""
    hdr = "\n".join(f'wrk.headers["{k}"] = {lua_string(v)}' for k, v in headers.items())
    lua = (WRK_LUA.replace("HEADERS", hdr)
           .replace("BODY", "nil" if body is None else lua_string(json.dumps(body)))
           .replace("METHOD", "GET" if body is None else "POST").replace("PATH", path)
           .replace("MUTATION", "true" if mutation else "false"))
    d = tempfile.mkdtemp(dir=WORK)
    path = os.path.join(d, "load.lua")
    with open(path, "w") as f:
        f.write(lua)
    r = run(["wrk", f"-t{min(conns, 2)}", f"-c{conns}", f"-d{secs}s", "--latency", "-s", path,
             f"http://127.0.0.1:{port}{path}"], check=False)
    shutil.rmtree(d, ignore_errors=True)
    m = re.search(r"RESULT ([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+)", r.stdout)
    if not m:
        raise SystemExit(f"wrk failed:\n{r.stdout}\n{r.stderr}")
    return {"rps": float(m.group(1)), "p50": float(m.group(2)), "p99": float(m.group(3)),
            "failed": int(m.group(4)), "requests": int(m.group(5))}


# ---- answers ------------------------------------------------------------------------------------

def sql_literal(v):
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def pgbench_answer(stmts, tenants, tenant="acme_corp"):
    """Runs the captured statements once (as the tenant role, in a transaction) and returns the
    data statement's JSON."""
    acme = tenants[tenant]
    out = None
    sqls = []
    for st in stmts:
        sqls.append(re.sub(r"\$(\d+)", lambda m: sql_literal(st["params"].get(int(m.group(1)))), st["sql"]))
    body = [s for s in sqls if s.lstrip().upper().startswith(("SELECT COALESCE", "SELECT JSON", "WITH"))]
    script = ";\n".join(s for s in sqls if not s.upper().startswith("COMMIT")) + ";\nROLLBACK;"
    env = dict(ENV, PGPASSWORD=acme["password"])
    r = run(["psql", "-h", "127.0.0.1", "-p", str(PGPORT), "-U", acme["role"], "-d", acme["db"],
             "-v", "ON_ERROR_STOP=1", "-qAt", "-c", script], env=env)
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("[") or line.startswith("{"):
            out = line
    return json.loads(out) if out else None, body


def normalise(v):
    return json.loads(json.dumps(v, sort_keys=True))


def check_answers(qs, captured, answers, tenants):
    for name, q in qs.items():
        tenant = tenant_of(q)
        pgl_headers = {"X-Tenant-ID": tenant}
        ours = answers[name]
        if "errors" in ours:
            raise SystemExit(f"{name}: fraiseql answered {ours}")
        mine = q["pick"](ours["data"])
        if "postgraphile" in TARGETS:
            theirs = post(pgl_port(tenant), request_body(q, "postgraphile", "pgl-check-name"), pgl_headers)
            if "errors" in theirs:
                raise SystemExit(f"{name}: PostGraphile answered {theirs}")
            other = q["pick_pgl"](theirs["data"])
            if q.get("mutation"):
                mine_cmp, other_cmp = {"name": "x"}, {"name": "x"}
                if not (mine["name"] == "capture-unique-name" and other["name"] == "pgl-check-name"):
                    raise SystemExit(f"{name}: unexpected answers {mine} / {other}")
            else:
                mine_cmp, other_cmp = normalise(mine), normalise(other)
            if mine_cmp != other_cmp:
                raise SystemExit(f"{name}: fraiseql and PostGraphile disagree:\n{mine}\n{other}")
        if not q.get("mutation"):
            direct, _ = pgbench_answer(captured[name], tenants, tenant)
            # The statement answers the root field's value.
            if normalise(direct) != normalise(next(iter(ours["data"].values()))):
                raise SystemExit(f"{name}: the captured statements answer differently:\n{direct}\n{mine}")
        log(f"  {name}: answers agree ({len(mine) if isinstance(mine, list) else 1} rows)")


# ---- the run ------------------------------------------------------------------------------------

def measure(target, q, stmts, conns, servers, tenants, tokens):
    mutation = bool(q.get("mutation"))
    tenant = tenant_of(q)
    pg_before = cpu_ticks(postgres_pids())
    server = servers.get({"http": "fraiseql", "postgraphile": pgl_name(tenant)}.get(target, target))
    srv_before = cpu_ticks([server.proc.pid]) if server else 0
    if target in ("plain", "pipelined"):
        script, defines = pgbench_script(stmts, target == "pipelined", mutation)
        r = run_pgbench(script, defines, conns, SECS, tenants, tenant)
    elif target == "http":
        r = run_wrk(HTTP_PORT, None, {}, conns, SECS, False, path="/health")
    elif target == "fraiseql":
        r = run_wrk(HTTP_PORT, request_body(q, "fraiseql"), fq_headers(tokens, tenant), conns, SECS, mutation)
    else:
        r = run_wrk(pgl_port(tenant), request_body(q, "postgraphile"), {"X-Tenant-ID": tenant}, conns, SECS,
                    mutation)
    n = max(r["requests"], 1)
    r["pg_cpu_per_1000"] = round((cpu_ticks(postgres_pids()) - pg_before) / CLK / n * 1000, 3)
    if server:
        r["server_cpu_per_1000"] = round((cpu_ticks([server.proc.pid]) - srv_before) / CLK / n * 1000, 3)
    return r


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def main():
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p fraiseql ({BIN})")
    log(f"== cluster on 127.0.0.1:{PGPORT} (its own; no TLS)")
    start_cluster()
    servers = {}
    try:
        tenants, tokens, org, org2, deep = make_world()
        qs = queries(org, org2, deep)
        if ONLY:
            qs = {k: v for k, v in qs.items() if k in ONLY}
        servers["fraiseql"] = start_fraiseql()
        if "postgraphile" in TARGETS:
            for tenant in sorted({tenant_of(q) for q in qs.values()}):
                servers[pgl_name(tenant)] = start_postgraphile(tenants, tenant)
        resolve_cursors(qs, tokens)
        log("== capturing the statements fraiseql sends")
        captured, answers = capture(tenants, tokens, qs)
        for name, stmts in captured.items():
            log(f"  {name}: {len(stmts)} statements: " + " | ".join(s["sql"][:60] for s in stmts))
        log("== checking answers")
        check_answers(qs, captured, answers, tenants)
        results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "machine": machine(), "secs": SECS, "rounds": ROUNDS, "queries": {}}
        for name, q in qs.items():
            results["queries"][name] = {"statements": [s["sql"] for s in captured[name]], "runs": {}}
            for conns in CONNS:
                rows = {t: [] for t in TARGETS}
                # Warm-up: connections opened, statements prepared, outside the measured windows.
                tenant = tenant_of(q)
                for t in TARGETS:
                    if t == "fraiseql":
                        run_wrk(HTTP_PORT, request_body(q, t), fq_headers(tokens, tenant), conns, 2,
                                bool(q.get("mutation")))
                    elif t == "postgraphile":
                        run_wrk(pgl_port(tenant), request_body(q, t), {"X-Tenant-ID": tenant}, conns, 2,
                                bool(q.get("mutation")))
                for _ in range(ROUNDS):
                    for t in TARGETS:
                        rows[t].append(measure(t, q, captured[name], conns, servers, tenants, tokens))
                summary = {}
                for t in TARGETS:
                    summary[t] = {k: med(rows[t], k) for k in
                                  ["rps", "p50", "p99", "pg_cpu_per_1000", "server_cpu_per_1000", "failed"]}
                    summary[t]["rounds"] = [r["rps"] for r in rows[t]]
                f = summary.get("fraiseql", {}).get("rps")
                for other in ["pipelined", "plain", "postgraphile"]:
                    o = summary.get(other, {}).get("rps")
                    if f and o:
                        summary[f"ratio_{other}"] = round(f / o, 3)
                p, h = summary.get("pipelined", {}).get("rps"), summary.get("http", {}).get("rps")
                if p and h:
                    summary["http_ceiling"] = round(1 / (1 / p + 1 / h), 1)
                    if f:
                        summary["ratio_http_ceiling"] = round(f / summary["http_ceiling"], 3)
                    g = summary.get("postgraphile", {}).get("rps")
                    if g:
                        # The most any server over HTTP could be against PostGraphile here.
                        summary["http_ceiling_over_postgraphile"] = round(summary["http_ceiling"] / g, 3)
                results["queries"][name]["runs"][str(conns)] = summary
                print_row(name, conns, summary)
        if "tasksPage" in qs and os.environ.get("BENCH_KEYSET", "1") != "0":
            results["keyset"] = keyset_depth(deep, servers, tenants, tokens)
        results["rss_mib"] = {n: vm_hwm_mib(s.proc.pid) for n, s in servers.items()}
        log(f"peak RSS: {results['rss_mib']}")
        os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
        out = os.path.join(ROOT, "bench/results/latest.json")
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        log(f"written {out}")
        log(f"written {chart.write_chart(out)}")
        print_table(results)
        print_keyset(results)
    finally:
        for s in servers.values():
            s.stop()
        stop_cluster()


def keyset_depth(deep, servers, tenants, tokens):
    """Page 1 and page 5,000 of 20 (keyset, after a cursor) of the deep project's tasks, and the
    same page 5,000 read with OFFSET 99,980: fraiseql over HTTP, one connection (what one page
    costs; at more connections the OFFSET reads outlast wrk's timeout)."""
    headers = fq_headers(tokens, "global_corp")
    page = "{{ project(id: \"{deep}\") {{ tasksConnection(first: 20{after}) {{ edges {{ cursor node {{ id title }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"
    # The row that ends page 4,999: the 99,980th newest (`Task 000021`); its cursor, asked of the server.
    a = post(HTTP_PORT, {"query": f'{{ project(id: "{deep}") {{ tasksConnection(first: 1, where: {{title: {{eq: "Task 000021"}}}}) {{ edges {{ cursor }} }} }} }}'}, headers)
    cursor = a["data"]["project"]["tasksConnection"]["edges"][0]["cursor"]
    docs = {
        "keyset page 1": page.format(deep=deep, after=""),
        "keyset page 5,000": page.format(deep=deep, after=f', after: \"{cursor}\"'),
        "offset 99,980 (page 5,000)": f'{{ project(id: "{deep}") {{ tasks(limit: 20, offset: {DEEP_TASKS - 20}, orderBy: [CREATED_AT_DESC]) {{ id title }} }} }}',
    }
    deep_page = post(HTTP_PORT, {"query": docs["keyset page 5,000"]}, headers)["data"]["project"]["tasksConnection"]
    by_offset = post(HTTP_PORT, {"query": docs["offset 99,980 (page 5,000)"]}, headers)["data"]["project"]["tasks"]
    if [e["node"] for e in deep_page["edges"]] != by_offset or deep_page["pageInfo"]["hasNextPage"]:
        raise SystemExit(f"page 5,000 by keyset and by offset differ:\n{deep_page}\n{by_offset}")
    log("== keyset depth: page 5,000 by keyset and by offset agree")
    out = {}
    for label, doc in docs.items():
        out[label] = {}
        q = {"fraiseql": doc, "tenant": "global_corp"}
        for conns in [1]:
            run_wrk(HTTP_PORT, request_body(q, "fraiseql"), headers, conns, 2, False)
            rows = [measure("fraiseql", q, [], conns, servers, tenants, tokens) for _ in range(ROUNDS)]
            out[label][str(conns)] = {k: med(rows, k) for k in ["rps", "p50", "p99", "pg_cpu_per_1000", "server_cpu_per_1000", "failed"]}
            log(f"  {label:<28} c={conns:<3} {out[label][str(conns)]['rps']:>8.0f}/s  p50 {out[label][str(conns)]['p50']} ms")
    return out


def print_keyset(results):
    k = results.get("keyset")
    if not k:
        return
    log("")
    log("| read of the deep project's tasks (100,000) | conns | fraiseql req/s | p50 / p99 ms | PostgreSQL CPU s per 1k req |")
    log("|---|---|---|---|---|")
    for label, runs in k.items():
        for conns, r in runs.items():
            log(f"| {label} | {conns} | {r['rps']:,.0f} | {r['p50']} / {r['p99']} | {r['pg_cpu_per_1000']} |")


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except FileNotFoundError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu,
            "postgres": run(["psql", "--version"]).stdout.strip()}


def print_row(name, conns, s):
    parts = [f"{name:<14} c={conns:<3}"]
    for t in TARGETS:
        parts.append(f"{t} {s[t]['rps']:>8.0f}/s")
    for other in ["pipelined", "plain", "postgraphile", "http_ceiling"]:
        if f"ratio_{other}" in s:
            parts.append(f"x{other} {s[f'ratio_{other}']:.2f}")
    log("  " + "  ".join(parts))


def print_table(results):
    log("")
    log("| query | conns | pgbench plain | pgbench pipelined | fraiseql | PostGraphile | HTTP alone | ceiling over HTTP | "
        "fraiseql p50 / p99 ms | fraiseql / pipelined | / ceiling over HTTP | / plain | / PostGraphile | "
        "ceiling over HTTP / PostGraphile | "
        "CPU s per 1k req (fraiseql / PostGraphile / PostgreSQL under fraiseql / PostgreSQL under pipelined) |")
    log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, q in results["queries"].items():
        for conns, s in q["runs"].items():
            def rps(t):
                return f"{s[t]['rps']:,.0f}" if t in s and s[t]["rps"] else "-"
            fr = s.get("fraiseql", {})
            pg = s.get("postgraphile", {})
            pl = s.get("pipelined", {})
            ceiling = f"{s['http_ceiling']:,.0f}" if s.get("http_ceiling") else "-"
            log(f"| `{name}` | {conns} | {rps('plain')} | {rps('pipelined')} | {rps('fraiseql')} | {rps('postgraphile')} | "
                f"{rps('http')} | {ceiling} | "
                f"{fr.get('p50')} / {fr.get('p99')} | **{s.get('ratio_pipelined', '-')}x** | "
                f"{s.get('ratio_http_ceiling', '-')}x | {s.get('ratio_plain', '-')}x | "
                f"{s.get('ratio_postgraphile', '-')}x | {s.get('http_ceiling_over_postgraphile', '-')}x | "
                f"{fr.get('server_cpu_per_1000')} / {pg.get('server_cpu_per_1000', '-')} / "
                f"{fr.get('pg_cpu_per_1000')} / {pl.get('pg_cpu_per_1000', '-')} |")


def setup_only():
    """`compare.py setup`: the cluster and the world, left running (for profiling by hand);
    `compare.py teardown` stops it."""
    start_cluster()
    tenants, tokens, org, org2, deep = make_world()
    env = {k: v for k, v in fraiseql_env().items() if k in (
        "FRAISEQL_CONFIG", "TENANT_DB_URL", "MASTER_DB_URL", "SHARED_DB_URL", "TENANT_PREFIX",
        "OBSERVERS_ENABLED", "PORT", "TENANT_POOL_MAX", "CONNECTION_BUDGET", "MAX_IN_FLIGHT", "PGSSLMODE")}
    with open(os.path.join(WORK, "world.json"), "w") as f:
        json.dump({"env": env, "token": tokens["acme_corp"], "tokens": tokens, "org": org, "org2": org2, "deep": deep,
                   "tenants": tenants}, f, indent=2)
    log(f"cluster on {PGPORT}; world in {WORK}/world.json")


if __name__ == "__main__":
    if sys.argv[1:] == ["setup"]:
        setup_only()
    elif sys.argv[1:] == ["teardown"]:
        stop_cluster()
    else:
        main()
