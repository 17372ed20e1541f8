"""Ensembles: several checkpoints segment one scene; their probabilities are averaged.

Each member runs the whole blended inference of :func:`segment_scene` (with its own
normalisation, temperature and window), writing its probability raster to a temporary
folder beside the output. The rasters are then combined tile by tile:

- **probability**: the mean of the members' (calibrated) probabilities;
- **mask**: glacier where that mean exceeds the mean of the members' thresholds
  (each member's threshold is on its own calibrated scale; their mean is the natural
  cut for the averaged probability), 255 where the scene is nodata;
- **uncertainty**: the standard deviation of the members' probabilities (population
  form, over the K members): 0 where they agree, up to 0.5 where they split evenly.

Memory follows one output tile per member, not the scene; the temporaries (K
probability COGs) are removed whatever happens, and the outputs appear only complete.

With an inventory, the per-glacier table of the mask follows
(:func:`~geoglacier.glaciers.areas.run_glaciers`, as for one model); the uncertainty
raster, when written, gives its ``uncertainty_ensemble_km2`` column. Outlines are the
polygons of the ensemble's mask (:func:`~geoglacier.measure.outlines.write_outlines`),
with the inventory's ``glacier_id`` when there is one, as for one model.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.windows import Window

from geoglacier.checkpoint import CheckpointMeta
from geoglacier.errors import CheckpointError, ConfigError
from geoglacier.glaciers.areas import prepare_glacier_table, run_glaciers
from geoglacier.io.atomic import TMP_PREFIX, sigterm_as_interrupt, with_companions
from geoglacier.io.cog import RasterSpec, cog_output
from geoglacier.io.masks import IGNORE
from geoglacier.io.scene import SceneInfo, inspect_scene
from geoglacier.measure.areas import summarize_mask, write_summary_json
from geoglacier.measure.outlines import write_outlines
from geoglacier.products.metadata import product_tags, summary_fields

if TYPE_CHECKING:
    from geoglacier.inference.segment import Segmenter


@dataclass(frozen=True)
class EnsembleResult:
    """What :func:`segment_ensemble` wrote."""

    mask: Path
    probabilities: Path | None
    uncertainty: Path | None
    summary_path: Path | None
    members: tuple[Path, ...]
    threshold: float
    summary: Any = None
    glaciers: Path | None = None
    glacier_totals: Any = None
    outlines: Path | None = None
    outline_count: int | None = None


def member_threshold(model_paths: Sequence[str | os.PathLike[str]]) -> float:
    """The ensemble's threshold: the mean of the members' thresholds.

    Raises:
        CheckpointError: a member is unreadable, or members were trained on different
            bands (they cannot share a scene).
        ConfigError: a member is given twice.
    """
    from geoglacier.inference.export import read_model_meta

    return metas_threshold(model_paths, [read_model_meta(p) for p in model_paths])


def check_distinct_members(model_paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse a checkpoint given twice: it would count double in the mean and shrink the spread.

    Raises:
        ConfigError: naming the file given twice.
    """
    from geoglacier.io.atomic import same_file

    for i, a in enumerate(model_paths):
        for b in model_paths[i + 1 :]:
            if same_file(a, b):
                raise ConfigError(
                    f"--model {a} is given twice (as {Path(b).name} too); an ensemble needs distinct members"
                )


def metas_threshold(model_paths: Sequence[str | os.PathLike[str]], metas: Sequence[CheckpointMeta]) -> float:
    """:func:`member_threshold` of members already read (``metas``, in the order of ``model_paths``)."""
    check_distinct_members(model_paths)
    bands = {m.bands for m in metas}
    if len(bands) > 1:
        listed = "; ".join(
            f"{Path(p).name}: {','.join(m.bands)}" for p, m in zip(model_paths, metas, strict=True)
        )
        raise CheckpointError(
            f"ensemble members were trained on different bands ({listed}); use members of one recipe"
        )
    return float(statistics.fmean(m.threshold for m in metas))


