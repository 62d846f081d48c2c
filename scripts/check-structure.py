#!/usr/bin/env python3
"""The shape of the Rust code, checked in CI (`.ci/run`); exits 1 with one line per problem.

1. No import circles. For every crate under crates/ (and examples/*), each source file is a
   module (`a/b.rs` and `a/b/mod.rs` are `a::b`). A file's references to `crate::x::y` and
   `super::y` are resolved to the longest module path that exists. Two graphs are checked for
   cycles: the crate's top-level modules (`execution` -> `events` -> `resolvers` -> `execution`
   is one), and the files of one folder (`events/subscribe.rs` <-> `events/dead_letter.rs`). A
   reference from a module to its own descendants or ancestors is not an edge; test modules
   (`tests.rs`, `tests/`, `#[cfg(test)]` blocks) are ignored.
2. No non-test file over 1,200 lines, no function over 150 lines. Test code is not counted:
   files named `tests.rs` or under a `tests/` folder, and `#[cfg(test)] mod … { … }` blocks. A
   function runs from its `fn` line to the closing brace at the indentation of that line.
   `ALLOWED` names the exceptions, each with why it reads better whole.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

REF = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super)::\{([^}]*)\}")


def module_of(src: pathlib.Path, f: pathlib.Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    # Drop `#[cfg(test)] mod x { ... }` blocks (brace matching on the text).
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def refs(text: str):
    for m in GROUP.finditer(text):
        for item in m.group(2).split(","):
            item = item.strip()
            if item:
                yield m.group(1), ["" if p == "self" else p for p in item.split("::")]
    for m in REF.finditer(text):
        yield m.group(1), m.group(2).strip(":").split("::")


def cycles(edges: dict) -> list:
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def import_circles(src: pathlib.Path) -> list:
    files = [
        f
        for f in src.rglob("*.rs")
        if f.name != "tests.rs" and "tests" not in f.relative_to(src).parts[:-1]
    ]
    mods = {module_of(src, f): f for f in files}
    top, siblings = {}, {}
    for mod, f in mods.items():
        text = strip_tests(f.read_text())
        for base, path in refs(text):
            path = [p for p in path if p]
            if base == "crate":
                target = list(path)
            else:
                # `super` is the parent of this module (`a/b.rs` -> `a`); `mod.rs` counts as `a`.
                target = list(mod[:-1]) + path
            while target and tuple(target) not in mods:
                target.pop()
            t = tuple(target)
            if not t or t == mod or t[: len(mod)] == mod or mod[: len(t)] == t:
                continue
            if t[0] != mod[0] if mod else False:
                top.setdefault(mod[0], set()).add(t[0])
            # Siblings: the first differing components under the common parent.
            k = 0
            while k < min(len(mod), len(t)) and mod[k] == t[k]:
                k += 1
            if k > 0 and k < len(mod) and k < len(t):
                parent = mod[:k]
                siblings.setdefault(parent, {}).setdefault(mod[k], set()).add(t[k])
    problems = []
    for c in cycles(top):
        problems.append(f"{src}: top-level modules import each other: {' <-> '.join(c)}")
    for parent, edges in siblings.items():
        for c in cycles(edges):
            where = "::".join(parent)
            problems.append(f"{src}: files of `{where}` import each other: {' <-> '.join(c)}")
    return problems


MAX_FILE, MAX_FN = 1200, 150
FN = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")
TEST_MOD = re.compile(r"^(\s*)#\[cfg\(test\)\]")
# "path::function": why it stays whole.
ALLOWED: dict = {}


def sizes(path: pathlib.Path) -> list:
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
    srcs = sorted(ROOT.glob("crates/*/src")) + sorted(ROOT.glob("examples/*/src"))
    files = sorted(p for d in ("crates", "examples") for p in (ROOT / d).rglob("*.rs"))
    problems = [p for s in srcs for p in import_circles(s)] + [p for f in files for p in sizes(f)]
    for p in problems:
        print(p)
    if not problems:
        print(
            f"check-structure: no import circle in {len(srcs)} crates; of {len(files)} files, "
            f"none over {MAX_FILE} lines and no function over {MAX_FN}"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
