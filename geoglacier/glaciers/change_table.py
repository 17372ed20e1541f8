"""Per-glacier change between two dates, with uncertainty, from zone rasters and a change map.

Each glacier of an inventory is a zone (:mod:`geoglacier.glaciers.zones`: a pixel
belongs to the glacier whose outline holds its centre, once). Over the pixels of a
zone that are valid at **both** dates, the true areas of the four change classes are
summed; a cloud at one date thus removes those pixels from both areas and lowers the
coverage instead of reading as change.

Columns (areas in km^2, true areas):

- ``glacier_id``, ``name`` (empty where the inventory has none), ``inventory_area_km2`` (the inventory's own attribute),
  ``outline_area_km2`` (geodesic area of the whole outline), ``perimeter_km``;
- ``valid_km2``: outline area valid at both dates; ``coverage = valid_km2 / (zone area +
  outline area outside the grid)``, as in :mod:`geoglacier.glaciers.areas`: scene edges,
  clouds and nodata at either date lower it; pixel discretization of small outlines and
  pixels that overlapping outlines give to another glacier do not;
- ``area_t0_km2``, ``area_t1_km2``: glacier area inside the outline at each date, over
  the same valid pixels; ``lost_km2``, ``gained_km2``;
- ``change_km2 = area_t1 - area_t0`` (negative: shrinkage); ``relative_change =
  change / area_t0``; ``rate_km2_per_year = change / years`` and
  ``relative_rate_per_year = relative_change / years`` (NaN without dates);
- ``pixel_size_m``: side of the glacier's mean true pixel area on t0's grid;
- ``sigma_t0_km2``, ``sigma_t1_km2``: the buffer uncertainty of each area, outline
  perimeter x half a pixel (the formula of :mod:`geoglacier.glaciers.areas`). At t0 the
  pixel is ``pixel_size_m``; at t1 it is the coarser of t1's own pixel and
  ``pixel_size_m``, since t1's area is counted on t0's grid. The whole outline's
  perimeter is used, also for glaciers the scene covers only in part, so their
  uncertainty is generous (they are flagged for low coverage anyway);
- ``sigma_change_km2 = sqrt(sigma_t0^2 + sigma_t1^2)``: the two maps are made from
  different scenes, so their boundary errors are taken as independent (root-sum-square);
  ``sigma_rate_km2_per_year = sigma_change / years`` (the dates themselves are exact);
- with an error model (``change --model``, the checkpoint's, see
  :mod:`geoglacier.glaciers.error_model`): ``model_sigma_t0_km2`` and ``model_sigma_t1_km2``,
  each date's model error as a one-sigma equivalent (the width of its conformal
  interval divided by ``2 z``, ``z`` the normal quantile of the level: 1.645 at 90 %),
  added to the buffer in quadrature in ``sigma_t0_km2``/``sigma_t1_km2``; and
  ``sigma_change_km2 = sqrt(b0^2 + b1^2 + m0^2 + m1^2 - 2 rho m0 m1)`` with ``rho`` the
  correlation of the two maps' model errors (``--model-error-correlation``, default 0:
  independent). One network errs alike on alike terrain, so ``rho > 0`` may be true for
  two snow-free late-summer scenes, but a different snow cover, illumination or sensor
  breaks it and nothing here measures it; 0 keeps the full error of both maps, the
  conservative choice against calling noise a retreat. ``beyond_calibration``: either
  date's map lies outside what the error model was calibrated on; its sigmas and ``snr``
  are NaN and it is left out of the totals;
- ``snr = |change| / sigma_change``;
- ``within_uncertainty``: ``snr < min_snr`` (default 1: the change is not larger than its
  one-sigma uncertainty); ``low_coverage``: ``coverage < min_coverage``;
  ``in_totals``: neither flag.

Totals sum the glaciers with ``in_totals``. Across glaciers the uncertainties are added
linearly (errors fully correlated: one sensor, one method, one threshold, as glacier
inventories assume for summed areas), which is the conservative choice. The summed
change of every glacier with enough coverage, whatever its SNR, is given beside it:
leaving out small changes biases a regional sum towards large ones.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rasterio.windows import Window

from geoglacier.errors import ConfigError
from geoglacier.glaciers.areas import DEFAULT_MIN_COVERAGE
from geoglacier.glaciers.changemap import ICE_GAINED, ICE_LOST, NODATA, STABLE_ICE, STABLE_NON_ICE
from geoglacier.glaciers.error_model import ErrorModel
from geoglacier.glaciers.inventory import Inventory, area_outside_km2, footprint
from geoglacier.glaciers.zones import ZoneRasterizer

DEFAULT_MIN_SNR: float = 1.0
"""Glaciers whose change is smaller than this many sigmas are flagged as within uncertainty."""

_CLASSES: tuple[int, ...] = (STABLE_NON_ICE, STABLE_ICE, ICE_LOST, ICE_GAINED, NODATA)


def buffer_uncertainty_km2(perimeter_km: np.ndarray | float, pixel_side_m: np.ndarray | float) -> np.ndarray:
    """Buffer-method area uncertainty, perimeter x half a pixel side, in km^2.

    The formula of ``uncertainty_buffer_km2`` in :mod:`geoglacier.glaciers.areas`.
    """
    return np.asarray(perimeter_km, dtype=np.float64) * 1e3 * np.asarray(pixel_side_m) / 2 / 1e6


class GlacierChangeAccumulator:
    """Sum change-class areas per glacier zone, window by window.

    Zone 0 collects the pixels outside every outline, so ice lost or gained off the
    inventory is known too.

    Args:
        inventory: outlines in the CRS of the change map's grid.
        area_field: the true-area field of that grid (:class:`ChangeAccumulator.field`).
        transform, height, width: the grid.
    """

    def __init__(
        self, inventory: Inventory, area_field: Any, transform: Any, height: int, width: int
    ) -> None:
        self.inventory = inventory
        self._field = area_field
        self._zones = ZoneRasterizer(inventory.geometries, transform, height, width)
        self.outside_km2 = area_outside_km2(inventory, footprint(transform, height, width))
        self.m2 = np.zeros((len(_CLASSES), len(inventory) + 1))
        self.pixels = np.zeros(len(inventory) + 1, dtype=np.int64)

    def add(self, classes: np.ndarray, window: Window) -> None:
        """Count one window of the change map (``classes`` is its ``(h, w)`` block)."""
        zones = self._zones.zones(window)
        h, w = classes.shape
        area = np.broadcast_to(self._field.block_area(int(window.row_off), int(window.col_off), h, w), (h, w))
        n = self.m2.shape[1]
        self.pixels += np.bincount(zones.ravel(), minlength=n)
        for k, value in enumerate(_CLASSES):
            sel = classes == value
            if sel.any():
                self.m2[k] += np.bincount(zones[sel], weights=area[sel], minlength=n)


@dataclass(frozen=True)
class UncertaintyInputs:
    """What turns class areas into a change table: pixel sizes, years and thresholds.

    ``pixel_side_t0_m`` is the side of t0's mean true pixel area in each glacier (as in
    :mod:`geoglacier.glaciers.areas`), or one value for all; ``pixel_side_t1_m`` is t1's
    own (native) pixel side.
    """

    pixel_side_t0_m: np.ndarray | float
    pixel_side_t1_m: float
    years: float | None
    min_coverage: float = DEFAULT_MIN_COVERAGE
    min_snr: float = DEFAULT_MIN_SNR
    error_models: tuple[ErrorModel | None, ErrorModel | None] = (None, None)
    model_error_correlation: float = 0.0


def check_change_error_models(
    models: tuple[ErrorModel | None, ErrorModel | None], correlation: float
) -> None:
    """Raise :class:`ConfigError` for a correlation outside [0, 1] or a model whose features a change run lacks."""
    if not (0.0 <= correlation <= 1.0):
        raise ConfigError(f"--model-error-correlation must be within [0, 1], got {correlation}")
    for model in models:
        if model is None:
            continue
        missing = set(model.features) - set(CHANGE_FEATURES)
        if missing:
            raise ConfigError(
                f"the error model is calibrated on {', '.join(sorted(missing))}, which change does not "
                "measure; use 'glaciers --model --probabilities' on each date instead"
            )


CHANGE_FEATURES: tuple[str, ...] = ("mapped_area_km2", "uncertainty_buffer_km2")
"""Error model features a change run provides for each date."""


def model_sigma(
    model: ErrorModel, area: np.ndarray, buffer: np.ndarray, coverage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One date's model error as a one-sigma equivalent (km2) and the beyond-calibration flags."""
    from scipy.stats import norm

    table = pd.DataFrame({"mapped_area_km2": area, "uncertainty_buffer_km2": buffer, "coverage": coverage})
    beyond = model.beyond(table)
    z = float(norm.ppf(0.5 + model.level / 2))
    sigma = (model.q_high - model.q_low) * model.scale(table) / (2 * z)
    return np.where(beyond, np.nan, sigma), beyond


