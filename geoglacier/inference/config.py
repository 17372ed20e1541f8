"""Inference options: :class:`InferenceConfig` and its validation, and whether a checkpoint can segment.

Everything here is checked before a scene is read or a model runs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from geoglacier.checkpoint import CheckpointMeta
from geoglacier.errors import CheckpointError, ConfigError
from geoglacier.inference.engines import ENGINES, PRECISIONS
from geoglacier.inference.windows import BLEND_MODES, check_overlap, check_window

#: Edge in pixels of the blocks of windows read and blended together (see InferenceConfig).
DEFAULT_BLOCK_SIZE: int = 1024


def _whole_at_least(value: object, minimum: int) -> bool:
    """True for an int (not a bool) of at least ``minimum``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class InferenceConfig:
    """How windows are cut, blended and run through the model.

    Attributes:
        window: window edge in pixels, a multiple of 32; ``None`` uses the checkpoint's
            ``patch_size`` (the size the network was trained on).
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        overlap_px: the overlap in pixels instead (0 <= overlap_px < window); when given it
            wins over ``overlap``, so a larger window keeps the same margin around each
            window's centre instead of a proportionally larger one.
        batch_size: windows per forward pass (>= 1).
        blend: weight map for blending overlapping windows: gaussian, cosine or none.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16 on CUDA, fp16 on older GPUs; on a CPU bf16 with the
            OpenVINO engine where the CPU has native bf16, else fp32), ``fp32``, ``bf16``
            or ``fp16``.
        engine: what runs the network: ``auto``, ``torch``, ``onnxruntime`` or
            ``openvino`` (see :mod:`geoglacier.inference.engines`).
        tta: average the predictions of the four flips of each window.
        block_size: largest edge in pixels of the blocks of windows read and blended
            together; memory follows it (two blocks of input bands and about a
            block-wide band of output tiles), not the scene size.
    """

    window: int | None = None
    overlap: float = 0.25
    batch_size: int = 4
    blend: str = "gaussian"
    device: str = "auto"
    precision: str = "auto"
    tta: bool = False
    block_size: int = DEFAULT_BLOCK_SIZE
    engine: str = "auto"
    overlap_px: int | None = None

    def validate(self) -> InferenceConfig:
        """Check every field (not the device's availability); return ``self``.

        Raises:
            ConfigError: naming the offending option and a valid value.
        """
        if self.window is not None:
            check_window(self.window)
        check_overlap(self.overlap)
        if self.overlap_px is not None:
            if not _whole_at_least(self.overlap_px, 0):
                raise ConfigError(
                    f"--overlap-px must be a whole number of pixels >= 0 (got {self.overlap_px!r})"
                )
            if self.window is not None and self.overlap_px >= self.window:
                raise ConfigError(
                    f"--overlap-px {self.overlap_px} must be less than the window ({self.window} px)"
                )
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)} (got {self.engine!r})")
        if not _whole_at_least(self.batch_size, 1):
            raise ConfigError(f"--batch-size must be a positive integer (got {self.batch_size!r}); use 4")
        if not _whole_at_least(self.block_size, 1):
            raise ConfigError(
                f"block_size must be a positive number of pixels (got {self.block_size!r}); use {DEFAULT_BLOCK_SIZE}"
            )
        if self.blend not in BLEND_MODES:
            raise ConfigError(f"--blend must be one of {', '.join(BLEND_MODES)} (got {self.blend!r})")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        return self

    def overlap_fraction(self) -> float:
        """The overlap as a fraction of the window (``overlap_px / window`` when pixels are given).

        :func:`geoglacier.inference.windows.stride_for` rounds ``window * fraction`` back
        to exactly ``overlap_px``.
        """
        assert self.window is not None
        if self.overlap_px is not None:
            return check_overlap(self.overlap_px / self.window)
        return float(self.overlap)


def check_segmentation_meta(meta: CheckpointMeta) -> None:
    """Check that a checkpoint can segment: one output class, one mean and std per band.

    Raises:
        CheckpointError: naming what is wrong and how to fix it.
    """
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


def default_window(meta: CheckpointMeta) -> int:
    """The window used when none is given: the checkpoint's training patch size.

    The network is fully convolutional and larger windows compute fewer pixels twice,
    but they also change its answer: a U-Net++/ResNet34 trained on 128 px patches gave
    masks that differ on 2.7 % of the pixels at 512 px windows against 256 px and an
    MCC 0.02 lower on a held-out strip, for at most 10 % less time on onnxruntime or
    OpenVINO (benchmarks/results/inference.md). Larger windows stay an option
    (``window`` with ``overlap_px``), measured, not the default.
    """
    return check_window(int(meta.patch_size))
