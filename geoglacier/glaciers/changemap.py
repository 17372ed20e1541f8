"""Change classes between two glacier masks, their colours, and a quicklook of a change map.

A change map is uint8 on the grid of the first mask:

=====  ================  =========================================
value  class             meaning
=====  ================  =========================================
0      stable non-ice    not glacier at t0 and at t1
1      stable ice        glacier at t0 and at t1
2      ice lost          glacier at t0, not glacier at t1
3      ice gained        not glacier at t0, glacier at t1
255    nodata            nodata at t0 or at t1 (or outside t1)
=====  ================  =========================================

The GeoTIFF carries a colour table with these colours, so GIS tools show it in colour
as it is, and nodata is transparent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geoglacier.io.atomic import PNG_SUFFIXES, atomic_output, check_distinct_files, check_extension
from geoglacier.io.masks import IGNORE

STABLE_NON_ICE: int = 0
STABLE_ICE: int = 1
ICE_LOST: int = 2
ICE_GAINED: int = 3
NODATA: int = IGNORE

CLASS_NAMES: dict[int, str] = {
    STABLE_NON_ICE: "stable non-ice",
    STABLE_ICE: "stable ice",
    ICE_LOST: "ice lost",
    ICE_GAINED: "ice gained",
    NODATA: "nodata",
}
COLORMAP: dict[int, tuple[int, int, int, int]] = {
    STABLE_NON_ICE: (222, 214, 196, 255),  # pale rock
    STABLE_ICE: (140, 200, 240, 255),  # light blue
    ICE_LOST: (214, 40, 40, 255),  # red
    ICE_GAINED: (30, 60, 200, 255),  # dark blue
    NODATA: (0, 0, 0, 0),  # transparent
}


def classify(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """Change classes of two aligned 0/1/255 mask blocks (see the module table)."""
    ice0, ice1 = m0 == 1, m1 == 1
    out = np.where(ice0, np.where(ice1, STABLE_ICE, ICE_LOST), np.where(ice1, ICE_GAINED, STABLE_NON_ICE))
    out = out.astype(np.uint8)
    out[(m0 != 0) & (m0 != 1) | (m1 != 0) & (m1 != 1)] = NODATA
    return out


def write_change_quicklook(
    change_map: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    title: str = "glacier change",
    max_side: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of a change map in its class colours with a legend, atomically.

    The map is read decimated with nearest resampling (GDAL uses the COG's overviews), so
    the picture costs little memory whatever the map's size.
    """
    check_extension(out, PNG_SUFFIXES, "--quicklook", "PNG picture")
    check_distinct_files({"--quicklook": out}, {"CHANGE_MAP": change_map})
    with atomic_output(out, overwrite) as tmp:
        render_change_quicklook(change_map, tmp, title=title, max_side=max_side)
    return Path(out)


def render_change_quicklook(
    change_map: str | os.PathLike[str], path: str | os.PathLike[str], *, title: str, max_side: int = 1024
) -> None:
    """Draw the PNG of :func:`write_change_quicklook` straight to ``path`` (no atomic rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    with rasterio.open(change_map) as ds:
        scale = min(1.0, max_side / max(ds.height, ds.width))
        h, w = max(1, round(ds.height * scale)), max(1, round(ds.width * scale))
        classes = ds.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    lut = np.zeros((256, 4), dtype=np.float32)
    lut[:] = (0.5, 0.5, 0.5, 1.0)
    for value, rgba in COLORMAP.items():
        lut[value] = np.array(rgba, dtype=np.float32) / 255.0
    lut[NODATA] = (0.25, 0.25, 0.25, 1.0)  # dark grey on paper, where GIS tools show transparent
    image = lut[classes]
    fig, ax = plt.subplots(figsize=(7, 7 * h / w + 0.8), dpi=110)
    ax.imshow(image, interpolation="nearest")
    handles = [
        Patch(color=tuple(lut[v]), label=CLASS_NAMES[v])
        for v in (STABLE_NON_ICE, STABLE_ICE, ICE_LOST, ICE_GAINED, NODATA)
    ]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=5, fontsize=7, frameon=False
    )
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
