"""A 7-band recipe with terrain end to end: stack --dem -> train -> segment-scene, ensembles, export.

A checkpoint refuses a scene of another recipe length in one line that names the recipe to stack.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, read_checkpoint, save_checkpoint
from geoglacier.cli.export import export
from geoglacier.cli.main import cli
from geoglacier.cli.segment_scene import segment_scene
from geoglacier.cli.stack import stack
from geoglacier.cli.train import train
from geoglacier.model import ModelConfig, build_model
from tests.data import UTM_TRANSFORM, scene_array, write_raster
from tests.products_data import write_plane_dem

FIVE = ("red", "green", "blue", "nir", "ndvi")
SEVEN = (*FIVE, "elevation", "slope")
SIZE = 96
FAST = [
    "--arch", "Unet", "--encoder", "resnet18", "--encoder-weights", "none", "--patch-size", "64",
    "--batch-size", "2", "--val-fraction", "0.25", "--device", "cpu", "--epochs", "1",
]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(*args: object) -> tuple[int, str]:
    group = type(cli)(
        name="geoglacier",
        commands={"stack": stack, "train": train, "segment-scene": segment_scene, "export": export},
    )
    result = CliRunner().invoke(group, [str(a) for a in args])
    return result.exit_code, result.output


def _one_line_error(code: int, output: str, *needles: str) -> None:
    lines = output.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), output
    for needle in needles:
        assert needle in output, output


@pytest.fixture(scope="module")
def seven(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 5-band scene and its 7-band stack with a DEM (in data/images, with a mask in data/masks)."""
    root = tmp_path_factory.mktemp("seven")
    data = scene_array(SIZE, SIZE, 5, seed=11) / 255.0
    five = write_raster(root / "five.tif", data.astype(np.float32), descriptions=FIVE)
    t = UTM_TRANSFORM
    dem, _ = write_plane_dem(root / "dem.tif", (t.c, t.f - 30 * SIZE, t.c + 30 * SIZE, t.f), 0.2, 0.1)
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    scene = root / "data" / "images" / "a.tif"
    code, output = run(
        "stack", five, "--dem", dem, "--bands", ",".join(SEVEN), "--out", scene, "--no-progress"
    )
    assert code == 0, output
    assert "no DEM under 0.0 % of pixels" in output
    mask = (data[0] > np.median(data[0])).astype(np.uint8)
    write_raster(root / "data" / "masks" / "a.tif", mask)
    return {"root": root, "five": five, "scene": scene}


def _untrained(path: Path, bands: tuple[str, ...]) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(encoder="resnet18", in_channels=len(bands))
    n = len(bands)
    meta = CheckpointMeta(model=config, bands=bands, mean=(0.5,) * n, std=(0.2,) * n, patch_size=64)
    return save_checkpoint(build_model(config, None), meta, path)


@pytest.mark.slow
def test_a_seven_band_model_trains_segments_ensembles_and_exports(
    seven: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / "m7.pth"
    code, output = run("train", seven["root"] / "data", "--out", model, "--bands", ",".join(SEVEN), *FAST)
    assert code == 0, output
    seven = {**seven, "model": model}
    meta, _ = read_checkpoint(seven["model"])
    assert meta.bands == SEVEN and len(meta.mean) == 7
    with rasterio.open(seven["scene"]) as ds:
        assert ds.count == 7 and ds.descriptions == SEVEN
    args = ["segment-scene", seven["scene"], "--device", "cpu", "--no-progress"]
    code, output = run(*args, "--model", seven["model"], "--out", tmp_path / "one.tif")
    assert code == 0, output
    twin = tmp_path / "twin.pth"
    shutil.copy(seven["model"], twin)
    code, output = run(*args, "--model", seven["model"], "--model", twin, "--out", tmp_path / "two.tif")
    assert code == 0, output
    with rasterio.open(tmp_path / "one.tif") as a, rasterio.open(tmp_path / "two.tif") as b:
        assert a.shape == b.shape == (SIZE, SIZE)
    onnx = tmp_path / "m7.onnx"
    code, output = run("export", seven["model"], "--out", onnx)
    assert code == 0, output
    code, output = run(*args, "--model", onnx, "--engine", "onnxruntime", "--out", tmp_path / "onnx.tif")
    assert code == 0, output
    _one_line_error(
        *run("segment-scene", seven["five"], "--model", onnx, "--engine", "onnxruntime", "--out", tmp_path / "x.tif"),
        "--bands " + ",".join(SEVEN),
    )  # fmt: skip


def test_a_seven_band_model_refuses_a_five_band_scene(seven: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mask.tif"
    model = _untrained(tmp_path / "m7.pth", SEVEN)
    code, output = run("segment-scene", seven["five"], "--model", model, "--out", out, "--device", "cpu")
    _one_line_error(code, output, "the data has 5", "--bands " + ",".join(SEVEN))
    assert not out.exists()


def test_a_five_band_model_refuses_a_seven_band_scene(seven: dict[str, Path], tmp_path: Path) -> None:
    five_model = _untrained(tmp_path / "m5.pth", FIVE)
    out = tmp_path / "mask.tif"
    code, output = run(
        "segment-scene", seven["scene"], "--model", five_model, "--out", out, "--device", "cpu"
    )
    _one_line_error(code, output, "the data has 7", "--bands " + ",".join(FIVE))
    assert not out.exists()
    code, output = run("segment-scene", seven["five"], "--model", five_model, "--out", out, "--device", "cpu")
    assert code == 0, output
