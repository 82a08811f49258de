#!/usr/bin/env python3
"""Prints the module import graph of each crate of the workspace and exits
non-zero when a crate's modules import each other in a circle.

A module is a source file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`);
an import is a path through `crate::` or `super::` (or a child module named
from its parent) that names another module or an item of it. Test modules
(`tests.rs`, `examples/`, `properties.rs`) are left out: they may use
anything of the crate they test.

    python3 scripts/import-graph.py            # every crate
    python3 scripts/import-graph.py policy     # one crate, by its folder
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEST_MODULES = {"tests", "examples", "properties"}


def crate_folders() -> list[pathlib.Path]:
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", (ROOT / "Cargo.toml").read_text()).group(1)
    return [ROOT / m for m in re.findall(r'"([^"]+)"', members) if (ROOT / m / "src").is_dir()]


def modules(src: pathlib.Path) -> dict[tuple[str, ...], pathlib.Path]:
    """Module path -> file, for every library module of the crate."""
    out = {}
    for f in src.rglob("*.rs"):
        parts = list(f.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        if parts[:1] == ["bin"] or TEST_MODULES & set(parts):
            continue
        if f.name == "main.rs" and (src / "lib.rs").exists():
            continue  # the binary of a crate with a library: a client of it
        out[tuple(parts)] = f
    return out


def code(text: str) -> str:
    """The text without comments, string literals and `#[cfg(test)]` modules."""
    text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)  # trailing test modules
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def resolve(current: tuple[str, ...], path: list[str], known) -> tuple[str, ...] | None:
    """The longest module named by `path` (segments after `crate`/`super`)."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in known:
            return tuple(path[:n])
    return () if () in known else None


def inline_modules(text: str) -> list[tuple[int, int]]:
    """Where each inline `mod name { ... }` of the file begins and ends."""
    spans = []
    for m in re.finditer(r"\bmod\s+\w+\s*\{", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        spans.append((m.start(), i))
    return spans


def imports(current, text, known) -> set[tuple[str, ...]]:
    found = set()
    spans = inline_modules(text)
    for m in re.finditer(r"\b(crate|super(?:::super)*|self)::((?:\w+::)*)(\{[^;]*?\}|\w+|\*)", text):
        head, middle, tail = m.group(1), m.group(2), m.group(3)
        # `super` inside an inline module first climbs out of it, within the file.
        inside = sum(start < m.start() < end for start, end in spans)
        climb = max(head.count("super") - inside, 0)
        if head == "crate":
            base = ()
        else:
            base = current[: len(current) - climb] if climb <= len(current) else ()
        segments = [s for s in middle.split("::") if s]
        names = re.findall(r"\b\w+\b", tail) if tail.startswith("{") else [tail]
        for name in names or [""]:
            path = list(base) + segments + ([name] if name not in ("self", "*", "") else [])
            target = resolve(current, path, known)
            if target is not None and target != current:
                found.add(target)
    # A parent naming its child module directly (`use child::Item;`, `child::f()`).
    for child in (k for k in known if k[:-1] == current and k):
        if re.search(rf"(?<![:\w]){child[-1]}::", text):
            found.add(child)
    return found


def circles(graph: dict) -> list[list]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def name(module) -> str:
    return "::".join(module) or "(crate root)"


def crate_graph(folder: pathlib.Path) -> tuple[dict, list]:
    """The module import graph of the crate in `folder`, and its circles."""
    known = modules(folder / "src")
    graph = {module: imports(module, code(f.read_text()), known) for module, f in known.items()}
    return graph, circles(graph)


def main() -> int:
    wanted = set(sys.argv[1:])
    failed = False
    for folder in crate_folders():
        if wanted and folder.name not in wanted:
            continue
        graph, found = crate_graph(folder)
        print(f"{folder.name}: {len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(found)} circles")
        for module in sorted(graph):
            targets = ", ".join(name(t) for t in sorted(graph[module]))
            print(f"  {name(module)} -> {targets or '-'}")
        for circle in found:
            failed = True
            print(f"  CIRCLE: {' <-> '.join(name(m) for m in circle)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
