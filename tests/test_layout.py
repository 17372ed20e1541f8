"""The package layout keeps every import pointing down the pipeline, with no cycles.

Stages, lowest first: errors; io and the shared model/device; measure, products and the
other shared pieces; training and glaciers; inference; the demo and the CLI on top. A module
may import its own stage or a lower one, never a higher one, and two stage subpackages of
the same level do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "geoglacier"

LEVELS = {
    "geoglacier._version": 0,
    "geoglacier.errors": 0,
    "geoglacier.io": 1,
    "geoglacier.device": 1,
    "geoglacier.model": 1,
    "geoglacier.checkpoint": 2,
    "geoglacier.measure": 2,
    "geoglacier.products": 2,
    "geoglacier.plots": 2,
    "geoglacier.quicklook": 2,
    "geoglacier.synthetic": 2,
    "geoglacier.training": 3,
    "geoglacier.glaciers": 3,
    "geoglacier.inference": 4,
    "geoglacier.demo": 5,
    "geoglacier.cli": 6,
    "geoglacier.__main__": 6,
    "geoglacier": 6,
}
STAGES = {"geoglacier.io", "geoglacier.measure", "geoglacier.products", "geoglacier.training"}
STAGES |= {"geoglacier.glaciers", "geoglacier.inference"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    for path in (ROOT / "cli").glob("*.py"):
        found["geoglacier.cli." + path.stem] = path
    return found


def _group(name: str) -> str:
    """The longest key of LEVELS that ``name`` falls under."""
    best = "geoglacier"
    for key in LEVELS:
        if (name == key or name.startswith(key + ".")) and len(key) > len(best):
            best = key
    return best


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("geoglacier")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geoglacier"):
            names.add(node.module)
    return names


def test_every_module_has_a_level() -> None:
    for name in _modules():
        assert _group(name) != "geoglacier" or name == "geoglacier", f"{name}: give it a level"


def test_no_import_points_up_or_across_stages() -> None:
    wrong = []
    for name, path in _modules().items():
        here = _group(name)
        for target in _imports(path):
            there = _group(target)
            if LEVELS[there] > LEVELS[here]:
                wrong.append(f"{name} -> {target} (up)")
            elif there != here and there in STAGES and here in STAGES and LEVELS[there] == LEVELS[here]:
                wrong.append(f"{name} -> {target} (across)")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {
        name: {t for t in _imports(path) if t in modules and t != name} for name, path in modules.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
