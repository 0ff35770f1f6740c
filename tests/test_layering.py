"""Layering (docs/architecture.md): ``ivr/`` is the ground floor, and modules do not import each other in a circle.

Every ``import`` is read from the source with :mod:`ast`, including the ones inside
functions (a lazy import is still a dependency), so a test cannot be fooled by moving
an import into a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The conventions name these three; billing and reports are features built on ivr too.
# (ivr.dialog uses agi.codec, the sans-IO protocol objects, which import nothing of ours.)
ABOVE_IVR = ("carecall", "scheduler", "web", "billing", "reports")


# Packages held free of import cycles (issue 14 broke reports.alerts <-> reports.kpi).
# Not yet web/ (web.admin <-> web.people) and billing/ (billing.accounts <-> billing.funders).
CYCLE_FREE = ("ivr", "agi", "carecall", "scheduler", "reports")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # "from pkg import module"
    return found


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_ivr_imports_nothing_above_it():
    offenders = []
    for path in sorted((ROOT / "ivr").rglob("*.py")):
        for name in sorted(_imports(path)):
            if name.split(".")[0] in ABOVE_IVR:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_no_two_of_our_modules_import_each_other_in_a_cycle():
    modules = {_module_name(p): p for pkg in CYCLE_FREE for p in (ROOT / pkg).rglob("*.py")
               if "migrations" not in p.parts}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    cycles: set[tuple[str, ...]] = set()

    def visit(node: str, stack: list[str], on_stack: set[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in on_stack:
                cycle = stack[stack.index(nxt):]
                i = cycle.index(min(cycle))
                cycles.add(tuple(cycle[i:] + cycle[:i]))
            elif nxt not in done:
                stack.append(nxt)
                on_stack.add(nxt)
                visit(nxt, stack, on_stack, done)
                on_stack.discard(nxt)
                stack.pop()
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], {name}, done)
    assert sorted(cycles) == []
