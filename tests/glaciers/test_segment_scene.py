"""``segment-scene --inventory --glaciers``: one run gives the mask and the per-glacier table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.glaciers.areas import glacier_areas
from geoglacier.model import ModelConfig, build_model
from tests.data import UTM_TRANSFORM, write_scene
from tests.glacier_data import px_box, write_outlines


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


def test_segment_scene_writes_the_glacier_table(
    tmp_path: Path, checkpoint: Path, one_torch_thread: None
) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=2)
    inv = write_outlines(
        tmp_path / "inv.gpkg",
        [px_box(5, 5, 30, 30, UTM_TRANSFORM), px_box(30, 34, 60, 94, UTM_TRANSFORM)],
    )
    mask, prob, table = tmp_path / "m.tif", tmp_path / "p.tif", tmp_path / "g.csv"
    args = [str(scene), "--model", str(checkpoint), "--out", str(mask), "--probabilities", str(prob)]
    args += [
        "--window",
        "64",
        "--device",
        "cpu",
        "--no-progress",
        "--inventory",
        str(inv),
        "--glaciers",
        str(table),
    ]
    res = CliRunner().invoke(cli, ["segment-scene", *args])
    assert res.exit_code == 0, res.output
    assert f"wrote {table}" in res.output and "mapped inside outlines" in res.output
    written = pd.read_csv(table)
    # the same numbers as measuring the written mask afterwards
    again = glacier_areas(mask, inv, probabilities=prob).table
    np.testing.assert_allclose(written["mapped_area_km2"], again["mapped_area_km2"], rtol=1e-5)
    assert "uncertainty_probability_km2" in written
    assert written["coverage"].iloc[1] == pytest.approx(0.5, rel=1e-6)  # half of it east of the scene
    with rasterio.open(mask) as ds:
        assert ds.read(1).max() <= 1


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--glaciers", "g.csv"], "--glaciers needs --inventory"),
        (["--inventory", "inv.gpkg"], "nothing would use it"),
        (["--inventory", "nope.gpkg", "--glaciers", "g.csv"], "inventory not found"),
        (["--inventory", "far.gpkg", "--glaciers", "g.csv"], "overlaps the mask"),
        (["--inventory", "inv.gpkg", "--glaciers", "g.txt"], "unknown table format"),
        (["--inventory", "inv.gpkg", "--glaciers", "m.tif"], "unknown table format"),
    ],
)
def test_bad_inventory_fails_before_the_model_runs(
    tmp_path: Path, checkpoint: Path, extra: list[str], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=2)
    write_outlines(tmp_path / "inv.gpkg", [px_box(5, 5, 30, 30, UTM_TRANSFORM)])
    write_outlines(tmp_path / "far.gpkg", [px_box(5000, 5000, 5010, 5010, UTM_TRANSFORM)])
    monkeypatch.chdir(tmp_path)
    args = [
        str(scene),
        "--model",
        str(checkpoint),
        "--out",
        "m.tif",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]
    res = CliRunner().invoke(cli, ["segment-scene", *args])
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.gpkg", "inv.gpkg", "s.tif"]


def test_outlines_carry_the_inventory_id(tmp_path: Path, checkpoint: Path, one_torch_thread: None) -> None:
    import fiona
    from shapely.geometry import shape

    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=2)
    outlines = [px_box(0, 0, 32, 64, UTM_TRANSFORM), px_box(32, 0, 64, 64, UTM_TRANSFORM)]
    inv = write_outlines(tmp_path / "inv.gpkg", outlines)
    args = [str(scene), "--model", str(checkpoint), "--out", str(tmp_path / "m.tif"), "--window", "64"]
    args += [
        "--device",
        "cpu",
        "--no-progress",
        "--inventory",
        str(inv),
    ]
    args += ["--outlines", str(tmp_path / "o.gpkg")]  # no --glaciers: the inventory only labels outlines
    res = CliRunner().invoke(cli, ["segment-scene", *args])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == []
    with fiona.open(tmp_path / "o.gpkg") as src:
        feats = [(shape(f.geometry), f.properties["glacier_id"]) for f in src]
    assert feats and f"({len(feats)} polygons)" in res.output
    for poly, gid in feats:
        overlaps = [poly.intersection(o).area for o in outlines]
        assert gid == f"G{int(np.argmax(overlaps)) + 1}"


def test_ctrl_c_during_the_glacier_table_names_the_outputs_already_written(
    tmp_path: Path, checkpoint: Path, one_torch_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.inference.segment as segment

    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=2)
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(5, 5, 30, 30, UTM_TRANSFORM)])

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(segment, "glacier_products", ctrl_c)
    args = [str(scene), "--model", str(checkpoint), "--out", str(tmp_path / "m.tif"), "--window", "64"]
    args += [
        "--device",
        "cpu",
        "--no-progress",
        "--inventory",
        str(inv),
        "--glaciers",
        str(tmp_path / "g.csv"),
    ]
    res = CliRunner().invoke(cli, ["segment-scene", *args])
    assert res.exit_code == 130
    assert f"Interrupted after {tmp_path / 'm.tif'} were written" in res.output  # not "no output was left"
    assert (tmp_path / "m.tif").exists() and not (tmp_path / "g.csv").exists()
