#!/usr/bin/env bash
# Offline checks of the container files (Dockerfile, .dockerignore, docker-compose.yml,
# .env.example) against the repository: what can be verified without Docker. It builds no image
# and starts no container. Each check prints what it checks; failures are printed as FAIL and
# the script exits non-zero. Runs from any directory.
#   scripts/check-containers.sh
# PyYAML: the system python3's if importable, else installed into target/check-containers-venv
# (set CHECK_CONTAINERS_VENV=1 to use that venv even when the system has PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

echo "== YAML parser =="
PY=python3
if [ -z "${CHECK_CONTAINERS_VENV:-}" ] && python3 -c 'import yaml' 2>/dev/null; then
  echo "using the system python3's PyYAML $(python3 -c 'import yaml; print(yaml.__version__)')"
else
  VENV=$ROOT/target/check-containers-venv
  if ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
    echo "PyYAML is not importable here; installing it into ${VENV#"$ROOT"/} with pip"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check pyyaml
  fi
  PY=$VENV/bin/python
  echo "using PyYAML $("$PY" -c 'import yaml; print(yaml.__version__)') from ${VENV#"$ROOT"/}"
fi

rc=0
"$PY" - "$ROOT" <<'PYTHON' || rc=$?
import fnmatch, glob, http.server, json, os, re, shlex, subprocess, sys, threading, tomllib
import yaml

ROOT = sys.argv[1]
os.chdir(ROOT)
failures = []

def check(what):
    print(f"-- {what}")

def ok(msg):
    print(f"   ok: {msg}")

def fail(msg):
    failures.append(msg)
    print(f"   FAIL: {msg}", flush=True)

def need(cond, good, bad):
    ok(good) if cond else fail(bad)

# ---------------------------------------------------------------------------------------------
print("== (a) docker-compose.yml parses as YAML ==")
check("yaml.safe_load(docker-compose.yml)")
try:
    compose_text = open("docker-compose.yml").read()
    compose = yaml.safe_load(compose_text)
    if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
        raise ValueError("no top-level `services` mapping")
    ok(f"parsed; services: {', '.join(compose['services'])}")
except Exception as e:  # noqa: BLE001
    fail("docker-compose.yml: " + " ".join(str(e).split()))
    print(f"\n{len(failures)} check(s) failed")
    sys.exit(1)
services = compose["services"]

# ---------------------------------------------------------------------------------------------
# .env.example
def parse_env_example():
    defined, commented, problems = {}, set(), []
    lines = open(".env.example").read().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        m = re.match(r"^#\s*([A-Z_][A-Z0-9_]*)=", s)
        if m:
            commented.add(m.group(1))
            continue
        if not s or s.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", s)
        if not m:
            problems.append(f"line {i + 1} is not KEY=value: {s!r}")
            continue
        key, value = m.groups()
        if key in defined:
            problems.append(f"{key} is defined twice")
        if re.search(r"\s#", value):
            problems.append(f"{key}: inline comment in the value (dotenv parsers differ)")
        prev = lines[i - 1].strip() if i > 0 else ""
        if not prev.startswith("#"):
            problems.append(f"{key} has no comment line above it")
        defined[key] = value
    return defined, commented, problems

env_example, env_commented, env_problems = parse_env_example()

# Compose interpolation: $$ is a literal $, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
# ${VAR:+r}, ${VAR+r}, $VAR.
INTERP = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$")

def strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k, path)
            yield from strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node

refs = {}          # VAR -> list of (path, operator, default)
bad_interp = []
for path, s in strings(compose):
    for m in INTERP.finditer(s):
        tok = m.group(0)
        if tok == "$$":
            continue
        if tok == "$":
            bad_interp.append(f"{path}: a lone `$` (compose needs `$$` for a literal dollar)")
            continue
        var = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3)
        if default is not None and "$" in default:
            bad_interp.append(f"{path}: nested interpolation in ${{{var}...}}")
        refs.setdefault(var, []).append((path, op, default))

