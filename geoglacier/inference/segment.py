"""Blended sliding-window inference over whole scenes, in memory bounded by the scene's shorter side.

The scene is cut into windows (:func:`geoglacier.inference.windows.tile_grid` geometry: a
``window`` px grid with ``overlap``, the last row and column flush with the edges),
grouped into *blocks* of at most ``block_size`` x ``block_size`` pixels
(:func:`geoglacier.inference.windows.block_plan`) taken along the scene's longer axis:

1. a background thread reads the next block (rasterio windowed read) while the model
   works on the current one;
2. bands are normalised with the checkpoint's statistics (or, for a checkpoint
   trained with ``normalization="scene"``, the scene's own, from one lazy pass over
   it before the first block), nodata pixels set to 0;
   windows without a single valid pixel skip the model;
3. windows go through the model in batches, which run on across block edges
   (``torch.inference_mode``, channels-last, optional bf16/fp16 autocast, optional
   flip test-time augmentation);
4. probabilities are blended into the output tiles they touch
   (:class:`geoglacier.inference.blend.TileBlender`, float32 weighted sums); a tile is
   divided out and handed on as soon as the last window touching it is done.

Each pixel's probability is therefore the weighted mean of every window covering it,
as if the whole scene were blended at once, while memory holds two blocks of input and
the open tiles along the front of processed blocks: a band across the scene's shorter
side, so neither a taller nor a wider scene needs more. :class:`Segmenter` yields the
finished tiles (:meth:`Segmenter.predict`) or writes them as COG masks
(:meth:`Segmenter.run`); :func:`segment_scene` checks everything, loads the checkpoint
and runs it. The options are :class:`~geoglacier.inference.config.InferenceConfig`; the
normalisation statistics come from :mod:`geoglacier.inference.normalization`, and what a
run writes, checked before it starts, from :mod:`geoglacier.inference.outputs`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch import nn

from geoglacier.checkpoint import CheckpointMeta
from geoglacier.device import resolve_device
from geoglacier.errors import CheckpointError, ConfigError, GeoglacierWarning, Interrupted
from geoglacier.glaciers.areas import prepare_glacier_table
from geoglacier.inference.blend import FinishedTile, TileBlender
from geoglacier.inference.config import InferenceConfig, check_segmentation_meta, default_window
from geoglacier.inference.engines import Engine, TorchEngine, load_engine, resolve_precision
from geoglacier.inference.normalization import (
    all_nodata_error,
    block_statistics,
    normalise_block,
    scene_normalization,
)
from geoglacier.inference.outputs import (
    RunOutputs,
    check_areas,
    check_min_area,
    check_outputs,
    glacier_products,
    make_accumulator,
    output_specs,
)
from geoglacier.inference.partial import PartialRun
from geoglacier.inference.results import RunStats, SegmentResult
from geoglacier.inference.windows import WindowBlock, blend_weights, block_plan, tile_grid, windows_needed
from geoglacier.io.atomic import sigterm_as_interrupt, with_companions
from geoglacier.io.cog import cog_blocksize
from geoglacier.io.scene import GDAL_CACHE_BYTES, SceneInfo, inspect_scene, read_window
from geoglacier.measure.areas import AreaSummary
from geoglacier.products.metadata import check_date, product_tags, summary_fields
from geoglacier.products.recipes import check_scene_recipe

#: Test-time augmentation: the identity and the three flips (dims of an NCHW tensor).
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def progress_bar(total: int, name: str) -> Any:
    """A tqdm bar of ``total`` windows on stderr."""
    from tqdm import tqdm

    return tqdm(total=total, unit="window", file=sys.stderr, desc=name)


def warn_if_striped(info: SceneInfo, block_size: int) -> None:
    """Warn when a scene wider than one block is stored in full-width strips.

    A block read decodes every strip it crosses in full, so such a file is decoded
    once for every block across its width: reading time grows with the square of the
    width (about 6x that of a tiled copy for a 16384 px wide float32 scene).
    """
    block_height, block_width = info.block_shape
    if block_width >= info.width > block_size:
        warnings.warn(
            f"{info.path} is stored in full-width strips ({block_height} x {block_width} px): segment-scene "
            f"reads it in {block_size} px blocks and so decodes each strip again for every block across "
            "the width, which is slow on a wide scene; make a tiled copy first "
            f"(gdal_translate -co TILED=YES -co COMPRESS=DEFLATE {info.path.name} tiled.tif)",
            GeoglacierWarning,
            stacklevel=2,
        )


@dataclass(frozen=True)
class _Pending:
    """A window waiting for its batch: offset, normalised bands and validity."""

    offset: tuple[int, int]
    bands: np.ndarray
    valid: np.ndarray


class Segmenter:
    """Run a loaded network over whole scenes; reusable across scenes (load the model once).

    Args:
        model: a network mapping ``(N, bands, h, w)`` to ``(N, 1, h, w)`` logits: an
            ``nn.Module`` (the checkpoint's, or a stand-in in tests; run by the torch
            engine) or an :class:`~geoglacier.inference.engines.Engine`.
        meta: the checkpoint's metadata (bands, normalisation, patch size, threshold).
        config: windowing and runtime options; ``config.window=None`` means ``meta.patch_size``.

    Raises:
        ConfigError: invalid options, or a device that is not available.
        CheckpointError: a checkpoint with more than one output class.
    """

    def __init__(
        self,
        model: nn.Module | Engine,
        meta: CheckpointMeta,
        config: InferenceConfig | None = None,
        engine_reason: str = "",
    ) -> None:
        config = (config or InferenceConfig()).validate()
        if config.window is None:
            config = replace(config, window=default_window(meta))
        config.validate()
        check_segmentation_meta(meta)
        self.config = config
        self.meta = meta
        if isinstance(model, nn.Module):
            device = resolve_device(config.device)
            model = TorchEngine(model, device, resolve_precision(config.precision, device))
            engine_reason = engine_reason or "a loaded nn.Module"
        self.engine: Engine = model
        self.engine_reason = engine_reason
        self._mean, self._std = block_statistics(meta.mean, meta.std)
        self.stats = RunStats()

    @classmethod
    def from_checkpoint(
        cls, model_path: str | os.PathLike[str], config: InferenceConfig | None = None
    ) -> Segmenter:
        """Load a checkpoint or exported model into its engine and wrap it (for example once per dask worker)."""
        config = (config or InferenceConfig()).validate()
        loaded = load_engine(model_path, config.engine, config.device, config.precision)
        return cls(loaded.engine, loaded.meta, config, loaded.reason)

    @property
    def window(self) -> int:
        assert self.config.window is not None
        return self.config.window

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    # ----------------------------------------------------------------------- model side

    def predict_windows(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, h, w)`` float32 of normalised windows ``(N, bands, h, w)``."""
        flips = TTA_FLIPS if self.config.tta else ((),)
        total: np.ndarray | None = None
        for dims in flips:
            xi = np.ascontiguousarray(np.flip(batch, dims)) if dims else batch
            logits = self.engine.logits(xi)
            if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[2:] != batch.shape[2:]:
                raise CheckpointError(
                    f"the model returned shape {tuple(logits.shape)} for input {tuple(batch.shape)}; "
                    "expected (N, 1, h, w) logits"
                )
            # calibrated: sigmoid(logits / temperature)
            prob = torch.sigmoid(torch.from_numpy(logits) / self.meta.temperature).numpy()
            prob = np.flip(prob, dims) if dims else prob
            total = prob if total is None else total + prob
        assert total is not None
        return np.ascontiguousarray(total[:, 0] / len(flips), dtype=np.float32)

    # ------------------------------------------------------------------------ data side

    def normalization_of(self, info: SceneInfo, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The per-band mean and std that normalise ``info``'s windows.

        As :func:`~geoglacier.inference.normalization.block_statistics` arrays: the
        checkpoint's training statistics, or with a ``normalization="scene"`` checkpoint
        the scene's own (:func:`~geoglacier.inference.normalization.scene_normalization`:
        one more lazy pass over the scene, with a progress bar when ``progress``).
        """
        if self.meta.normalization == "scene":
            return scene_normalization(info, progress)
        return self._mean, self._std

    def _load_block(
        self, info: SceneInfo, block: WindowBlock, norm: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised bands and validity of the pixels covered by ``block``'s windows."""
        (r0, c0), (h, w) = block.origin, block.shape
        raw = read_window(info.path, r0, c0, min(h, info.height - r0), min(w, info.width - c0))
        return normalise_block(raw, info.nodata, norm[0], norm[1], self.window)

    def _read_ahead(
        self, info: SceneInfo, blocks: list[WindowBlock], norm: tuple[np.ndarray, np.ndarray]
    ) -> Iterator[tuple[WindowBlock, np.ndarray, np.ndarray]]:
        """Yield each block with its bands and validity, reading the next one while the model works."""
        if not blocks:  # a resumed run whose tiles are all written
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoglacier-read")
        try:
            future: Future[tuple[np.ndarray, np.ndarray]] = pool.submit(
                self._load_block, info, blocks[0], norm
            )
            for i, block in enumerate(blocks):
                x, valid = future.result()
                if i + 1 < len(blocks):
                    future = pool.submit(self._load_block, info, blocks[i + 1], norm)
                yield block, x, valid
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def predict(
        self,
        scene: str | os.PathLike[str] | SceneInfo,
        progress: bool = False,
        stats: RunStats | None = None,
        tile: int | None = None,
        done: np.ndarray | None = None,
    ) -> Iterator[FinishedTile]:
        """Yield the scene's blended probabilities, one output tile at a time, as each becomes final.

        Tiles come in the order they finish (roughly along the scene's longer axis);
        together they cover the scene once. Memory is bounded by the block size and
        the scene's shorter side (see the module docstring), whatever the scene's area.
        Counters of the pass go into ``stats`` when given (one per call, so threads
        sharing this segmenter on a dask worker never mix their counts), and are also
        left in ``self.stats`` for single-threaded callers.

        Args:
            scene: the scene, or its :class:`SceneInfo`.
            progress: show a progress bar of windows on stderr.
            stats: counters to fill.
            tile: output tile edge in pixels; default :func:`geoglacier.io.cog.cog_blocksize`.
            done: ``(tiles_y, tiles_x)`` bool of output tiles an interrupted run wrote:
                they are not yielded, and only windows touching another tile run.

        Raises:
            BandCountError, InvalidRasterError, SceneNotFoundError: for a bad scene.
        """
        info = scene if isinstance(scene, SceneInfo) else self.inspect(scene)
        warn_if_striped(info, self.config.block_size)
        norm = self.normalization_of(info, progress)
        offsets, blender, blocks = self._plan(info, tile, done)
        stats = stats if stats is not None else RunStats()
        stats.windows_total = len(offsets)
        needed = None if done is None else {(r, c) for r, c in offsets.tolist()}
        self.stats = stats
        bar = progress_bar(stats.windows_total, info.path.name) if progress else None
        reader = self._read_ahead(info, blocks, norm)
        try:
            yield from self._blend_blocks(reader, blender, stats, bar, needed)
        finally:
            reader.close()
            stats.max_open_pixels = blender.max_open_pixels
            if bar is not None:
                bar.close()

    def _plan(
        self, info: SceneInfo, tile: int | None, done: np.ndarray | None = None
    ) -> tuple[np.ndarray, TileBlender, list[WindowBlock]]:
        """The window offsets to run, the blender of the output tiles and the blocks to read.

        With ``done`` tiles, only the windows touching another tile, and the blocks
        holding one of them.
        """
        overlap = self.config.overlap_fraction()
        offsets = tile_grid(info.height, info.width, self.window, overlap)
        weights = blend_weights(self.window, self.config.blend)  # type: ignore[arg-type]
        tile = tile or cog_blocksize(info.height, info.width)
        blender = TileBlender(info.height, info.width, offsets, weights, tile, done)
        blocks = block_plan(info.height, info.width, self.window, overlap, self.config.block_size)
        if done is not None:
            offsets = offsets[windows_needed(offsets, self.window, tile, info.height, info.width, done)]
            keep = {(r, c) for r, c in offsets.tolist()}
            blocks = [b for b in blocks if any((r, c) in keep for r, c in b.offsets.tolist())]
        return offsets, blender, blocks

    def _blend_blocks(
        self,
        reader: Iterator[tuple[WindowBlock, np.ndarray, np.ndarray]],
        blender: TileBlender,
        stats: RunStats,
        bar: Any,
        needed: set[tuple[int, int]] | None = None,
    ) -> Iterator[FinishedTile]:
        """Batch the windows of each block read through the model; yield the tiles as they finish.

        ``needed``: the only windows to take (a resumed run), all when None.
        """
        pending: list[_Pending] = []
        for block, x, valid in reader:
            for item in self._windows_of(block, x, valid, needed):
                if isinstance(item, tuple):  # no data: skip the model
                    stats.windows_skipped += 1
                    if bar is not None:
                        bar.update(1)
                    yield from blender.skip(np.array([item]))
                    continue
                pending.append(item)
                if len(pending) == self.config.batch_size:
                    yield from self._run_batch(pending, blender, stats, bar)
                    pending = []
            # The batch runs on into the next block: keep copies, not the block.
            pending = [_Pending(p.offset, p.bands.copy(), p.valid.copy()) for p in pending]
        if pending:
            yield from self._run_batch(pending, blender, stats, bar)

    def _windows_of(
        self, block: WindowBlock, x: np.ndarray, valid: np.ndarray, needed: set[tuple[int, int]] | None = None
    ) -> Iterator[_Pending | tuple[int, int]]:
        """The block's windows: a :class:`_Pending` with data, or the bare offset of one without."""
        window = self.window
        r0, c0 = block.origin
        for r, c in block.offsets.tolist():
            if needed is not None and (r, c) not in needed:
                continue
            ok = valid[r - r0 : r - r0 + window, c - c0 : c - c0 + window]
            if ok.any():
                yield _Pending((r, c), x[:, r - r0 : r - r0 + window, c - c0 : c - c0 + window], ok)
            else:
                yield (r, c)

    def _run_batch(
        self, pending: list[_Pending], blender: TileBlender, stats: RunStats, bar: Any
    ) -> list[FinishedTile]:
        """Run one batch through the model and blend it; return the tiles it finishes."""
        probs = self.predict_windows(np.stack([p.bands for p in pending]))
        finished = blender.add(
            probs, np.array([p.offset for p in pending], dtype=np.int64), np.stack([p.valid for p in pending])
        )
        stats.windows_run += len(pending)
        stats.batches += 1
        stats.max_open_pixels = blender.max_open_pixels
        if bar is not None:
            bar.update(len(pending))
        return finished

    # ---------------------------------------------------------------------------- output

    def inspect(self, scene: str | os.PathLike[str]) -> SceneInfo:
        """Check ``scene`` against the checkpoint's band count and recipe (no CRS warning: the caller decides)."""
        info = inspect_scene(
            scene, expected_bands=self.meta.band_count, warn_no_crs=False, band_names=self.meta.bands
        )
        check_scene_recipe(info.path, self.meta.bands, warn=False)
        return info

    def run(
        self,
        scene: str | os.PathLike[str],
        out: str | os.PathLike[str],
        *,
        probabilities: str | os.PathLike[str] | None = None,
        summary: str | os.PathLike[str] | None = None,
        outlines: str | os.PathLike[str] | None = None,
        min_area: float = 0.0,
        pixel_size: float | None = None,
        overwrite: bool = False,
        progress: bool = False,
        date: str | None = None,
        partial: PartialRun | None = None,
    ) -> SegmentResult:
        """Segment ``scene`` and write the mask COG (and the optional outputs) atomically.

        See :func:`segment_scene` for the arguments. All checks happen before any window
        runs. With ``partial`` (:class:`~geoglacier.inference.partial.PartialRun`) the
        tiles it holds are kept and only the others computed; an interrupt keeps the
        tiles written so far there and raises :class:`~geoglacier.errors.Interrupted`.
        """
        start = time.perf_counter()
        targets = check_outputs(out, probabilities, summary, outlines, overwrite, scene=scene)
        check_min_area(min_area)
        info = self.inspect(scene)
        check_areas(
            info,
            pixel_size,
            needed=summary is not None,
            outlines=outlines is not None,
        )
        accumulator = make_accumulator(info, pixel_size, needed=summary is not None, source=out)
        product = product_tags(info.path, date)  # ACQUISITION_DATE, SENSOR, SOURCE_PRODUCT travel along
        mask_spec, prob_spec = output_specs(info, self.window, product)
        stats = RunStats()
        done = None if partial is None else partial.done
        outputs: RunOutputs | None = None
        try:
            with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), ExitStack() as stack:
                outputs = RunOutputs.open(
                    stack, targets, mask_spec, prob_spec, overwrite, accumulator, partial
                )
                for tile in self.predict(
                    info, progress=progress, stats=stats, tile=mask_spec.block, done=done
                ):
                    outputs.write(tile, float(self.meta.threshold))
                if done is None or not done.any():
                    check_something_ran(info, stats)
                area, outline_count = outputs.finish(min_area, summary_fields(product))
        except KeyboardInterrupt:
            if partial is None:
                raise
            raise interrupted_message(out, partial, outputs.tiles_written if outputs else None) from None
        except BaseException:
            if partial is not None and partial.done is None:
                partial.remove()
            elif partial is not None:  # a resumed run's kept tiles stay for another --resume
                partial.save([partial.done])
            raise
        if partial is not None:
            partial.remove()
        return self._result(targets, area, outline_count, stats, time.perf_counter() - start)

    def _result(
        self,
        targets: dict[str, Path],
        area: AreaSummary | None,
        outline_count: int | None,
        stats: RunStats,
        seconds: float,
    ) -> SegmentResult:
        """What :meth:`run` wrote and counted."""
        return SegmentResult(
            mask=targets["mask"],
            probabilities=targets.get("probabilities"),
            summary_path=targets.get("summary"),
            outlines=targets.get("outlines"),
            summary=area,
            outline_count=outline_count,
            windows_run=stats.windows_run,
            windows_skipped=stats.windows_skipped,
            seconds=seconds,
            max_open_pixels=stats.max_open_pixels,
            device=self.device,
            precision=self.precision,
            engine=self.engine.name,
            engine_reason=self.engine_reason,
            extra={
                "windows_total": stats.windows_total,
                "batches": stats.batches,
                "window": self.window,
                "normalization": self.meta.normalization,
            },
        )


