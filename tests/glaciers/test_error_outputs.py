"""The error model's columns in the glacier tables (glaciers, segment-scene, segment-scenes) and totals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.glaciers.error_model import ErrorModel, store_error_model
from geoglacier.model import ModelConfig, build_model
from tests.data import UTM_TRANSFORM, write_scene
from tests.glacier_data import SIZE, px_box, write_mask, write_outlines

MODEL = ErrorModel(
    level=0.9,
    features=("mapped_area_km2", "uncertainty_buffer_km2"),
    coef=(0.01, 0.1, 0.5),
    q_low=-1.0,
    q_high=2.0,
    ranges={"mapped_area_km2": (0.0, 10.0), "uncertainty_buffer_km2": (0.0, 10.0), "coverage": (0.9, 1.0)},
    n=30,
    source="hand-made for tests",
)


def _checkpoint(path: Path, error_model: ErrorModel | None) -> Path:
    torch.manual_seed(1)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config, bands=("red", "green", "blue", "nir", "ndvi"), mean=(127.0,) * 5, std=(60.0,) * 5,
        patch_size=64,
    )  # fmt: skip
    save_checkpoint(build_model(config, encoder_weights=None), meta, path)
    if error_model is not None:
        store_error_model(path, error_model)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return _checkpoint(d / "with.pth", MODEL), _checkpoint(d / "without.pth", None)


def _mask_and_outlines(tmp_path: Path) -> tuple[Path, Path]:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[5:25, 5:25] = 1
    mask[40:60, 40:64] = 1
    inv = write_outlines(
        tmp_path / "inv.gpkg", [px_box(5, 5, 30, 30), px_box(40, 40, 60, 88)]
    )  # G2 half outside
    return write_mask(tmp_path / "mask.tif", mask), inv


def test_glaciers_with_an_error_model(tmp_path: Path, checkpoints: tuple[Path, Path]) -> None:
    mask, inv = _mask_and_outlines(tmp_path)
    out, summary = tmp_path / "g.csv", tmp_path / "g.json"
    args = ["glaciers", str(mask), "--inventory", str(inv), "--out", str(out), "--summary", str(summary)]
    res = CliRunner().invoke(cli, [*args, "--model", str(checkpoints[0])])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    a, buf = table["mapped_area_km2"].to_numpy(), table["uncertainty_buffer_km2"].to_numpy()
    s = 0.01 + 0.1 * a + 0.5 * buf  # by hand, from the model's coefficients
    assert table["beyond_calibration"].tolist() == [False, True]  # G2: coverage 0.5 < 0.9
    assert table["area_low_km2"].iloc[0] == pytest.approx(max(a[0] - s[0], 0.0), rel=1e-5)
    assert table["area_high_km2"].iloc[0] == pytest.approx(a[0] + 2 * s[0], rel=1e-5)
    assert table["area_low_km2"].isna().iloc[1] and table["area_high_km2"].isna().iloc[1]
    totals = json.loads(summary.read_text())
    assert totals["error_level"] == 0.9
    assert totals["glaciers_with_interval"] == 1  # G2 is low-coverage: not counted at all
    assert totals["area_high_km2"] == pytest.approx(table["area_high_km2"].iloc[0], rel=1e-5)
    assert "fully correlated" in totals["interval_assumption"]
    assert "90% interval" in res.output and "not included" not in res.output


@pytest.mark.parametrize("which", ["no --model", "checkpoint without error model"])
def test_glaciers_without_an_error_model_says_so_once(
    tmp_path: Path, checkpoints: tuple[Path, Path], which: str
) -> None:
    mask, inv = _mask_and_outlines(tmp_path)
    out, summary = tmp_path / "g.csv", tmp_path / "g.json"
    args = ["glaciers", str(mask), "--inventory", str(inv), "--out", str(out), "--summary", str(summary)]
    if which != "no --model":
        args += ["--model", str(checkpoints[1])]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("model error not included") == 1
    table = pd.read_csv(out)
    assert not {"area_low_km2", "area_high_km2", "beyond_calibration"} & set(table.columns)
    assert json.loads(summary.read_text())["area_low_km2"] is None


def test_error_model_needing_probabilities_fails_before_work(tmp_path: Path) -> None:
    from geoglacier.errors import ConfigError
    from geoglacier.glaciers.areas import glacier_areas

    mask, inv = _mask_and_outlines(tmp_path)
    needs = ErrorModel(0.9, ("uncertainty_probability_km2",), (0.1, 1.0), -1.0, 1.0)
    with pytest.raises(ConfigError, match="needs --probabilities"):
        glacier_areas(mask, inv, error_model=needs)


def test_segment_scene_and_segment_scenes_tables_carry_the_interval(
    tmp_path: Path, checkpoints: tuple[Path, Path], one_torch_thread: None
) -> None:
    from geoglacier.inference.batch import plan_outputs, segment_one

    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=2)
    inv = write_outlines(
        tmp_path / "inv.gpkg", [px_box(5, 5, 30, 30, UTM_TRANSFORM), px_box(30, 34, 60, 94, UTM_TRANSFORM)]
    )
    table = tmp_path / "g.csv"
    args = [str(scene), "--model", str(checkpoints[0]), "--out", str(tmp_path / "m.tif"), "--window", "64"]
    args += ["--device", "cpu", "--no-progress", "--inventory", str(inv), "--glaciers", str(table)]
    res = CliRunner().invoke(cli, ["segment-scene", *args])
    assert res.exit_code == 0, res.output
    written = pd.read_csv(table)
    assert written["beyond_calibration"].tolist() == [False, True]  # G2 half east of the scene
    assert (written["area_high_km2"].iloc[0] >= written["mapped_area_km2"].iloc[0]) and np.isnan(
        written["area_low_km2"].iloc[1]
    )
    assert "90% interval" in res.output
    out = tmp_path / "batch"
    out.mkdir()
    (plan,) = plan_outputs([scene], out, "gpkg", glaciers=True)
    row = segment_one(plan, str(checkpoints[0]), "cpu", {"window": 64}, False, inventory=str(inv))
    assert row["status"] == "done", row
    batch = pd.read_csv(plan.glaciers)
    np.testing.assert_allclose(batch["area_high_km2"].iloc[0], written["area_high_km2"].iloc[0], rtol=1e-5)
