"""Tests of ``geoglacier segment-scene`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.cli.segment_scene import segment_scene
from geoglacier.errors import ConfigError, OutputExistsError
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    config = ModelConfig(encoder="resnet18")
    meta = CheckpointMeta(
        model=config,
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(127.0,) * 5,
        std=(60.0,) * 5,
        patch_size=64,
    )
    return save_checkpoint(build_model(config, None), meta, tmp_path_factory.mktemp("ckpt") / "m.pth")


def group() -> click.Group:
    """The real group class (one-line errors) holding only this command, whether or not it is registered."""
    return type(cli)(name="geoglacier", commands={"segment-scene": segment_scene})


def test_segment_scene_writes_all_outputs(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=96, width=128, seed=2)
    args = [
        str(scene),
        "--model",
        str(checkpoint),
        "--out",
        str(tmp_path / "mask.tif"),
        "--probabilities",
        str(tmp_path / "p.tif"),
        "--summary",
        str(tmp_path / "s.json"),
        "--outlines",
        str(tmp_path / "o.gpkg"),
        "--window",
        "64",
        "--overlap",
        "0.5",
        "--batch-size",
        "3",
        "--blend",
        "cosine",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--no-progress",
    ]
    result = CliRunner().invoke(segment_scene, args)
    assert result.exit_code == 0, result.output
    assert "glacier area (true)" in result.output
    assert "windows run" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["crs"] == "EPSG:32645" and summary["valid_pixels"] == 96 * 128
    with rasterio.open(tmp_path / "mask.tif") as m, rasterio.open(tmp_path / "p.tif") as p:
        mask, prob = m.read(1), p.read(1)
        assert m.transform == p.transform and (m.height, m.width) == (96, 128)
    assert np.array_equal(mask, (prob > 0.5).astype(np.uint8))
    assert summary["glacier_pixels"] == int(mask.sum())
    assert (tmp_path / "o.gpkg").exists()
    assert f"wrote {tmp_path / 'mask.tif'}" in result.output


def test_existing_output_needs_overwrite(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    out = tmp_path / "mask.tif"
    out.write_bytes(b"old")
    args = [str(scene), "--model", str(checkpoint), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(segment_scene, args)
    assert result.exit_code != 0 and isinstance(result.exception, OutputExistsError)
    assert out.read_bytes() == b"old"
    result = CliRunner().invoke(group(), ["segment-scene", *args])
    assert result.exit_code == 1
    assert "already exists" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(segment_scene, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint8"


def test_bad_window_is_a_one_line_error(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    args = [str(scene), "--model", str(checkpoint), "--out", str(tmp_path / "m.tif"), "--window", "50"]
    result = CliRunner().invoke(segment_scene, args)
    assert isinstance(result.exception, ConfigError)
    result = CliRunner().invoke(group(), ["segment-scene", *args])
    assert result.exit_code == 1 and "multiple of 32" in result.output
    assert not (tmp_path / "m.tif").exists()


def test_bad_choice_rejected_by_click(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    args = [str(scene), "--model", str(checkpoint), "--out", str(tmp_path / "m.tif"), "--precision", "fp8"]
    result = CliRunner().invoke(segment_scene, args)
    assert result.exit_code == 2 and "fp8" in result.output


def test_help_is_fast_and_lists_options() -> None:
    result = CliRunner().invoke(segment_scene, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--window",
        "--overlap",
        "--tta",
        "--probabilities",
        "--summary",
        "--outlines",
        "--min-area",
    ):
        assert option in result.output


def test_ctrl_c_keeps_tiles_and_resume_finishes(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoglacier.inference.segment import Segmenter

    scene = write_scene(tmp_path / "s.tif", height=600, width=64, seed=4)  # 3 tiles of 256 px
    args = ["segment-scene", str(scene), "--model", str(checkpoint), "--out", str(tmp_path / "mask.tif")]
    args += ["--window", "64"]
    args += ["--overlap", "0", "--batch-size", "1", "--device", "cpu", "--precision", "fp32", "--no-progress"]
    real, calls, stopped_once = Segmenter.predict_windows, [], []

    def ctrl_c_on_the_sixth(self: Segmenter, batch: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 6 and not stopped_once:
            stopped_once.append(1)
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Segmenter, "predict_windows", ctrl_c_on_the_sixth)
    stopped = CliRunner().invoke(group(), args)
    assert stopped.exit_code == 130
    assert "1 of 3 output tiles" in stopped.output and "--resume" in stopped.output
    again = CliRunner().invoke(group(), args)
    assert again.exit_code == 1 and "pass --resume to continue it" in again.output
    calls.clear()
    resumed = CliRunner().invoke(group(), [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(calls) == 10 - 4  # 10 windows; the 4 of the kept tile ran before the interrupt
    with rasterio.open(tmp_path / "mask.tif") as ds:
        assert ds.shape == (600, 64) and set(np.unique(ds.read(1))) <= {0, 1}
    assert not (tmp_path / ".geoglacier-partial-mask.tif").exists()
    ensemble = CliRunner().invoke(group(), [*args, "--model", str(checkpoint), "--resume", "--overwrite"])
    assert ensemble.exit_code == 2 and "--resume works with one --model" in ensemble.output