def interrupted_message(
    out: str | os.PathLike[str], partial: PartialRun, written: list[Any] | None
) -> Interrupted:
    """Keep the tiles written so far in ``partial``; the interrupt that says so.

    ``written`` is None when the outputs were not open yet: the tiles kept before (a
    resumed run) stay as they were, and a new run leaves nothing.
    """
    if written is None:
        if partial.done is None:
            partial.remove()
            return Interrupted("Interrupted; no output was left behind.")
        written = [partial.done]
    kept = partial.save(written)
    if kept == 0 and partial.done is None:
        partial.remove()
        return Interrupted("Interrupted; no output was left behind.")
    total = next((w.size for w in written if w is not None), 0)
    return Interrupted(
        f"Interrupted; {kept} of {total} output tiles of {out} are kept in {partial.folder}: "
        "run the same command with --resume to continue"
    )


def check_something_ran(info: SceneInfo, stats: RunStats) -> None:
    """Raise when every window was skipped: the scene is nodata throughout.

    Raises:
        InvalidRasterError: naming the scene and its nodata value.
    """
    if stats.windows_run == 0:
        raise all_nodata_error(info)


# ----------------------------------------------------------------------------- top level


def _check_scene_run(
    scene: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    min_area: float,
    pixel_size: float | None,
    overwrite: bool,
    date: str | None,
    inventory: str | os.PathLike[str] | None,
    glaciers: str | os.PathLike[str] | None,
    id_column: str | None,
) -> tuple[SceneInfo, Any, str | None]:
    """The checks before the model loads: outputs (none may be an input), options, the scene and the inventory.

    Returns the scene's info, the prepared inventory (or None) and the checked date.
    """
    check_outputs(
        out, probabilities, summary, outlines, overwrite, scene=scene, glaciers=glaciers,
        inputs={"--model": with_companions(model_path), "--inventory": with_companions(inventory)},
    )  # fmt: skip
    check_min_area(min_area)
    if date is not None:
        date = check_date(date)
    info = inspect_scene(scene, expected_bands=None, warn_no_crs=False)
    check_areas(
        info,
        pixel_size,
        needed=summary is not None,
        outlines=outlines is not None,
        inventory=inventory is not None,
    )
    inv = prepare_glacier_table(
        inventory,
        glaciers,
        crs=info.crs,
        transform=info.transform,
        height=info.height,
        width=info.width,
        other_paths=[scene, out, probabilities, summary, outlines],
        id_column=id_column,
        overwrite=overwrite,
        outlines=outlines is not None,
    )
    return info, inv, date


