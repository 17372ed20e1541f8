"""Validation that holds one class only is pointed out: its MCC cannot choose an epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoglacier.training.loop import train
from tests.data import scene_array, write_raster
from tests.training.test_training import FAST

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _classic(root: Path, corner: int) -> Path:
    """Four 96 px pairs whose glacier fills the top-left ``corner`` px: outside every centre crop when small."""
    root.mkdir()
    for k in range(4):
        mask = np.zeros((96, 96), np.uint8)
        mask[:corner, :corner] = 1
        np.save(root / f"masked_t{k}.npy", scene_array(96, 96, seed=k).transpose(1, 2, 0).copy())
        write_raster(root / f"t{k}.tif", mask)
    return root


@pytest.mark.parametrize(("corner", "warned"), [(16, True), (48, False)])
def test_one_class_validation_warns_once(tmp_path: Path, corner: int, warned: bool) -> None:
    lines: list[str] = []
    options = {**FAST, "augment": False, "calibrate": False}
    train(_classic(tmp_path / "data", corner), tmp_path / "m.pth", epochs=2, log=lines.append, **options)
    warnings = [line for line in lines if "validation windows hold no glacier pixel" in line]
    assert len(warnings) == (1 if warned else 0), lines
