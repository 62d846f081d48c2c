#!/usr/bin/env python3
"""Checks the documentation (Python standard library only; scripts/e2e.sh runs it):

  - every relative link and image in README.md, ARCHITECTURE.md and docs/*.md names a file that
    exists, and every `#anchor` a heading of that file (GitHub's rules: lowercase, punctuation
    dropped, each space a hyphen, `-1`, `-2` for repeated headings);
  - README.md stays short (at most 350 lines: the details live in docs/);
  - bench/results/latest.svg is what bench/chart.py draws from bench/results/latest.json, and the
    README's benchmark table is what `bench/chart.py --table 16` prints from it, so the committed
    chart and table show the committed figures.

Exits non-zero naming each problem.
"""

import glob
import os
import re
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 350

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text):
    """The lines outside fenced code blocks, with inline code removed."""
    fenced = False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "-_ " or cat[0] in "LN" or cat == "Mn":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def anchors(path):
    seen = {}
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in prose_lines(f.read()):
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            base = slug(m.group(1))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def check_links(files):
    problems = []
    cache = {}
    for path in files:
        rel = os.path.relpath(path, ROOT)
        with open(path, encoding="utf-8") as f:
            lines = list(prose_lines(f.read()))
        for line in lines:
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue  # https:, mailto:
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                if not os.path.exists(dest):
                    problems.append(f"{rel}: link to {target}: {os.path.relpath(dest, ROOT)} does not exist")
                    continue
                if anchor:
                    if not dest.endswith(".md"):
                        problems.append(f"{rel}: link to {target}: an anchor into a file that is not markdown")
                        continue
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if anchor not in cache[dest]:
                        problems.append(f"{rel}: link to {target}: no heading #{anchor} in "
                                        f"{os.path.relpath(dest, ROOT)}")
    return problems


def check_readme_length():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        n = sum(1 for _ in f)
    if n > README_MAX_LINES:
        return [f"README.md: {n} lines, more than {README_MAX_LINES}: move details into docs/"]
    return []


def check_chart():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import chart  # noqa: E402  bench/chart.py

    data_path = os.path.join(ROOT, "bench/results/latest.json")
    svg_path = os.path.join(ROOT, "bench/results/latest.svg")
    import json

    with open(data_path) as f:
        data = json.load(f)
    want = chart.render(data, data_path)
    problems = []
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        if chart.table(data, 16) not in f.read():
            problems.append("README.md: the benchmark table is not what `python3 bench/chart.py "
                            "--table 16` prints from bench/results/latest.json: paste its output")
    try:
        with open(svg_path) as f:
            have = f.read()
    except FileNotFoundError:
        return problems + ["bench/results/latest.svg is missing: run python3 bench/chart.py"]
    if have != want:
        problems.append("bench/results/latest.svg is not what bench/chart.py draws from "
                        "bench/results/latest.json: run python3 bench/chart.py and commit both")
    return problems


def main():
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "ARCHITECTURE.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    problems = check_links(files) + check_readme_length() + check_chart()
    for p in problems:
        print(f"check-docs: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-docs: links in {len(files)} files resolve; README.md is short; "
          "the benchmark chart and table match their JSON")


if __name__ == "__main__":
    main()
