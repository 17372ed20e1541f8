"""Segment many scenes as tasks on a dask.distributed cluster.

Each scene is one task. A worker process loads the model once (cached per process,
keyed by the checkpoint's path and modification time) and reuses it for every scene
it is given; a worker that sees a GPU uses it. A scene that fails is reported with
its error and the others go on. Outputs are written atomically, so a scene whose
outputs exist is complete and a rerun skips it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoglacier.errors import ConfigError, OutputPathError
from geoglacier.io.atomic import atomic_output

SUMMARY_CSV = "summary.csv"
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

    def complete(self) -> bool:
        done = [self.mask, self.summary] + ([self.outlines] if self.outlines else [])
        return all(p.is_file() for p in done)


@dataclass
class BatchResult:
    """The outcome of :func:`segment_scenes`, one row per scene."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary_csv: Path | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in ("done", "skipped")]


def plan_outputs(
    scenes: Sequence[str | os.PathLike[str]], out_dir: Path, outlines: str | None
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


def _worker_segmenter(
    model_path: str, device: str, config_options: dict[str, Any], threads: int | None
) -> Any:
    """Load the model once per worker process and keep it for later scenes."""
    import torch

    from geoglacier.inference.segment import InferenceConfig, Segmenter

    key = (model_path, os.path.getmtime(model_path), device, tuple(sorted(config_options.items())))
    with _MODELS_LOCK:  # threads of one worker share the loaded model
        segmenter = _MODELS.get(key)
        if segmenter is None:
            if threads:
                torch.set_num_threads(threads)
            _MODELS.clear()
            config = InferenceConfig(device=device, **config_options)
            segmenter = Segmenter.from_checkpoint(model_path, config=config)
            _MODELS[key] = segmenter
    return segmenter


def segment_one(
    plan: SceneOutputs,
    model_path: str,
    device: str,
    options: dict[str, Any],
    overwrite: bool,
    threads: int | None = None,
) -> dict[str, Any]:
    """Segment one scene (runs on a worker); never raises, returns a result row."""
    row: dict[str, Any] = {"scene": str(plan.scene), "mask": str(plan.mask)}
    try:
        config_options, run_options = _split_options(options)
        segmenter = _worker_segmenter(model_path, device, config_options, threads)
        result = segmenter.run(
            plan.scene,
            plan.mask,
            summary=plan.summary,
            outlines=plan.outlines,
            overwrite=overwrite,
            progress=False,
            **run_options,
        )
        if result.summary is not None:
            row.update(_summary_fields(result.summary.to_dict()))
        row["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - one scene's failure must not stop the batch
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        row.update(status="failed", error=message)
    return row


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


def segment_scenes(
    scenes: Sequence[str | os.PathLike[str]],
    model_path: str | os.PathLike[str],
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
    **options: Any,
) -> BatchResult:
    """Segment each scene as a task on a dask.distributed cluster.

    Args:
        scenes: GeoTIFF scenes; their file stems name the outputs.
        model_path: checkpoint written by ``geoglacier train``.
        out_dir: folder for ``NAME_mask.tif``, ``NAME_summary.json`` (and outlines),
            plus the combined ``summary.csv``.
        client: a ``dask.distributed.Client`` of an existing cluster; without one a
            ``LocalCluster`` of ``workers`` processes is started and closed here.
        outlines: ``"gpkg"`` or ``"geojson"`` to write outlines per scene.
        overwrite: redo scenes whose outputs exist (otherwise they are skipped).
        options: passed to the segmenter (window, overlap, batch_size, blend,
            precision, tta, engine, min_area, pixel_size).

    Returns:
        One row per scene (status done, skipped or failed) and the summary path.
    """
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out} is a file; give a folder for --out-dir")
    if outlines not in (None, "gpkg", "geojson"):
        raise ConfigError(f"--outlines {outlines!r}: use gpkg or geojson")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    config_options, _ = _split_options(options)
    from geoglacier.inference.segment import InferenceConfig

    # Bad options fail here, once, before a cluster starts.
    InferenceConfig(device=device, **config_options).validate()
    model = str(Path(model_path).resolve())
    from geoglacier.checkpoint import read_checkpoint
    from geoglacier.inference.engines import check_engine
    from geoglacier.inference.export import read_exported_meta

    # A bad checkpoint or a missing engine fails once, here, not once per scene.
    check_engine(config_options.get("engine", "auto"))
    if Path(model).suffix in (".onnx", ".xml"):
        read_exported_meta(model)
    else:
        read_checkpoint(model)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_outputs(scenes, out, outlines)
    result = BatchResult()
    todo = []
    for plan in plans:
        if plan.complete() and not overwrite:
            result.rows.append(_skipped_row(plan))
        else:
            todo.append(plan)
    if result.rows:
        log(f"Skipping {len(result.rows)} scene(s) whose outputs are complete (--overwrite redoes them)")
    own_cluster = None
    threads: int | None = None
    if todo:
        if client is None:
            own_cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=None,
            )
            try:
                client = Client(own_cluster)
            except BaseException:
                own_cluster.close()
                raise
            # Share the machine's cores between the worker processes instead of
            # letting every torch runtime start one thread per core.
            threads = max(1, (os.cpu_count() or 1) // workers)
        try:
            futures = [
                client.submit(
                    segment_one,
                    plan,
                    model,
                    device,
                    options,
                    overwrite,
                    threads,
                    key=f"segment-{plan.scene.stem}-{uuid.uuid4().hex}",
                    pure=False,
                )
                for plan in todo
            ]
            bar = tqdm(total=len(plans), initial=len(plans) - len(todo), unit="scene", disable=not progress)
            for future in as_completed(futures):
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker died: report, go on
                    plan = todo[futures.index(future)]
                    row = {"scene": str(plan.scene), "status": "failed", "error": f"worker failed: {exc}"}
                result.rows.append(row)
                bar.update(1)
                if row["status"] == "failed":
                    log(f"FAILED {row['scene']}: {row.get('error')}")
            bar.close()
        finally:
            if own_cluster is not None:
                client.close()
                own_cluster.close()
    order = {str(p.scene): i for i, p in enumerate(plans)}
    result.rows.sort(key=lambda r: order.get(r["scene"], len(order)))
    result.summary_csv = write_summary_csv(result.rows, out / SUMMARY_CSV)
    return result
