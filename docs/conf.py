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
    (r"py:.*", r"(numpy|np|xarray|xr|torch|nn|pathlib|os|rasterio|affine|Affine|pandas|pd|shapely|dask|distributed"
     r"|collections|typing|typing_extensions|concurrent|datetime|click|tqdm|pyproj|fiona|onnx|onnxruntime|openvino"
     r"|segmentation_models_pytorch|smp|matplotlib|PathLike|Path|DataArray|Dataset|Tensor|Module|Client|CRS|Window"
     r"|Callable|Iterator|Iterable|Sequence|Mapping|Any|Literal|ndarray|dtype|DataFrame|BaseGeometry|Polygon)(\..*)?"),
    (r"py:class", r"(int|float|str|bool|bytes|None|dict|list|tuple|set|object|type|optional|callable)"),
]

html_theme = "furo"
html_title = f"geoglacier {release}"
html_static_path = ["_static"]

write_api_page(HERE / "reference" / "api.md")
