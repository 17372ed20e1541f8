"""Where a batch's outputs go, and the tables that list them.

:func:`plan_outputs` names each scene's outputs in the output folder after its file
stem (:class:`SceneOutputs`); :class:`BatchResult` holds the outcome of
:func:`~geoglacier.inference.batch.segment_scenes`, one row per scene. The folder's
``summary.csv`` (:func:`write_summary_csv`) lists those rows and the rows of earlier runs
whose complete outputs, from the same model(s) and options, are still in the folder;
with an inventory each scene gets ``NAME_glaciers.csv`` (:func:`write_scene_glaciers`)
and the folder ``glaciers.csv`` (:func:`write_batch_glaciers`): every glacier from the
scene that covers it best.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoglacier.errors import ConfigError
from geoglacier.inference.batch_record import difference, read_record, record_path
from geoglacier.io.atomic import atomic_output

SUMMARY_CSV = "summary.csv"
GLACIERS_CSV = "glaciers.csv"
_CSV_FIELDS = (
    "scene",
    "status",
    "glacier_area_km2",
    "valid_area_km2",
    "glacier_fraction",
    "glacier_pixels",
    "nodata_pixels",
    "crs",
    "mask",
    "error",
)


@dataclass(frozen=True)
class SceneOutputs:
    """Where one scene's outputs go inside the output folder."""

    scene: Path
    mask: Path
    summary: Path
    outlines: Path | None
    glaciers: Path | None = None
    uncertainty: Path | None = None

    def paths(self) -> list[Path]:
        """Every output asked for."""
        optional = (self.outlines, self.glaciers, self.uncertainty)
        return [self.mask, self.summary] + [p for p in optional if p is not None]

    @property
    def record(self) -> Path:
        """``NAME_run.json``: what made the outputs (see :mod:`~geoglacier.inference.batch_record`)."""
        return record_path(self.mask, self.scene.stem)

    def complete(self) -> bool:
        """Every output exists and the record says the scene finished (whatever made it)."""
        body = read_record(self.record)
        return body is not None and body.get("complete") is True and all(p.is_file() for p in self.paths())


@dataclass
class BatchResult:
    """The outcome of :func:`~geoglacier.inference.batch.segment_scenes`, one row per scene."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary_csv: Path | None = None
    glaciers_csv: Path | None = None
    #: rows of summary.csv kept for scenes of earlier runs (not given this time)
    earlier: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def done(self) -> list[dict[str, Any]]:
        """Scenes whose outputs are complete (segmented now or skipped)."""
        return [r for r in self.rows if r["status"] in ("done", "skipped")]

    @property
    def segmented(self) -> list[dict[str, Any]]:
        """Scenes segmented by this run."""
        return [r for r in self.rows if r["status"] == "done"]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Scenes whose complete outputs from an earlier run were kept."""
        return [r for r in self.rows if r["status"] == "skipped"]


def plan_outputs(
    scenes: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    outlines: str | None,
    glaciers: bool = False,
    uncertainty: bool = False,
) -> list[SceneOutputs]:
    """Name each scene's outputs after its file stem; stems must be unique."""
    plans: list[SceneOutputs] = []
    seen: dict[str, Path] = {}
    for scene in scenes:
        path = Path(scene)
        stem = path.stem
        if stem in seen:
            raise ConfigError(
                f"{path} and {seen[stem]} would write the same outputs ({stem}_mask.tif); rename one of them"
            )
        seen[stem] = path
        plans.append(
            SceneOutputs(
                scene=path,
                mask=out_dir / f"{stem}_mask.tif",
                summary=out_dir / f"{stem}_summary.json",
                outlines=out_dir / f"{stem}_outlines.{outlines}" if outlines else None,
                glaciers=out_dir / f"{stem}_glaciers.csv" if glaciers else None,
                uncertainty=out_dir / f"{stem}_uncertainty.tif" if uncertainty else None,
            )
        )
    return plans


def write_scene_inventory_outputs(
    plan: SceneOutputs,
    inventory: str | os.PathLike[str],
    id_column: str | None,
    min_area: float,
    error_model: dict[str, Any] | None = None,
) -> None:
    """The scene's glacier table and outlines from the inventory, read once onto its mask.

    The table is header-only, and the outlines carry no ``glacier_id``, when no outline
    of the inventory reaches the scene; outlines are those ``segment-scene --inventory
    --outlines`` writes.
    """
    from geoglacier.errors import NoOverlapError
    from geoglacier.glaciers.inventory import read_inventory_for_mask
    from geoglacier.measure.outlines import write_outlines

    try:
        inv = read_inventory_for_mask(inventory, plan.mask, id_column=id_column)
    except NoOverlapError:
        inv = None
    if plan.glaciers is not None:
        write_scene_glaciers(plan.mask, inv, plan.glaciers, spread=plan.uncertainty, error_model=error_model)
    if plan.outlines is not None:
        zones = None if inv is None else (inv.geometries, inv.ids)
        write_outlines(plan.mask, plan.outlines, min_area, overwrite=True, zones=zones)