def _run_segmenter(
    segmenter: Segmenter,
    scene: str | os.PathLike[str],
    out: str | os.PathLike[str],
    inv: Any,
    *,
    probabilities: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    glaciers: str | os.PathLike[str] | None,
    min_area: float,
    pixel_size: float | None,
    overwrite: bool,
    progress: bool,
    date: str | None,
    partial: PartialRun | None = None,
) -> SegmentResult:
    """Run the segmenter (SIGTERM as an interrupt), then the inventory's products."""
    with sigterm_as_interrupt():
        result = segmenter.run(
            scene,
            out,
            probabilities=probabilities,
            summary=summary,
            outlines=outlines if inv is None else None,  # with an inventory: traced below, with ids
            min_area=min_area,
            pixel_size=pixel_size,
            overwrite=overwrite,
            progress=progress,
            date=date,
            partial=partial,
        )
        if inv is not None:
            try:
                result = glacier_products(
                    result,
                    inv,
                    glaciers,
                    outlines,
                    min_area,
                    overwrite,
                    error_model=segmenter.meta.error_model,
                )
            except KeyboardInterrupt:
                written = ", ".join(
                    str(p) for p in (result.mask, result.probabilities, result.summary_path) if p
                )
                raise Interrupted(
                    f"Interrupted after {written} were written, before the per-glacier outputs; "
                    "run the same command with --overwrite to write them all again"
                ) from None
    return result


