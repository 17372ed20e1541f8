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

Each scene's output paths and the tables are :mod:`~geoglacier.inference.batch_tables`
(its names are importable from here too); the checks made before a cluster starts are
:mod:`~geoglacier.inference.batch_checks`.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from geoglacier.errors import OutputExistsError
from geoglacier.inference.batch_checks import (
    _check_batch,
    _check_outputs_are_not_inputs,
    _check_scenes,
    _split_options,
)
from geoglacier.inference.batch_record import read_record, run_fingerprint, scene_state, write_record
from geoglacier.inference.batch_tables import GLACIERS_CSV as GLACIERS_CSV
from geoglacier.inference.batch_tables import SUMMARY_CSV as SUMMARY_CSV
from geoglacier.inference.batch_tables import BatchResult as BatchResult
from geoglacier.inference.batch_tables import SceneOutputs as SceneOutputs
from geoglacier.inference.batch_tables import (
    _keep_earlier_rows,
    _skipped_row,
    _summary_fields,
    _table_order,
    plan_outputs,
    write_batch_glaciers,
    write_scene_inventory_outputs,
    write_summary_csv,
)
from geoglacier.inference.batch_tables import write_scene_glaciers as write_scene_glaciers
from geoglacier.io.atomic import TMP_PREFIX, sigterm_as_interrupt

_MODELS: dict[tuple[Any, ...], Any] = {}
_MODELS_LOCK = threading.Lock()


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
