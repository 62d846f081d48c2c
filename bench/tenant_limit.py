#!/usr/bin/env python3
"""PostgreSQL alone, serving many tenants the way the server does (used by bench/tenants.sh).

  tenant_limit.py LOGFILE OFFSET LOGIN DB REGISTRY_DB STRATEGY GROUPS CLIENTS SECS

Reads, from PostgreSQL's log past OFFSET, the last transaction the server ran as LOGIN on DB
(captured with log_statement = all while it answered one request of the strategy's first
tenant: never copied by hand), turns it into one pgbench script per tenant of STRATEGY (the
first tenant's role, schema, id and key replaced by each tenant's own), and runs them as the
server's connection affinity would: the tenants split into GROUPS, one pgbench process per group
over its own tenants only, CLIENTS connections in all, pipelined and prepared (each connection
keeps a statement per tenant, like the server). Prints the total transactions per second.

The scripts carry each tenant's values as literals, so under row_level too a connection holds a
statement per tenant where the server holds one for all (same text, same plan); for
schema_per_tenant that is exactly the server's behaviour.
"""

import os
import re
import subprocess
import sys
import tempfile

from compare import parse_params

# Debian's default log_line_prefix, '%m [%p] %q%u@%d '.
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.\d]* \S+ \[(\d+)\] (\S*)@(\S*) (\w+):\s+(.*)$")


def capture(logfile, offset, login, db):
    with open(logfile, errors="replace") as f:
        f.seek(offset)
        text = f.read()
    entries = []  # (kind, body) of LOGIN@DB, continuation lines joined
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            mine = m.group(2) == login and m.group(3) == db
            entries.append((m.group(4), m.group(5)) if mine else None)
        elif entries and entries[-1] is not None:
            kind, body = entries[-1]
            entries[-1] = (kind, body + " " + line.strip())
    stmts = []
    for e in entries:
        if e is None:
            continue
        kind, body = e
        m = re.match(r"execute [^:]+: (.*)$", body, re.S)
        if kind == "LOG" and m:
            stmts.append({"sql": m.group(1), "params": {}})
        elif kind == "DETAIL" and body.startswith("parameters:") and stmts:
            stmts[-1]["params"] = parse_params(body)
    begins = [i for i, s in enumerate(stmts) if s["sql"].startswith("BEGIN")]
    if not begins:
        sys.exit(f"tenant_limit: no transaction of {login}@{db} in {logfile}")
    txn = stmts[begins[-1]:]
    ends = [i for i, s in enumerate(txn) if s["sql"] in ("COMMIT", "ROLLBACK")]
    if not ends:
        sys.exit("tenant_limit: the captured transaction has no COMMIT")
    return txn[:ends[0] + 1]


def literal(v):
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def script(txn, subst):
    lines = ["\\startpipeline"]
    for st in txn:
        sql = re.sub(r"\$(\d+)", lambda m: literal(subst.get(st["params"].get(int(m.group(1))),
                                                               st["params"].get(int(m.group(1))))),
                     st["sql"])
        lines.append(sql.replace("\n", " ") + ";")
    lines.append("\\endpipeline")
    return "\n".join(lines) + "\n"


def main():
    logfile, offset, login, db, registry, strategy = sys.argv[1:7]
    groups, clients, secs = (int(x) for x in sys.argv[7:10])
    txn = capture(logfile, int(offset), login, db)
    rows = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qAtF", "\t", "-d", registry, "-c",
         "SELECT key, id, schema_name, role_name, coalesce(login_password, role_password) "
         f"FROM fraiseql_tenant WHERE strategy = '{strategy}' ORDER BY created_at, key"],
        check=True, capture_output=True, text=True).stdout.split("\n")
    tenants = [r.split("\t") for r in rows if r]
    first = tenants[0]
    work = tempfile.mkdtemp(prefix="tenant-limit-")
    files = []
    for t in tenants:
        # Key, id, schema (as a name and as the quoted search_path), role.
        subst = {first[0]: t[0], first[1]: t[1], first[2]: t[2], f'"{first[2]}"': f'"{t[2]}"',
                 first[3]: t[3]}
        path = os.path.join(work, f"{t[0]}.sql")
        with open(path, "w") as f:
            f.write(script(txn, subst))
        files.append(path)
    procs = []
    for g in range(groups):
        c = clients // groups + (1 if g < clients % groups else 0)
        mine = files[g::groups]
        if c == 0 or not mine:
            continue
        cmd = ["pgbench", "-h", "127.0.0.1", "-U", login, "-n", "-M", "prepared", "-c", str(c),
               "-j", "1", "-T", str(secs)]
        for path in mine:
            cmd += ["-f", path]
        cmd.append(db)
        env = dict(os.environ, PGSSLMODE="disable", PGPASSWORD=first[4])
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env))
    total = 0.0
    for p in procs:
        out = p.communicate()[0]
        m = re.search(r"tps = ([\d.]+)", out)
        if p.returncode != 0 or not m or re.search(r"failed transactions: [1-9]", out):
            sys.exit(f"tenant_limit: pgbench failed:\n{out}")
        total += float(m.group(1))
    for path in files:
        os.unlink(path)
    os.rmdir(work)
    print(f"{total:.0f}")


if __name__ == "__main__":
    main()