def write_scene_glaciers(
    mask: Path, inv: Any, out: Path, *, spread: Path | None = None, error_model: dict[str, Any] | None = None
) -> Path:
    """One scene's per-glacier table from ``inv`` (an Inventory on the mask, or None: header-only).

    With ``spread`` (an ensemble's uncertainty raster) the table has ``uncertainty_ensemble_km2``;
    with ``error_model`` (the checkpoint's) ``area_low_km2``, ``area_high_km2`` and ``beyond_calibration``.
    """
    from geoglacier.errors import NoOverlapError
    from geoglacier.glaciers.areas import run_glaciers

    if inv is not None:
        try:
            run_glaciers(mask, inv, out, overwrite=True, spread=spread, error_model=error_model)
            return out
        except NoOverlapError:  # outlines touch the footprint but no valid pixel
            pass
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("glacier_id\n")
    return out


def _acquisition_date(plan: SceneOutputs) -> str:
    """ACQUISITION_DATE of the mask (or of its scene), "" when neither has one."""
    import rasterio

    for path in (plan.mask, plan.scene):
        try:
            with rasterio.open(path) as ds:
                date = ds.tags().get("ACQUISITION_DATE")
        except Exception:  # noqa: BLE001 - an unreadable file simply has no date here
            date = None
        if date:
            return str(date)
    return ""


def write_batch_glaciers(plans: Sequence[SceneOutputs], rows: list[dict[str, Any]], path: Path) -> Path:
    """The batch's glacier table: each glacier from the scene that covers it best (then the latest)."""
    import pandas as pd

    from geoglacier.glaciers.areas import best_coverage

    ok = {r["scene"] for r in rows if r.get("status") in ("done", "skipped")}
    tables = []
    for plan in plans:
        if str(plan.scene) not in ok or plan.glaciers is None or not plan.glaciers.is_file():
            continue
        table = pd.read_csv(plan.glaciers, dtype={"glacier_id": str})
        if len(table):  # header-only: no outline reaches the scene
            table["name"] = table["name"].fillna("")
            tables.append((plan.scene.name, _acquisition_date(plan), table))
    best = best_coverage(tables)
    with atomic_output(path, overwrite=True) as tmp:
        best.to_csv(tmp, index=False, float_format="%.6g")
    return path


def _summary_fields(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in _CSV_FIELDS if k in summary}


def _skipped_row(plan: SceneOutputs) -> dict[str, Any]:
    row: dict[str, Any] = {"scene": str(plan.scene), "mask": str(plan.mask), "status": "skipped"}
    try:
        row.update(_summary_fields(json.loads(plan.summary.read_text())))
    except (OSError, ValueError):
        pass
    return row


def write_summary_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the combined per-scene table (rewritten on every run: it indexes the folder)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in _CSV_FIELDS})
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue())
    return path


def _keep_earlier_rows(
    out: Path,
    plans: list[SceneOutputs],
    reference: dict[str, Any] | None,
    result: BatchResult,
    log: Callable[[str], None],
) -> list[SceneOutputs]:
    """Rows of ``summary.csv`` for scenes not given now whose complete outputs, from the same
    model(s) and options, are still in the folder: into ``result.earlier``; their plans."""
    stems = {p.scene.stem for p in plans}
    kept: list[SceneOutputs] = []
    if reference is None:
        return kept
    for row in _read_summary_csv(out / SUMMARY_CSV):
        scene = row.get("scene") or ""
        if not scene or Path(scene).stem in stems:
            continue
        template = plans[0]
        plan = plan_outputs(
            [scene], out, template.outlines.suffix[1:] if template.outlines else None,
            glaciers=template.glaciers is not None, uncertainty=template.uncertainty is not None,
        )[0]  # fmt: skip
        if not plan.complete():
            if not plan.record.exists() and all(p.is_file() for p in plan.paths()):
                log(f"{SUMMARY_CSV} leaves out {scene}: its outputs in {out} have no {plan.record.name} (written "
                    "before run records), so what made them is unknown; give the scene again with --overwrite to list it")  # fmt: skip
            continue  # failed, removed or partly written: nothing to list
        change = difference(read_record(plan.record)["fingerprint"], reference, scene=False)  # type: ignore[index]
        if change is not None:
            log(f"{SUMMARY_CSV} leaves out {scene}: its outputs in {out} were made {change}")
            continue
        stems.add(plan.scene.stem)
        result.earlier.append(row)
        kept.append(plan)
    return kept


def _read_summary_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier ``summary.csv`` (none when it is missing or unreadable)."""
    try:
        with path.open(newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _table_order(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the order of the earlier table (a redone scene keeps its place), new scenes last."""
    earlier = {Path(r.get("scene") or "").stem: i for i, r in enumerate(_read_summary_csv(path))}
    last = len(earlier)
    return sorted(rows, key=lambda r: earlier.get(Path(r["scene"]).stem, last))