def interpolate(s):
    """The string as compose would pass it with no .env and an empty environment."""
    def rep(m):
        tok = m.group(0)
        if tok == "$$":
            return "$"
        if m.group(2) in (":-", "-"):
            return m.group(3)
        return ""
    return INTERP.sub(rep, s)

print("\n== (b) every variable docker-compose.yml references is defined in .env.example ==")
check(".env.example is well-formed (KEY=value, a comment line above each, no duplicates)")
if env_problems:
    for p in env_problems:
        fail(f".env.example: {p}")
else:
    ok(f"{len(env_example)} variables defined")
check("compose interpolation syntax ($$ for literal dollars)")
if bad_interp:
    for p in bad_interp:
        fail(p)
else:
    ok("no malformed `$` in any value")
check("each ${VAR} / $VAR in docker-compose.yml is defined in .env.example")
for var in sorted(refs):
    where = ", ".join(sorted({p for p, _, _ in refs[var]}))
    if var in env_example:
        ok(f"{var} (used in {where})")
    else:
        fail(f"{var} is used in docker-compose.yml ({where}) but not defined in .env.example")
check("each reference has a default (${VAR:-default}) equal to the .env.example value; secrets are required (${VAR:?why})")
# A deployment brings its own: no default, compose refuses to start without it.
REQUIRED = {"JWT_SECRET"}
before = len(failures)
for var in sorted(refs):
    for path, op, default in refs[var]:
        if var in REQUIRED:
            if op != ":?" or not (default or "").strip():
                fail(f"{path}: ${{{var}}} must be required with a message: ${{{var}:?why}}")
            elif env_example.get(var):
                fail(f".env.example gives {var} a value: a copied .env would deploy it")
        elif op != ":-":
            fail(f"{path}: ${{{var}}} has no `:-` default")
        elif var in env_example and default != env_example[var]:
            fail(f"{path}: default of {var} is {default!r}, .env.example says {env_example[var]!r}")
if len(failures) == before:
    ok(f"{sum(len(v) for v in refs.values())} references, each with the .env.example value as its default")
check("compose does not read the local-use variables (their .env values point at 127.0.0.1)")
LOCAL_ONLY = ["HOST", "TENANT_DB_URL", "MASTER_DB_URL", "SHARED_DB_URL", "NATS_URL", "FRAISEQL_CONFIG"]
leaked = [v for v in LOCAL_ONLY if v in refs]
need(not leaked, f"none of {', '.join(LOCAL_ONLY)} is interpolated",
     f"docker-compose.yml interpolates {', '.join(leaked)}: `cp .env.example .env` would point the containers at 127.0.0.1")

# ---------------------------------------------------------------------------------------------
print("\n== (c) every variable the example configs read is defined in .env.example ==")
CONFIGS = ["examples/saas/fraiseql.toml", "examples/saas/analytics/fraiseql.toml"]
# Defaults meant for scripts/up.sh only: a deployment (.env, compose) never inherits them.
DEPLOYMENT_ONLY = {
    "FRAISEQL_PROFILE": "compose runs production; the production profile refuses the example's secret",
    "JWT_SECRET": "compose requires it: ${JWT_SECRET:?...}",
}
TOML_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
config_vars = {}   # config -> {VAR: default}
config_data = {}
for cfg in CONFIGS:
    check(f"{cfg}: variables and their defaults")
    text = open(cfg).read()
    try:
        config_data[cfg] = tomllib.loads(text)
    except Exception as e:  # noqa: BLE001
        fail(f"{cfg} is not valid TOML: {e}")
        continue
    found = {}
    for m in TOML_VAR.finditer(text):
        found[m.group(1)] = m.group(2)
    config_vars[cfg] = found
    for var, default in sorted(found.items()):
        if var not in env_example:
            fail(f"{cfg} reads {var}, which .env.example does not define")
        elif var in DEPLOYMENT_ONLY:
            ok(f"{var}: the config's default ({default!r}) is for scripts/up.sh on this machine; "
               f"a deployment sets its own ({DEPLOYMENT_ONLY[var]})")
        elif default is not None and env_example[var] != default:
            if cfg == CONFIGS[0]:
                fail(f"{var}: .env.example has {env_example[var]!r}, {cfg} defaults to {default!r}")
            elif var in config_vars[CONFIGS[0]]:
                ok(f"{var}: .env.example follows {CONFIGS[0]} ({env_example[var]!r}); this config defaults to {default!r}"
                   + (" (compose sets PORT=8081 for it)" if var == "PORT" else ""))
            else:
                fail(f"{var}: .env.example has {env_example[var]!r}, {cfg} defaults to {default!r}")
        else:
            ok(f"{var} = {env_example[var]!r}")

