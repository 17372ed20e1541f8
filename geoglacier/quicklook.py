"""A quicklook PNG: the scene in true colour with the glacier mask over it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from geoglacier.io.atomic import atomic_output
from geoglacier.io.masks import IGNORE


def _decimated_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def write_quicklook(
    scene: str | os.PathLike[str],
    mask: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    reference: str | os.PathLike[str] | None = None,
    max_side: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of ``scene`` (bands 1-3 as RGB) with ``mask`` glacier pixels tinted.

    Large scenes are read decimated (GDAL picks overviews when there are any), so the
    quicklook costs little memory whatever the scene's size. With ``reference``, its
    glacier outline is drawn as a contour for comparison.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with rasterio.open(scene) as ds:
        h, w = _decimated_shape(ds.height, ds.width, max_side)
        rgb = ds.read([1, 2, 3], out_shape=(3, h, w), resampling=Resampling.average, out_dtype="float32")
        nodata = ds.nodata
    invalid = ~np.isfinite(rgb).all(axis=0)
    if nodata is not None:
        invalid |= (rgb == nodata).any(axis=0)
    lo, hi = np.nanpercentile(np.where(invalid, np.nan, rgb), [2, 98]) if (~invalid).any() else (0.0, 1.0)
    image = np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
    image[invalid] = 0.5
    with rasterio.open(mask) as ds:
        pred = ds.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    overlay = np.zeros((h, w, 4), dtype=np.float32)
    overlay[pred == 1] = (0.0, 0.9, 1.0, 0.45)
    overlay[pred == IGNORE] = (0.3, 0.3, 0.3, 0.6)
    fig, ax = plt.subplots(figsize=(7, 7 * h / w + 0.5), dpi=110)
    ax.imshow(image, interpolation="nearest")
    ax.imshow(overlay, interpolation="nearest")
    title = "glacier mask (cyan) over the scene"
    if reference is not None:
        with rasterio.open(reference) as ds:
            ref = ds.read(1, out_shape=(h, w), resampling=Resampling.nearest)
        ax.contour((ref == 1).astype(float), levels=[0.5], colors="orange", linewidths=0.8)
        title += "; reference outline (orange)"
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    with atomic_output(out, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
