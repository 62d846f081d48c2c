#!/usr/bin/env python3
"""What OpenTelemetry costs: one query through `fraiseql run` with traces off (no endpoint: no
exporter, no layer), exported at sample_ratio 1.0, and at 0.01, to a receiver that decodes each
export with the official protobuf definitions and drops it (scripts/otlp-receiver.py --drop).
The three servers serve the same world (compare.py's cluster and data) on ports of their own and
are measured in turn, round after round, so a drift of the machine touches all three alike.

  bench/otel.sh                                  organizations, 1 and 16 connections, 3 rounds of 6 s
  BENCH_QUERIES=projectsByOrg BENCH_CONNS=16 ROUNDS=5 bench/otel.sh

Prints a table and the load average before and after, writes bench/results/otel.json. Not a
test: figures depend on the machine.
"""
import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402  (the cluster, the world, wrk)

QUERY = (os.environ.get("BENCH_QUERIES") or "organizations").split(",")[0]
CONNS = [int(x) for x in os.environ.get("BENCH_CONNS", "1,16").split(",")]
PYTHON = os.environ.get("FRAISEQL_PYTHON", os.path.join(c.ROOT, "target/py-venv/bin/python"))
VARIANTS = [("off", None), ("on_1.0", "1.0"), ("on_0.01", "0.01")]


def start_receiver():
    p = subprocess.Popen([PYTHON, os.path.join(c.ROOT, "scripts/otlp-receiver.py"), "--drop"],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("listening on "):
        p.kill()
        raise SystemExit(f"the receiver did not start ({PYTHON}; scripts/test.sh installs "
                         f"opentelemetry-proto): {line!r}")
    return p, int(line.split()[-1])


def start(name, port, endpoint, ratio):
    env = dict(c.fraiseql_env(), PORT=str(port))
    if endpoint:
        env.update(OTLP_ENDPOINT=endpoint, TRACE_SAMPLE_RATIO=ratio)
    return c.Server([c.BIN, "run"], env, port, f"fraiseql-{name}")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    if not os.access(c.BIN, os.X_OK):
        raise SystemExit(f"build first: cargo build --release -p fraiseql ({c.BIN})")
    os.makedirs(c.WORK, exist_ok=True)
    c.log(f"== cluster on 127.0.0.1:{c.PGPORT}; load average {loadavg()}")
    c.start_cluster()
    servers, receiver = {}, None
    try:
        tenants, token, org, org2 = c.make_world()
        q = c.queries(org, org2)[QUERY]
        receiver, rport = start_receiver()
        for i, (name, ratio) in enumerate(VARIANTS):
            endpoint = f"http://127.0.0.1:{rport}" if ratio else None
            servers[name] = (start(name, c.HTTP_PORT + i, endpoint, ratio), c.HTTP_PORT + i)
        headers = {"X-Tenant-ID": "acme_corp", "Authorization": f"Bearer {token}"}
        body = c.request_body(q, "fraiseql")
        mutation = bool(q.get("mutation"))
        load_before = loadavg()
        results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "machine": c.machine(), "query": QUERY, "secs": c.SECS, "rounds": c.ROUNDS,
                   "load_before": load_before, "runs": {}}
        print(f"{'conns':>5}  " + "  ".join(f"{n:>22}" for n, _ in VARIANTS))
        for conns in CONNS:
            rows = {n: [] for n, _ in VARIANTS}
            for _, (srv, port) in servers.items():
                c.run_wrk(port, body, headers, conns, 2, mutation)  # warm-up
            for _ in range(c.ROUNDS):
                for name, (srv, port) in servers.items():
                    before = c.cpu_ticks([srv.proc.pid])
                    r = c.run_wrk(port, body, headers, conns, c.SECS, mutation)
                    n = max(r["requests"], 1)
                    r["server_cpu_per_1000"] = round((c.cpu_ticks([srv.proc.pid]) - before) / c.CLK / n * 1000, 3)
                    rows[name].append(r)
            summary = {n: {k: c.med(rows[n], k) for k in ["rps", "p50", "p99", "server_cpu_per_1000", "failed"]}
                       for n, _ in VARIANTS}
            for n, _ in VARIANTS:
                summary[n]["rounds"] = [r["rps"] for r in rows[n]]
            results["runs"][str(conns)] = summary
            print(f"{conns:>5}  " + "  ".join(
                f"{summary[n]['rps']:>9.0f} rps {summary[n]['p50']:>5.2f} ms" for n, _ in VARIANTS))
        results["load_after"] = loadavg()
        c.log(f"load average before {load_before}, after {results['load_after']}")
        out = os.path.join(c.ROOT, "bench/results/otel.json")
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
        c.log(f"written {out}")
    finally:
        for srv, _ in servers.values():
            srv.stop()
        if receiver:
            receiver.kill()
            receiver.wait()
        c.stop_cluster()


if __name__ == "__main__":
    main()
