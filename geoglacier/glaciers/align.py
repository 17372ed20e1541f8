"""Two masks of one place on one grid: the second brought onto the first, window by window.

The mask of the later date (t1) may come from another sensor, on another grid, pixel
size or CRS. It is resampled onto the grid of the first mask (t0) one window at a
time: the window's footprint is projected into t1's CRS, only the t1 pixels under it
are read (plus a margin of :data:`MARGIN` pixels), their values are read as 0/1/255
(:func:`geoglacier.io.masks.normalize_mask`) and then warped with GDAL
(:func:`rasterio.warp.reproject`). Memory therefore depends on the window, not on the
scenes.

Resampling is **nearest** by default: each t0 pixel takes the class of the t1 pixel
under its centre, so class values are never interpolated (there is no "0.5 glacier").
``mode`` (majority of the t1 pixels under each t0 pixel, nodata left out) suits a t1
much finer than t0. The warp uses GDAL's approximate transformer (error under 1/8
pixel, as ``gdalwarp``): a t0 pixel centre within 1/8 pixel of a t1 pixel edge may
take either neighbour. Pixels outside t1 are nodata (255). When both masks share a
grid the windows are read directly, without warping.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
from rasterio import windows as rwindows
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as warp_points
from rasterio.windows import Window

from geoglacier.errors import ConfigError, CRSMissingError, NoOverlapError
from geoglacier.io.masks import IGNORE, inspect_mask, read_mask_block
from geoglacier.io.scene import GDAL_CACHE_BYTES, SceneInfo
from geoglacier.measure.areas import crs_label, pixel_area_at

ResamplingName = Literal["nearest", "mode"]
RESAMPLINGS: dict[str, Resampling] = {"nearest": Resampling.nearest, "mode": Resampling.mode}
MARGIN: int = 2
"""Extra t1 pixels read around each window's footprint, so edge pixels find their source."""
_EDGE_POINTS: int = 21  # points per window edge projected into t1's CRS


def _bounds(info: SceneInfo) -> tuple[float, float, float, float]:
    return array_bounds(info.height, info.width, info.transform)  # (west, south, east, north)


def same_grid(a: SceneInfo, b: SceneInfo) -> bool:
    """True when ``a`` and ``b`` have the same shape, transform (to 1e-6 pixel) and CRS."""
    tol = 1e-6 * max(1.0, abs(a.transform.a))
    return a.shape == b.shape and a.crs == b.crs and a.transform.almost_equals(b.transform, precision=tol)


