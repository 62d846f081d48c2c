#!/usr/bin/env python3
"""Fails when modules of a crate import each other in a circle.

For every crate under crates/ (and examples/*), each source file is a module (`a/b.rs` and
`a/b/mod.rs` are `a::b`). A file's references to `crate::x::y` and `super::y` are resolved to
the longest module path that exists. Two graphs are checked for cycles:
  - the crate's top-level modules (`execution` -> `events` -> `resolvers` -> `execution` is one);
  - the files of one folder (`events/subscribe.rs` <-> `events/dead_letter.rs` is one).
A reference from a module to its own descendants or ancestors is not an edge; test modules
(`tests.rs`, `tests/`, `#[cfg(test)]` blocks) are ignored.
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


def check(src: pathlib.Path) -> list:
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


def main() -> int:
    srcs = sorted(ROOT.glob("crates/*/src")) + sorted(ROOT.glob("examples/*/src"))
    problems = [p for s in srcs for p in check(s)]
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"check-imports: no import circle in {len(srcs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
