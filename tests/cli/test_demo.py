"""``geoglacier demo`` does real work into one folder and refuses to clobber it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner

from geoglacier.checkpoint import load_checkpoint
from geoglacier.cli.main import cli
from geoglacier.io.masks import check_same_grid, inspect_mask
from geoglacier.io.scene import inspect_scene
from geoglacier.measure.evaluate import evaluate_masks


def test_demo_writes_scenes_and_names_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--size", "96", "--quick"])
    assert result.exit_code == 0, result.output
    assert f"All outputs are in {out.resolve()}" in result.output
    scene, mask = out / "scene.tif", out / "reference_mask.tif"
    check_same_grid(inspect_scene(scene), inspect_mask(mask))
    with rasterio.open(mask) as ds:
        values = ds.read(1)
    fraction = (values == 1).sum() / (values != 255).sum()
    assert f"{fraction:.1%}" in result.output
    # The whole path ran: a checkpoint, a mask on the scene's grid, an evaluation that
    # agrees with evaluating the files again, and a quicklook.
    load_checkpoint(out / "model.pth")
    with rasterio.open(scene) as src, rasterio.open(out / "mask.tif") as pred:
        assert (pred.crs, pred.transform, pred.shape) == (src.crs, src.transform, src.shape)
        assert set(pred.read(1).ravel().tolist()) <= {0, 1, 255}
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["mcc"] == pytest.approx(evaluate_masks(out / "mask.tif", mask)["mcc"])
    assert f"{saved['mcc']:.4f}" in result.output
    assert json.loads((out / "summary.json").read_text())["valid_pixels"] == int((values != 255).sum())
    assert (out / "quicklook.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the synthetic example has an inventory, and the run measures each of its glaciers
    table = (out / "per_glacier.csv").read_text().splitlines()
    assert table[0].startswith("glacier_id,name,inventory_area_km2") and len(table) >= 2
    assert "per glacier (largest first" in result.output and "DEMO-00001" in result.output


def test_demo_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--size", "96", "--quick"])
    assert result.exit_code != 0
    assert "--overwrite" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_demo_and_segment_scenes_refuse_a_read_only_folder_even_as_root(tmp_path: Path) -> None:
    ro = tmp_path / "shared"
    ro.mkdir()
    ro.chmod(0o555)  # like ../shared/data: read-only for all, which root alone could ignore
    try:
        for args in (
            ["demo", "--out", str(ro / "demo"), "--size", "96", "--quick"],
            [
                "segment-scenes",
                str(tmp_path / "s.tif"),
                "--model",
                str(tmp_path / "m.pth"),
                "--out-dir",
                str(ro),
            ],
            [
                "segment-scenes",
                str(tmp_path / "s.tif"),
                "--model",
                str(tmp_path / "m.pth"),
                "--out-dir",
                str(ro / "new"),
            ],
        ):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code != 0, args
            assert "not writable" in result.output and "Traceback" not in result.output, result.output
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
