"""geoglacier: map glaciers from 5-band satellite rasters.

The public API is imported lazily so that ``import geoglacier`` (and the CLI's
``--help``) stay fast: torch and friends load only when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from geoglacier._version import __version__

_EXPORTS = {
    "open_scene": "geoglacier.io.scene",
    "inspect_scene": "geoglacier.io.scene",
    "read_mask": "geoglacier.io.masks",
    "find_pairs": "geoglacier.io.layouts",
    "detect_layout": "geoglacier.io.layouts",
    "build_model": "geoglacier.model",
    "ModelConfig": "geoglacier.model",
    "load_checkpoint": "geoglacier.checkpoint",
    "save_checkpoint": "geoglacier.checkpoint",
    "generate_scene": "geoglacier.synthetic",
    "stack": "geoglacier.products.stack",
    "parse_recipe": "geoglacier.products.recipes",
    "train": "geoglacier.training.loop",
    "TrainConfig": "geoglacier.training.config",
    "segment_scene": "geoglacier.inference.segment",
    "Segmenter": "geoglacier.inference.segment",
    "segment_scenes": "geoglacier.inference.batch",
    "summarize_mask": "geoglacier.measure.areas",
    "evaluate_masks": "geoglacier.measure.evaluate",
    "burn_labels": "geoglacier.glaciers.labels",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'geoglacier' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