# ---------------------------------------------------------------------------------------------
print("\n== (d) services postgres and nats (the seed's `docker-compose up -d postgres nats`), and fraiseql's dependencies ==")
for name in ["postgres", "nats", "setup", "fraiseql"]:
    check(f"service `{name}` exists")
    need(name in services, f"`{name}` is defined", f"no service `{name}` in docker-compose.yml")
if not all(n in services for n in ["postgres", "nats", "setup", "fraiseql"]):
    print(f"\n{len(failures)} check(s) failed")
    sys.exit(1)

def svc_text(svc):
    return "\n".join(s for _, s in strings(svc))

def as_list(v):
    if v is None:
        return []
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]

def env_of(svc):
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, "") for x in e)
    return {k: interpolate(str(v)) for k, v in e.items()}

pg, nats = services["postgres"], services["nats"]
check("postgres: image postgres:15, password from the environment, healthcheck, volume")
need(str(pg.get("image", "")).startswith("postgres:15"), f"image {pg.get('image')}", f"postgres image is {pg.get('image')!r}, not postgres:15")
pgenv = pg.get("environment") or {}
need("POSTGRES_PASSWORD" in refs and any(p.startswith("services.postgres") for p, _, _ in refs["POSTGRES_PASSWORD"]),
     "POSTGRES_PASSWORD comes from ${POSTGRES_PASSWORD:-...}", "postgres does not take POSTGRES_PASSWORD from the environment")
need("pg_isready" in svc_text(pg.get("healthcheck") or {}), "healthcheck runs pg_isready", "postgres has no pg_isready healthcheck")
need(any(str(v).endswith(":/var/lib/postgresql/data") for v in pg.get("volumes") or []),
     "data volume on /var/lib/postgresql/data", "postgres has no volume on /var/lib/postgresql/data")
check("postgres: creates the databases fraiseql_master and shared_analytics")
pgtext = "\n".join(as_list(pg.get("entrypoint")) + as_list(pg.get("command")))
for db in ["fraiseql_master", "shared_analytics"]:
    need(f"CREATE DATABASE {db}" in pgtext, f"CREATE DATABASE {db}", f"postgres does not create {db}")
need("docker-entrypoint.sh" in pgtext, "ends in the image's docker-entrypoint.sh", "postgres entrypoint does not exec docker-entrypoint.sh")
ep = as_list(pg.get("entrypoint"))
if ep[:2] == ["bash", "-ec"] and len(ep) >= 3:
    r = subprocess.run(["bash", "-n", "-c", interpolate(ep[2])], capture_output=True, text=True)
    need(r.returncode == 0, "entrypoint script: bash -n passes", f"postgres entrypoint script: {r.stderr.strip()}")

check("nats: image nats:2.9, JetStream (-js), monitoring on 8222 (-m 8222), healthcheck, data volume")
need(str(nats.get("image", "")).startswith("nats:2.9"), f"image {nats.get('image')}", f"nats image is {nats.get('image')!r}, not nats:2.9")
ncmd = as_list(nats.get("command"))
need("-js" in ncmd or "--jetstream" in ncmd, "JetStream enabled", "nats command lacks -js")
need(any(ncmd[i:i + 2] == ["-m", "8222"] or ncmd[i:i + 2] == ["--http_port", "8222"] for i in range(len(ncmd))),
     "monitoring on 8222", "nats command lacks -m 8222")