def ground_pixel_side_m(info: SceneInfo) -> float:
    """Side in metres of a square with the true area of the grid's central pixel.

    The buffer uncertainty (perimeter x half a pixel) needs a pixel size in metres, also
    for geographic grids whose pixels have no fixed side; across one scene it varies
    far less than the uncertainty's own approximation.
    """
    area = pixel_area_at(info.transform, info.crs, info.height // 2, info.width // 2)
    return float(math.sqrt(float(area)))


@dataclass(frozen=True)
class MaskPair:
    """Headers of two masks and how the second is put on the first one's grid.

    Attributes:
        t0: the first (earlier) mask; its grid is the grid of every output.
        t1: the second (later) mask.
        resampling: ``"nearest"`` or ``"mode"``.
        same_grid: both masks share a grid: no warping.
        overlap: the overlap of both footprints, in t0's CRS (west, south, east, north).
    """

    t0: SceneInfo
    t1: SceneInfo
    resampling: ResamplingName
    same_grid: bool
    overlap: tuple[float, float, float, float]


def pair_masks(
    mask_t0: str | os.PathLike[str], mask_t1: str | os.PathLike[str], resampling: ResamplingName = "nearest"
) -> MaskPair:
    """Check two masks (single band, a CRS each, overlapping) and describe how to align them.

    Raises:
        SceneNotFoundError, InvalidRasterError: a file is missing or not a raster.
        MaskError: a file has more than one band.
        CRSMissingError: a mask has no CRS (it cannot be placed on the other's grid).
        NoOverlapError: the masks cover no common ground.
        ConfigError: ``resampling`` is not ``nearest`` or ``mode``.
    """
    if resampling not in RESAMPLINGS:
        raise ConfigError(f"--resampling {resampling!r} is not supported; use nearest or mode")
    t0, t1 = inspect_mask(mask_t0), inspect_mask(mask_t1)
    for info in (t0, t1):
        if info.crs is None:
            raise CRSMissingError(
                f"{info.path} has no CRS, so it cannot be placed on the other mask's grid; "
                "assign one (e.g. gdal_edit.py -a_srs EPSG:32645)"
            )
    w0, s0, e0, n0 = _bounds(t0)
    w1, s1, e1, n1 = transform_bounds(t1.crs, t0.crs, *_bounds(t1), densify_pts=_EDGE_POINTS)
    west, south, east, north = max(w0, w1), max(s0, s1), min(e0, e1), min(n0, n1)
    if not (west < east and south < north):
        raise NoOverlapError(
            f"{t1.path} does not overlap {t0.path} (in {crs_label(t0.crs)}: "
            f"x {w1:.6g}..{e1:.6g}, y {s1:.6g}..{n1:.6g} vs x {w0:.6g}..{e0:.6g}, y {s0:.6g}..{n0:.6g}); "
            "give two masks of the same place"
        )
    return MaskPair(t0, t1, resampling, same_grid(t0, t1), (west, south, east, north))


def _source_window(pair: MaskPair, window: Window) -> Window | None:
    """The t1 pixels under a t0 window (plus :data:`MARGIN`), or None when there are none."""
    h, w = int(window.height), int(window.width)
    r0, c0 = float(window.row_off), float(window.col_off)
    t = np.linspace(0.0, 1.0, _EDGE_POINTS)
    cols = np.concatenate([c0 + t * w, c0 + t * w, np.full_like(t, c0), np.full_like(t, c0 + w)])
    rows = np.concatenate([np.full_like(t, r0), np.full_like(t, r0 + h), r0 + t * h, r0 + t * h])
    a = pair.t0.transform
    xs = a.a * cols + a.b * rows + a.c
    ys = a.d * cols + a.e * rows + a.f
    x1, y1 = warp_points(pair.t0.crs, pair.t1.crs, xs.tolist(), ys.tolist())
    x1, y1 = np.asarray(x1), np.asarray(y1)
    ok = np.isfinite(x1) & np.isfinite(y1)
    if not ok.any():
        return None
    inv = ~pair.t1.transform
    c1 = inv.a * x1[ok] + inv.b * y1[ok] + inv.c
    r1 = inv.d * x1[ok] + inv.e * y1[ok] + inv.f
    col0 = max(0, math.floor(c1.min()) - MARGIN)
    row0 = max(0, math.floor(r1.min()) - MARGIN)
    col1 = min(pair.t1.width, math.ceil(c1.max()) + MARGIN)
    row1 = min(pair.t1.height, math.ceil(r1.max()) + MARGIN)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


class PairReader:
    """Read windows of both masks on t0's grid (uint8 0/1/255 each). Use as a context manager."""

    def __init__(self, pair: MaskPair) -> None:
        self.pair = pair
        self._stack = contextlib.ExitStack()
        self._ds0: rasterio.io.DatasetReader | None = None
        self._ds1: rasterio.io.DatasetReader | None = None

    def __enter__(self) -> PairReader:
        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
        self._ds0 = self._stack.enter_context(rasterio.open(self.pair.t0.path))
        self._ds1 = self._stack.enter_context(rasterio.open(self.pair.t1.path))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Mask t0 and mask t1 over ``window`` of t0's grid, each ``(h, w)`` uint8 0/1/255."""
        assert self._ds0 is not None and self._ds1 is not None, "use PairReader as a context manager"
        p = self.pair
        m0 = read_mask_block(self._ds0, window, p.t0.nodata, p.t0.path)
        if p.same_grid:
            return m0, read_mask_block(self._ds1, window, p.t1.nodata, p.t1.path)
        return m0, self._warp(window)

    def _warp(self, window: Window) -> np.ndarray:
        p = self.pair
        h, w = int(window.height), int(window.width)
        out = np.full((h, w), IGNORE, dtype=np.uint8)
        src_window = _source_window(p, window)
        if src_window is None:
            return out
        assert self._ds1 is not None
        src = read_mask_block(self._ds1, src_window, p.t1.nodata, p.t1.path)
        reproject(
            source=src,
            destination=out,
            src_transform=rwindows.transform(src_window, p.t1.transform),
            src_crs=p.t1.crs,
            src_nodata=IGNORE,
            dst_transform=rwindows.transform(window, p.t0.transform),
            dst_crs=p.t0.crs,
            dst_nodata=IGNORE,
            resampling=RESAMPLINGS[p.resampling],
            init_dest_nodata=True,
            num_threads=1,
        )
        return out


def strip_windows(
    height: int, width: int, strip: int, chunk: int = 1024
) -> Iterator[tuple[int, list[Window]]]:
    """Full-width strips of ``strip`` rows (the last may be shorter), each cut into ``chunk``-wide windows.

    Yields ``(row_off, windows)``: strips arrive top to bottom so that they can be written
    as consecutive rows, and windows bound the memory of each warp.
    """
    for r in range(0, height, strip):
        h = min(strip, height - r)
        yield r, [Window(c, r, min(chunk, width - c), h) for c in range(0, width, chunk)]


__all__ = [
    "RESAMPLINGS",
    "MaskPair",
    "PairReader",
    "ground_pixel_side_m",
    "pair_masks",
    "same_grid",
    "strip_windows",
]