def segment_scene(
    scene: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    window: int | None = None,
    overlap: float = 0.25,
    overlap_px: int | None = None,
    batch_size: int = 4,
    blend: str = "gaussian",
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
    engine: str = "auto",
    probabilities: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    outlines: str | os.PathLike[str] | None = None,
    min_area: float = 0.0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    inventory: str | os.PathLike[str] | None = None,
    glaciers: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    date: str | None = None,
    resume: bool = False,
    resumable: bool = True,
) -> SegmentResult:
    """Segment a whole scene with a checkpoint; write a georeferenced COG glacier mask.

    Everything is checked before the first window runs: output paths, options, the
    checkpoint, the scene and its band count, and whether areas can be computed.

    Args:
        scene: 5-band (or the checkpoint's band count) GeoTIFF.
        model_path: checkpoint written by ``geoglacier train``, or a model exported from
            one by ``geoglacier export`` (``.onnx``, ``.xml``).
        out: mask COG: uint8, 1 glacier, 0 not glacier, 255 nodata; the scene's grid.
        window, overlap, overlap_px, batch_size, blend, device, precision, tta, engine: as
            :class:`~geoglacier.inference.config.InferenceConfig` has them (the default
            window: :func:`~geoglacier.inference.config.default_window`).
        probabilities: also write the blended probability (float32 COG, nodata NaN).
        summary: also write the area summary as JSON.
        outlines: also write glacier polygons (.gpkg or .geojson) with their areas.
        min_area: drop outline polygons smaller than this many km2.
        pixel_size: pixel side in metres, for areas of a scene without CRS.
        overwrite: replace existing outputs.
        progress: show a progress bar of windows on stderr.
        inventory, glaciers: glacier outlines and the per-glacier table (.gpkg or .csv) to
            write from the finished mask (:mod:`geoglacier.glaciers.areas`); an inventory
            needs ``glaciers`` or ``outlines``.
            The table's path and totals land in ``result.extra["glaciers"]`` and
            ``result.extra["glacier_totals"]``; ``outlines`` polygons then carry the
            ``glacier_id`` of the inventory glacier they overlap most.
        id_column: the inventory's id column (default: found automatically).
        date: acquisition date (ISO 8601) for the mask's ``ACQUISITION_DATE`` tag and the
            summary, replacing the scene's; the scene's ``ACQUISITION_DATE``, ``SENSOR`` and
            ``SOURCE_PRODUCT`` tags are copied either way.
        resume: continue a run of the same command that was interrupted: the output
            tiles it kept (:mod:`geoglacier.inference.partial`) are reused and only the
            windows that touch the others run.
        resumable: False: an interrupt keeps nothing for ``resume`` (an ensemble's members).

    Returns:
        A :class:`SegmentResult`.

    Raises:
        OutputExistsError, OutputPathError: an output cannot be written.
        ConfigError: an option is out of range or the device is unavailable.
        CheckpointError: the checkpoint is unreadable or trained on other bands.
        RecipeMismatchError: the scene's band descriptions name other bands than the checkpoint's.
        SceneNotFoundError, InvalidRasterError, BandCountError: a bad scene.
        CRSMissingError: areas or outlines asked for a scene without CRS (and no pixel size).
        InventoryError: a bad inventory (checked before the model runs).
        OutputExistsError: an interrupted run's tiles exist and neither ``resume`` nor
            ``overwrite`` is given; ConfigError: ``resume`` with other inputs or options.
    """
    config = InferenceConfig(
        window=window, overlap=overlap, overlap_px=overlap_px, batch_size=batch_size, blend=blend,
        device=device, precision=precision, tta=tta, engine=engine,
    ).validate()  # fmt: skip
    info, inv, date = _check_scene_run(
        scene, model_path, out, probabilities, summary, outlines, min_area, pixel_size, overwrite, date,
        inventory, glaciers, id_column,
    )  # fmt: skip
    if resume and not resumable:
        raise ConfigError("resume: this run keeps no partial state to resume from")
    segmenter = _load_segmenter(model_path, config, info)
    wanted = resume if resumable else None
    partial = _partial_run(
        scene, model_path, out, segmenter, probabilities is not None, date, wanted, overwrite
    )
    return _run_segmenter(
        segmenter, scene, out, inv, probabilities=probabilities, summary=summary, outlines=outlines,
        glaciers=glaciers, min_area=min_area, pixel_size=pixel_size, overwrite=overwrite,
        progress=progress, date=date, partial=partial,
    )  # fmt: skip