def combine_probabilities(
    member_probs: Sequence[Path],
    threshold: float,
    mask_out: Path,
    prob_out: Path | None = None,
    spread_out: Path | None = None,
    overwrite: bool = False,
) -> None:
    """Average member probability rasters tile by tile into mask, probability and spread COGs."""
    mask_spec, float_spec = _ensemble_specs(member_probs)
    with ExitStack() as stack:
        sources = [stack.enter_context(rasterio.open(p)) for p in member_probs]
        for src in sources[1:]:
            if (src.height, src.width, src.transform) != (
                mask_spec.height,
                mask_spec.width,
                mask_spec.transform,
            ):
                raise ConfigError(f"{src.name}: member probabilities are not on one grid")
        mask_w = stack.enter_context(cog_output(mask_out, mask_spec, overwrite))
        floats = [
            stack.enter_context(cog_output(path, replace(float_spec, description=what), overwrite))
            if path
            else None
            for path, what in (
                (prob_out, "glacier probability (ensemble mean)"),
                (spread_out, "ensemble spread (std of member probabilities)"),
            )
        ]
        for window in _tiles(mask_spec.height, mask_spec.width, mask_spec.block):
            mean, spread = ensemble_stats(np.stack([s.read(1, window=window) for s in sources]))
            mask = np.where(np.isnan(mean), np.uint8(IGNORE), (mean > threshold).astype(np.uint8))
            row, col = int(window.row_off), int(window.col_off)
            mask_w.write_tile(mask, row, col)
            for writer, values in zip(floats, (mean, spread), strict=True):
                if writer is not None:
                    writer.write_tile(values, row, col)


def _ensemble_specs(member_probs: Sequence[Path]) -> tuple[RasterSpec, RasterSpec]:
    """The mask's and the float outputs' specs, on the first member's grid with its tags."""
    with rasterio.open(member_probs[0]) as first:
        base = RasterSpec(first.height, first.width, first.crs, first.transform, "uint8", IGNORE)
        if first.crs is None and first.gcps[0]:
            base = replace(base, gcps=(tuple(first.gcps[0]), first.gcps[1]))
        tags = first.tags()
    tags = {k: v for k, v in tags.items() if k != "GEOGLACIER_WINDOW"} | {
        "GEOGLACIER_ENSEMBLE": str(len(member_probs))
    }
    mask_spec = replace(
        base, description="glacier", tags={**tags, "MASK_VALUES": "0=not glacier, 1=glacier, 255=nodata"}
    )
    return mask_spec, replace(base, dtype="float32", nodata=float("nan"), resampling="AVERAGE", tags=tags)


