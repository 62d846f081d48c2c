#!/usr/bin/env python3
"""Draws a benchmark's JSON as an SVG bar chart (Python standard library only).

  python3 bench/chart.py                                   bench/results/latest.json -> latest.svg
  python3 bench/chart.py --json other.json --out other.svg  any JSON of the same shape
  python3 bench/chart.py --table 16                        the README's summary table, markdown

The JSON is the shape bench/compare.py writes: `queries.<name>.runs.<connections>.<target>.rps`
(the median requests/s of the rounds), with `machine`, `rounds`, `secs` and `date` beside it.
For each query (a group of bars per number of connections) it draws one bar per target:
fraiseql, the limit (the same statements pipelined by pgbench) and PostGraphile v5 by default
(`--targets` picks others: plain, http). A target missing from a run has no bar there.

The output depends only on the JSON (and the path given for it), so running it again on the
same data gives the same bytes: scripts/check-docs.py checks that the committed chart is what
this script draws from the committed JSON.
"""

import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_JSON = os.path.join(ROOT, "bench/results/latest.json")

# Okabe-Ito colours: told apart with the common colour-vision deficiencies, on white.
TARGETS = {
    "fraiseql": ("fraiseql", "#D55E00"),
    "pipelined": ("the limit: pgbench, same statements, pipelined", "#666666"),
    "postgraphile": ("PostGraphile v5", "#0072B2"),
    "plain": ("pgbench, same statements, one by one", "#E69F00"),
    "http": ("HTTP alone (GET /health)", "#009E73"),
}
DEFAULT_TARGETS = ["fraiseql", "pipelined", "postgraphile"]

FONT = "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""
BAR_W = 26
BAR_GAP = 2
GROUP_GAP = 22
QUERY_GAP = 40
LEFT = 78
RIGHT = 24
TOP = 112
PLOT_H = 300


