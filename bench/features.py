#!/usr/bin/env python3
"""Figures for the features beside the plain request path (run it through bench/features.sh),
on the same cluster and data as bench/compare.py (its own PostgreSQL, no TLS):

  cache     `{ tenantConfig }` with the result cache on and off (requests/s, 16 connections)
  metrics   `organizations` with metrics on and off (requests/s, 16 connections)
  entities  `_entities` with 1,000 Project representations in one request (latency, ms)
  hostile   a 40-level chain of fragments each spreading the next twice (~1 KB), plain (its
            fields merge: answered) and with an alias per level (refused): time to the answer; `organizations(limit: null)`: rows returned; 500 connections against an
            in-flight limit of 32: responses shed with 503 and /health latency meanwhile

On/off pairs run in alternating rounds (medians). Writes bench/results/features.json.
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
SECS = int(os.environ.get("BENCH_SECS", "6"))
OUT = os.path.join(c.ROOT, "bench/results/features.json")


def start(extra):
    env = dict(c.fraiseql_env(), **extra)
    return c.Server([c.BIN, "run"], env, c.HTTP_PORT, "fraiseql")


def post(body, headers, conn=None):
    conn = conn or http.client.HTTPConnection("127.0.0.1", c.HTTP_PORT)
    t = time.perf_counter()
    conn.request("POST", "/graphql", json.dumps(body), dict(headers, **{"Content-Type": "application/json"}))
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data), (time.perf_counter() - t) * 1000


def load(body, headers, conns=16):
    return c.run_wrk(c.HTTP_PORT, body, headers, conns, SECS, False)


def pair(name, body, headers, on, off):
    """requests/s of `body` with the server started with `on` and with `off`, alternating."""
    rows = {"on": [], "off": []}
    for _ in range(ROUNDS):
        for label, extra in (("on", on), ("off", off)):
            s = start(extra)
            try:
                load(body, headers, 16)  # warm-up
                r = load(body, headers, 16)
                if r["failed"]:
                    raise SystemExit(f"{name} ({label}): {r['failed']} failed requests")
                rows[label].append(r["rps"])
                c.log(f"  {name} {label}: {r['rps']:.0f}/s")
            finally:
                s.stop()
    med = {k: round(statistics.median(v), 1) for k, v in rows.items()}
    return {"on_rps": med["on"], "off_rps": med["off"], "on_over_off": round(med["on"] / med["off"], 3),
            "rounds": rows}


def fragment_chain(levels=40, aliases=False):
    """Fragment i spreads fragment i+1 twice (with `aliases`, it also selects `a<i>: name`)."""
    frags = []
    for i in range(levels):
        own = f"a{i}: name " if aliases else ""
        nxt = f"...F{i + 1} ...F{i + 1}" if i + 1 < levels else "name"
        frags.append(f"fragment F{i} on Organization {{ {own}{nxt} }}")
    return "{ organizations { ...F0 } } " + " ".join(frags)


def health_latency(stop, out):
    conn = http.client.HTTPConnection("127.0.0.1", c.HTTP_PORT, timeout=10)
    while not stop.is_set():
        t = time.perf_counter()
        try:
            conn.request("GET", "/health")
            conn.getresponse().read()
            out.append((time.perf_counter() - t) * 1000)
        except OSError:
            out.append(float("inf"))
            conn = http.client.HTTPConnection("127.0.0.1", c.HTTP_PORT, timeout=10)
        time.sleep(0.01)


def main():
    if not os.access(c.BIN, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p fraiseql ({c.BIN})")
    c.log(f"== cluster on 127.0.0.1:{c.PGPORT} (its own; no TLS)")
    c.start_cluster()
    try:
        tenants, token, org, _ = c.make_world()
        acme = tenants["acme_corp"]
        c.psql(acme["db"], f"INSERT INTO tb_tenant_config (tenant_id, key, value) VALUES "
                           f"('{acme['id']}', 'theme', '\"dark\"'), ('{acme['id']}', 'plan', '\"pro\"')")
        hdr = {"X-Tenant-ID": "acme_corp", "Authorization": f"Bearer {token}"}
        res = {"machine": c.machine(), "secs": SECS, "rounds": ROUNDS}

        c.log("== result cache: { tenantConfig }, 16 connections")
        res["cache"] = pair("tenantConfig", {"query": "{ tenantConfig }"}, hdr,
                            {"CACHE_ENABLED": "true"}, {"CACHE_ENABLED": "false"})
        c.log("== metrics: organizations, 16 connections")
        res["metrics"] = pair("organizations", {"query": "{ organizations { id name subscriptionTier memberCount } }"},
                              hdr, {"METRICS_ENABLED": "true"}, {"METRICS_ENABLED": "false"})

        s = start({})
        try:
            c.log("== _entities with 1,000 Project representations")
            ids = c.psql(acme["db"], f"SELECT id FROM tb_project WHERE tenant_id = '{acme['id']}' ORDER BY pk_project LIMIT 1000").split()
            reps = [{"__typename": "Project", "id": i} for i in ids]
            body = {"query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Project { name taskCount } } }",
                    "variables": {"r": reps}}
            conn = http.client.HTTPConnection("127.0.0.1", c.HTTP_PORT)
            times = []
            for i in range(25):
                status, ans, ms = post(body, hdr, conn)
                ents = ans.get("data", {}).get("_entities") or []
                if status != 200 or len(ents) != len(reps) or any(e is None for e in ents):
                    raise SystemExit(f"_entities: {status} {str(ans)[:300]}")
                if i >= 5:
                    times.append(ms)
            res["entities"] = {"representations": len(reps), "median_ms": round(statistics.median(times), 2),
                               "min_ms": round(min(times), 2), "max_ms": round(max(times), 2), "requests": len(times)}
            c.log(f"  {len(reps)} representations: median {res['entities']['median_ms']} ms")

            c.log("== hostile input")
            res["fragment_chain"] = {}
            for label, aliases in (("merged", False), ("aliased", True)):
                chain = fragment_chain(aliases=aliases)
                times, outcome = [], None
                for i in range(25):
                    status, ans, ms = post({"query": chain}, hdr, conn)
                    codes = sorted({e.get("extensions", {}).get("code") for e in ans.get("errors", [])})
                    outcome = ", ".join(codes) if codes else f"answered ({len(ans['data']['organizations'])} rows)"
                    if aliases and not codes:
                        raise SystemExit(f"the aliased fragment chain was answered: {str(ans)[:300]}")
                    if i >= 5:
                        times.append(ms)
                res["fragment_chain"][label] = {"document_bytes": len(chain), "outcome": outcome,
                                                "median_ms": round(statistics.median(times), 2),
                                                "max_ms": round(max(times), 2)}
                c.log(f"  fragment chain, {label} ({len(chain)} bytes): {outcome} in {res['fragment_chain'][label]['median_ms']} ms (median)")
            status, ans, _ = post({"query": "{ organizations(limit: null) { id } }"}, hdr, conn)
            res["limit_null"] = {"rows": len(ans["data"]["organizations"]), "rows_in_table": 100}
            c.log(f"  organizations(limit: null): {res['limit_null']['rows']} rows of 100")
        finally:
            s.stop()

        s = start({"MAX_IN_FLIGHT": "32"})
        try:
            c.log("== 500 connections against max_in_flight = 32")
            stop, lat = threading.Event(), []
            th = threading.Thread(target=health_latency, args=(stop, lat))
            th.start()
            out = c.run(["wrk", "-t2", "-c500", f"-d{SECS}s", "-s", write_lua(hdr),
                         f"http://127.0.0.1:{c.HTTP_PORT}/graphql"], check=False).stdout
            stop.set()
            th.join()
            total = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
            shed = next((int(l.split()[-1]) for l in out.splitlines() if "Non-2xx" in l), 0)
            res["shedding"] = {"connections": 500, "max_in_flight": 32, "requests": total, "shed_503": shed,
                               "health_p50_ms": round(statistics.median(lat), 2),
                               "health_max_ms": round(max(lat), 2), "health_probes": len(lat)}
            c.log(f"  {total} requests, {shed} shed with 503; /health p50 {res['shedding']['health_p50_ms']} ms, "
                  f"max {res['shedding']['health_max_ms']} ms over {len(lat)} probes")
            status, _, _ = post({"query": "{ organizations { id } }"}, hdr)
            if status != 200:
                raise SystemExit(f"after the flood: {status}")
        finally:
            s.stop()

        with open(OUT, "w") as f:
            json.dump(res, f, indent=2)
        print_table(res)
        c.log(f"written {OUT}")
    finally:
        c.stop_cluster()


def write_lua(hdr):
    path = os.path.join(c.WORK, "flood.lua")
    lines = ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = {c.lua_string(v)}' for k, v in hdr.items()]
    lines.append('wrk.body = ' + c.lua_string(json.dumps({"query": "{ organizations { id name memberCount } }"})))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def print_table(r):
    c.log("")
    c.log("| figure | value |")
    c.log("|---|---|")
    cc, m = r["cache"], r["metrics"]
    c.log(f"| `{{ tenantConfig }}`, 16 connections: cache on / off | {cc['on_rps']:,.0f} / {cc['off_rps']:,.0f} req/s ({cc['on_over_off']}x) |")
    c.log(f"| `organizations`, 16 connections: metrics on / off | {m['on_rps']:,.0f} / {m['off_rps']:,.0f} req/s ({m['on_over_off']}x) |")
    e = r["entities"]
    c.log(f"| `_entities`, {e['representations']:,} Project representations (`name taskCount`), one request | {e['median_ms']} ms median ({e['min_ms']}-{e['max_ms']}) |")
    for label, what in (("merged", "each level spreading the next twice"),
                        ("aliased", "each level also selecting `a<i>: name`")):
        f = r["fragment_chain"][label]
        c.log(f"| 40-level fragment chain, {what} ({f['document_bytes']} bytes; 2^40 fields before merging) | {f['outcome']} in {f['median_ms']} ms median (max {f['max_ms']}) |")
    c.log(f"| `organizations(limit: null)` | {r['limit_null']['rows']} rows of {r['limit_null']['rows_in_table']} |")
    s = r["shedding"]
    c.log(f"| {s['connections']} connections, `max_in_flight` {s['max_in_flight']}, {SECS} s | {s['shed_503']:,} of {s['requests']:,} shed with 503; `/health` p50 {s['health_p50_ms']} ms, max {s['health_max_ms']} ms |")


if __name__ == "__main__":
    main()
