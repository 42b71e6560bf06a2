"""The import graph: ``megagrow`` never imports ``data_prep`` (the writer depends on the reader, not the other way),
and no module of ``megagrow`` imports itself back through a cycle of imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _package_files(pkg: str) -> dict[str, Path]:
    return {_module(p): p for p in (ROOT / pkg).rglob("*.py")}


def test_megagrow_never_imports_data_prep() -> None:
    offenders = {m: sorted(i for i in _imports(p, top_level_only=False) if i.split(".")[0] == "data_prep")
                 for m, p in _package_files("megagrow").items()}
    assert not {m: v for m, v in offenders.items() if v}


def test_no_import_cycle_among_megagrow_modules() -> None:
    """Imports inside functions count too: a cycle deferred to call time is still two modules that need each
    other."""
    files = _package_files("megagrow")
    graph = {m: {i for i in _imports(p, top_level_only=False) if i in files and i != m} for m, p in files.items()}
    for m in files:
        # importing a.b.c runs the packages a and a.b first (their __init__ may import back: a real cycle), except
        # the module's own packages, which are already importing when it runs
        graph[m] |= {p for i in graph[m] for p in _ancestors(i) if p in files}
        graph[m] = {i for i in graph[m] if i != m and not m.startswith(i + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if seen.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(n):], n]))
            if n not in seen:
                visit(n)
        stack.pop()
        seen[m] = 2

    for m in sorted(files):
        if m not in seen:
            visit(m)


def _string_constants(tree: ast.AST) -> list[ast.Constant]:
    """String constants of a module except docstrings (prose may name a method; code may not branch on one)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def test_no_growth_method_is_named_in_code_outside_the_growth_package() -> None:
    """A method is a plug-in: nothing outside ``megagrow/growth/`` (the plans, their options and the registry)
    compares against or lists a method's name."""
    from megagrow.growth.plans import PLANS

    methods = set(PLANS) - {"scratch"}
    found = []
    for mod, path in _package_files("megagrow").items():
        if mod.startswith("megagrow.growth"):
            continue
        for c in _string_constants(ast.parse(path.read_text())):
            if c.value in methods:
                found.append(f"{path.relative_to(ROOT)}:{c.lineno}: {c.value!r}")
    assert not found, found
