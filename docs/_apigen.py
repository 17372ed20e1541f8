"""Write the API reference page from ``geoglacier._EXPORTS`` at build time.

The page is generated, not written by hand, so a function another change adds to
``geoglacier._EXPORTS`` appears in the docs without editing them. ``tests/test_docs.py``
checks that every name of ``geoglacier.__all__`` is on it.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

#: Section titles for the subpackages the exports come from, in reading order.
SECTIONS = {
    "geoglacier.io": "Reading scenes, masks and training layouts",
    "geoglacier.products": "Satellite products",
    "geoglacier.model": "The network",
    "geoglacier.checkpoint": "Checkpoints",
    "geoglacier.training": "Training",
    "geoglacier.inference": "Segmenting scenes",
    "geoglacier.measure": "Areas and metrics",
    "geoglacier.glaciers": "Glaciers against an inventory",
    "geoglacier.synthetic": "Synthetic data",
}

#: Library functions behind CLI commands that ``geoglacier`` does not export at its top level.
MORE = [
    "geoglacier.glaciers.areas.glacier_areas",
    "geoglacier.glaciers.change.glacier_change",
    "geoglacier.inference.ensemble.segment_ensemble",
    "geoglacier.inference.export.export_model",
    "geoglacier.demo.run_demo",
]

INTRO = """\
# Python API

Everything a command does, a Python user can do by calling the library: each command
of the {doc}`cli` is a thin front end to one of these functions. The names below are
exported by `geoglacier` itself (`geoglacier.__all__`) and import lazily, so
`import geoglacier` stays fast.

```python
import geoglacier

scene = geoglacier.open_scene("scene.tif", chunks=512)   # lazy (band, y, x) float32 DataArray
scene.rio.crs, scene.rio.transform(), scene.attrs["band_names"]
window = scene[:, 1000:1256, 2000:2256].values            # reads only that window
```

This page is generated from `geoglacier._EXPORTS` when the docs are built.
"""


def _section(module: str) -> str:
    for prefix, title in SECTIONS.items():
        if module == prefix or module.startswith(prefix + "."):
            return title
    return "Other"


def _resolve(qualname: str) -> object:
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _directive(qualname: str) -> str:
    obj = _resolve(qualname)
    if inspect.isclass(obj):
        return f"```{{eval-rst}}\n.. autoclass:: {qualname}\n   :members:\n```\n"
    return f"```{{eval-rst}}\n.. autofunction:: {qualname}\n```\n"


def api_markdown(exports: dict[str, str]) -> str:
    """The API page for ``exports`` (public name -> module), grouped by subpackage."""
    groups: dict[str, list[str]] = {}
    for name, module in exports.items():
        groups.setdefault(_section(module), []).append(name)
    order = [*SECTIONS.values(), "Other"]
    parts = [INTRO]
    documented = [f"{module}.{name}" for name, module in exports.items()] + MORE
    for title in sorted(groups, key=order.index):
        parts.append(f"## {title}\n")
        for name in groups[title]:
            parts.append(f"`geoglacier.{name}`, defined in `{exports[name]}`:\n")
            parts.append(_directive(f"{exports[name]}.{name}"))
    parts.append("## Version\n")
    parts.append(
        "```{eval-rst}\n.. py:data:: geoglacier.__version__\n\n"
        "   The installed version, as ``geoglacier --version`` prints it.\n```\n"
    )
    parts.append("## Behind the other commands\n")
    parts.append("Functions that commands call and `geoglacier` does not export at its top level.\n")
    parts.extend(_directive(q) for q in MORE)
    types = [q for q in _result_types(documented) if q not in documented]
    if types:
        parts.append("## Results and settings\n")
        parts.append("The objects the functions above take and return.\n")
        parts.extend(_directive(q) for q in types)
    parts.append("## Errors\n")
    parts.append(
        "What the functions raise. Each subclasses a built-in exception (a missing file is a\n"
        "`FileNotFoundError`, a bad value a `ValueError`), and the command line turns it into\n"
        "one line on stderr ({doc}`bad-input`).\n"
    )
    parts.append(
        "```{eval-rst}\n.. automodule:: geoglacier.errors\n   :members:\n   :show-inheritance:\n```\n"
    )
    return "\n".join(parts)


def _result_types(qualnames: list[str]) -> list[str]:
    """geoglacier classes named in the signatures of ``qualnames``, and one level further in theirs."""
    found: list[str] = []
    queue = list(qualnames)
    while queue:
        obj = _resolve(queue.pop(0))
        for cls in _classes_in_signature(obj):
            qual = f"{cls.__module__}.{cls.__qualname__}"
            if qual not in found and not qual.startswith("geoglacier.errors"):
                found.append(qual)
                if len(found) < 40:
                    queue.append(qual)
    return found


def _classes_in_signature(obj: object) -> list[type]:
    import typing

    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - a hint that does not evaluate names nothing we can document
        hints = {}
    if inspect.isclass(obj) and dataclasses_fields(obj):
        try:
            hints.update(typing.get_type_hints(obj))
        except Exception:  # noqa: BLE001
            pass
    classes = []
    for hint in hints.values():
        for arg in _flatten(hint):
            if inspect.isclass(arg) and arg.__module__.startswith("geoglacier."):
                classes.append(arg)
    return classes


def dataclasses_fields(obj: object) -> bool:
    import dataclasses

    return dataclasses.is_dataclass(obj)


def _flatten(hint: object) -> list[object]:
    import typing

    args = typing.get_args(hint)
    return [hint, *[a for arg in args for a in _flatten(arg)]]


def write_api_page(path: Path) -> None:
    """Write the page, leaving the file untouched when it is already up to date."""
    import geoglacier

    text = api_markdown(geoglacier._EXPORTS)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