sd = ncmd[ncmd.index("-sd") + 1] if "-sd" in ncmd else None
need(sd is not None and any(str(v).endswith(f":{sd}") for v in nats.get("volumes") or []),
     f"store dir {sd} is a volume", "nats has no -sd store dir on a volume")
need("8222" in svc_text(nats.get("healthcheck") or {}), "healthcheck uses the monitoring port", "nats healthcheck does not use port 8222")
need("alpine" in str(nats.get("image", "")) or "wget" not in svc_text(nats.get("healthcheck") or {}),
     "healthcheck tool exists in the image variant (alpine has busybox wget)", "nats healthcheck uses wget, which the scratch image lacks")

def depends(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {x: "service_started" for x in d}
    return {k: (v or {}).get("condition", "service_started") for k, v in d.items()}

fq, setup = services["fraiseql"], services["setup"]
check("fraiseql: build: ., depends on postgres and nats healthy and setup completed")
b = fq.get("build")
need((b == "." or (isinstance(b, dict) and b.get("context") == ".")), "built from the repository (build: .)", f"fraiseql build is {b!r}")
dep = depends(fq)
for name, cond in [("postgres", "service_healthy"), ("nats", "service_healthy"), ("setup", "service_completed_successfully")]:
    need(dep.get(name) == cond, f"depends_on {name}: {cond}", f"fraiseql depends_on {name} is {dep.get(name)!r}, expected {cond}")
check("setup: same image, waits for postgres, runs tenant create acme_corp / global_corp and migrate")
need(setup.get("image") == fq.get("image") and setup.get("build") == fq.get("build"), "same image and build as fraiseql",
     "setup does not use fraiseql's image")
need(depends(setup).get("postgres") == "service_healthy", "depends_on postgres: service_healthy", "setup does not wait for postgres")
stext = "\n".join(as_list(setup.get("entrypoint")) + as_list(setup.get("command")))
for cmd in ["fraiseql tenant create acme_corp", "fraiseql tenant create global_corp", "fraiseql migrate"]:
    need(cmd in stext, cmd, f"setup does not run `{cmd}`")
sep = as_list(setup.get("entrypoint"))
if sep[:2] == ["bash", "-ec"] and len(sep) >= 3:
    r = subprocess.run(["bash", "-n", "-c", interpolate(sep[2])], capture_output=True, text=True)
    need(r.returncode == 0, "setup script: bash -n passes", f"setup script: {r.stderr.strip()}")
need(str(setup.get("restart", "no")) == "no", "one shot (restart: no)", "setup restarts")

check("container environment: every variable each config reads is set; URLs use the service names")
runners = {"setup": CONFIGS[0], "fraiseql": CONFIGS[0]}
if "analytics" in services:
    runners["analytics"] = CONFIGS[1]
for name, cfg in runners.items():
    env = env_of(services[name])
    want_cfg = "/app/" + cfg
    need(env.get("FRAISEQL_CONFIG") == want_cfg, f"{name}: FRAISEQL_CONFIG={want_cfg}",
         f"{name}: FRAISEQL_CONFIG is {env.get('FRAISEQL_CONFIG')!r}, expected {want_cfg}")
    missing = [v for v in config_vars.get(cfg, {}) if v not in env]
    need(not missing, f"{name}: sets all {len(config_vars.get(cfg, {}))} variables of {cfg}",
         f"{name}: does not set {', '.join(missing)} (the config would fall back to 127.0.0.1 defaults)")
    need(env.get("HOST") == "0.0.0.0", f"{name}: HOST=0.0.0.0", f"{name}: HOST is {env.get('HOST')!r}")
    for var, db in [("TENANT_DB_URL", "postgres"), ("MASTER_DB_URL", "fraiseql_master"), ("SHARED_DB_URL", "shared_analytics")]:
        u = env.get(var, "")
        good = re.match(rf"^postgres(ql)?://postgres:[^@]+@postgres:5432/{db}\?(.*&)?sslmode=disable(&|$)", u) is not None
        need(good, f"{name}: {var} -> postgres:5432/{db}, sslmode=disable",
             f"{name}: {var} is {u!r} (expected host postgres, database {db}, sslmode=disable)")
    need(env.get("NATS_URL") == "nats://nats:4222", f"{name}: NATS_URL=nats://nats:4222", f"{name}: NATS_URL is {env.get('NATS_URL')!r}")
check("the containers run the production profile")
for name in runners:
    prof = env_of(services[name]).get("FRAISEQL_PROFILE")
    need(prof == "production", f"{name}: FRAISEQL_PROFILE=production",
         f"{name}: FRAISEQL_PROFILE is {prof!r}: a deployment would print development tokens")
check("tenancy settings and the JWT secret are the same in every fraiseql container")
for var in ["JWT_SECRET", "TENANCY_STRATEGY", "TENANT_PREFIX", "TENANT_DB_URL", "MASTER_DB_URL", "SHARED_DB_URL"]:
    vals = {n: env_of(services[n]).get(var) for n in runners}
    need(len(set(vals.values())) == 1, f"{var} agrees", f"{var} differs between services: {vals}")
check("published ports match the containers' PORT")
for name in [n for n in ["fraiseql", "analytics"] if n in services]:
    port = env_of(services[name]).get("PORT")
    ports = [interpolate(str(p)) for p in services[name].get("ports") or []]
    need(any(p.rsplit(":", 1)[-1] == port for p in ports), f"{name}: {ports} -> container port {port}",
         f"{name}: ports {ports} do not publish PORT {port}")
if "analytics" in services:
    check("analytics (optional): the second subgraph")
    need(depends(services["analytics"]).get("setup") == "service_completed_successfully",
         "waits for setup", "analytics does not wait for setup")

# ---------------------------------------------------------------------------------------------
print("\n== (e) Dockerfile: the CI build command, COPY sources, Rust version ==")
def dockerfile_instructions(path):
    out, buf = [], ""
    for raw in open(path).read().splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        parts = buf.strip().split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    return out

ins = dockerfile_instructions("Dockerfile")
check("the Dockerfile's cargo build commands are exactly the ones CI/scripts use")
df_builds = [re.sub(r"\s+", " ", m).strip() for k, a in ins if k == "RUN"
             for m in re.findall(r"cargo build[^&;|\n]*", a)]
script_files = sorted(glob.glob("scripts/*.sh") + glob.glob(".ci/*") + glob.glob("examples/saas/*.sh"))
script_builds = set()
for f in script_files:
    if os.path.isfile(f) and f != "scripts/check-containers.sh":
        for line in open(f, errors="replace"):
            if line.lstrip().startswith("#"):
                continue
            for m in re.findall(r"cargo build[^&;|)`\\\"'\n]*", line):
                script_builds.add(re.sub(r"\s+", " ", m).strip())
release_builds = {b for b in script_builds if "--release" in b}
setup_builds = {re.sub(r"\s+", " ", m).strip() for line in open("scripts/setup.sh") if not line.lstrip().startswith("#")
                for m in re.findall(r"cargo build[^&;|)`\\\"'\n]*", line)}
print(f"   Dockerfile: {df_builds}")
print(f"   scripts/setup.sh: {sorted(setup_builds)}; release builds in {len(script_files)} CI/script files: {sorted(release_builds)}")
need(df_builds == ["cargo build --release -p fraiseql"], "Dockerfile runs exactly `cargo build --release -p fraiseql`",
     f"Dockerfile cargo build commands are {df_builds}")
need(set(df_builds) <= setup_builds and set(df_builds) == release_builds,
     "the same command as scripts/setup.sh (and the only release build in the scripts)",
     f"Dockerfile {df_builds} vs scripts/setup.sh {sorted(setup_builds)} / scripts {sorted(release_builds)}")

# .dockerignore
def ignore_patterns():
    pats = []
    if os.path.exists(".dockerignore"):
        for line in open(".dockerignore"):
            s = line.strip()
            if s and not s.startswith("#"):
                pats.append(s)
    return pats

def pat_match(pat, path):
    neg = pat.startswith("!")
    p = pat[1:] if neg else pat
    p = os.path.normpath(p.lstrip("/"))
    rx = re.escape(p).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return neg, re.fullmatch(rx, path) is not None

def ignored(path):
    parts = os.path.normpath(path).split("/")
    result = False
    for pat in ignore_patterns():
        for i in range(1, len(parts) + 1):
            neg, m = pat_match(pat, "/".join(parts[:i]))
            if m:
                result = not neg
                break
    return result

check(".dockerignore excludes target/, .git, node_modules, bench/results")
pats = ignore_patterns()
for probe in ["target/release/fraiseql", ".git/HEAD", "bench/postgraphile/node_modules/x", "bench/results/x.txt"]:
    need(ignored(probe), f"{probe} is excluded", f"{probe} is not excluded by .dockerignore ({pats})")

check("every path the Dockerfile COPYs exists and is in the build context")
stages, cur = [], None
args = {}
for k, a in ins:
    if k == "ARG" and cur is None:
        n, _, v = a.partition("=")
        args[n.strip()] = v.strip()
    if k == "FROM":
        image = re.sub(r"\$\{?([A-Za-z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), a.split()[0])
        cur = {"image": image, "copies": [], "env": {}, "user": None, "other": {}}
        stages.append(cur)
    elif k == "COPY" and cur is not None:
        toks = shlex.split(a)
        flags = [t for t in toks if t.startswith("--")]
        rest = [t for t in toks if not t.startswith("--")]
        cur["copies"].append((flags, rest[:-1], rest[-1]))
    elif k == "ENV" and cur is not None:
        for t in shlex.split(a):
            if "=" in t:
                n, v = t.split("=", 1)
                cur["env"][n] = v
    elif k == "USER" and cur is not None:
        cur["user"] = a.strip()
    elif cur is not None:
        cur["other"].setdefault(k, []).append(a)
for st in stages:
    for flags, srcs, dest in st["copies"]:
        if any(f.startswith("--from") for f in flags):
            continue
        for s in srcs:
            if not os.path.exists(s):
                fail(f"COPY {s}: no such path in the repository")
            elif ignored(s):
                fail(f"COPY {s}: excluded by .dockerignore")
            else:
                ok(f"COPY {s} -> {dest}")

check("the builder has the whole workspace (every member's manifest)")
ws = tomllib.load(open("Cargo.toml", "rb"))
members = sorted({m for pat in ws["workspace"]["members"] for m in glob.glob(pat) if os.path.exists(f"{m}/Cargo.toml")})
builder_srcs = [s.rstrip("/") for flags, srcs, _ in stages[0]["copies"] for s in srcs]
for need_path in ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members]:
    covered = any(need_path == s or need_path.startswith(s + "/") for s in builder_srcs)
    need(covered and not ignored(need_path), f"{need_path} is copied into the builder", f"{need_path} is not copied into the builder")

check("Rust version: the builder's toolchain is new enough for the workspace and the locked dependencies")
def vtuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])
builder_image = stages[0]["image"]
m = re.match(r"^rust:(\d+(?:\.\d+){0,2})(?:-(\w+))?$", builder_image)
if not m:
    fail(f"builder image {builder_image!r} is not rust:<version>-<debian>")
