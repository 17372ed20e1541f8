"""What a segmentation run returns: the counters of one pass over a scene and the record of what it wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoglacier.measure.areas import AreaSummary


@dataclass
class RunStats:
    """Counters of one pass over a scene."""

    windows_total: int = 0
    windows_run: int = 0
    windows_skipped: int = 0
    batches: int = 0
    max_open_pixels: int = 0


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`~geoglacier.inference.segment.segment_scene` wrote and counted.

    Attributes:
        mask: the mask COG (uint8: 1 glacier, 0 not glacier, 255 nodata).
        probabilities, summary_path, outlines: the optional outputs (``None`` when not asked).
        summary: glacier and valid areas (``None`` when the scene has no CRS and no
            pixel size was given).
        outline_count: polygons written to ``outlines``.
        windows_run, windows_skipped: windows through the model / skipped as all-nodata.
        seconds: wall time of the run.
        max_open_pixels: most pixels held at once in open blending tiles (bounded by the
            block size and the scene's shorter side, not by its area).
        device, precision: what the model ran on.
        engine: what ran the network (``torch``, ``onnxruntime``, ``openvino``) and
            ``engine_reason``, why (``auto``'s choice or "asked for").
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
    max_open_pixels: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    engine: str = "torch"
    engine_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