def _tiles(height: int, width: int, block: int) -> Iterator[Window]:
    """Row-major windows of ``block`` pixels, the last ones cut at the edges."""
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def ensemble_stats(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation over axis 0, float32; NaN where any member is NaN."""
    mean = probs.mean(axis=0, dtype=np.float64)
    spread = probs.std(axis=0, dtype=np.float64)
    return mean.astype(np.float32), spread.astype(np.float32)


def segment_ensemble(
    scene: str | os.PathLike[str],
    model_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    probabilities: str | os.PathLike[str] | None = None,
    uncertainty: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    outlines: str | os.PathLike[str] | None = None,
    min_area: float = 0.0,
    inventory: str | os.PathLike[str] | None = None,
    glaciers: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    overwrite: bool = False,
    segmenters: Sequence[Segmenter] | None = None,
    **segment_options: Any,
) -> EnsembleResult:
    """Segment ``scene`` with every checkpoint in ``model_paths`` and write their average.

    Args:
        scene: the scene, as for :func:`~geoglacier.inference.segment.segment_scene`.
        model_paths: two or more checkpoints trained on the same bands.
        out: mask COG (1 glacier, 0 not, 255 nodata) from the mean probability.
        probabilities: also write the mean probability COG.
        uncertainty: also write the members' standard deviation COG.
        summary: also write the area summary JSON of the mask.
        outlines: also write the mask's glacier polygons (.gpkg or .geojson) with their
            areas; with ``inventory`` they carry the ``glacier_id`` they overlap most.
        min_area: drop outline polygons smaller than this many km2.
        inventory, glaciers, id_column: glacier outlines, and the per-glacier table (.gpkg
            or .csv) to write from the mask, as for one model; read and checked before
            any member runs. With ``uncertainty`` the table has ``uncertainty_ensemble_km2``.
        overwrite: replace existing outputs.
        segmenters: the members already loaded (one per ``model_paths`` entry, in order),
            for a caller that segments many scenes (a dask worker): they run as they were
            configured, and ``segment_options`` may then hold only pixel_size, progress
            and date.
        **segment_options: passed to each member's ``segment_scene`` (window, overlap,
            batch_size, blend, device, precision, tta, pixel_size, progress, date ...).

    Raises:
        ConfigError: fewer than two members, a bad ``min_area`` or outline extension,
            ``segmenters`` that do not match ``model_paths`` or come with window options.
        CheckpointError: members trained on different bands.
        OutputExistsError, OutputPathError: an output cannot be written (checked first).
        InventoryError, CRSMissingError: a bad inventory, or one (or outlines, or a
            summary without ``pixel_size``) for a scene without CRS.
    """
    if len(model_paths) < 2:
        raise ConfigError(f"an ensemble needs at least two --model checkpoints, got {len(model_paths)}")
    info = _check_outputs(
        scene, out, probabilities, uncertainty, summary, outlines,
        min_area=min_area, pixel_size=segment_options.get("pixel_size"), overwrite=overwrite,
        glaciers=glaciers,
        inputs={
            "--model": [f for m in model_paths for f in with_companions(m)],
            "--inventory": with_companions(inventory),
        },
    )  # fmt: skip
    other_paths = [scene, out, probabilities, uncertainty, summary, outlines]
    inv = _prepare_inventory(info, inventory, glaciers, other_paths, id_column, overwrite, outlines)
    runs = _member_runs(scene, model_paths, segmenters, segment_options)
    threshold = (
        member_threshold(model_paths)
        if segmenters is None
        else metas_threshold(model_paths, [s.meta for s in segmenters])
    )
    out_p = Path(probabilities) if probabilities is not None else None
    out_u = Path(uncertainty) if uncertainty is not None else None
    # SIGTERM (a job scheduler's stop) ends like Ctrl-C between and after the members too:
    # the members' folder and the outputs' temporaries go.
    with sigterm_as_interrupt():
        _run_members(runs, Path(out), out_p, out_u, threshold, overwrite)
        area, totals, count = _mask_products(
            Path(out), inv, summary, glaciers, outlines, out_p, out_u,
            pixel_size=segment_options.get("pixel_size"), min_area=min_area, overwrite=overwrite,
        )  # fmt: skip
    return EnsembleResult(
        mask=Path(out),
        probabilities=out_p,
        uncertainty=out_u,
        summary_path=Path(summary) if summary is not None else None,
        members=tuple(Path(p) for p in model_paths),
        threshold=threshold,
        summary=area,
        glaciers=Path(glaciers) if totals is not None else None,
        glacier_totals=totals,
        outlines=Path(outlines) if outlines is not None else None,
        outline_count=count,
    )


def _mask_products(
    out: Path,
    inv: Any,
    summary: str | os.PathLike[str] | None,
    glaciers: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    out_p: Path | None,
    out_u: Path | None,
    *,
    pixel_size: float | None,
    min_area: float,
    overwrite: bool,
) -> tuple[Any, Any, int | None]:
    """What follows the ensemble's mask: the summary, the per-glacier table and the outlines.

    Returns the area summary, the table's totals and the polygon count (``None`` for
    each one not asked for).
    """
    area = totals = count = None
    if summary is not None:
        area = summarize_mask(out, pixel_size)
        write_summary_json(area, summary, overwrite, extra=summary_fields(product_tags(out)))
    if inv is not None and glaciers is not None:
        totals = run_glaciers(
            out, inv, glaciers, overwrite=overwrite, probabilities=out_p, spread=out_u
        ).totals
    if outlines is not None:
        zones = None if inv is None else (inv.geometries, inv.ids)
        count = write_outlines(out, outlines, min_area, overwrite, zones=zones)
    return area, totals, count


#: Writes one member's mask and probability raster of the scene: ``run(mask, probabilities)``.
MemberRun = Callable[[Path, Path], object]
_LOADED_OPTIONS = frozenset({"pixel_size", "progress", "date"})


def _member_runs(
    scene: str | os.PathLike[str],
    model_paths: Sequence[str | os.PathLike[str]],
    segmenters: Sequence[Segmenter] | None,
    segment_options: dict[str, Any],
) -> list[MemberRun]:
    """How each member segments ``scene``: load its checkpoint, or run the segmenter given for it."""
    from geoglacier.inference.segment import segment_scene

    if segmenters is None:
        return [
            partial(_run_checkpoint, segment_scene, scene, model, segment_options) for model in model_paths
        ]
    if len(segmenters) != len(model_paths):
        raise ConfigError(f"{len(segmenters)} segmenters for {len(model_paths)} ensemble members")
    extra = set(segment_options) - _LOADED_OPTIONS
    if extra:
        raise ConfigError(f"loaded segmenters carry their own {', '.join(sorted(extra))}; leave it out")
    return [partial(_run_loaded, seg, scene, segment_options) for seg in segmenters]


def _run_checkpoint(
    run: Callable[..., object], scene: str | os.PathLike[str], model: str | os.PathLike[str],
    options: dict[str, Any], mask: Path, prob: Path,
) -> object:  # fmt: skip
    return run(scene, model, mask, probabilities=prob, resumable=False, **options)  # no partial state


def _run_loaded(
    segmenter: Segmenter, scene: str | os.PathLike[str], options: dict[str, Any], mask: Path, prob: Path
) -> object:
    return segmenter.run(scene, mask, probabilities=prob, **options)


def _run_members(
    runs: Sequence[MemberRun],
    out: Path,
    out_p: Path | None,
    out_u: Path | None,
    threshold: float,
    overwrite: bool,
) -> None:
    """Segment the scene with each member into a temporary folder beside ``out``, then combine them."""
    parent = out.parent if str(out.parent) else Path(".")
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}ensemble-", dir=parent) as tmp:
        probs = []
        for k, run in enumerate(runs):
            prob = Path(tmp) / f"p{k}.tif"
            run(Path(tmp) / f"m{k}.tif", prob)
            probs.append(prob)
        combine_probabilities(probs, threshold, out, out_p, out_u, overwrite)


def _check_outputs(
    scene: str | os.PathLike[str],
    out: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    uncertainty: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    *,
    min_area: float,
    pixel_size: float | None,
    overwrite: bool,
    glaciers: str | os.PathLike[str] | None = None,
    inputs: dict[str, Any] | None = None,
) -> SceneInfo:
    """Check the outputs (none may be an input: the scene, ``inputs``), ``min_area`` and the
    scene's CRS as one model's run does; return the scene's info."""
    from geoglacier.inference.outputs import check_areas, check_min_area, check_outputs

    check_outputs(
        out, probabilities, summary, outlines, overwrite, scene=scene, uncertainty=uncertainty,
        glaciers=glaciers, inputs=inputs,
    )  # fmt: skip
    check_min_area(min_area)
    info = inspect_scene(scene, expected_bands=None, warn_no_crs=False)
    check_areas(
        info,
        pixel_size,
        needed=summary is not None,
        outlines=outlines is not None,
        inventory=bool(inputs and inputs.get("--inventory")),
    )
    return info


def _prepare_inventory(
    info: SceneInfo,
    inventory: str | os.PathLike[str] | None,
    glaciers: str | os.PathLike[str] | None,
    other_paths: list[str | os.PathLike[str] | None],
    id_column: str | None,
    overwrite: bool,
    outlines: str | os.PathLike[str] | None,
) -> Any:
    """Read the inventory onto the scene's grid and check the table path, before any member runs."""
    return prepare_glacier_table(
        inventory, glaciers, crs=info.crs, transform=info.transform, height=info.height, width=info.width,
        other_paths=other_paths, id_column=id_column, overwrite=overwrite, outlines=outlines is not None,
    )  # fmt: skip