def nice_step(top, ticks=6):
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` intervals."""
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def short(v):
    """A bar's value in at most 5 characters: 525, 2.1k, 58k."""
    if v < 1000:
        return f"{v:.0f}"
    if v < 10000:
        return f"{v / 1000:.1f}k"
    return f"{v / 1000:.0f}k"


def run_date(data):
    """The run's date, as the JSON records it (compare.py records it since the chart exists)."""
    if data.get("date"):
        return f"run {data['date'][:10]}"
    return "run date not recorded in the JSON"


def render(data, json_path, targets=None, title=None):
    """The SVG text for one benchmark JSON."""
    targets = targets or DEFAULT_TARGETS
    for t in targets:
        if t not in TARGETS:
            raise SystemExit(f"unknown target {t!r}: one of {', '.join(TARGETS)}")
    queries = data.get("queries") or {}
    if not queries:
        raise SystemExit(f"{json_path}: no `queries` in it (is it bench/compare.py's output?)")

    groups = []  # (query, [(conns, {target: rps})])
    top = 0.0
    for name, q in queries.items():
        runs = []
        for conns in sorted(q.get("runs", {}), key=int):
            run = q["runs"][conns]
            vals = {t: run[t]["rps"] for t in targets
                    if isinstance(run.get(t), dict) and run[t].get("rps")}
            top = max([top] + list(vals.values()))
            runs.append((conns, vals))
        groups.append((name, runs))
    if top <= 0:
        raise SystemExit(f"{json_path}: no requests/s figure for {', '.join(targets)}")

    step = nice_step(top)
    # Room above the tallest bar for its value.
    y_max = step * math.ceil(top * 1.05 / step)
    group_w = len(targets) * BAR_W + (len(targets) - 1) * BAR_GAP
    n_runs = sum(len(r) for _, r in groups)
    plot_w = n_runs * group_w + (n_runs - len(groups)) * GROUP_GAP + (len(groups) - 1) * QUERY_GAP
    width = LEFT + plot_w + RIGHT
    height = TOP + PLOT_H + 92

    def y(v):
        return TOP + PLOT_H - v / y_max * PLOT_H

    rel = os.path.relpath(os.path.abspath(json_path), ROOT)
    if rel.startswith(".."):
        rel = os.path.basename(json_path)
    machine = data.get("machine") or {}
    facts = [run_date(data)]
    if machine.get("cpus"):
        facts.append(f"{machine['cpus']} cores ({machine.get('cpu') or 'cpu not recorded'})")
    pg = (machine.get("postgres") or "").replace("psql (PostgreSQL) ", "PostgreSQL ").split(" (")[0]
    if pg:
        facts.append(pg)
    rounds = f"median of {data['rounds']} rounds of {data['secs']} s" if data.get("rounds") else "median"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT}>',
           f'<title>{escape(title or "Requests per second: fraiseql, the limit and PostGraphile")}</title>',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{LEFT}" y="28" font-size="18" font-weight="600" fill="#1f2328">'
           f'{escape(title or "Requests per second per query and number of connections (higher is better)")}</text>',
           f'<text x="{LEFT}" y="48" font-size="12" fill="#57606a">'
           f'{escape("; ".join(facts))}</text>',
           f'<text x="{LEFT}" y="64" font-size="12" fill="#57606a">'
           f'{escape(f"data: {rel}; chart: bench/chart.py")}</text>']

    # Legend, one row.
    lx = LEFT
    for t in targets:
        label, colour = TARGETS[t]
        out.append(f'<rect x="{lx}" y="80" width="14" height="14" fill="{colour}"/>')
        out.append(f'<text x="{lx + 20}" y="92" font-size="13" fill="#1f2328">{escape(label)}</text>')
        lx += 20 + int(len(label) * 7.2) + 28

    # Grid and y axis.
    v = 0.0
    while v <= y_max + 1e-9:
        yy = round(y(v), 1)
        out.append(f'<line x1="{LEFT}" y1="{yy}" x2="{LEFT + plot_w}" y2="{yy}" '
                   f'stroke="{"#8c959f" if v == 0 else "#d8dee4"}" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 8}" y="{yy + 4}" font-size="12" fill="#57606a" '
                   f'text-anchor="end">{v:,.0f}</text>')
        v += step
    mid = TOP + PLOT_H / 2
    out.append(f'<text x="18" y="{mid}" font-size="13" fill="#1f2328" text-anchor="middle" '
               f'transform="rotate(-90 18 {mid})">requests/s ({escape(rounds)})</text>')

    # Bars.
    x = LEFT
    base = y(0)
    for qi, (name, runs) in enumerate(groups):
        if qi:
            x += QUERY_GAP
        q_start = x
        for ri, (conns, vals) in enumerate(runs):
            if ri:
                x += GROUP_GAP
            for ti, t in enumerate(targets):
                bx = x + ti * (BAR_W + BAR_GAP)
                if t not in vals:
                    continue
                val = vals[t]
                by = round(y(val), 1)
                label, colour = TARGETS[t]
                out.append(f'<rect x="{bx}" y="{by}" width="{BAR_W}" height="{round(base - by, 1)}" '
                           f'fill="{colour}"><title>{escape(f"{name}, {conns} connections, {label}: {val:,.0f} requests/s")}</title></rect>')
                out.append(f'<text x="{bx + BAR_W / 2}" y="{by - 4}" font-size="10" fill="#1f2328" '
                           f'text-anchor="middle">{short(val)}</text>')
            out.append(f'<text x="{x + group_w / 2}" y="{base + 17}" font-size="12" fill="#1f2328" '
                       f'text-anchor="middle">{escape(str(conns))}</text>')
            x += group_w
        out.append(f'<text x="{(q_start + x) / 2}" y="{base + 40}" font-size="14" font-weight="600" '
                   f'fill="#1f2328" text-anchor="middle" font-family="ui-monospace, SFMono-Regular, '
                   f'Menlo, Consolas, monospace">{escape(name)}</text>')
        out.append(f'<line x1="{q_start}" y1="{base + 24}" x2="{x}" y2="{base + 24}" '
                   f'stroke="#d8dee4" stroke-width="1"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{height - 14}" font-size="13" fill="#1f2328" '
               f'text-anchor="middle">client connections, per query</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def table(data, conns):
    """A markdown table of one number of connections: per query, fraiseql, the limit and
    PostGraphile in requests/s and fraiseql's ratio to each (the README's summary)."""
    def rps(run, t):
        v = (run.get(t) or {}).get("rps")
        return f"{v:,.0f}" if v else "-"

    def ratio(run, key):
        v = run.get(key)
        return f"{v:.2f}x" if v else "-"

    rows = ["| query | fraiseql | the limit (pipelined pgbench) | PostGraphile v5 | fraiseql / limit "
            "| fraiseql / PostGraphile |",
            "|---|---|---|---|---|---|"]
    for name, q in (data.get("queries") or {}).items():
        run = q.get("runs", {}).get(str(conns))
        if run is None:
            continue
        rows.append(f"| `{name}` | {rps(run, 'fraiseql')} | {rps(run, 'pipelined')} | "
                    f"{rps(run, 'postgraphile')} | {ratio(run, 'ratio_pipelined')} | "
                    f"{ratio(run, 'ratio_postgraphile')} |")
    if len(rows) == 2:
        raise SystemExit(f"no run at {conns} connections")
    return "\n".join(rows) + "\n"


def write_chart(json_path, out_path=None, targets=None, title=None):
    """Reads `json_path`, writes the chart to `out_path` (default: beside it, `.svg`); returns
    the path written."""
    with open(json_path) as f:
        data = json.load(f)
    out_path = out_path or os.path.splitext(json_path)[0] + ".svg"
    svg = render(data, json_path, targets, title)
    with open(out_path, "w") as f:
        f.write(svg)
    return out_path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=DEFAULT_JSON,
                   help="benchmark results in bench/compare.py's shape (default: bench/results/latest.json)")
    p.add_argument("--out", help="SVG to write (default: the JSON's path with .svg)")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"bars per group, in order (default {','.join(DEFAULT_TARGETS)}; "
                        f"known: {','.join(TARGETS)})")
    p.add_argument("--title", help="the chart's heading")
    p.add_argument("--table", type=int, metavar="CONNS",
                   help="print the README's summary table for this number of connections "
                        "instead of drawing")
    a = p.parse_args(argv)
    if not os.path.exists(a.json):
        sys.exit(f"{a.json}: no such file (bench/compare.sh writes bench/results/latest.json)")
    if a.table is not None:
        with open(a.json) as f:
            print(table(json.load(f), a.table), end="")
        return
    out = write_chart(a.json, a.out, [t for t in a.targets.split(",") if t], a.title)
    print(f"written {os.path.relpath(out)}")


if __name__ == "__main__":
    main()
