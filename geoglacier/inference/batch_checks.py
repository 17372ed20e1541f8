"""Checks of a batch's inputs, made once before a cluster starts.

:func:`~geoglacier.inference.batch.segment_scenes` checks the output folder, the
options, the model(s), the inventory and every scene's header here, so that a bad
input fails once, in a second, with one message, instead of once per scene on the
workers; and it refuses an output that would replace one of the run's inputs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoglacier.errors import (
    ConfigError,
    CRSMissingError,
    GeoglacierError,
    InvalidRasterError,
    OutputPathError,
    SceneNotFoundError,
)
from geoglacier.inference.batch_tables import SceneOutputs
from geoglacier.io.atomic import writable_folder

_CONFIG_FIELDS = ("window", "overlap", "batch_size", "blend", "precision", "tta", "engine", "overlap_px")
_RUN_FIELDS = ("min_area", "pixel_size")


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    unknown = set(options) - set(_CONFIG_FIELDS) - set(_RUN_FIELDS)
    if unknown:
        raise ConfigError(f"unknown segment option(s): {', '.join(sorted(unknown))}")
    config = {k: v for k, v in options.items() if k in _CONFIG_FIELDS}
    run = {k: v for k, v in options.items() if k in _RUN_FIELDS}
    return config, run


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