else:
    tv = vtuple(m.group(1))
    floating = len(tv) == 1
    print(f"   builder image {builder_image} (Rust {m.group(1)}{' = the newest 1.x' if floating else ''})")
    wsv = ws["workspace"].get("package", {}).get("rust-version")
    if wsv:
        need(floating or tv >= vtuple(wsv), f"workspace rust-version {wsv} <= {m.group(1)}",
             f"workspace needs Rust {wsv}, the builder has {m.group(1)}")
    lock = open("Cargo.lock").read()
    pkgs = re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', lock)
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    newest, seen = ((0,), None), 0
    for n, v in pkgs:
        found = glob.glob(f"{cargo_home}/registry/src/*/{n}-{v}/Cargo.toml")
        if not found:
            continue
        seen += 1
        rv = re.search(r'^rust-version\s*=\s*"([^"]+)"', open(found[0], errors="replace").read(), re.M)
        if rv and vtuple(rv.group(1)) > newest[0]:
            newest = (vtuple(rv.group(1)), f"{n} {v} (rust-version {rv.group(1)})")
    if seen == 0:
        print(f"   skipped: none of the {len(pkgs)} locked crates' sources are in {cargo_home}/registry (cannot read their rust-version)")
    else:
        print(f"   read {seen}/{len(pkgs)} locked crates from {cargo_home}/registry; the most demanding: {newest[1]}")
        need(floating or tv >= newest[0], f"Rust {m.group(1)} >= {'.'.join(map(str, newest[0]))}",
             f"the builder's Rust {m.group(1)} is older than {newest[1]}")
    runtime = stages[-1]["image"]
    codename = m.group(2)
    need(codename is not None and runtime.startswith(f"debian:{codename}"),
         f"builder and runtime share the Debian release ({codename}: same glibc)",
         f"builder {builder_image} vs runtime {runtime}: glibc may differ")

