"""segment-scenes on a 2-worker dask LocalCluster: failures reported, reruns skip done scenes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.errors import ConfigError
from geoglacier.inference.batch import plan_outputs, segment_scenes
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("batch")
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="Unet", encoder="resnet18"), encoder_weights=None)
    meta = CheckpointMeta(
        model=ModelConfig(arch="Unet", encoder="resnet18"),
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(127.0,) * 5,
        std=(60.0,) * 5,
        patch_size=64,
    )
    ckpt = save_checkpoint(model, meta, root / "model.pth")
    scenes = [write_scene(root / f"s{i}.tif", height=96, width=80, seed=i) for i in range(2)]
    corrupt = root / "broken.tif"
    corrupt.write_bytes(scenes[0].read_bytes()[:300])
    return [scenes[0], corrupt, scenes[1]], ckpt


def test_two_workers_three_scenes_one_corrupt(batch_inputs: tuple[list[Path], Path], tmp_path: Path) -> None:
    scenes, ckpt = batch_inputs
    out = tmp_path / "out"
    logs: list[str] = []
    result = segment_scenes(scenes, ckpt, out, workers=2, device="cpu", progress=False, log=logs.append)
    status = {Path(r["scene"]).name: r["status"] for r in result.rows}
    assert status == {"s0.tif": "done", "broken.tif": "failed", "s1.tif": "done"}
    failed = result.failed[0]
    assert "broken.tif" in failed["error"] and "corrupt" in failed["error"]
    assert any("FAILED" in line and "broken.tif" in line for line in logs)
    for name in ("s0", "s1"):
        with rasterio.open(scenes[0]) as src, rasterio.open(out / f"{name}_mask.tif") as dst:
            assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        summary = json.loads((out / f"{name}_summary.json").read_text())
        assert summary["valid_pixels"] == 96 * 80
    assert not (out / "broken_mask.tif").exists()
    assert not list(out.glob(".geoglacier-tmp-*"))
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [Path(r["scene"]).name for r in rows] == ["s0.tif", "broken.tif", "s1.tif"]
    by_name = {Path(r["scene"]).name: r for r in rows}
    expected = json.loads((out / "s1_summary.json").read_text())["glacier_area_km2"]
    assert float(by_name["s1.tif"]["glacier_area_km2"]) == pytest.approx(expected)

    # The rerun skips the complete scenes and tries the broken one again.
    mtime = (out / "s0_mask.tif").stat().st_mtime_ns
    again = segment_scenes(scenes, ckpt, out, workers=2, device="cpu", progress=False, log=logs.append)
    status = {Path(r["scene"]).name: r["status"] for r in again.rows}
    assert status == {"s0.tif": "skipped", "broken.tif": "failed", "s1.tif": "skipped"}
    assert (out / "s0_mask.tif").stat().st_mtime_ns == mtime
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert float({Path(r["scene"]).name: r for r in rows}["s1.tif"]["glacier_area_km2"]) == pytest.approx(
        expected
    )


def test_cli_exit_code_says_some_failed(batch_inputs: tuple[list[Path], Path], tmp_path: Path) -> None:
    scenes, ckpt = batch_inputs
    out = tmp_path / "out"
    args = ["segment-scenes", *map(str, scenes[:2]), "--model", str(ckpt), "--out-dir", str(out)]
    result = CliRunner().invoke(cli, [*args, "--workers", "1", "--device", "cpu"])
    assert result.exit_code == 1
    assert "1 scene(s) failed" in result.output and "broken.tif" in result.output
    assert (out / "s0_mask.tif").exists()


def test_same_stem_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="same outputs"):
        plan_outputs([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"], tmp_path, None)
