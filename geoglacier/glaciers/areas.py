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
``low_coverage``
    ``coverage < min_coverage``: kept in the table, left out of the totals.

Totals sum the glaciers that are not flagged; their uncertainties are summed too, as
inventories do, assuming fully correlated errors (the same pixel size and outline
misfit everywhere), which is the conservative choice.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import rasterio
import shapely
from shapely.geometry import mapping

from geoglacier.errors import ConfigError, CRSMissingError, InventoryError
from geoglacier.glaciers.inventory import Inventory, footprint, geodesic_area_perimeter, read_inventory
from geoglacier.glaciers.zones import WINDOW, ZoneRasterizer, grid_windows
from geoglacier.io.atomic import atomic_output, check_output_path
from geoglacier.io.masks import IGNORE, check_same_grid, inspect_mask, normalize_mask
from geoglacier.io.scene import SceneInfo, inspect_scene
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
    window: int = WINDOW,
    progress: bool = False,
) -> ZoneSums:
    """Sum true areas per zone over a mask, window by window (bounded memory).

    ``zones`` must be built on the mask's grid. Any mask on any grid works: this is the
    building block for comparing several dates of one region.

    Raises:
        CRSMissingError: the mask has no CRS.
        GridMismatchError: ``probabilities`` is not on the mask's grid.
        MaskError: the mask holds values other than 0/1 (and nodata).
    """
    info = inspect_mask(mask)
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    if (zones.height, zones.width) != (info.height, info.width) or not zones.transform.almost_equals(
        info.transform
    ):
        raise ConfigError(f"{info.path}: the zone rasterizer is built on another grid")
    prob_info = _check_probabilities(probabilities, info, thresholds)
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
    windows = list(grid_windows(info.height, info.width, info.block_shape, size=window))
    from tqdm.auto import tqdm

    with rasterio.open(info.path) as ds, _maybe_open(prob_info) as pds:
        for win in tqdm(windows, desc="glaciers", unit="win", disable=not progress, leave=False):
            block = normalize_mask(ds.read(1, window=win), info.nodata, info.path)
            h, w = block.shape
            area = np.broadcast_to(
                field_.block_area(int(win.row_off), int(win.col_off), h, w), (h, w)
            ).ravel()
            z, rings = zones.zones_and_rings(win)
            z = z.ravel()
            flat = block.ravel()
            glacier = flat == 1
            valid = flat != IGNORE
            sums.grid_area += float(area.sum())
            sums.grid_pixels += h * w
            sums.mask_glacier += float(area[glacier].sum())
            sums.zone += np.bincount(z, weights=area, minlength=n)
            sums.pixels += np.bincount(z, minlength=n)
            sums.valid += np.bincount(z[valid], weights=area[valid], minlength=n)
            sums.mapped += np.bincount(z[glacier], weights=area[glacier], minlength=n)
            r = rings.ravel()
            sums.ring_mapped += np.bincount(r[glacier], weights=area[glacier], minlength=n)
            if pds is not None and sums.prob_low is not None and sums.prob_high is not None:
                p = pds.read(1, window=win).ravel()
                ok = valid & np.isfinite(p)
                for t, acc in ((thresholds[0], sums.prob_low), (thresholds[1], sums.prob_high)):
                    sel = ok & (p >= t)
                    acc += np.bincount(z[sel], weights=area[sel], minlength=n)
    return sums


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_open(info: SceneInfo | None) -> Any:
    return _Null() if info is None else rasterio.open(info.path)


def _check_probabilities(
    probabilities: str | os.PathLike[str] | None, mask: SceneInfo, thresholds: tuple[float, float]
) -> SceneInfo | None:
    lo, hi = thresholds
    if not (0.0 < lo < hi < 1.0):
        raise ConfigError(f"probability thresholds must satisfy 0 < low < high < 1, got {lo}, {hi}")
    if probabilities is None:
        return None
    info = inspect_scene(probabilities, expected_bands=1, what="probability raster", warn_no_crs=False)
    check_same_grid(mask, info)
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
    ring_area_km2: float
    mapped_outside_outlines_km2: float
    mask_glacier_area_km2: float
    ring_pixels: int
    thresholds: tuple[float, float] | None
    error_model: str = "fully correlated: per-glacier uncertainties are summed"
    id_column: str = ""

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
    window: int = WINDOW,
    progress: bool = False,
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
        window: edge in pixels of the windows read at once (memory ~ 20 bytes per pixel of it).
        progress: show a progress bar of windows.

    Raises:
        ConfigError: an option is out of range.
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
            raise InventoryError(f"{inv.source}: none of its {len(inv)} outlines overlaps {info.path}")
    else:
        inv = read_inventory(inventory, info.crs, region=grid, id_column=id_column, layer=layer)
    zr = ZoneRasterizer(inv.geometries, info.transform, info.height, info.width, ring_pixels=ring_pixels)
    sums = zone_sums(
        mask, zr, probabilities=probabilities, thresholds=thresholds, window=window, progress=progress
    )
    table = _table(inv, sums, grid, mask_crs, min_coverage)
    totals = _totals(table, sums, inv, info, mask_crs, min_coverage, ring_pixels, thresholds, probabilities)
    return GlacierAreas(table=table, totals=totals, geometries=inv.geometries, crs=mask_crs)