check("runtime stage: debian:bookworm-slim, non-root user, binary, example, ENV, EXPOSE, ENTRYPOINT/CMD")
rt = stages[-1]
need(rt["image"] == "debian:bookworm-slim", f"FROM {rt['image']}", f"runtime base is {rt['image']}")
need(rt["user"] not in (None, "root", "0", "0:0") and not str(rt["user"]).startswith("root"),
     f"USER {rt['user']}", f"runtime runs as {rt['user'] or 'root'}")
need(any(any(f.startswith("--from") for f in fl) and d == "/usr/local/bin/fraiseql" for fl, _, d in rt["copies"]),
     "binary at /usr/local/bin/fraiseql", "the binary is not copied to /usr/local/bin/fraiseql")
runs = " ".join(rt["other"].get("RUN", []))
need("ca-certificates" in runs, "installs ca-certificates", "runtime lacks ca-certificates")
setup_uses_psql = "psql" in stext
need(not setup_uses_psql or "postgresql-client" in runs, "installs postgresql-client (the setup service uses psql)",
     "the setup service runs psql but the image lacks postgresql-client")
need(rt["other"].get("WORKDIR", [""])[-1] == "/app", "WORKDIR /app", "WORKDIR is not /app")
need(rt["other"].get("EXPOSE", [""])[-1].split()[0] == "8080", "EXPOSE 8080", "does not EXPOSE 8080")
need(rt["env"].get("FRAISEQL_CONFIG") == "/app/examples/saas/fraiseql.toml", "ENV FRAISEQL_CONFIG=/app/examples/saas/fraiseql.toml",
     f"FRAISEQL_CONFIG is {rt['env'].get('FRAISEQL_CONFIG')!r}")
