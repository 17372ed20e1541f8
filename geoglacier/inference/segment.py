"""Blended sliding-window inference over whole scenes, in memory bounded by the scene width.

The scene is cut into windows (:func:`geoglacier.inference.windows.tile_grid` geometry: a
``window`` px grid with ``overlap``, the last row and column flush with the edges)
and processed one *strip* at a time: one window row, or a few for narrow scenes so
that batches are full (:func:`rows_per_strip`):

1. a background thread reads the rows of the next strip (rasterio windowed read)
   while the model works on the current one;
2. bands are normalised with the checkpoint's statistics, nodata pixels set to 0;
   windows without a single valid pixel skip the model;
3. windows go through the model in batches (``torch.inference_mode``, channels-last,
   optional bf16/fp16 autocast, optional flip test-time augmentation);
4. probabilities are blended into a ``(rows, width)`` float32 buffer of weighted
   sums (:func:`geoglacier.inference.windows.accumulate`), and the rows no later window touches
   (:func:`geoglacier.inference.windows.finalized_rows`) are divided out and handed on, while the
   rows the next strip still overlaps are carried over.

Each pixel's probability is therefore the weighted mean of every window covering it,
exactly as if the whole scene were blended at once, while the buffers hold one strip
of rows (one window for scenes wider than four batches of windows), never more as the
scene grows taller. :class:`Segmenter` yields those finished rows
(:meth:`Segmenter.predict`) or writes them as COG masks (:meth:`Segmenter.run`);
:func:`segment_scene` checks everything, loads the checkpoint and runs it.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
from torch import nn

from geoglacier.checkpoint import CheckpointMeta, load_checkpoint
from geoglacier.device import resolve_device
from geoglacier.errors import (
    CheckpointError,
    ConfigError,
    CRSMissingError,
    GeoglacierWarning,
    InvalidRasterError,
    OutputPathError,
)
from geoglacier.inference.windows import (
    BLEND_MODES,
    Strip,
    accumulate,
    blend_weights,
    check_overlap,
    check_window,
    finalize,
    pad_reflect,
    padded_size,
    stride_for,
    strip_plan,
    window_starts,
)
from geoglacier.io.atomic import atomic_output, check_output_path
from geoglacier.io.cog import RasterSpec, cog_output
from geoglacier.io.masks import IGNORE
from geoglacier.io.scene import GDAL_CACHE_MB, SceneInfo, inspect_scene, read_window, valid_pixels
from geoglacier.measure.areas import AreaAccumulator, AreaSummary, write_summary_json
from geoglacier.products.metadata import check_date, product_tags, summary_fields
from geoglacier.products.recipes import check_scene_recipe
from geoglacier.training.normalization import STD_FLOOR

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: GDAL block cache during a run (bytes). GDAL's default (5 % of RAM) would let the
#: cache, not the strip buffers, set the peak memory on a large scene.
GDAL_CACHE_BYTES: int = GDAL_CACHE_MB * 1024 * 1024

#: Test-time augmentation: the identity and the three flips (dims of an NCHW tensor).
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class InferenceConfig:
    """How windows are cut, blended and run through the model.

    Attributes:
        window: window edge in pixels, a multiple of 32; ``None`` uses the checkpoint's
            ``patch_size`` (the size the network was trained on).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        batch_size: windows per forward pass (>= 1).
        blend: weight map for blending overlapping windows: gaussian, cosine or none.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on CUDA, fp16 on older GPUs, fp32 on CPU), ``fp32``,
            ``bf16`` or ``fp16``.
        tta: average the predictions of the four flips of each window.
    """

    window: int | None = None
    overlap: float = 0.25
    batch_size: int = 4
    blend: str = "gaussian"
    device: str = "auto"
    precision: str = "auto"
    tta: bool = False

    def validate(self) -> InferenceConfig:
        """Check every field (not the device's availability); return ``self``.

        Raises:
            ConfigError: naming the offending option and a valid value.
        """
        if self.window is not None:
            check_window(self.window)
        check_overlap(self.overlap)
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, numbers.Integral)
            or self.batch_size < 1
        ):
            raise ConfigError(f"--batch-size must be a positive integer (got {self.batch_size!r}); use 4")
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"--blend must be one of {', '.join(BLEND_MODES)} (got {self.blend!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        return self


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where autocast pays off."""
    cpu = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(cpu, name, None)
        with contextlib.suppress(Exception):
            if probe is not None and probe():
                return True
    return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device`` (``torch.float32`` means no autocast).

    Raises:
        ConfigError: an unknown precision, or fp16/bf16 where the device cannot run it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "fp32":
        return torch.float32
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        if precision == "bf16" and not bf16_ok:
            raise ConfigError(f"--precision bf16: {device} does not support bfloat16; use fp16 or fp32")
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type != "cpu":
        return torch.float32
    if precision == "auto":
        # Not bf16, even where the CPU has it: on a deep network bf16 moved probabilities
        # by up to 0.5 and flipped 0.8 % of mask pixels against fp32 for a ~10 % gain
        # (benchmarks/results/inference.md); ask for --precision bf16 explicitly.
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FinishedRows:
    """Rows ``[row_off, row_off + len(probabilities))`` of the scene, blended and final.

    ``probabilities`` is ``(h, width)`` float32, NaN where the scene has nodata.
    """

    row_off: int
    probabilities: np.ndarray


@dataclass
class RunStats:
    """Counters of one pass over a scene."""

    windows_total: int = 0
    windows_run: int = 0
    windows_skipped: int = 0
    batches: int = 0
    max_buffer_rows: int = 0


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment_scene` wrote and counted.

    Attributes:
        mask: the mask COG (uint8: 1 glacier, 0 not glacier, 255 nodata).
        probabilities, summary_path, outlines: the optional outputs (``None`` when not asked).
        summary: glacier and valid areas (``None`` when the scene has no CRS and no
            pixel size was given).
        outline_count: polygons written to ``outlines``.
        windows_run, windows_skipped: windows through the model / skipped as all-nodata.
        seconds: wall time of the run.
        max_buffer_rows: rows of the blending buffers (one strip; independent of the scene height).
        device, precision: what the model ran on.
    """

    mask: Path
    probabilities: Path | None = None
    summary_path: Path | None = None
    outlines: Path | None = None
    summary: AreaSummary | None = None
    outline_count: int | None = None
    windows_run: int = 0
    windows_skipped: int = 0
    seconds: float = 0.0
    max_buffer_rows: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------- engine


def rows_per_strip(n_rows: int, n_cols: int, batch_size: int) -> int:
    """Window rows per strip, so that a strip's windows fill whole batches.

    Batches do not span strips, so with 5 windows per row and batches of 4 every other
    forward pass would carry a single window (slower per window on CPU, wasteful on a
    GPU). Taking ``batch_size / gcd(n_cols, batch_size)`` rows (at most ``batch_size``)
    makes every batch full; wide scenes (>= 4 batches per row) keep one row, so the
    buffer stays at one window of rows. Either way it is independent of the scene height.
    """
    if n_cols >= 4 * batch_size:
        return 1
    return max(1, min(batch_size // math.gcd(n_cols, batch_size), n_rows))


class Segmenter:
    """Run a loaded network over whole scenes; reusable across scenes (load the model once).

    Args:
        model: a network mapping ``(N, bands, h, w)`` to ``(N, 1, h, w)`` logits (any
            ``nn.Module``: the checkpoint's, or a stand-in in tests).
        meta: the checkpoint's metadata (bands, normalisation, patch size, threshold).
        config: windowing and runtime options; ``config.window=None`` means ``meta.patch_size``.

    Raises:
        ConfigError: invalid options, or a device that is not available.
        CheckpointError: a checkpoint with more than one output class.
    """

    def __init__(self, model: nn.Module, meta: CheckpointMeta, config: InferenceConfig | None = None) -> None:
        config = (config or InferenceConfig()).validate()
        if config.window is None:
            config = replace(config, window=check_window(int(meta.patch_size)))
        if meta.model.classes != 1:
            raise CheckpointError(
                f"the checkpoint has {meta.model.classes} output classes; segment-scene needs a "
                "binary glacier model (classes=1)"
            )
        if len(meta.mean) != meta.band_count or len(meta.std) != meta.band_count:
            raise CheckpointError(
                f"the checkpoint's normalisation has {len(meta.mean)} means and {len(meta.std)} stds "
                f"for {meta.band_count} bands; re-export the checkpoint"
            )
        if not all(s >= 0 and math.isfinite(s) for s in meta.std):
            raise CheckpointError(f"the checkpoint's band std {meta.std} must be finite and >= 0")
        self.config = config
        self.meta = meta
        self.device = resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device).eval()
        if self.device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self._mean = np.asarray(meta.mean, dtype=np.float32)[:, None, None]
        # The same floor as training's Normalization.apply, for constant bands.
        self._std = np.maximum(np.asarray(meta.std, dtype=np.float32), STD_FLOOR)[:, None, None]
        self.stats = RunStats()

    @classmethod
    def from_checkpoint(
        cls, model_path: str | os.PathLike[str], config: InferenceConfig | None = None
    ) -> Segmenter:
        """Load a checkpoint and wrap it (for example once per dask worker)."""
        config = (config or InferenceConfig()).validate()
        device = resolve_device(config.device)
        model, meta = load_checkpoint(model_path, device=device)
        return cls(model, meta, config)

    @property
    def window(self) -> int:
        assert self.config.window is not None
        return self.config.window

    # ----------------------------------------------------------------------- model side

    def predict_windows(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, h, w)`` float32 of normalised windows ``(N, bands, h, w)``."""
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.dtype)
            if self.dtype != torch.float32
            else contextlib.nullcontext()
        )
        flips = TTA_FLIPS if self.config.tta else ((),)
        with torch.inference_mode(), autocast:
            total: torch.Tensor | None = None
            for dims in flips:
                xi = torch.flip(x, dims) if dims else x
                logits = self.model(xi)
                if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[2:] != x.shape[2:]:
                    raise CheckpointError(
                        f"the model returned shape {tuple(logits.shape)} for input {tuple(x.shape)}; "
                        "expected (N, 1, h, w) logits"
                    )
                prob = torch.sigmoid(logits.float())
                prob = torch.flip(prob, dims) if dims else prob
                total = prob if total is None else total + prob
        assert total is not None
        out = total[:, 0] / len(flips)
        return out.to("cpu", torch.float32).numpy()

    # ------------------------------------------------------------------------ data side

    def _load_strip(self, info: SceneInfo, strip: Strip, padded_width: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised ``(bands, window, padded_width)`` rows of ``strip`` and their validity."""
        window = self.window
        rows = min(strip.buffer_height, info.height - strip.origin)
        raw = read_window(info.path, strip.origin, 0, rows, info.width)
        valid = valid_pixels(raw, info.nodata)
        raw -= self._mean  # in place: the strip is the largest array held, keep one copy
        raw /= self._std
        raw[:, ~valid] = 0.0
        x = pad_reflect(raw, window)
        if valid.shape != x.shape[1:]:
            padded = np.zeros(x.shape[1:], dtype=bool)
            padded[: valid.shape[0], : valid.shape[1]] = valid
            valid = padded
        return x, valid

    def predict(
        self,
        scene: str | os.PathLike[str] | SceneInfo,
        progress: bool = False,
        stats: RunStats | None = None,
    ) -> Iterator[FinishedRows]:
        """Yield the scene's blended probabilities, top to bottom, in consecutive row blocks.

        Memory is bounded by a few ``(strip rows, width)`` arrays whatever the scene height.
        Counters of the pass go into ``stats`` when given (one per call, so threads
        sharing this segmenter on a dask worker never mix their counts), and are also
        left in :attr:`stats` for single-threaded callers.

        Raises:
            BandCountError, InvalidRasterError, SceneNotFoundError: for a bad scene.
        """
        info = scene if isinstance(scene, SceneInfo) else self.inspect(scene)
        window = self.window
        stride = stride_for(window, self.config.overlap)
        n_rows = len(window_starts(info.height, window, stride))
        n_cols = len(window_starts(info.width, window, stride))
        per_strip = rows_per_strip(n_rows, n_cols, self.config.batch_size)
        strips = strip_plan(info.height, info.width, window, self.config.overlap, rows_per_strip=per_strip)
        pw = padded_size(info.width, window)
        weights = blend_weights(window, self.config.blend)  # type: ignore[arg-type]
        buf_rows = max(s.buffer_height for s in strips)
        sum_buf = np.zeros((buf_rows, pw), dtype=np.float32)
        weight_buf = np.zeros((buf_rows, pw), dtype=np.float32)
        stats = stats if stats is not None else RunStats()
        stats.windows_total = sum(len(s.row_starts) * len(s.col_starts) for s in strips)
        stats.max_buffer_rows = buf_rows
        self.stats = stats
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=stats.windows_total, unit="window", file=sys.stderr, desc=info.path.name)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoglacier-read")
        try:
            future: Future[tuple[np.ndarray, np.ndarray]] = pool.submit(self._load_strip, info, strips[0], pw)
            origin = 0
            for i, strip in enumerate(strips):
                x, valid = future.result()
                if i + 1 < len(strips):  # prefetch while the model works
                    future = pool.submit(self._load_strip, info, strips[i + 1], pw)
                shift = strip.origin - origin
                if shift:  # carry the rows the new strip still overlaps to the top
                    keep = max(buf_rows - shift, 0)
                    if keep:
                        sum_buf[:keep] = sum_buf[shift:]
                        weight_buf[:keep] = weight_buf[shift:]
                    sum_buf[keep:] = 0.0
                    weight_buf[keep:] = 0.0
                origin = strip.origin
                self._run_strip(x, valid, strip, sum_buf, weight_buf, weights, bar, stats)
                a, b = strip.flush
                probs = finalize(
                    sum_buf[a - origin : b - origin, : info.width],
                    weight_buf[a - origin : b - origin, : info.width],
                    fill=np.nan,
                )
                probs[~valid[a - origin : b - origin, : info.width]] = np.nan
                yield FinishedRows(a, probs)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()

    def _run_strip(
        self,
        x: np.ndarray,
        valid: np.ndarray,
        strip: Strip,
        sum_buf: np.ndarray,
        weight_buf: np.ndarray,
        weights: np.ndarray,
        bar: Any,
        stats: RunStats,
    ) -> None:
        window = self.window
        todo: list[tuple[int, int]] = []
        for r, c in strip.offsets.tolist():
            lr = r - strip.origin
            if valid[lr : lr + window, c : c + window].any():
                todo.append((r, c))
            else:
                stats.windows_skipped += 1
        if bar is not None and len(todo) < len(strip.offsets):
            bar.update(len(strip.offsets) - len(todo))
        bs = self.config.batch_size
        for k in range(0, len(todo), bs):
            chunk = todo[k : k + bs]
            batch = np.stack(
                [x[:, r - strip.origin : r - strip.origin + window, c : c + window] for r, c in chunk]
            )
            probs = self.predict_windows(batch)
            accumulate(
                sum_buf,
                weight_buf,
                probs,
                np.asarray(chunk, dtype=np.int64),
                weights,
                origin_row=strip.origin,
            )
            stats.windows_run += len(chunk)
            stats.batches += 1
            if bar is not None:
                bar.update(len(chunk))

    # ---------------------------------------------------------------------------- output

    def inspect(self, scene: str | os.PathLike[str]) -> SceneInfo:
        """Check ``scene`` against the checkpoint's band count (no CRS warning: the caller decides)."""
        return inspect_scene(scene, expected_bands=self.meta.band_count, warn_no_crs=False)

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
    ) -> SegmentResult:
        """Segment ``scene`` and write the mask COG (and the optional outputs) atomically.

        See :func:`segment_scene` for the arguments. All checks happen before any window runs.
        """
        start = time.perf_counter()
        targets = check_outputs(out, probabilities, summary, outlines, overwrite, scene=scene)
        check_min_area(min_area)
        info = self.inspect(scene)
        check_areas(info, pixel_size, needed=summary is not None, outlines=outlines is not None)
        accumulator = make_accumulator(info, pixel_size, needed=summary is not None, source=out)
        product = product_tags(info.path, date)  # ACQUISITION_DATE, SENSOR, SOURCE_PRODUCT travel along
        tags = {"GEOGLACIER_SCENE": info.path.name, "GEOGLACIER_WINDOW": str(self.window), **product}
        mask_spec = RasterSpec(
            info.height,
            info.width,
            info.crs,
            info.transform,
            "uint8",
            IGNORE,
            resampling="NEAREST",
            description="glacier",
            tags={**tags, "MASK_VALUES": "0=not glacier, 1=glacier, 255=nodata"},
        )
        prob_spec = replace(
            mask_spec,
            dtype="float32",
            nodata=float("nan"),
            resampling="AVERAGE",
            description="glacier probability",
            tags=tags,
        )
        threshold = float(self.meta.threshold)
        on_block = None if accumulator is None else accumulator.add
        outline_count: int | None = None
        area: AreaSummary | None = None
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), ExitStack() as stack:
            mask_out = stack.enter_context(cog_output(targets["mask"], mask_spec, overwrite, on_block))
            prob_out = (
                stack.enter_context(cog_output(targets["probabilities"], prob_spec, overwrite))
                if "probabilities" in targets
                else None
            )
            summary_tmp = (
                stack.enter_context(atomic_output(targets["summary"], overwrite))
                if "summary" in targets
                else None
            )
            outlines_tmp = (
                stack.enter_context(atomic_output(targets["outlines"], overwrite))
                if "outlines" in targets
                else None
            )
            stats = RunStats()
            for rows in self.predict(info, progress=progress, stats=stats):
                p = rows.probabilities
                mask = np.where(np.isnan(p), np.uint8(IGNORE), (p > threshold).astype(np.uint8))
                mask_out.write(mask, rows.row_off)
                if prob_out is not None:
                    prob_out.write(p, rows.row_off)
            if stats.windows_run == 0:
                nodata = "NaN" if info.nodata is None else f"{info.nodata:g} or NaN"
                raise InvalidRasterError(
                    f"{info.path}: every pixel is nodata ({nodata} in some band); nothing to segment - "
                    "check the scene and its nodata value"
                )
            mask_tmp = mask_out.finish()
            if prob_out is not None:
                prob_out.finish()
            if accumulator is not None:
                area = accumulator.result()
            if summary_tmp is not None:
                assert area is not None
                write_summary_json(area, summary_tmp, overwrite=True, extra=summary_fields(product))
            if outlines_tmp is not None:
                from geoglacier.measure.outlines import write_outlines

                outline_count = write_outlines(mask_tmp, outlines_tmp, min_area_km2=min_area, overwrite=True)
        return SegmentResult(
            mask=targets["mask"],
            probabilities=targets.get("probabilities"),
            summary_path=targets.get("summary"),
            outlines=targets.get("outlines"),
            summary=area,
            outline_count=outline_count,
            windows_run=stats.windows_run,
            windows_skipped=stats.windows_skipped,
            seconds=time.perf_counter() - start,
            max_buffer_rows=stats.max_buffer_rows,
            device=str(self.device),
            precision=precision_name(self.dtype),
            extra={"windows_total": stats.windows_total, "batches": stats.batches, "window": self.window},
        )


# ------------------------------------------------------------------------------ checks


def check_outputs(
    out: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    overwrite: bool,
    scene: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Check every requested output path before work; return them by role.

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False.
        OutputPathError: a folder is missing or read-only, or two outputs share a path.
        ConfigError: the outlines file has an unsupported extension.
    """
    requested = {"mask": out, "probabilities": probabilities, "summary": summary, "outlines": outlines}
    targets: dict[str, Path] = {}
    seen: dict[Path, str] = {}
    if scene is not None:
        seen[Path(scene).resolve()] = "input scene"
    for role, path in requested.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise OutputPathError(
                f"{path}: used for both the {seen[key]} and the {role} output; give distinct files"
            )
        target = check_output_path(path, overwrite)
        seen[key] = role
        targets[role] = target
    if outlines is not None:
        from geoglacier.measure.outlines import DRIVERS

        if targets["outlines"].suffix.lower() not in DRIVERS:
            raise ConfigError(
                f"{outlines}: unknown outline format {targets['outlines'].suffix or '(no extension)'!r}; "
                "use a .gpkg (GeoPackage, in the mask's CRS) or .geojson (EPSG:4326) file name"
            )
    return targets


def check_min_area(min_area: float) -> None:
    if not (min_area >= 0 and math.isfinite(min_area)):
        raise ConfigError(f"--min-area must be >= 0 km2 (got {min_area})")


def check_areas(info: SceneInfo, pixel_size: float | None, *, needed: bool, outlines: bool = False) -> bool:
    """Whether areas can be computed for ``info``; raise if they are needed and cannot be.

    Raises:
        CRSMissingError: no CRS and a summary or outlines were asked for (outlines always
            need a CRS; a summary can do with ``pixel_size``).
        ConfigError: a non-positive ``pixel_size``.
    """
    if pixel_size is not None and not (pixel_size > 0 and math.isfinite(pixel_size)):
        raise ConfigError(f"--pixel-size must be a positive number of metres (got {pixel_size})")
    if info.crs is None and pixel_size is None and needed:
        raise CRSMissingError(
            f"{info.path} has no CRS, so areas cannot be computed; pass --pixel-size METRES "
            "or assign a CRS (for example with gdal_edit.py -a_srs EPSG:XXXX)"
        )
    if outlines and info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS; outlines need a georeferenced scene "
            "(assign the CRS, for example with gdal_edit.py -a_srs EPSG:XXXX)"
        )
    return info.crs is not None or pixel_size is not None


def make_accumulator(
    info: SceneInfo, pixel_size: float | None, *, needed: bool, source: str | os.PathLike[str] | None = None
) -> AreaAccumulator | None:
    """An area accumulator for the scene's grid, or ``None`` when areas cannot be computed.

    Raises:
        CRSMissingError: no CRS, no ``pixel_size``, and a summary or outlines were asked for.
        ConfigError: a non-positive ``pixel_size``.
    """
    if not check_areas(info, pixel_size, needed=needed):
        warnings.warn(
            f"{info.path} has no CRS: the mask is written without one and no areas are computed "
            "(pass --pixel-size METRES for areas)",
            GeoglacierWarning,
            stacklevel=3,
        )
        return None
    return AreaAccumulator(info.transform, info.crs, info.height, info.width, pixel_size, source=source)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside the block, so cleanup runs; restore afterwards.

    Only the main thread can install handlers; elsewhere (a dask worker thread) the
    block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- top level


def segment_scene(
    scene: str | os.PathLike[str],
    model_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    window: int | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    blend: str = "gaussian",
    device: str = "auto",
    precision: str = "auto",
    tta: bool = False,
    probabilities: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    outlines: str | os.PathLike[str] | None = None,
    min_area: float = 0.0,
    pixel_size: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    date: str | None = None,
) -> SegmentResult:
    """Segment a whole scene with a checkpoint; write a georeferenced COG glacier mask.

    Everything is checked before the first window runs: output paths, options, the
    checkpoint, the scene and its band count, and whether areas can be computed.

    Args:
        scene: 5-band (or the checkpoint's band count) GeoTIFF.
        model_path: checkpoint written by ``geoglacier train``.
        out: mask COG: uint8, 1 glacier, 0 not glacier, 255 nodata; the scene's grid.
        window: window edge in pixels (multiple of 32); default the checkpoint's patch size.
        overlap: fraction of a window shared with the next, in [0, 1).
        batch_size: windows per forward pass.
        blend: gaussian, cosine or none (weights for blending overlapping windows).
        device: auto, cpu, cuda or cuda:N.
        precision: auto, fp32, bf16 or fp16 (autocast; the blend is always float32).
        tta: average the predictions of the four flips of each window (4x slower).
        probabilities: also write the blended probability (float32 COG, nodata NaN).
        summary: also write the area summary as JSON.
        outlines: also write glacier polygons (.gpkg or .geojson) with their areas.
        min_area: drop outline polygons smaller than this many km2.
        pixel_size: pixel side in metres, for areas of a scene without CRS.
        overwrite: replace existing outputs.
        progress: show a progress bar of windows on stderr.
        date: acquisition date (ISO 8601) for the mask's ``ACQUISITION_DATE`` tag and the
            summary, replacing the scene's; the scene's ``ACQUISITION_DATE``, ``SENSOR`` and
            ``SOURCE_PRODUCT`` tags are copied either way.

    Returns:
        A :class:`SegmentResult`.

    Raises:
        OutputExistsError, OutputPathError: an output cannot be written.
        ConfigError: an option is out of range or the device is unavailable.
        CheckpointError: the checkpoint is unreadable or trained on other bands.
        RecipeMismatchError: the scene's band descriptions name other bands than the checkpoint's.
        SceneNotFoundError, InvalidRasterError, BandCountError: a bad scene.
        CRSMissingError: areas or outlines asked for a scene without CRS (and no pixel size).
    """
    config = InferenceConfig(
        window=window,
        overlap=overlap,
        batch_size=batch_size,
        blend=blend,
        device=device,
        precision=precision,
        tta=tta,
    ).validate()
    check_outputs(out, probabilities, summary, outlines, overwrite, scene=scene)
    check_min_area(min_area)
    if date is not None:
        date = check_date(date)
    torch_device = resolve_device(device)
    resolve_precision(precision, torch_device)
    info = inspect_scene(scene, expected_bands=None, warn_no_crs=False)
    check_areas(info, pixel_size, needed=summary is not None, outlines=outlines is not None)
    model, meta = load_checkpoint(model_path, expected_bands=info.count, device=torch_device)
    check_scene_recipe(info.path, meta.bands)
    segmenter = Segmenter(model, meta, config)
    with sigterm_as_interrupt():
        return segmenter.run(
            scene,
            out,
            probabilities=probabilities,
            summary=summary,
            outlines=outlines,
            min_area=min_area,
            pixel_size=pixel_size,
            overwrite=overwrite,
            progress=progress,
            date=date,
        )
