"""Per-glacier mapped areas of a mask against an inventory, with uncertainty.

:func:`glacier_areas` reads a 0/1/255 mask window by window, burns the inventory's
outlines onto the same windows (:class:`~geoglacier.glaciers.zones.ZoneRasterizer`:
each pixel belongs to at most one glacier) and sums *true* pixel areas
(:func:`geoglacier.measure.areas.pixel_area_field`) per glacier. Memory follows the
window, not the scene.

Columns of the table (one row per inventory glacier that reaches the mask):

``glacier_id``, ``name``
    the inventory's id and name (``name`` empty where it has none).
``inventory_area_km2``
    the inventory's own area attribute (``Area`` / ``area_km2``; NaN when absent).
``outline_area_km2``, ``perimeter_km``
    true (geodesic) area and length of the whole outline.
``zone_area_km2``
    true area of the pixels the outline claims inside the mask's grid.
``valid_area_km2``
    of those, the pixels with data (not nodata).
``mapped_area_km2``
    of those, the pixels mapped as glacier.
``ring_area_km2``
    mapped glacier in the ring just outside the outline (``ring_pixels`` wide, in no
    other outline): growth, or outline misfit.
``coverage``
    ``valid_area / (zone_area + outline area outside the grid)``: the share of the
    outline the scene sees with valid pixels (scene edges, clouds, nodata lower it).
``recall``
    ``mapped_area / valid_area``: the share of the outline's valid area mapped as glacier.
``pixel_size_m``
    side of the glacier's mean true pixel area.
``uncertainty_buffer_km2``
    the buffer method of glacier inventories: ``perimeter x pixel_size_m / 2``, the
    area of a band half a pixel wide along the outline (about 5 % at 1 km2 on 30 m pixels).
``uncertainty_probability_km2``
    (only with a probability raster) half the spread of the areas inside the outline at
    the two thresholds around the 0.5 decision threshold (default 0.4 and 0.6):
    ``(area(p >= 0.4) - area(p >= 0.6)) / 2``, what the model itself is unsure of.
``uncertainty_ensemble_km2``
    (only with an ensemble spread raster, ``segment-scene --uncertainty``) the area the
    ensemble's members disagree about: the sum over the outline's valid pixels of the
    members' standard deviation of the glacier probability times the pixel's true area,
    in km2; 0 where all members agree. Summing per-pixel spreads is the fully correlated
    bound, the same error model as the totals. A NaN (nodata) spread counts as 0.
``low_coverage``
    ``coverage < min_coverage``: kept in the table, left out of the totals.
``area_low_km2``, ``area_high_km2``, ``beyond_calibration``
    (only with an error model, :mod:`geoglacier.glaciers.error_model`: the checkpoint's
    ``error_model``) the interval that holds the glacier's true area at the model's level
    (e.g. 90 %), learned from the network's out-of-fold errors; NaN, and
    ``beyond_calibration`` true, for a glacier unlike those the model was calibrated on.

Totals sum the glaciers that are not flagged; their uncertainties are summed too, as
inventories do, assuming fully correlated errors (the same pixel size and outline
misfit everywhere), which is the conservative choice. With an error model the totals
also hold the interval of the summed area of the counted glaciers that have one
(bounds summed: fully correlated, see :func:`~geoglacier.glaciers.error_model.total_interval`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio
import shapely
from shapely.geometry import mapping

from geoglacier.errors import (
    ConfigError,
    CRSMissingError,
    InvalidRasterError,
    InventoryError,
    NoOverlapError,
)
from geoglacier.glaciers.error_model import (
    NO_ERROR_MODEL_NOTE,
    ErrorModel,
    add_interval_columns,
    check_error_model_inputs,
    total_interval,
)
from geoglacier.glaciers.inventory import Inventory, area_outside_km2, footprint, read_inventory
from geoglacier.glaciers.zones import WINDOW, ZoneRasterizer, grid_windows
from geoglacier.io.atomic import (
    PNG_SUFFIXES,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
    same_file,
    with_companions,
)
from geoglacier.io.masks import IGNORE, check_same_grid, inspect_mask, normalize_mask, read_mask_block
from geoglacier.io.scene import SceneInfo, has_mask_band, inspect_scene
from geoglacier.measure.areas import crs_label, pixel_area_field, to_pyproj_crs

DEFAULT_MIN_COVERAGE: float = 0.9
DEFAULT_RING_PIXELS: int = 3
DEFAULT_THRESHOLDS: tuple[float, float] = (0.4, 0.6)
"""Probability thresholds around the 0.5 decision threshold for the model uncertainty."""

TABLE_FORMATS: dict[str, str] = {".gpkg": "GPKG", ".csv": "CSV"}
LAYER: str = "glaciers"


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


@dataclass(frozen=True)
class GlacierTotals:
    """Totals over the glaciers whose coverage reaches ``min_coverage`` (see the module doc)."""

    mask: str
    inventory: str
    crs: str | None
    area_method: str
    glaciers: int
    glaciers_counted: int
    glaciers_low_coverage: int
    min_coverage: float
    inventory_area_km2: float | None
    outline_area_km2: float
    mapped_area_km2: float
    uncertainty_buffer_km2: float
    uncertainty_probability_km2: float | None
    uncertainty_ensemble_km2: float | None
    ring_area_km2: float
    mapped_outside_outlines_km2: float
    mask_glacier_area_km2: float
    ring_pixels: int
    thresholds: tuple[float, float] | None
    spread_raster: str | None = None
    error_model: str = "fully correlated: per-glacier uncertainties are summed"
    id_column: str = ""
    model_error: str = NO_ERROR_MODEL_NOTE
    error_level: float | None = None
    area_low_km2: float | None = None
    area_high_km2: float | None = None
    glaciers_with_interval: int | None = None
    glaciers_beyond_calibration: int | None = None
    interval_mapped_area_km2: float | None = None
    interval_assumption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GlacierAreas:
    """The per-glacier table, its totals, and the outlines (in the mask's CRS)."""

    table: pd.DataFrame
    totals: GlacierTotals
    geometries: np.ndarray = field(repr=False)
    crs: pyproj.CRS = field(repr=False)


def glacier_areas(
    mask: str | os.PathLike[str],
    inventory: str | os.PathLike[str] | Inventory,
    *,
    probabilities: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    layer: str | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    ring_pixels: int = DEFAULT_RING_PIXELS,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
    spread: str | os.PathLike[str] | None = None,
    window: int = WINDOW,
    progress: bool = False,
    error_model: ErrorModel | dict[str, Any] | None = None,
) -> GlacierAreas:
    """Per-glacier mapped areas of ``mask`` against ``inventory``, with uncertainties and totals.

    Args:
        mask: 0/1 glacier mask (nodata 255 or the file's nodata), with a CRS.
        inventory: outline file (see :func:`~geoglacier.glaciers.inventory.read_inventory`)
            or an :class:`Inventory` already on the mask's CRS.
        probabilities: glacier probability raster on the mask's grid (NaN nodata), for
            ``uncertainty_probability_km2``.
        id_column, layer: passed to :func:`read_inventory`.
        min_coverage: glaciers covered less than this are flagged and left out of the totals.
        ring_pixels: width in pixels of the ring outside each outline.
        thresholds: the two probability thresholds around 0.5.
        spread: ensemble spread raster (the members' std of the probability, written by
            ``segment-scene --uncertainty``) on the mask's grid, for
            ``uncertainty_ensemble_km2``.
        window: edge in pixels of the windows read at once (memory ~ 20 bytes per pixel of it).
        progress: show a progress bar of windows (on a terminal only).
        error_model: the network's error model (an :class:`ErrorModel` or its dict, as a
            checkpoint stores it): adds ``area_low_km2``, ``area_high_km2``,
            ``beyond_calibration`` and the totals' interval. ``None`` or an empty dict:
            today's columns, and the totals say that model error is not included.

    Raises:
        ConfigError: an option is out of range, or the error model needs a raster not given.
        CRSMissingError: the mask has no CRS.
        InventoryError, SceneNotFoundError: a bad inventory (see :func:`read_inventory`).
        GridMismatchError: the probability raster is not on the mask's grid.
    """
    if not (0.0 <= min_coverage <= 1.0):
        raise ConfigError(f"--min-coverage must be between 0 and 1, got {min_coverage}")
    if ring_pixels < 0:
        raise ConfigError(f"--ring-pixels must be >= 0, got {ring_pixels}")
    info = inspect_mask(mask)
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    _check_probabilities(probabilities, info, thresholds)
    _check_spread(spread, info)
    model = check_error_model_inputs(error_model, probabilities=probabilities, spread=spread)
    grid = footprint(info.transform, info.height, info.width)
    mask_crs = to_pyproj_crs(info.crs)
    if isinstance(inventory, Inventory):
        inv = inventory
        if inv.crs != mask_crs:
            raise InventoryError(
                f"{inv.source}: read onto {crs_label(inv.crs)}, the mask is in {crs_label(mask_crs)}"
            )
        hit = shapely.intersects(inv.geometries, grid)
        if not hit.any():
            raise NoOverlapError(f"{inv.source}: none of its {len(inv)} outlines overlaps {info.path}")
        if not hit.all():
            inv = inv.subset(hit)
    else:
        inv = read_inventory(inventory, info.crs, region=grid, id_column=id_column, layer=layer)
    zr = ZoneRasterizer(inv.geometries, info.transform, info.height, info.width, ring_pixels=ring_pixels)
    sums = zone_sums(
        mask, zr, probabilities=probabilities, thresholds=thresholds, spread=spread, window=window,
        progress=progress,
    )  # fmt: skip
    table = _table(inv, sums, grid, min_coverage)
    totals = _totals(table, sums, inv, info, mask_crs, min_coverage, ring_pixels, thresholds)
    if model is not None:
        table = add_interval_columns(table, model)
        counted = total_interval(table[~table["low_coverage"]])
        totals = replace(totals, model_error=model.describe(), error_level=model.level, **counted)
    if spread is not None:
        totals = replace(totals, spread_raster=str(spread))
    return GlacierAreas(table=table, totals=totals, geometries=inv.geometries, crs=mask_crs)


def _table(inv: Inventory, sums: ZoneSums, grid: shapely.Geometry, min_coverage: float) -> pd.DataFrame:
    zone = sums.zone[1:] / 1e6
    valid = sums.valid[1:] / 1e6
    mapped = sums.mapped[1:] / 1e6
    pixels = sums.pixels[1:]
    mean_px = sums.grid_area / max(sums.grid_pixels, 1)
    px_area = np.where(pixels > 0, sums.zone[1:] / np.maximum(pixels, 1), mean_px)
    px_side = np.sqrt(px_area)
    denom = zone + area_outside_km2(inv, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(denom > 0, valid / denom, 0.0)
        recall = np.where(valid > 0, mapped / valid, np.nan)
    coverage = np.clip(coverage, 0.0, 1.0)
    data: dict[str, Any] = {
        "glacier_id": list(inv.ids),
        "name": [n or "" for n in inv.names],
        "inventory_area_km2": inv.inventory_area_km2,
        "outline_area_km2": inv.outline_area_km2,
        "perimeter_km": inv.perimeter_km,
        "zone_area_km2": zone,
        "valid_area_km2": valid,
        "mapped_area_km2": mapped,
        "ring_area_km2": sums.ring_mapped[1:] / 1e6,
        "coverage": coverage,
        "recall": recall,
        "pixel_size_m": px_side,
        "uncertainty_buffer_km2": inv.perimeter_km * 1e3 * px_side / 2 / 1e6,
    }
    if sums.prob_low is not None and sums.prob_high is not None:
        data["uncertainty_probability_km2"] = (sums.prob_low[1:] - sums.prob_high[1:]) / 2 / 1e6
    if sums.spread is not None:
        data["uncertainty_ensemble_km2"] = sums.spread[1:] / 1e6
    data["low_coverage"] = coverage < min_coverage
    return pd.DataFrame(data)


def _totals(
    table: pd.DataFrame,
    sums: ZoneSums,
    inv: Inventory,
    info: SceneInfo,
    crs: pyproj.CRS,
    min_coverage: float,
    ring_pixels: int,
    thresholds: tuple[float, float],
) -> GlacierTotals:
    counted = table[~table["low_coverage"]]
    inv_area = counted["inventory_area_km2"]

    def total(column: str) -> float | None:
        return float(counted[column].sum()) if column in counted else None

    return GlacierTotals(
        mask=str(info.path),
        inventory=inv.source,
        crs=crs_label(crs),
        area_method=sums.method,
        glaciers=len(table),
        glaciers_counted=len(counted),
        glaciers_low_coverage=int(table["low_coverage"].sum()),
        min_coverage=float(min_coverage),
        inventory_area_km2=None if inv_area.isna().all() else float(inv_area.sum(skipna=True)),
        outline_area_km2=float(counted["outline_area_km2"].sum()),
        mapped_area_km2=float(counted["mapped_area_km2"].sum()),
        uncertainty_buffer_km2=float(counted["uncertainty_buffer_km2"].sum()),
        uncertainty_probability_km2=total("uncertainty_probability_km2"),
        uncertainty_ensemble_km2=total("uncertainty_ensemble_km2"),
        ring_area_km2=float(counted["ring_area_km2"].sum()),
        mapped_outside_outlines_km2=float(sums.mapped[0] / 1e6),
        mask_glacier_area_km2=sums.mask_glacier / 1e6,
        ring_pixels=int(ring_pixels),
        thresholds=tuple(thresholds) if "uncertainty_probability_km2" in table else None,
        id_column=inv.id_column,
    )


def format_totals(totals: GlacierTotals) -> str:
    """A short human-readable table of the totals."""

    def km2(v: float | None, u: float | None = None) -> str:
        if v is None:
            return "n/a"
        return f"{v:,.4f} km2" + ("" if u is None else f" +/- {u:,.4f}")

    rows = [
        ("mask", totals.mask),
        ("inventory", f"{totals.inventory} (id: {totals.id_column})"),
        ("glaciers in table", f"{totals.glaciers:,}"),
        (
            "counted",
            f"{totals.glaciers_counted:,} ({totals.glaciers_low_coverage:,} below coverage "
            f"{totals.min_coverage:g}, flagged)",
        ),
        ("inventory area", km2(totals.inventory_area_km2)),
        ("outline area (true)", km2(totals.outline_area_km2)),
        ("mapped inside outlines", km2(totals.mapped_area_km2, totals.uncertainty_buffer_km2)),
    ]
    if totals.error_level is not None and totals.area_low_km2 is not None:
        rows.append(
            (
                f"{totals.error_level:.0%} interval",
                f"{totals.area_low_km2:,.4f} - {totals.area_high_km2:,.4f} km2 "
                f"(mapped {totals.interval_mapped_area_km2:,.4f} km2 of {totals.glaciers_with_interval:,} "
                f"glaciers; {totals.glaciers_beyond_calibration:,} beyond calibration, no interval)",
            )
        )
    if totals.uncertainty_probability_km2 is not None and totals.thresholds is not None:
        lo, hi = totals.thresholds
        rows.append((f"model spread (p {lo:g}-{hi:g})", f"+/- {totals.uncertainty_probability_km2:,.4f} km2"))
    if totals.uncertainty_ensemble_km2 is not None:
        rows.append(("ensemble spread (std)", f"+/- {totals.uncertainty_ensemble_km2:,.4f} km2"))
    rows += [
        (f"mapped in {totals.ring_pixels}-px rings", km2(totals.ring_area_km2)),
        ("mapped outside outlines", km2(totals.mapped_outside_outlines_km2)),
        ("mask glacier area", km2(totals.mask_glacier_area_km2)),
        ("errors", totals.error_model),
        ("model error", totals.model_error),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_table(table: pd.DataFrame, rows: int = 10) -> str:
    """The largest ``rows`` glaciers of a table as text: area, mapped area +/- buffer, coverage,
    recall, and the ensemble spread when the table has it."""
    top = table.sort_values("outline_area_km2", ascending=False).head(rows)
    ensemble = "uncertainty_ensemble_km2" in table
    head = f"{'id':<16} {'outline km2':>11} {'mapped km2':>21} {'coverage':>8} {'recall':>6}"
    lines = [head + (f" {'ens. km2':>9}" if ensemble else "")]
    for r in top.itertuples(index=False):
        mapped = f"{r.mapped_area_km2:.3f} +/- {r.uncertainty_buffer_km2:.3f}"
        flag = "  (low coverage)" if r.low_coverage else ""
        recall = "n/a" if pd.isna(r.recall) else f"{r.recall:.2f}"
        spread = f" {r.uncertainty_ensemble_km2:>9.3f}" if ensemble else ""
        lines.append(
            f"{str(r.glacier_id):<16} {r.outline_area_km2:>11.3f} {mapped:>21} {r.coverage:>8.2f} "
            f"{recall:>6}{spread}{flag}"
        )
    if len(table) > rows:
        lines.append(f"... and {len(table) - rows} more")
    return "\n".join(lines)


def _table_format(path: Path) -> str:
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown table format {path.suffix or '(no extension)'!r}; use .gpkg (with outlines) or .csv"
        )
    return fmt


def check_table_format(path: str | os.PathLike[str]) -> str:
    """The OGR driver of a table path (.gpkg or .csv); ConfigError for any other extension."""
    return _table_format(Path(path))


def check_table_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check a table output path (extension, folder, overwrite) before any work."""
    target = Path(path)
    _table_format(target)
    return check_output_path(target, overwrite)


_FIONA_TYPES = {"b": "bool", "i": "int", "u": "int", "f": "float", "O": "str"}


def write_glacier_table(result: GlacierAreas, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the table as GeoPackage (outlines in the mask's CRS, layer ``glaciers``) or CSV, atomically."""
    target = check_table_path(path, overwrite)
    fmt = _table_format(target)
    table = result.table
    with atomic_output(target, overwrite) as tmp:
        if fmt == "CSV":
            table.to_csv(tmp, index=False, float_format="%.6g")
        else:
            import fiona

            props = {c: _FIONA_TYPES.get(table[c].dtype.kind, "str") for c in table.columns}
            schema = {"geometry": "MultiPolygon", "properties": props}
            with fiona.open(
                tmp, "w", driver="GPKG", schema=schema, crs=result.crs.to_wkt(), layer=LAYER
            ) as sink:
                for geom, row in zip(result.geometries, table.itertuples(index=False), strict=True):
                    if geom.geom_type == "Polygon":
                        geom = shapely.MultiPolygon([geom])
                    values = {c: _plain(v) for c, v in zip(table.columns, row, strict=True)}
                    sink.write(fiona.Feature.from_dict({"geometry": mapping(geom), "properties": values}))
    return target


def _plain(v: Any) -> Any:
    """numpy scalars to Python; NaN to None (an empty field)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def write_totals_json(totals: GlacierTotals, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the totals as JSON, atomically."""
    target = check_output_path(path, overwrite)
    with atomic_output(target, overwrite) as tmp:
        tmp.write_text(json.dumps(totals.to_dict(), indent=2) + "\n", encoding="utf-8")
    return target


def run_glaciers(
    mask: str | os.PathLike[str],
    inventory: str | os.PathLike[str] | Inventory,
    out: str | os.PathLike[str],
    *,
    summary: str | os.PathLike[str] | None = None,
    quicklook: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> GlacierAreas:
    """:func:`glacier_areas`, then write the table (``out``), the totals JSON (``summary``)
    and a PNG of the outlines coloured by mapped / outline area (``quicklook``).

    Output paths are checked before any work (an output may be neither an input nor
    another output; the quicklook must be a .png), and each file appears only when
    complete, all of them together (none when one fails). ``options`` go to
    :func:`glacier_areas`.

    Raises:
        OutputPathError: an output is an input (the mask, inventory, probability or spread
            raster) or another output, or cannot be written.
        ConfigError: the table is not .gpkg/.csv or the quicklook not .png.
    """
    quicklook_path = (
        None if quicklook is None else check_extension(quicklook, PNG_SUFFIXES, "--quicklook", "PNG picture")
    )
    check_table_path(out, overwrite)
    check_distinct_files(
        {"--out": out, "--summary": summary, "--quicklook": quicklook_path},
        {
            "MASK": mask,
            "--inventory": [] if isinstance(inventory, Inventory) else with_companions(inventory),
            "--probabilities": options.get("probabilities"),
            "--uncertainty": options.get("spread"),
        },
    )
    for extra in (summary, quicklook):
        if extra is not None:
            check_output_path(extra, overwrite)
    result = glacier_areas(mask, inventory, **options)
    # all outputs go to temporaries first and appear together (none if one fails)
    with contextlib.ExitStack() as stack:
        tmp = {
            k: stack.enter_context(atomic_output(path, overwrite))
            for k, path in {"out": out, "summary": summary, "quicklook": quicklook}.items()
            if path is not None
        }
        write_glacier_table(result, tmp["out"], overwrite=True)
        if "summary" in tmp:
            write_totals_json(result.totals, tmp["summary"], overwrite=True)
        if "quicklook" in tmp:
            from geoglacier.glaciers.quicklook import write_glacier_quicklook

            write_glacier_quicklook(mask, result, tmp["quicklook"], overwrite=True)
    return result


def prepare_glacier_table(
    inventory: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None,
    *,
    crs: Any,
    transform: Any,
    height: int,
    width: int,
    other_paths: list[str | os.PathLike[str] | None] | None = None,
    id_column: str | None = None,
    overwrite: bool = False,
    outlines: bool = False,
) -> Inventory | None:
    """Check a per-glacier request of a run that has not written its mask yet.

    Used by ``segment-scene --inventory``: the inventory is read onto the scene's grid
    and the table path (``--glaciers``) checked *before* the model runs, so a bad
    inventory fails in a second, not after the scene. An inventory serves the table,
    the ``glacier_id`` of the outline polygons (``outlines``), or both. Returns ``None``
    when no inventory was given.

    Raises:
        ConfigError: a table without an inventory, or an inventory with nothing to do.
        OutputPathError: ``out`` is also another output (or the input) of the run.
        CRSMissingError: the grid has no CRS.
        InventoryError, SceneNotFoundError, OutputExistsError: see :func:`read_inventory`
            and :func:`check_table_path`.
    """
    from geoglacier.errors import OutputPathError

    if inventory is None and out is None:
        return None
    if inventory is None:
        raise ConfigError("--glaciers needs --inventory: the outlines whose glaciers the table measures")
    if out is None and not outlines:
        raise ConfigError(
            "--inventory needs --glaciers TABLE (.gpkg or .csv) or --outlines: nothing would use it"
        )
    if out is not None:
        target = check_table_path(out, overwrite)
        check_distinct_files({"--glaciers": out}, {"--inventory": with_companions(inventory)})
        for other in other_paths or []:
            if other is not None and same_file(other, target):
                raise OutputPathError(
                    f"{out}: used for the glacier table and another file of the run; give distinct files"
                )
    if crs is None:
        raise CRSMissingError(
            "the scene has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    return read_inventory(inventory, crs, region=footprint(transform, height, width), id_column=id_column)


def best_coverage(tables: list[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """One row per glacier from several scenes' tables: the scene that covers it best.

    Args:
        tables: ``(scene, acquisition date or "", table)`` per scene.

    Returns:
        The rows with the highest ``coverage`` per ``glacier_id``, ties broken by the
        latest date (ISO dates sort as text; a missing date counts as earliest), then by
        the order given; ``scene`` and ``acquisition_date`` columns name where each came from.
    """
    frames = []
    for order, (scene, date, table) in enumerate(tables):
        frame = table.copy()
        frame.insert(1, "scene", scene)
        frame.insert(2, "acquisition_date", date or "")
        frame["_order"] = order
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    merged = pd.concat(frames, ignore_index=True)
    merged["glacier_id"] = merged["glacier_id"].astype(str)
    merged = merged.sort_values(
        ["coverage", "acquisition_date", "_order"], ascending=[False, False, True], kind="mergesort"
    )
    best = merged.drop_duplicates("glacier_id", keep="first").sort_values("glacier_id", kind="mergesort")
    return best.drop(columns="_order").reset_index(drop=True)
