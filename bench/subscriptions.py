#!/usr/bin/env python3
"""The figures of bench/subscriptions.sh: reads what it measured and what the load generator
logged, computes the latencies (receipt at the client minus the change's write in PostgreSQL),
writes bench/results/subscriptions.json and prints the table of docs/benchmarks.md and the README.
Exits non-zero when an event was lost or duplicated.
"""

import argparse
import datetime
import json
import re
import sys


def result_line(path, label):
    for line in open(path):
        if line.startswith(f"RESULT {label}"):
            return dict(kv.split("=") for kv in line.split()[2:])
    sys.exit(f"no RESULT {label} line in {path}")


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser()
    for name in ["hold", "active", "secs", "rate"]:
        ap.add_argument(f"--{name}", type=int, required=True)
    for name in ["idle", "held", "cpu-s"]:
        ap.add_argument(f"--{name}", type=float, required=True)
    for name in ["fanout-out", "fanout-log", "commits", "resume-out", "json"]:
        ap.add_argument(f"--{name}", required=True)
    a = ap.parse_args()

    commits = {}
    for line in open(a.commits):
        parts = line.split()
        if len(parts) == 2:
            commits[parts[0]] = float(parts[1])
    latencies = []
    for line in open(a.fanout_log):
        _client, _tenant, project, _position, at = line.split()
        if project in commits:
            latencies.append(float(at) - commits[project])
    fan = result_line(a.fanout_out, "fanout")
    res = result_line(a.resume_out, "resume")
    storm = 0.0
    for line in open(a.resume_out):
        m = re.search(r"every missed event in ([0-9.]+) s", line)
        if m:
            storm = float(m.group(1))
    delivered = int(fan["delivered"])
    delta = a.held - a.idle
    out = {
        "date": datetime.date.today().isoformat(),
        "machine": "2 cores shared by PostgreSQL, NATS, the server and the load generator",
        "memory": {
            "subscriptions": a.active,
            "idle_rss_mib": a.idle,
            "rss_mib": a.held,
            "added_mib": round(delta, 1),
            "kib_per_subscription": round(delta * 1024 / max(a.active, 1), 2),
        },
        "fanout": {
            "subscribers": int(fan["clients"]),
            "tenants": 10,
            "mutations_per_s": a.rate,
            "secs": a.secs,
            "delivered": delivered,
            "lost": int(fan["lost"]),
            "doubled": int(fan["doubled"]),
            "other_tenant": int(fan["other"]),
            "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
            "latencies_measured": len(latencies),
            "server_cpu_s": round(a.cpu_s, 2),
            "server_cpu_us_per_event": round(a.cpu_s * 1e6 / max(delivered, 1), 1),
        },
        "resume": {
            "clients": int(res["clients"]),
            "missed_events": 500,
            "delivered": int(res["delivered"]),
            "lost": int(res["lost"]),
            "doubled": int(res["doubled"]),
            "other_tenant": int(res["other"]),
            "secs_until_all_delivered": storm,
        },
    }
    f = out["fanout"]
    out["targets"] = {
        "10,000 subscriptions within 100 MiB": a.active >= 10000 and delta <= 100,
        "p99 <= 100 ms at 1,000 subscribers, 100 mutations/s": f["latency_p99_ms"] <= 100,
        "0 lost, 0 duplicated": f["lost"] == f["doubled"] == f["other_tenant"] == 0
        and out["resume"]["lost"] == out["resume"]["doubled"] == out["resume"]["other_tenant"] == 0,
    }
    with open(a.json, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    m, r = out["memory"], out["resume"]
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| (a) {m['subscriptions']:,} WebSocket subscriptions: server RSS | {m['rss_mib']} MiB "
          f"({m['idle_rss_mib']} idle, +{m['added_mib']} MiB, {m['kib_per_subscription']} KiB each) | ≤ 100 MiB |")
    print(f"| (b) {f['subscribers']:,} subscribers, 10 tenants, {a.rate} mutations/s: write-to-client latency "
          f"| p50 {f['latency_p50_ms']} ms, p99 {f['latency_p99_ms']} ms; {f['server_cpu_us_per_event']} µs server CPU per event "
          f"| p99 ≤ 100 ms |")
    print(f"| (b) events delivered | {f['delivered']:,}: {f['lost']} lost, {f['doubled']} doubled, "
          f"{f['other_tenant']} to another tenant | 0, 0 |")
    print(f"| (c) {r['clients']:,} clients reconnect with their positions, {r['missed_events']} changes missed "
          f"| {r['delivered']:,} delivered in {r['secs_until_all_delivered']} s: {r['lost']} lost, {r['doubled']} doubled | 0, 0 |")
    print()
    for name, ok in out["targets"].items():
        print(f"target {'met' if ok else 'NOT met'}: {name}")
    if not out["targets"]["0 lost, 0 duplicated"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