def _outside_area_km2(inv: Inventory, grid: shapely.Geometry, crs: pyproj.CRS) -> np.ndarray:
    """True area of each outline outside the grid's footprint (0 for outlines within it)."""
    out = np.zeros(len(inv))
    partial = ~shapely.within(inv.geometries, grid)
    if partial.any():
        inside = shapely.intersection(inv.geometries[partial], grid)
        inside_area, _ = geodesic_area_perimeter(inside, crs)
        out[partial] = np.maximum(inv.outline_area_km2[partial] - inside_area, 0.0)
    return out


def _table(
    inv: Inventory, sums: ZoneSums, grid: shapely.Geometry, crs: pyproj.CRS, min_coverage: float
) -> pd.DataFrame:
    zone = sums.zone[1:] / 1e6
    valid = sums.valid[1:] / 1e6
    mapped = sums.mapped[1:] / 1e6
    pixels = sums.pixels[1:]
    mean_px = sums.grid_area / max(sums.grid_pixels, 1)
    px_area = np.where(pixels > 0, sums.zone[1:] / np.maximum(pixels, 1), mean_px)
    px_side = np.sqrt(px_area)
    denom = zone + _outside_area_km2(inv, grid, crs)
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
    probabilities: str | os.PathLike[str] | None,
) -> GlacierTotals:
    counted = table[~table["low_coverage"]]
    inv_area = counted["inventory_area_km2"]
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
        uncertainty_probability_km2=(
            float(counted["uncertainty_probability_km2"].sum())
            if "uncertainty_probability_km2" in counted
            else None
        ),
        ring_area_km2=float(counted["ring_area_km2"].sum()),
        mapped_outside_outlines_km2=float(sums.mapped[0] / 1e6),
        mask_glacier_area_km2=sums.mask_glacier / 1e6,
        ring_pixels=int(ring_pixels),
        thresholds=tuple(thresholds) if probabilities is not None else None,
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
    if totals.uncertainty_probability_km2 is not None and totals.thresholds is not None:
        lo, hi = totals.thresholds
        rows.append((f"model spread (p {lo:g}-{hi:g})", f"+/- {totals.uncertainty_probability_km2:,.4f} km2"))
    rows += [
        (f"mapped in {totals.ring_pixels}-px rings", km2(totals.ring_area_km2)),
        ("mapped outside outlines", km2(totals.mapped_outside_outlines_km2)),
        ("mask glacier area", km2(totals.mask_glacier_area_km2)),
        ("errors", totals.error_model),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _table_format(path: Path) -> str:
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown table format {path.suffix or '(no extension)'!r}; use .gpkg (with outlines) or .csv"
        )
    return fmt


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
    overwrite: bool = False,
    **options: Any,
) -> GlacierAreas:
    """:func:`glacier_areas`, then write the table (``out``) and the totals JSON (``summary``).

    Output paths are checked before any work, and each file appears only when complete.
    ``options`` go to :func:`glacier_areas`.
    """
    check_table_path(out, overwrite)
    if summary is not None:
        check_output_path(summary, overwrite)
        if Path(summary).resolve() == Path(out).resolve():
            raise ConfigError(f"{summary}: --summary and --out are the same file; give two names")
    result = glacier_areas(mask, inventory, **options)
    write_glacier_table(result, out, overwrite)
    if summary is not None:
        write_totals_json(result.totals, summary, overwrite)
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
) -> Inventory | None:
    """Check a per-glacier table request of a run that has not written its mask yet.

    Used by ``segment-scene --inventory --glaciers``: the inventory is read onto the
    scene's grid and the output path checked *before* the model runs, so a bad
    inventory fails in a second, not after the scene. Returns ``None`` when no table
    was asked for.

    Raises:
        ConfigError: only one of ``inventory`` and ``out`` was given.
        OutputPathError: ``out`` is also another output (or the input) of the run.
        CRSMissingError: the grid has no CRS.
        InventoryError, SceneNotFoundError, OutputExistsError: see :func:`read_inventory`
            and :func:`check_table_path`.
    """
    from geoglacier.errors import OutputPathError

    if inventory is None and out is None:
        return None
    if inventory is None or out is None:
        raise ConfigError(
            "--inventory and --glaciers go together: the outlines to measure and the table to write"
        )
    target = check_table_path(out, overwrite)
    for other in other_paths or []:
        if other is not None and Path(other).resolve() == target.resolve():
            raise OutputPathError(
                f"{out}: used for the glacier table and another file of the run; give distinct files"
            )
    if crs is None:
        raise CRSMissingError(
            "the scene has no CRS, so inventory outlines cannot be placed on it; assign the CRS "
            "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        )
    return read_inventory(inventory, crs, region=footprint(transform, height, width), id_column=id_column)
