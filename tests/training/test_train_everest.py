"""`geoglacier train` on the real Everest data, both layouts (skips without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

import geoglacier
from geoglacier.checkpoint import load_checkpoint
from geoglacier.training.state import read_metrics_csv

TINY = dict(
    arch="Unet",
    encoder="resnet18",
    encoder_weights="none",
    epochs=1,
    patch_size=64,
    patches_per_epoch=8,
    batch_size=4,
    num_workers=0,
    device="cpu",
    progress=False,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_on_the_seed_layout(everest: Path, tmp_path: Path) -> None:
    result = geoglacier.train(everest / "seed-layout", tmp_path / "model.pth", log=lambda _: None, **TINY)
    model, meta = load_checkpoint(result.paths.checkpoint, expected_bands=5)
    assert meta.patch_size == 64 and meta.epoch == 1
    assert len(read_metrics_csv(result.paths.metrics_csv)) == 1
    assert -1.0 <= meta.metrics["val_mcc"] <= 1.0


def test_train_on_the_scene_layout(everest: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "images" / "west.tif").symlink_to(everest / "west_scene.tif")
    (data / "masks" / "west.tif").symlink_to(everest / "west_mask.tif")
    result = geoglacier.train(data, tmp_path / "model.pth", log=lambda _: None, **TINY)
    _, meta = load_checkpoint(result.paths.checkpoint)
    assert meta.bands == ("red", "green", "blue", "nir", "ndvi")
    # Statistics come from the training blocks only; the red band of the scene is DN 0..255.
    assert 0.0 < meta.mean[0] < 255.0