def check_thresholds(min_coverage: float, min_snr: float) -> None:
    """Raise :class:`ConfigError` unless ``0 <= min_coverage <= 1`` and ``min_snr >= 0``."""
    if not (0.0 <= min_coverage <= 1.0):
        raise ConfigError(f"--min-coverage must be within [0, 1], got {min_coverage}")
    if not (min_snr >= 0.0 and math.isfinite(min_snr)):
        raise ConfigError(f"--min-snr must be a number >= 0, got {min_snr}")


def mean_pixel_side_m(m2: np.ndarray, pixels: np.ndarray, default_m: float) -> np.ndarray:
    """Per glacier, the side of the mean true pixel area of its zone (``default_m`` for empty zones)."""
    zone_m2 = m2.sum(axis=0)[1:]
    count = pixels[1:]
    return np.where(count > 0, np.sqrt(zone_m2 / np.maximum(count, 1)), default_m)


def change_table(
    inventory: Inventory, m2: np.ndarray, u: UncertaintyInputs, outside_km2: np.ndarray | None = None
) -> pd.DataFrame:
    """The per-glacier change table (columns in the module doc) from summed class areas.

    Args:
        inventory: the glaciers, in the order of ``m2``'s columns 1..n.
        m2: ``(5, n + 1)`` areas in m^2 of the classes stable non-ice, stable ice, ice lost,
            ice gained and nodata per zone (column 0: outside every outline).
        u: pixel sizes, years and flag thresholds.
        outside_km2: each outline's area outside the grid
            (:attr:`GlacierChangeAccumulator.outside_km2`); ``None``: all lie within it.
    """
    km2 = m2[:, 1:] / 1e6
    non, stable, lost, gained = km2[0], km2[1], km2[2], km2[3]
    valid = non + stable + lost + gained
    seen = km2.sum(axis=0) + (0.0 if outside_km2 is None else np.asarray(outside_km2, dtype=np.float64))
    a0, a1 = stable + lost, stable + gained
    change = a1 - a0
    outline = np.asarray(inventory.outline_area_km2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        coverage = np.clip(np.where(seen > 0, valid / seen, 0.0), 0.0, 1.0)
        relative = np.where(a0 > 0, change / a0, np.nan)
    perimeter = np.asarray(inventory.perimeter_km, dtype=np.float64)
    s0 = buffer_uncertainty_km2(perimeter, u.pixel_side_t0_m)
    s1 = buffer_uncertainty_km2(perimeter, np.maximum(u.pixel_side_t0_m, u.pixel_side_t1_m))
    model_cols, m0, m1 = _model_columns(u, (a0, a1), (s0, s1), coverage)
    s_change = np.sqrt(s0**2 + s1**2 + m0**2 + m1**2 - 2 * u.model_error_correlation * m0 * m1)
    s0, s1 = np.hypot(s0, m0), np.hypot(s1, m1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(s_change > 0, np.abs(change) / s_change, np.where(np.isnan(s_change), np.nan, np.inf))
    years = u.years if u.years is not None else math.nan
    within = snr < u.min_snr
    low = coverage < u.min_coverage
    beyond = model_cols.get("beyond_calibration", np.zeros(len(perimeter), dtype=bool))
    table = pd.DataFrame(
        {
            "glacier_id": list(inventory.ids),
            "name": [n or "" for n in inventory.names],
            "inventory_area_km2": np.asarray(inventory.inventory_area_km2, dtype=np.float64),
            "outline_area_km2": outline,
            "perimeter_km": perimeter,
            "pixel_size_m": np.broadcast_to(np.asarray(u.pixel_side_t0_m, dtype=np.float64), perimeter.shape),
            "valid_km2": valid,
            "coverage": coverage,
            "area_t0_km2": a0,
            "area_t1_km2": a1,
            "lost_km2": lost,
            "gained_km2": gained,
            "change_km2": change,
            "relative_change": relative,
            "rate_km2_per_year": change / years,
            "relative_rate_per_year": relative / years,
            "sigma_t0_km2": s0,
            "sigma_t1_km2": s1,
            "sigma_change_km2": s_change,
            "sigma_rate_km2_per_year": s_change / years,
            "snr": snr,
            "within_uncertainty": within,
            "low_coverage": low,
            "in_totals": ~(within | low | beyond),
        }
    )
    if model_cols:
        at = table.columns.get_loc("sigma_t1_km2") + 1
        for i, (name, values) in enumerate(model_cols.items()):
            table.insert(at + i, name, values)
    return table


def _model_columns(
    u: UncertaintyInputs,
    areas: tuple[np.ndarray, np.ndarray],
    buffers: tuple[np.ndarray, np.ndarray],
    coverage: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray | float, np.ndarray | float]:
    """The error model's columns (none without a model) and each date's model sigma (0 without)."""
    if u.error_models == (None, None):
        return {}, 0.0, 0.0
    sigmas, beyond = [], np.zeros(len(coverage), dtype=bool)
    for model, area, buffer in zip(u.error_models, areas, buffers, strict=True):
        if model is None:
            sigmas.append(np.zeros(len(coverage)))
            continue
        sigma, out = model_sigma(model, area, buffer, coverage)
        sigmas.append(sigma)
        beyond |= out
    cols = {"model_sigma_t0_km2": sigmas[0], "model_sigma_t1_km2": sigmas[1], "beyond_calibration": beyond}
    return cols, sigmas[0], sigmas[1]


def _sums(rows: pd.DataFrame, years: float | None) -> dict[str, Any]:
    change = float(rows["change_km2"].sum())
    sigma = float(rows["sigma_change_km2"].sum())
    a0 = float(rows["area_t0_km2"].sum())
    return {
        "glaciers": len(rows),
        "area_t0_km2": a0,
        "area_t1_km2": float(rows["area_t1_km2"].sum()),
        "change_km2": change,
        "sigma_change_km2": sigma,
        "relative_change": change / a0 if a0 > 0 else None,
        "rate_km2_per_year": None if years is None else change / years,
        "sigma_rate_km2_per_year": None if years is None else sigma / years,
    }


def change_totals(table: pd.DataFrame, m2: np.ndarray, u: UncertaintyInputs) -> dict[str, Any]:
    """Totals of a change table: over glaciers ``in_totals``, over all covered ones, and off-outline ice.

    Uncertainties of a sum are the sum of the glaciers' uncertainties (fully correlated).
    """
    years = u.years
    outside = m2[:, 0] / 1e6
    covered = table[~table["low_coverage"]]
    return {
        "glaciers_in_inventory": len(table),
        "min_coverage": float(u.min_coverage),
        "min_snr": float(u.min_snr),
        "flagged_low_coverage": int(table["low_coverage"].sum()),
        "flagged_within_uncertainty": int(table["within_uncertainty"].sum()),
        "uncertainty_across_glaciers": "summed linearly (errors fully correlated)",
        **_model_error_totals(table, u),
        "in_totals": _sums(table[table["in_totals"]], years),
        "all_with_coverage": _sums(covered, years),
        "outside_outlines": {
            "ice_t0_km2": float(outside[1] + outside[2]),
            "ice_t1_km2": float(outside[1] + outside[3]),
            "lost_km2": float(outside[2]),
            "gained_km2": float(outside[3]),
        },
    }


def _model_error_totals(table: pd.DataFrame, u: UncertaintyInputs) -> dict[str, Any]:
    """What the totals say about the model's error: included (with its correlation) or not."""
    from geoglacier.glaciers.error_model import NO_ERROR_MODEL_NOTE

    models = [m for m in u.error_models if m is not None]
    if not models:
        return {"model_error": NO_ERROR_MODEL_NOTE}
    return {
        "model_error": models[0].describe(),
        "model_error_correlation": float(u.model_error_correlation),
        "flagged_beyond_calibration": int(table["beyond_calibration"].sum()),
    }


def write_table(table: pd.DataFrame, inventory: Inventory, path: str | os.PathLike[str], fmt: str) -> None:
    """Write ``table`` to ``path`` (which must not exist) as ``"csv"`` or ``"gpkg"`` (with outlines).

    The GeoPackage holds each glacier's outline in the change map's CRS beside its row.
    """
    if fmt == "csv":
        table.to_csv(path, index=False, float_format="%.6g")
        return
    import fiona
    import shapely

    types = {"b": "bool", "f": "float", "i": "int", "O": "str"}
    schema = {
        "geometry": "MultiPolygon",
        "properties": {c: types[table[c].dtype.kind] for c in table.columns},
    }
    crs_wkt = inventory.crs.to_wkt()
    geoms = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in inventory.geometries]
    records = table.to_dict(orient="records")
    with fiona.open(path, "w", driver="GPKG", layer="glacier_change", schema=schema, crs_wkt=crs_wkt) as dst:
        for geom, rec in zip(geoms, records, strict=True):
            props = {
                k: (None if isinstance(v, float) and math.isnan(v) else _plain(v)) for k, v in rec.items()
            }
            dst.write({"geometry": shapely.geometry.mapping(geom), "properties": props})


def _plain(v: Any) -> Any:
    """numpy scalars as Python ones (fiona wants plain values); inf as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isinf(v):
        return None
    return v
