"""The real Everest west scene segments end to end (skips without ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import torch

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.inference.segment import segment_scene
from geoglacier.measure.evaluate import evaluate_masks
from geoglacier.model import ModelConfig, build_model
from geoglacier.training.normalization import scene_statistics


def test_everest_scene_segments_end_to_end(everest: Path, tmp_path: Path) -> None:
    scene = everest / "west_scene.tif"
    stats = scene_statistics(scene)
    torch.manual_seed(0)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config,
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=stats.mean,
        std=stats.std,
        patch_size=128,
    )
    ckpt = save_checkpoint(build_model(config, encoder_weights=None), meta, tmp_path / "m.pth")
    out = tmp_path / "mask.tif"
    result = segment_scene(
        scene, ckpt, out, window=256, summary=tmp_path / "s.json", device="cpu", progress=False
    )
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.width, dst.height) == (src.crs, src.transform, 480, 655)
        assert dst.nodata == 255 and dst.dtypes[0] == "uint8"
        values = dst.read(1)
    assert set(np.unique(values).tolist()) <= {0, 1}  # the scene has no nodata
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["valid_pixels"] == 480 * 655
    assert summary["glacier_pixels"] == int(values.sum())
    # 30 m UTM pixels: the nominal area is a hand computation.
    assert summary["nominal_valid_area_km2"] == np.float64(480 * 655 * 900 / 1e6)
    assert result.windows_skipped == 0
    metrics = evaluate_masks(out, everest / "west_mask.tif")
    assert metrics["valid_pixels"] == 480 * 655
