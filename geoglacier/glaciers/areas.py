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
The window-by-window sums are :mod:`~geoglacier.glaciers.zone_sums`; writing, printing
and checking tables is :mod:`~geoglacier.glaciers.glacier_tables` (its functions are
importable from here too).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import shapely

from geoglacier.errors import (
    ConfigError,
    CRSMissingError,
    InventoryError,
    NoOverlapError,
)
from geoglacier.glaciers.error_model import (
    ErrorModel,
    add_interval_columns,
    check_error_model_inputs,
    total_interval,
)
from geoglacier.glaciers.glacier_results import GlacierAreas as GlacierAreas
from geoglacier.glaciers.glacier_results import GlacierTotals as GlacierTotals
from geoglacier.glaciers.glacier_tables import LAYER as LAYER
from geoglacier.glaciers.glacier_tables import TABLE_FORMATS as TABLE_FORMATS
from geoglacier.glaciers.glacier_tables import best_coverage as best_coverage
from geoglacier.glaciers.glacier_tables import check_table_format as check_table_format
from geoglacier.glaciers.glacier_tables import check_table_path, write_glacier_table, write_totals_json
from geoglacier.glaciers.glacier_tables import format_table as format_table
from geoglacier.glaciers.glacier_tables import format_totals as format_totals
from geoglacier.glaciers.glacier_tables import prepare_glacier_table as prepare_glacier_table
from geoglacier.glaciers.inventory import Inventory, area_outside_km2, footprint, read_inventory
from geoglacier.glaciers.zone_sums import (
    DEFAULT_THRESHOLDS,
    ZoneSums,
    _check_probabilities,
    _check_spread,
    zone_sums,
)
from geoglacier.glaciers.zones import WINDOW, ZoneRasterizer
from geoglacier.io.atomic import (
    PNG_SUFFIXES,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
    with_companions,
)
from geoglacier.io.masks import inspect_mask
from geoglacier.io.scene import SceneInfo
from geoglacier.measure.areas import crs_label, to_pyproj_crs

DEFAULT_MIN_COVERAGE: float = 0.9
DEFAULT_RING_PIXELS: int = 3


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
