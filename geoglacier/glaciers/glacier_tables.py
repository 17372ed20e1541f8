"""Glacier tables: format them for a terminal, write them (GeoPackage/CSV, totals JSON), pick rows.

The table and totals are those of :func:`~geoglacier.glaciers.areas.glacier_areas`.
:func:`write_glacier_table` writes the table as a GeoPackage (outlines in the mask's CRS,
layer ``glaciers``) or a CSV, :func:`write_totals_json` the totals, each atomically;
:func:`format_totals` and :func:`format_table` print them. :func:`check_table_path` and
:func:`prepare_glacier_table` check a table request before any work (``segment-scene
--inventory``), and :func:`best_coverage` keeps, per glacier, the row of the scene that
covers it best (``segment-scenes --inventory``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping

from geoglacier.errors import ConfigError, CRSMissingError
from geoglacier.glaciers.inventory import Inventory, footprint, read_inventory
from geoglacier.io.atomic import (
    atomic_output,
    check_distinct_files,
    check_output_path,
    same_file,
    with_companions,
)

if TYPE_CHECKING:
    from geoglacier.glaciers.glacier_results import GlacierAreas, GlacierTotals

TABLE_FORMATS: dict[str, str] = {".gpkg": "GPKG", ".csv": "CSV"}
LAYER: str = "glaciers"


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
