#!/usr/bin/env python3
"""Fails when a non-test Rust file is over 1,200 lines or a function over 150 lines.

Test code is not counted: files named `tests.rs` or under a `tests/` folder, and
`#[cfg(test)] mod … { … }` blocks. A function runs from its `fn` line to the closing brace at
the indentation of that line. `ALLOWED` names the exceptions, each with why it reads better whole.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_FILE, MAX_FN = 1200, 150
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")
TEST_MOD = re.compile(r"^(\s*)#\[cfg\(test\)\]")
# "path::function": why it stays whole.
ALLOWED: dict = {}


def check(path: pathlib.Path) -> list:
    rel = path.relative_to(ROOT).as_posix()
    if path.name == "tests.rs" or "/tests/" in f"/{rel}" or "/target/" in f"/{rel}":
        return []
    lines = path.read_text().split("\n")
    problems, code_lines, i = [], 0, 0
    skip_until_indent = None
    while i < len(lines):
        line = lines[i]
        if skip_until_indent is not None:
            if line.startswith(skip_until_indent + "}"):
                skip_until_indent = None
            i += 1
            continue
        m = TEST_MOD.match(line)
        if m and i + 1 < len(lines) and re.match(r"\s*(pub\s+)?mod\s+\w+\s*\{", lines[i + 1]):
            skip_until_indent = m.group(1)
            i += 2
            continue
        code_lines += 1
        m = FN.match(line)
        if m and not line.rstrip().endswith(";"):
            indent, name = m.group(1), m.group(2)
            j = i + 1
            while j < len(lines) and not lines[j].startswith(indent + "}"):
                j += 1
            length = j - i + 1
            if length > MAX_FN and f"{rel}::{name}" not in ALLOWED:
                problems.append(f"{rel}:{i + 1}: fn {name} is {length} lines (max {MAX_FN})")
        i += 1
    if code_lines > MAX_FILE:
        problems.append(f"{rel}: {code_lines} lines of non-test code (max {MAX_FILE})")
    return problems


def main() -> int:
    files = sorted(p for d in ("crates", "examples") for p in (ROOT / d).rglob("*.rs"))
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"check-size: {len(files)} files, none over {MAX_FILE} lines, no function over {MAX_FN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
