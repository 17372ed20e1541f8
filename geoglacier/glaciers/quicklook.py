"""A picture of where the map and the inventory disagree: outlines coloured by area ratio."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import shapely
from rasterio.enums import Resampling

from geoglacier.io.atomic import (
    PNG_SUFFIXES,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
)
from geoglacier.io.masks import IGNORE, inspect_mask
from geoglacier.io.scene import SceneInfo


class GlacierAreas(Protocol):
    """What the picture needs of :class:`geoglacier.glaciers.areas.GlacierAreas`."""

    table: Any  # pandas.DataFrame
    geometries: np.ndarray


def area_ratio(result: GlacierAreas) -> np.ndarray:
    """``(mapped inside + mapped in the ring) / valid outline area`` per glacier (NaN: no valid pixel).

    1 means the map and the inventory agree; below 1 the map finds less ice (retreat,
    debris, clouds mapped as rock), above 1 it spills past the outline (growth, snow).
    """
    t = result.table
    valid = t["valid_area_km2"].to_numpy()
    mapped = (t["mapped_area_km2"] + t["ring_area_km2"]).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid > 0, mapped / valid, np.nan)


def write_glacier_quicklook(
    mask: str | os.PathLike[str],
    result: GlacierAreas,
    out: str | os.PathLike[str],
    *,
    max_side: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of ``mask`` with each inventory outline coloured by :func:`area_ratio`.

    The mask is read decimated (at most ``max_side`` pixels a side), so the picture costs
    little memory whatever the scene's size. Low-coverage glaciers are drawn dashed.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    check_extension(out, PNG_SUFFIXES, "--quicklook", "PNG picture")
    check_distinct_files({"--quicklook": out}, {"MASK": mask})
    target = check_output_path(out, overwrite)
    info = inspect_mask(mask)
    image = _mask_picture(info, max_side)
    outlines = _outlines_on_picture(result, info, image.shape[:2])
    fig = _draw(image, outlines, len(result.table))
    try:
        with atomic_output(target, overwrite) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return target


def _mask_picture(info: SceneInfo, max_side: int) -> np.ndarray:
    """The mask, decimated to at most ``max_side`` pixels a side, as an RGB float image.

    Neutral greys, so the colour of the outlines is all that carries meaning.
    """
    scale = min(1.0, max_side / max(info.height, info.width))
    h, w = max(1, round(info.height * scale)), max(1, round(info.width * scale))
    with rasterio.open(info.path) as ds:
        values = ds.read(1, out_shape=(h, w), resampling=Resampling.nearest)
    image = np.full((h, w, 3), 0.32, dtype=np.float32)  # not glacier: dark grey
    image[values == 1] = 0.72  # mapped glacier: light grey
    image[values == IGNORE] = 0.0
    if info.nodata is not None and info.nodata != IGNORE:
        image[values == info.nodata] = 0.0
    return image


def _outlines_on_picture(
    result: GlacierAreas, info: SceneInfo, shape: tuple[int, int]
) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Each polygon's exterior in picture pixels, its glacier's area ratio and low-coverage flag."""
    h, w = shape
    inverse = ~info.transform
    sx, sy = w / info.width, h / info.height

    def to_image(xy: np.ndarray) -> np.ndarray:
        cols, rows = inverse * (xy[:, 0], xy[:, 1])
        return np.column_stack([np.asarray(cols) * sx, np.asarray(rows) * sy])

    polys, ratios, dashed = [], [], []
    low = result.table["low_coverage"].to_numpy()
    for geom, r, flag in zip(result.geometries, area_ratio(result), low, strict=True):
        for part in getattr(geom, "geoms", [geom]):
            if part.geom_type != "Polygon" or part.is_empty:
                continue
            polys.append(np.asarray(shapely.get_coordinates(shapely.transform(part.exterior, to_image))))
            ratios.append(float(r))
            dashed.append(bool(flag))
    return polys, ratios, dashed


def _draw(
    image: np.ndarray, outlines: tuple[list[np.ndarray], list[float], list[bool]], glaciers: int
) -> Any:
    """The figure: the grey mask, the outlines coloured by area ratio (1 is yellow), a colour bar."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import TwoSlopeNorm

    h, w = image.shape[:2]
    polys, ratios, dashed = outlines
    fig, ax = plt.subplots(figsize=(7, 7 * h / w + 0.8), dpi=110)
    ax.imshow(image, interpolation="nearest")
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=2.0)
    cmap = plt.get_cmap("RdYlBu")  # 1 (agreement) is yellow: visible on both greys
    if polys:
        values = np.clip(np.nan_to_num(np.asarray(ratios), nan=0.0), 0.0, 2.0)
        styles = ["--" if d else "-" for d in dashed]
        ax.add_collection(
            PolyCollection(
                polys, facecolors="none", edgecolors=cmap(norm(values)), linewidths=1.5, linestyles=styles
            )
        )
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, label="mapped / outline area (inside + ring)")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(
        f"{glaciers} inventory glaciers over the mask (light grey: mapped glacier; black: nodata; "
        "dashed: low coverage)",
        fontsize=8,
    )
    ax.set_axis_off()
    fig.tight_layout()
    return fig
