"""Segment many scenes as tasks on a dask.distributed cluster.

Each scene is one task. A worker process loads the model once (cached per process,
keyed by the checkpoint's path and modification time) and reuses it for every scene
it is given; a worker that sees a GPU uses it. With two or more models each scene is
segmented by their ensemble (:func:`~geoglacier.inference.ensemble.segment_ensemble`),
the members loaded once per worker in the same way. A scene that fails is reported with
its error and the others go on.

Outputs are written atomically, and each scene keeps ``NAME_run.json``, a record of the
scene file, model(s) and options that made its outputs
(:mod:`~geoglacier.inference.batch_record`). A rerun skips a scene only when its outputs
are complete and that record matches; outputs made otherwise, or without a record (an
older geoglacier), are refused up front unless ``overwrite``: they cannot be told apart
from this run's. The folder's ``summary.csv`` (and ``glaciers.csv``) list this run's
scenes and those of earlier runs whose complete outputs, from the same model(s) and
options, are still in the folder.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from geoglacier.errors import (
    ConfigError,
    CRSMissingError,
    GeoglacierError,
    InvalidRasterError,
    OutputExistsError,
    OutputPathError,
    SceneNotFoundError,
)
from geoglacier.inference.batch_record import (
    difference,
    read_record,
    record_path,
    run_fingerprint,
    scene_state,
    write_record,
)
from geoglacier.io.atomic import TMP_PREFIX, atomic_output, sigterm_as_interrupt, writable_folder

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
_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


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
    """The outcome of :func:`segment_scenes`, one row per scene."""

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


_CONFIG_FIELDS = ("window", "overlap", "batch_size", "blend", "precision", "tta", "engine", "overlap_px")
_RUN_FIELDS = ("min_area", "pixel_size")


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    unknown = set(options) - set(_CONFIG_FIELDS) - set(_RUN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown segment option(s): {', '.join(sorted(unknown))}")
    config = {k: v for k, v in options.items() if k in _CONFIG_FIELDS}
    run = {k: v for k, v in options.items() if k in _RUN_FIELDS}
    return config, run


def _worker_segmenters(
    models: tuple[str, ...], device: str, config_options: dict[str, Any], threads: int | None
) -> tuple[Any, ...]:
    """Load the models (one, or an ensemble's members) once per worker process and keep them for later scenes."""
    import torch

    from geoglacier.inference.config import InferenceConfig
    from geoglacier.inference.segment import Segmenter

    stamps = tuple((m, os.path.getmtime(m)) for m in models)
    key = (stamps, device, tuple(sorted(config_options.items())))
    with _MODELS_LOCK:  # threads of one worker share the loaded models
        segmenters = _MODELS.get(key)
        if segmenters is None:
            if threads:
                torch.set_num_threads(threads)
            _MODELS.clear()
            config = InferenceConfig(device=device, **config_options)
            segmenters = tuple(Segmenter.from_checkpoint(m, config=config) for m in models)
            _MODELS[key] = segmenters
    return segmenters


def _as_models(model_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[str, ...]:
    """One model path, or an ensemble's, as a tuple of strings."""
    if isinstance(model_path, str | os.PathLike):
        return (os.fspath(model_path),)
    return tuple(os.fspath(m) for m in model_path)


def segment_one(
    plan: SceneOutputs,
    model_path: str | Sequence[str],
    device: str,
    options: dict[str, Any],
    overwrite: bool,
    threads: int | None = None,
    inventory: str | None = None,
    id_column: str | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Segment one scene (runs on a worker); never raises, returns a result row.

    ``model_path`` is one model, or two or more checkpoints segmenting the scene as an
    ensemble (writing ``plan.uncertainty`` when it is set). With ``inventory`` the scene's
    per-glacier table is written to ``plan.glaciers`` (a header-only table when no
    outline reaches the scene). ``plan.record`` is written first, marked incomplete, and
    again once every output is written; ``fingerprint`` is what it records (default: the
    one of these files and options).
    """
    row: dict[str, Any] = {"scene": str(plan.scene), "mask": str(plan.mask)}
    try:
        config_options, run_options = _split_options(options)
        models = _as_models(model_path)
        if fingerprint is None:
            fingerprint = run_fingerprint(plan.scene, models, options, inventory, id_column)
        write_record(plan.record, fingerprint, complete=False)
        segmenters = _worker_segmenters(models, device, config_options, threads)
        ids_later = inventory is not None and plan.outlines is not None
        first = replace(plan, outlines=None) if ids_later else plan  # outlines wait for the ids
        if len(segmenters) == 1:
            summary = _single_scene(first, segmenters[0], overwrite, run_options)
        else:
            summary = _ensemble_scene(first, models, segmenters, overwrite, run_options)
        if summary is not None:
            row.update(_summary_fields(summary.to_dict()))
        if inventory is not None:
            # an ensemble's error is not the one a member was calibrated for: no interval then
            errors = segmenters[0].meta.error_model if len(segmenters) == 1 else None
            write_scene_inventory_outputs(
                plan, inventory, id_column, run_options.get("min_area", 0.0), error_model=errors
            )
        write_record(plan.record, fingerprint, complete=True)
        row["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - one scene's failure must not stop the batch
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        row.update(status="failed", error=message)
        _drop_lone_record(plan)
    return row


def _drop_lone_record(plan: SceneOutputs) -> None:
    """Remove an unfinished scene's record when none of its outputs exist (it would describe nothing)."""
    if not any(p.exists() for p in plan.paths()):
        plan.record.unlink(missing_ok=True)


def _single_scene(plan: SceneOutputs, segmenter: Any, overwrite: bool, run_options: dict[str, Any]) -> Any:
    """One model's mask, summary and outlines of the scene; its area summary (None without CRS).

    As for an ensemble, outputs left by an earlier, incomplete run of the scene are replaced.
    """
    result = segmenter.run(
        plan.scene,
        plan.mask,
        summary=plan.summary,
        outlines=plan.outlines,
        overwrite=_redo(plan, overwrite),
        progress=False,
        **run_options,
    )
    return result.summary


def _redo(plan: SceneOutputs, overwrite: bool) -> bool:
    """Whether the scene's outputs may be replaced: asked to, or left by an incomplete run.

    A scene reaches a worker only when it is not complete (or ``overwrite``), so any of its
    outputs that exist are the partial result of an interrupted or failed earlier run.
    """
    return overwrite or any(p.exists() for p in plan.paths())


def _ensemble_scene(
    plan: SceneOutputs,
    models: tuple[str, ...],
    segmenters: tuple[Any, ...],
    overwrite: bool,
    run_options: dict[str, Any],
) -> Any:
    """The ensemble's mask, summary, outlines and spread of the scene; its area summary.

    The scene is not complete (or it would have been skipped), so outputs left by an
    earlier run are replaced: all of them are written again, together.
    """
    from geoglacier.inference.ensemble import segment_ensemble

    redo = _redo(plan, overwrite)
    result = segment_ensemble(
        plan.scene, models, plan.mask, uncertainty=plan.uncertainty, summary=plan.summary,
        outlines=plan.outlines, overwrite=redo, segmenters=segmenters, progress=False, **run_options,
    )  # fmt: skip
    return result.summary


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


def _check_batch(
    out: Path,
    models: tuple[str, ...],
    outlines: str | None,
    workers: int,
    device: str,
    options: dict[str, Any],
    inventory: str | os.PathLike[str] | None,
    id_column: str | None,
    uncertainty: bool = False,
) -> tuple[tuple[str, ...], str | None]:
    """Fail once, before a cluster starts; return the resolved model(s) and inventory paths."""
    _check_out_dir(out)
    if outlines not in (None, "gpkg", "geojson"):
        raise ConfigError(f"--outlines {outlines!r}: use gpkg or geojson")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    config_options, _ = _split_options(options)
    from geoglacier.inference.config import InferenceConfig

    # Bad options fail here, once, before a cluster starts.
    InferenceConfig(device=device, **config_options).validate()
    resolved = _check_models(models, config_options.get("engine", "auto"), uncertainty)
    inventory_path = None
    if inventory is not None:
        from geoglacier.glaciers.inventory import read_inventory

        read_inventory(inventory, None, id_column=id_column)  # a bad inventory fails once, here
        inventory_path = str(Path(inventory).resolve()) if Path(inventory).exists() else str(inventory)
    return resolved, inventory_path


def _check_out_dir(out: Path) -> None:
    """The output folder exists, or only its last level is missing (created later, not its parents)."""
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out} is a file; give a folder for --out-dir")
    if out.is_dir():
        if not writable_folder(out):
            raise OutputPathError(f"{out} is not writable; choose another --out-dir")
        return
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(
            f"{out}: folder {parent} does not exist; create it first or choose another --out-dir"
        )
    if not writable_folder(parent):
        raise OutputPathError(f"{out}: folder {parent} is not writable; choose another --out-dir")


def _check_scenes(
    scenes: Sequence[str | os.PathLike[str]],
    pixel_size: float | None = None,
    outlines: bool = False,
    inventory: bool = False,
) -> None:
    """Every scene exists and opens as a raster (its header only: reading it is the workers' job),
    ``pixel_size`` suits it (only for scenes without a CRS), and it has a CRS that gives true
    areas where ``outlines`` or an ``inventory`` (per-glacier tables) need one."""
    problems: list[GeoglacierError] = []
    for scene in scenes:
        problem = _scene_problem(Path(scene), pixel_size, outlines, inventory)
        if problem is not None:
            problems.append(problem)
    if problems:
        first = problems[0]
        alike = sum(type(p) is type(first) for p in problems) - 1
        other = len(problems) - 1 - alike
        more = [f"{alike} more scene(s) like it"] * bool(alike) + [
            f"{other} scene(s) with other problems"
        ] * bool(other)
        raise type(first)(f"{first} ({', '.join(more)})" if more else str(first))


def _scene_problem(
    path: Path, pixel_size: float | None, outlines: bool, inventory: bool
) -> GeoglacierError | None:
    """Why ``path`` cannot be segmented, from its header; None when it can."""
    import rasterio
    from rasterio.errors import RasterioIOError

    from geoglacier.inference.outputs import check_crs_areas

    if not path.exists():
        return SceneNotFoundError(f"{path}: scene not found; check the path or leave it out")
    if path.is_dir():
        return InvalidRasterError(f"{path} is a directory; give the path of a GeoTIFF scene")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no CRS and the like: the worker warns or fails
            with rasterio.open(path) as ds:
                crs = ds.crs
    except RasterioIOError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
        return InvalidRasterError(
            f"{path}: not a readable GeoTIFF ({detail}); check the file or leave it out"
        )
    try:  # the checks segment-scene makes, here before the cluster starts
        check_crs_areas(path, crs, pixel_size, needed=False, outlines=outlines, inventory=inventory)
    except (ConfigError, CRSMissingError) as exc:
        return exc
    return None


def _check_models(models: tuple[str, ...], engine: str, uncertainty: bool) -> tuple[str, ...]:
    """A bad checkpoint, mismatched ensemble members or a missing engine fail once, here, not once per scene."""
    from geoglacier.inference.engines import check_engine
    from geoglacier.inference.ensemble import member_threshold
    from geoglacier.inference.export import read_model_meta

    if not models:
        raise ConfigError("give a model (--model), or two or more for an ensemble")
    if uncertainty and len(models) < 2:
        raise ConfigError("--uncertainty needs an ensemble: give two or more --model")
    resolved = tuple(str(Path(m).resolve()) for m in models)
    check_engine(engine)
    if len(resolved) > 1:
        member_threshold(resolved)  # every member readable, all on one band recipe
    else:
        read_model_meta(resolved[0])
    return resolved


@dataclass(frozen=True)
class _Job:
    """What every worker needs besides its scene: the model(s) and how to run them."""

    model: tuple[str, ...]
    device: str
    options: dict[str, Any]
    overwrite: bool
    inventory: str | None
    id_column: str | None

    def submit(
        self, client: Any, plan: SceneOutputs, threads: int | None, fingerprint: dict[str, Any]
    ) -> Any:
        """Queue :func:`segment_one` for ``plan`` on ``client``; the future."""
        return client.submit(
            segment_one,
            plan,
            self.model,
            self.device,
            self.options,
            self.overwrite,
            threads,
            key=f"segment-{plan.scene.stem}-{uuid.uuid4().hex}",
            pure=False,
            inventory=self.inventory,
            id_column=self.id_column,
            fingerprint=fingerprint,
        )


@contextmanager
def _cluster(client: Any | None, workers: int, threads_per_worker: int) -> Iterator[tuple[Any, int | None]]:
    """``client`` as it is, or a LocalCluster of ``workers`` processes closed on exit.

    Also yields the torch threads for each worker of a cluster started here (None: leave
    a user's cluster as it is): the machine's cores shared between the worker processes
    instead of every torch runtime starting one thread per core.
    """
    if client is not None:
        yield client, None
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
    )
    try:
        own = Client(cluster)
        own.run(_drop_cancelled_task_warnings)
    except BaseException:
        cluster.close()
        raise
    try:
        yield own, max(1, (os.cpu_count() or 1) // workers)
    finally:
        with _quiet_dask():
            own.close()
            cluster.close()


class _NotCancelled(logging.Filter):
    """Drops the warnings of tasks cancelled by Ctrl-C (what the user asked for)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "CancelledError" not in record.getMessage()


def _drop_cancelled_task_warnings() -> None:
    """Runs on each worker process of a cluster started here (a user's cluster logs as it likes)."""
    logging.getLogger("distributed.worker.state_machine").addFilter(_NotCancelled())


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Silence distributed's loggers inside the block (closing an interrupted cluster logs
    cancelled tasks and killed workers: noise once the user has pressed Ctrl-C)."""
    names = ["distributed", *(n for n in logging.root.manager.loggerDict if n.startswith("distributed."))]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _collect(
    futures: list[Any],
    todo: list[SceneOutputs],
    total: int,
    progress: bool,
    log: Callable[[str], None],
    client: Any,
) -> list[dict[str, Any]]:
    """The result rows in the order the scenes finish; a dead worker's scene is marked failed.

    On Ctrl-C the scenes not started yet are cancelled (on a user's cluster they would run on).
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=total, initial=total - len(todo), unit="scene", disable=not progress)
    try:
        for future in as_completed(futures):
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: report, go on
                plan = todo[futures.index(future)]
                row = {"scene": str(plan.scene), "status": "failed", "error": f"worker failed: {exc}"}
            rows.append(row)
            bar.update(1)
            if row["status"] == "failed":
                log(f"FAILED {row['scene']}: {row.get('error')}")
    except KeyboardInterrupt:
        with _quiet_dask():
            client.cancel(futures)
        raise
    finally:
        bar.close()
    return rows


def _check_outputs_are_not_inputs(
    plans: list[SceneOutputs], models: Sequence[str], inventory: str | None
) -> None:
    """Refuse a scene, a model or the inventory that one of the run's outputs would replace."""
    from geoglacier.io.atomic import check_distinct_files, with_companions

    outputs: dict[str, Path | None] = {}
    for plan in plans:
        outputs |= {f"output {p}": p for p in [*plan.paths(), plan.record]}
    inputs = {"SCENES": [p.scene for p in plans], "--model": [f for m in models for f in with_companions(m)]}
    check_distinct_files(outputs, inputs | {"--inventory": with_companions(inventory) if inventory else None})


def segment_scenes(
    scenes: Sequence[str | os.PathLike[str]],
    model_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    client: Any | None = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    device: str = "auto",
    outlines: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    inventory: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    uncertainty: bool = False,
    **options: Any,
) -> BatchResult:
    """Segment each scene as a task on a dask.distributed cluster.

    Args:
        scenes: GeoTIFF scenes; their file stems name the outputs.
        model_path: checkpoint written by ``geoglacier train`` (or an exported model), or
            two or more checkpoints trained on the same bands: each scene is then segmented
            by their ensemble (mean probability, cut at the members' mean threshold).
        out_dir: folder for ``NAME_mask.tif``, ``NAME_summary.json`` (and outlines),
            ``NAME_run.json``, plus the combined ``summary.csv``; created if missing,
            but not its parent folders (a mistyped path fails instead).
        client: a ``dask.distributed.Client`` of an existing cluster; without one a
            ``LocalCluster`` of ``workers`` processes is started and closed here.
        outlines: ``"gpkg"`` or ``"geojson"`` to write outlines per scene.
        inventory: glacier outlines; each scene gets ``NAME_glaciers.csv`` and the batch
            ``glaciers.csv``: every glacier from the scene that covers it best (highest
            valid coverage, then latest ACQUISITION_DATE), with a ``scene`` column.
        id_column: the inventory's id column (default: found automatically).
        uncertainty: ensembles only: also write ``NAME_uncertainty.tif``, the members'
            probability spread (std); with ``inventory`` the glacier tables then carry
            ``uncertainty_ensemble_km2``. A scene without it is not complete.
        overwrite: redo scenes whose outputs exist. Without it a scene whose outputs are
            complete and were made from the same scene file, model(s) and options is
            skipped, one left partly written by such a run is redone, and outputs made
            otherwise (or by a geoglacier that kept no ``NAME_run.json``) stop the run
            before it starts.
        options: passed to the segmenter (window, overlap, batch_size, blend,
            precision, tta, engine, min_area, pixel_size).

    Returns:
        One row per scene given (status done, skipped or failed), the rows kept from
        earlier runs' ``summary.csv`` and the tables' paths.

    Raises:
        OutputExistsError: outputs in ``out_dir`` were made otherwise (without ``overwrite``).
        SceneNotFoundError, InvalidRasterError: a scene is missing or does not open.
    """
    out = Path(out_dir)
    model, inventory_path = _check_batch(
        out, _as_models(model_path), outlines, workers, device, options, inventory, id_column, uncertainty
    )
    _check_scenes(
        scenes, options.get("pixel_size"), outlines=outlines is not None, inventory=inventory is not None
    )
    plans = plan_outputs(scenes, out, outlines, glaciers=inventory is not None, uncertainty=uncertainty)
    _check_outputs_are_not_inputs(plans, model, inventory_path)
    prints = {p.scene: run_fingerprint(p.scene, model, options, inventory_path, id_column) for p in plans}
    result = BatchResult()
    todo = _sort_scenes(plans, prints, overwrite, result)
    out.mkdir(exist_ok=True)
    if result.rows:
        log(f"Skipping {len(result.rows)} scene(s) whose outputs are complete (--overwrite redoes them)")
    # SIGTERM (a job scheduler's stop) ends like Ctrl-C: temporaries go, tables stay whole.
    with sigterm_as_interrupt():
        if todo:
            job = _Job(model, device, options, overwrite, inventory_path, id_column)
            with _cleanup_on_interrupt(out, todo, own_cluster=client is None):
                with _cluster(client, workers, threads_per_worker) as (running, threads):
                    futures = [job.submit(running, plan, threads, prints[plan.scene]) for plan in todo]
                    result.rows += _collect(futures, todo, len(plans), progress, log, running)
        _write_tables(out, plans, prints, result, with_glaciers=inventory is not None, log=log)
    return result


def _write_tables(
    out: Path,
    plans: list[SceneOutputs],
    prints: dict[Path, dict[str, Any]],
    result: BatchResult,
    *,
    with_glaciers: bool,
    log: Callable[[str], None],
) -> None:
    """``summary.csv`` (and ``glaciers.csv``) of this run's rows and the earlier rows still valid."""
    order = {str(p.scene): i for i, p in enumerate(plans)}
    result.rows.sort(key=lambda r: order.get(r["scene"], len(order)))
    reference = next(iter(prints.values()), None)
    kept_plans = _keep_earlier_rows(out, plans, reference, result, log)
    rows = _table_order(out / SUMMARY_CSV, result.earlier + result.rows)
    result.summary_csv = write_summary_csv(rows, out / SUMMARY_CSV)
    if with_glaciers:
        result.glaciers_csv = write_batch_glaciers(plans + kept_plans, rows, out / GLACIERS_CSV)


def _sort_scenes(
    plans: list[SceneOutputs], prints: dict[Path, dict[str, Any]], overwrite: bool, result: BatchResult
) -> list[SceneOutputs]:
    """The scenes to segment; complete ones go to ``result.rows`` as skipped.

    Raises:
        OutputExistsError: a scene's outputs were made otherwise and ``overwrite`` is False.
    """
    todo: list[SceneOutputs] = []
    conflicts: list[str] = []
    for plan in plans:
        if overwrite:
            todo.append(plan)
            continue
        state, conflict = scene_state(plan.paths(), plan.record, prints[plan.scene])
        if conflict is not None:
            conflicts.append(conflict)
        elif state == "done":
            result.rows.append(_skipped_row(plan))
        else:
            todo.append(plan)
    if conflicts:
        more = f" ({len(conflicts) - 1} more scene(s) likewise)" if len(conflicts) > 1 else ""
        raise OutputExistsError(
            f"{conflicts[0]}{more}; pass --overwrite to redo it, or use another --out-dir"
        )
    return todo


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


@contextmanager
def _cleanup_on_interrupt(out: Path, todo: list[SceneOutputs], own_cluster: bool) -> Iterator[None]:
    """On Ctrl-C, once the cluster is down, remove the temporaries its workers left for ``todo``.

    Only files that appeared during the run and belong to the scenes of ``todo`` go (never
    another run's); with a user's cluster, whose workers may still be writing, nothing is
    removed. An unfinished scene's record goes too when none of its outputs exist.
    """
    before = set(out.glob(f"{TMP_PREFIX}*"))
    try:
        yield
    except KeyboardInterrupt:
        if own_cluster:
            names = tuple(f"{TMP_PREFIX}{p.name}." for plan in todo for p in [*plan.paths(), plan.record])
            for tmp in set(out.glob(f"{TMP_PREFIX}*")) - before:
                if tmp.name.startswith(names):
                    tmp.unlink(missing_ok=True)
            for plan in todo:
                body = read_record(plan.record)
                if body is None or body.get("complete") is not True:
                    _drop_lone_record(plan)
        raise