def exec_form(k):
    v = rt["other"].get(k, [None])[-1]
    try:
        return json.loads(v)
    except Exception:  # noqa: BLE001
        return v
need(exec_form("ENTRYPOINT") == ["fraiseql"], 'ENTRYPOINT ["fraiseql"]', f"ENTRYPOINT is {exec_form('ENTRYPOINT')!r}")
need(exec_form("CMD") == ["run"], 'CMD ["run"]', f"CMD is {exec_form('CMD')!r}")

check("the image holds every file the two configs need (config, schema, migrations) at their /app paths")
image_files = {}   # image path -> repo path
for flags, srcs, dest in rt["copies"]:
    if any(f.startswith("--from") for f in flags):
        continue
    for s in srcs:
        if os.path.isdir(s):
            base = dest.rstrip("/")   # a directory source: its contents go into dest
            for dp, _, fs in os.walk(s):
                for f in fs:
                    rp = os.path.join(dp, f)
                    if not ignored(rp):
                        image_files[base + "/" + os.path.relpath(rp, s)] = rp
        elif os.path.exists(s) and not ignored(s):
            target = dest + os.path.basename(s) if dest.endswith("/") else dest
            image_files[target] = s
for cfg in CONFIGS:
    ip = "/app/" + cfg
    need(ip in image_files, f"{ip}", f"{cfg} is not in the image at {ip}")
    data = config_data.get(cfg, {})
    cdir = os.path.dirname(cfg)
    wanted = [os.path.join(cdir, data.get("schema", {}).get("path", "schema.graphql"))]
    for dbname, db in (data.get("databases") or {}).items():
        if db.get("migrations"):
            d = os.path.join(cdir, db["migrations"])
            files = sorted(glob.glob(os.path.join(d, "*.sql")))
            if not files:
                fail(f"{cfg}: [databases.{dbname}] migrations {d} has no *.sql")
            wanted += files
    for w in wanted:
        need("/app/" + os.path.normpath(w) in image_files, f"{cfg} needs {w}: in the image",
             f"{cfg} needs {w}, which the image does not contain at /app/{w}")