def _load_segmenter(
    model_path: str | os.PathLike[str], config: InferenceConfig, info: SceneInfo
) -> Segmenter:
    """The checkpoint's (or exported model's) engine for ``info``'s bands, wrapped."""
    loaded = load_engine(
        model_path, config.engine, config.device, config.precision, expected_bands=info.count
    )
    check_scene_recipe(info.path, loaded.meta.bands)  # warns once for a scene without descriptions
    return Segmenter(loaded.engine, loaded.meta, config, loaded.reason)


def _partial_run(
    scene: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    segmenter: Segmenter,
    probabilities: bool,
    date: str | None,
    resume: bool | None,
    overwrite: bool,
) -> PartialRun | None:
    """The resumable state of this run (see :mod:`geoglacier.inference.partial`); None
    when ``resume`` is None (a run that keeps none, as an ensemble's members).

    The fingerprint holds the engine, device and precision as resolved (``auto`` may
    pick another on another machine) and the files read beside the scene and model.
    """
    from geoglacier.inference.batch_record import file_identity

    if resume is None:
        return None

    sidecars = [Path(f"{scene}{ext}") for ext in (".msk", ".aux.xml")]
    config = segmenter.config
    fingerprint = {
        "scene": [file_identity(f) for f in [Path(scene), *(p for p in sidecars if p.is_file())]],
        "model": [file_identity(f) for f in with_companions(model_path) if f.exists()],
        **{k: getattr(config, k) for k in ("window", "overlap", "overlap_px", "blend", "tta")},
        "engine": segmenter.engine.name,
        "device": str(segmenter.device),
        "precision": segmenter.precision,
        "probabilities": probabilities,
        "date": date,
    }
    outputs = ("mask", "probabilities") if probabilities else ("mask",)
    return PartialRun.prepare(out, fingerprint, outputs, resume=resume, overwrite=overwrite)
