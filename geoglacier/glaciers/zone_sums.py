"""True areas per glacier zone of a mask, summed window by window.

:func:`zone_sums` is the one pass over a 0/1/255 mask behind
:func:`~geoglacier.glaciers.areas.glacier_areas`: it reads the mask (and, when given, the
probability and ensemble spread rasters on its grid) window by window, labels every pixel
with its glacier zone (:class:`~geoglacier.glaciers.zones.ZoneRasterizer`: each pixel
belongs to at most one outline or ring) and sums true pixel areas
(:func:`geoglacier.measure.areas.pixel_area_field`) per zone into a :class:`ZoneSums`.
Memory follows the window, not the scene. Any mask on any grid works, so the same sums
serve several dates of one region.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio

from geoglacier.errors import ConfigError, CRSMissingError, InvalidRasterError
from geoglacier.glaciers.zones import WINDOW, ZoneRasterizer, grid_windows
from geoglacier.io.masks import IGNORE, check_same_grid, inspect_mask, normalize_mask, read_mask_block
from geoglacier.io.scene import SceneInfo, has_mask_band, inspect_scene
from geoglacier.measure.areas import pixel_area_field

DEFAULT_THRESHOLDS: tuple[float, float] = (0.4, 0.6)
"""Probability thresholds around the 0.5 decision threshold for the model uncertainty."""


@dataclass
class ZoneSums:
    """True areas (m^2) per zone of one pass over a mask; index 0 is "no glacier".

    Attributes:
        zone, valid, mapped: area of the zone's pixels, of its valid ones, of its glacier ones.
        pixels: pixel count of each zone.
        ring_mapped: glacier area in each glacier's ring.
        prob_low, prob_high: area with probability >= each threshold (None without probabilities).
        spread: sum of true area x ensemble spread over valid pixels (None without a spread raster).
        grid_area, grid_pixels: the whole grid (for a mean pixel size).
        mask_glacier: all glacier area of the mask.
    """

    zone: np.ndarray
    valid: np.ndarray
    mapped: np.ndarray
    pixels: np.ndarray
    ring_mapped: np.ndarray
    prob_low: np.ndarray | None = None
    prob_high: np.ndarray | None = None
    spread: np.ndarray | None = None
    grid_area: float = 0.0
    grid_pixels: int = 0
    mask_glacier: float = 0.0
    method: str = ""


def zone_sums(
    mask: str | os.PathLike[str],
    zones: ZoneRasterizer,
    *,
    probabilities: str | os.PathLike[str] | None = None,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    spread: str | os.PathLike[str] | None = None,
    window: int = WINDOW,
    progress: bool = False,
) -> ZoneSums:
    """Sum true areas per zone over a mask, window by window (bounded memory).

    ``zones`` must be built on the mask's grid. Any mask on any grid works: this is the
    building block for comparing several dates of one region. ``spread`` is an ensemble
    spread raster (the members' std, ``segment-scene --uncertainty``) on the mask's grid.

    Raises:
        CRSMissingError: the mask has no CRS.
        GridMismatchError: ``probabilities`` or ``spread`` is not on the mask's grid.
        InvalidRasterError: ``spread`` holds values outside [0, 1].
        MaskError: the mask holds values other than 0/1 (and nodata).
    """
    info = inspect_mask(mask)
    _check_zone_grid(info, zones)
    prob_info = _check_probabilities(probabilities, info, thresholds)
    spread_info = _check_spread(spread, info)
    field_ = pixel_area_field(info.transform, info.crs, info.height, info.width, source=str(info.path))
    n = len(zones) + 1
    sums = ZoneSums(
        zone=np.zeros(n),
        valid=np.zeros(n),
        mapped=np.zeros(n),
        pixels=np.zeros(n, dtype=np.int64),
        ring_mapped=np.zeros(n),
        prob_low=None if prob_info is None else np.zeros(n),
        prob_high=None if prob_info is None else np.zeros(n),
        method=field_.method,
    )
    acc, spread_acc, counts, sums.grid_pixels = _accumulate_windows(
        info, zones, (prob_info, spread_info), field_, thresholds, window, progress
    )
    _fill_zone_sums(sums, acc, counts, len(zones))
    if spread_acc is not None:
        sums.spread = _valid_outline_sums(spread_acc, len(zones))
    return sums


def _check_zone_grid(info: SceneInfo, zones: ZoneRasterizer) -> None:
    """Raise unless the mask has a CRS and ``zones`` is built on the mask's grid."""
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    if (zones.height, zones.width) != (info.height, info.width) or not zones.transform.almost_equals(
        info.transform
    ):
        raise ConfigError(f"{info.path}: the zone rasterizer is built on another grid")


def _accumulate_windows(
    info: SceneInfo,
    zones: ZoneRasterizer,
    rasters: tuple[SceneInfo | None, SceneInfo | None],
    field_: Any,
    thresholds: tuple[float, float],
    window: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, int]:
    """Weighted per-label, per-band, per-class area sums over all windows of the mask.

    ``rasters`` are the probability and ensemble spread rasters (either may be None).
    Returns ``(acc, spread_acc, counts, grid_pixels)``: ``acc`` of shape (2m+1, bands, 3),
    ``spread_acc`` the same sums weighted by area x spread (None without a spread
    raster), the pixel count per label, and the number of pixels read.
    """
    windows = list(grid_windows(info.height, info.width, info.block_shape, size=window))
    from tqdm.auto import tqdm

    # One weighted bincount per window does all sums: each pixel's code is
    # label * classes + class, with the label of ZoneRasterizer.labels (0 none, 1..m
    # rings, m+1..2m outlines) and the class nodata / not glacier / glacier, times three
    # probability bands (below low, between, at or above high) when probabilities are given.
    # The spread sums reuse the same codes with area x spread as the weights.
    prob_info, spread_info = rasters
    m = len(zones)
    bands = 1 if prob_info is None else 3
    shape = (2 * m + 1, bands, 3)
    acc = np.zeros(shape).ravel()
    spread_acc = None if spread_info is None else np.zeros_like(acc)
    counts = np.zeros(2 * m + 1, dtype=np.int64)
    grid_pixels = 0
    bar = tqdm(
        total=len(windows), desc="glaciers", unit="win", disable=None if progress else True, leave=False
    )
    try:
        for _, row in itertools.groupby(windows, key=lambda win: win.row_off):
            # A fresh handle per row of windows: closing it drops the tiles GDAL cached for
            # that row, so GDAL's block cache (5 % of RAM by default) never fills up with
            # the scene, whatever GDAL_CACHEMAX the caller runs with.
            with (
                rasterio.open(info.path) as ds,
                _maybe_open(prob_info) as pds,
                _maybe_open(spread_info) as sds,
            ):
                for win in row:
                    code, labels, area = _window_codes(ds, pds, win, info, zones, field_, thresholds)
                    acc += np.bincount(code, weights=area, minlength=acc.size)
                    if spread_acc is not None:
                        weights = area * _read_spread(sds, win, spread_info)
                        spread_acc += np.bincount(code, weights=weights, minlength=acc.size)
                    counts += np.bincount(labels, minlength=2 * m + 1)
                    grid_pixels += labels.size
                    bar.update()
    finally:
        bar.close()
    return acc.reshape(shape), None if spread_acc is None else spread_acc.reshape(shape), counts, grid_pixels


_CLASS_LUT = np.zeros(256, dtype=np.int64)
_CLASS_LUT[0], _CLASS_LUT[1] = 1, 2  # everything else (255) is nodata: class 0


def _window_codes(
    ds: Any,
    pds: Any,
    win: Any,
    info: SceneInfo,
    zones: ZoneRasterizer,
    field_: Any,
    thresholds: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bincount code, zone label and true area (m^2) of every pixel of one window, flat."""
    block = _read_block(ds, win, info)
    h, w = block.shape
    area = np.broadcast_to(field_.block_area(int(win.row_off), int(win.col_off), h, w), (h, w)).ravel()
    labels = zones.labels(win).ravel()
    code = _CLASS_LUT[block.ravel()]
    classes = 3
    if pds is not None:
        p = pds.read(1, window=win).ravel()
        code += 3 * ((p >= thresholds[0]).astype(np.int64) + (p >= thresholds[1]))  # NaN: band 0
        classes = 9
    code += labels.astype(np.int64) * classes
    return code, labels, area


def _read_spread(ds: Any, win: Any, info: SceneInfo) -> np.ndarray:
    """One window of the spread raster, flat float64, with NaN and nodata as 0.

    Raises:
        InvalidRasterError: a value outside [0, 1], which no spread of probabilities has.
    """
    spread = ds.read(1, window=win).astype(np.float64).ravel()
    missing = np.isnan(spread)
    if info.nodata is not None and not math.isnan(info.nodata):
        missing |= spread == info.nodata
    spread[missing] = 0.0
    if spread.size and (spread.min() < 0.0 or spread.max() > 1.0):
        raise InvalidRasterError(
            f"{info.path}: values from {spread.min():g} to {spread.max():g} in window "
            f"row {win.row_off}, col {win.col_off}; an ensemble spread (std of probabilities) lies "
            "in [0, 1]; pass the raster written by 'segment-scene --uncertainty'"
        )
    return spread


def _valid_outline_sums(acc: np.ndarray, m: int) -> np.ndarray:
    """Per zone (0 = no outline, then glacier 1..m) sums of ``acc`` over the valid classes."""
    outlines = np.r_[0, m + 1 : 2 * m + 1]
    return acc[outlines][:, :, 1:].sum(axis=(1, 2))


def _fill_zone_sums(sums: ZoneSums, acc: np.ndarray, counts: np.ndarray, m: int) -> None:
    """Fold the per-label sums of :func:`_accumulate_windows` into ``sums`` (in place)."""
    by_class = acc.sum(axis=1)  # (2m+1, 3): nodata, not glacier, glacier
    outlines = np.r_[0, m + 1 : 2 * m + 1]  # "no outline" first, then glacier 1..m
    rings = np.r_[0, 1 : m + 1]
    sums.zone = by_class[outlines].sum(axis=1)
    sums.valid = by_class[outlines, 1:].sum(axis=1)
    sums.mapped = by_class[outlines, 2].copy()
    sums.mapped[0] += by_class[1 : m + 1, 2].sum()  # ring pixels lie outside every outline
    sums.pixels = counts[outlines].copy()
    sums.ring_mapped = by_class[rings, 2].copy()
    sums.ring_mapped[0] = 0.0
    sums.grid_area = float(by_class.sum())
    sums.mask_glacier = float(by_class[:, 2].sum())
    if sums.prob_low is not None and sums.prob_high is not None:
        valid_by_band = acc[outlines][:, :, 1:].sum(axis=2)  # (m+1, 3): below, between, above
        sums.prob_low = valid_by_band[:, 1:].sum(axis=1)
        sums.prob_high = valid_by_band[:, 2].copy()


def _read_block(ds: Any, window: Any, info: SceneInfo) -> np.ndarray:
    """A mask window as 0/1/255, skipping the full value check when it is already so.

    A GDAL mask band (internal or ``.msk``) marks nodata too, as for ``summarize``.
    """
    if has_mask_band(ds):
        return read_mask_block(ds, window, info.nodata, info.path)
    raw = ds.read(1, window=window)
    if raw.dtype == np.uint8 and info.nodata in (None, float(IGNORE)):
        if raw.max(initial=0) <= 1:
            return raw
        if info.nodata is not None and np.count_nonzero(raw > 1) == np.count_nonzero(raw == IGNORE):
            return raw
    return normalize_mask(raw, info.nodata, info.path)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_open(info: SceneInfo | None) -> Any:
    return _Null() if info is None else rasterio.open(info.path)


_SAME_RUN = "give the {what} that segment-scene wrote with this mask ({option} of the same run)"


def _check_probabilities(
    probabilities: str | os.PathLike[str] | None, mask: SceneInfo, thresholds: tuple[float, float]
) -> SceneInfo | None:
    lo, hi = thresholds
    if not (0.0 < lo < hi < 1.0):
        raise ConfigError(f"probability thresholds must satisfy 0 < low < high < 1, got {lo}, {hi}")
    if probabilities is None:
        return None
    info = inspect_scene(probabilities, expected_bands=1, what="probability raster", warn_no_crs=False)
    _check_float(info, "--probabilities", "probability raster")
    check_same_grid(mask, info, fix=_SAME_RUN.format(what="probability raster", option="--probabilities"))
    return info


def _check_float(info: SceneInfo, option: str, what: str) -> None:
    """A probability or spread raster is float; an integer one is most likely the mask given again."""
    if not np.issubdtype(np.dtype(info.dtype), np.floating):
        raise InvalidRasterError(
            f"{info.path}: a {info.dtype} raster is not a {what} (segment-scene writes float32 values in "
            f"[0, 1]); give {option} the raster written by 'segment-scene {option}', not the mask"
        )


def _check_spread(spread: str | os.PathLike[str] | None, mask: SceneInfo) -> SceneInfo | None:
    """Inspect an ensemble spread raster: one band, on the mask's grid (else GridMismatchError)."""
    if spread is None:
        return None
    info = inspect_scene(spread, expected_bands=1, what="ensemble spread raster", warn_no_crs=False)
    _check_float(info, "--uncertainty", "ensemble spread raster")
    check_same_grid(mask, info, fix=_SAME_RUN.format(what="spread raster", option="--uncertainty"))
    return info