need("/app/examples/saas/seed.sql" in image_files or "seed.sql" not in stext,
     "seed.sql (loaded by setup) is in the image", "setup loads seed.sql but the image lacks it")

check("HEALTHCHECK: exec form, and it works (run here against a stub HTTP server on a free port)")
hc = rt["other"].get("HEALTHCHECK", [None])[-1]
hcm = re.search(r"\bCMD\s+(\[.*\])\s*$", hc or "")
argv = json.loads(hcm.group(1)) if hcm else None
if not argv:
    fail(f"HEALTHCHECK is not an exec-form CMD: {hc!r}")
else:
    class Stub(http.server.BaseHTTPRequestHandler):
        status = 200
        def do_GET(self):  # noqa: N802
            code = Stub.status if self.path == "/health" else 404
            body = b'{"status":"ok"}'
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    def probe():
        env = dict(os.environ, PORT=str(port))
        try:
            return subprocess.run(argv, env=env, capture_output=True, timeout=10).returncode
        except subprocess.TimeoutExpired:
            return "timeout"
    r200 = probe()
    Stub.status = 503
    r503 = probe()
    srv.shutdown()
    srv.server_close()
    rdown = probe()
    need(r200 == 0, "healthy when GET /health answers 200", f"healthcheck failed against a 200 /health (exit {r200})")
    need(r503 not in (0,), "unhealthy when /health answers 503", "healthcheck passed on a 503")
    need(rdown not in (0,), "unhealthy when nothing listens", "healthcheck passed with nothing listening")

# ---------------------------------------------------------------------------------------------
print()
if failures:
    print(f"{len(failures)} check(s) FAILED:")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("all offline checks passed")
PYTHON

echo
echo "== (f) hadolint =="
if command -v hadolint >/dev/null 2>&1; then
  echo "-- hadolint Dockerfile"
  hadolint Dockerfile || rc=1
else
  echo "skipped: hadolint is not installed on this machine (not run, not emulated)"
fi

echo
if [ "$rc" -ne 0 ]; then
  echo "RESULT: FAILED (see FAIL lines above)"
else
  echo "RESULT: all offline checks passed"
fi
echo "NOTE: no image was built and docker-compose.yml was not run on this machine (no Docker); only the offline checks above were done."
exit "$rc"
