"""Sphinx configuration of the geoglacier docs (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _apigen import write_api_page  # noqa: E402

from geoglacier._version import __version__  # noqa: E402

project = "geoglacier"
author = "the geoglacier authors"
copyright = "2026, the geoglacier authors"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Google-style docstrings; types are shown from the annotations, in the description.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True

# -n (nitpicky) makes every unresolved reference a warning, and -W an error. Types from
# other libraries have no target without intersphinx (which needs the network): they are
# named here, our own references must resolve.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(numpy|np|xarray|xr|torch|nn|pathlib|os|rasterio|affine|Affine|pandas|pd|shapely|dask|distributed"
        r"|collections|typing|typing_extensions|concurrent|datetime|click|tqdm|pyproj|fiona|onnx|onnxruntime|openvino"
        r"|segmentation_models_pytorch|smp|matplotlib|PathLike|Path|DataArray|Dataset|Tensor|Module|Client|CRS|Window"
        r"|Callable|Iterator|Iterable|Sequence|Mapping|Any|Literal|ndarray|dtype|DataFrame|BaseGeometry|Polygon)(\..*)?",
    ),
    (r"py:class", r"(int|float|str|bool|bytes|None|dict|list|tuple|set|object|type|optional|callable)"),
    # the built-ins our errors subclass
    (
        r"py:(class|exc)",
        r"(Exception|ValueError|TypeError|KeyError|OSError|FileNotFoundError|FileExistsError"
        r"|IsADirectoryError|NotADirectoryError|PermissionError|RuntimeError|KeyboardInterrupt|UserWarning)",
    ),
]


def _exists(target: str, module: str | None, cls: str | None) -> bool:
    """Whether a Python reference names a real object (in geoglacier, ``module`` or ``cls``)."""
    import importlib

    candidates = [target] if target.startswith("geoglacier.") else []
    if module:
        candidates.append(f"{module}.{target}")
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
    for name in candidates:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return True
    return False


def _internal_reference(app, env, node, contnode):  # noqa: ANN001 - Sphinx's event signature
    """Show a docstring's reference to an existing internal helper as plain code.

    The API page documents the public functions and what they return; docstrings also name
    the internal helpers they build on (``read_mask_block``). Such a name has no page, so it
    is shown without a link, but only when the object really exists: a reference to a
    function that was renamed or removed still fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    if _exists(node["reftarget"], node.get("py:module"), node.get("py:class")):
        return contnode
    return None


def _plain_bars(app, ctx, lines):  # noqa: ANN001 - sphinx-click's event signature
    """Keep ``|change|`` in a --help text as written (reStructuredText reads it as a substitution)."""
    import re

    lines[:] = [re.sub(r"\|(\w+)\|", r"\\|\1\\|", line) for line in lines]


def setup(app):  # noqa: ANN001, ANN201
    app.connect("missing-reference", _internal_reference, priority=900)
    for part in ("description", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{part}", _plain_bars)


# Option names stay as typed: no "--" turned into an en dash.
smartquotes = False

html_theme = "furo"
html_title = f"geoglacier {release}"
html_static_path = ["_static"]

write_api_page(HERE / "reference" / "api.md")
