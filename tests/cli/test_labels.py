"""``geoglacier labels``: the mask written, the one-line summary and warning, one-line errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoglacier.cli.main import cli
from tests.data import scene_array, write_raster
from tests.glacier_data import EQ_TRANSFORM, SIZE, px_box, write_outlines


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    data = scene_array(SIZE, SIZE, bands=3, seed=3)
    data[:, :4, :] = 0.0  # four rows of nodata
    write_raster(tmp_path / "scene.tif", data, transform=EQ_TRANSFORM, nodata=0.0)
    props = [{"RGIId": "G1", "BgnDate": "20001030"}, {"RGIId": "G2", "BgnDate": "-9999999"}]
    write_outlines(tmp_path / "inv.gpkg", [px_box(0, 10, 20, 30), px_box(30, 30, 40, 50)], props=props)
    return tmp_path


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["labels", *args, "--no-progress"])


def _files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_writes_the_mask_and_one_summary_line(inputs: Path) -> None:
    out = inputs / "labels.tif"
    res = _invoke(str(inputs / "scene.tif"), "--inventory", str(inputs / "inv.gpkg"), "--out", str(out))
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        labels = ds.read(1)
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8" and ds.transform == EQ_TRANSFORM
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[0:20, 10:30] = 1
    expected[30:40, 30:50] = 1
    expected[:4] = 255
    np.testing.assert_array_equal(labels, expected)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    assert f"{16 * 20 + 10 * 20:,} glacier pixels ({100 * 520 / SIZE**2:.1f} %)" in lines[0]
    assert f"nodata {100 * 4 / SIZE:.1f} %" in lines[0] and "km2" in lines[0]
    assert "outlines 2000-10-30 (1 of 2 dated), scene date unknown" in lines[0]
    assert "Warning" not in res.stderr


def test_edge_pixels_and_the_date_warning_in_one_line(inputs: Path) -> None:
    out = inputs / "labels.tif"
    res = _invoke(
        str(inputs / "scene.tif"), "--inventory", str(inputs / "inv.gpkg"), "--out", str(out),
        "--edge-pixels", "1", "--date", "2023-10-15",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    warned = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warned) == 1 and warned[0].startswith("Warning: ")
    assert "23.0 years older than the scene" in warned[0] and "--edge-pixels" in warned[0]
    with rasterio.open(out) as ds:
        labels = ds.read(1)
        assert ds.tags()["GEOGLACIER_EDGE_PIXELS"] == "1"
    assert (labels[31:39, 31:49] == 1).all() and (labels[30, 30:50] == 255).all()
    assert (labels[29, 29:51] == 255).all() and labels[28, 40] == 0
    assert "edge band" in res.stdout


def test_overwrite_replaces_an_earlier_result(inputs: Path) -> None:
    out = inputs / "labels.tif"
    out.write_text("old")
    args = [str(inputs / "scene.tif"), "--inventory", str(inputs / "inv.gpkg"), "--out", str(out)]
    refused = _invoke(*args)
    assert refused.exit_code == 1 and out.read_text() == "old"
    assert refused.output.strip() == f"Error: {out} already exists; pass --overwrite to replace it"
    res = _invoke(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    with rasterio.open(out) as ds:
        assert ds.read(1).max() == 255


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("no-overlap", "none of its outlines reaches the scene"),
        ("no-crs", "has no CRS, so inventory outlines cannot be placed on it"),
        ("unreadable", "not a vector file GDAL can read"),
        ("missing-inventory", "inventory not found"),
        ("missing-scene", "scene not found"),
        ("exists", "already exists; pass --overwrite"),
        ("same-as-scene", "same file as the input SCENE"),
        ("bad-ext", "must end in .tif"),
        ("negative-edge", "--edge-pixels must be >= 0"),
        ("no-folder", "does not exist; create it first"),
    ],
)
def test_bad_input_one_line_error_and_nothing_written(inputs: Path, case: str, match: str) -> None:
    scene, inv, out = inputs / "scene.tif", inputs / "inv.gpkg", inputs / "out" / "labels.tif"
    out.parent.mkdir()
    extra: list[str] = []
    if case == "no-overlap":
        inv = write_outlines(inputs / "far.gpkg", [px_box(900, 900, 903, 903)])
    elif case == "no-crs":
        scene = write_raster(
            inputs / "nocrs.tif", scene_array(SIZE, SIZE, 2), crs=None, transform=EQ_TRANSFORM
        )
    elif case == "unreadable":
        inv = inputs / "broken.gpkg"
        inv.write_text("no outlines here")
    elif case == "missing-inventory":
        inv = inputs / "nope.gpkg"
    elif case == "missing-scene":
        scene = inputs / "nope.tif"
    elif case == "exists":
        out.write_text("keep me")
    elif case == "same-as-scene":
        out = scene
        extra = ["--overwrite"]
    elif case == "bad-ext":
        out = out.with_suffix(".gpkg")
    elif case == "negative-edge":
        extra = ["--edge-pixels", "-2"]
    elif case == "no-folder":
        out = inputs / "missing" / "labels.tif"
    before = _files(inputs)
    res = _invoke(str(scene), "--inventory", str(inv), "--out", str(out), *extra)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert _files(inputs) == before


def test_listed_in_the_help() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0 and "labels" in res.output
    sub = CliRunner().invoke(cli, ["labels", "--help"])
    assert sub.exit_code == 0
    for option in (
        "--inventory",
        "--out",
        "--edge-pixels",
        "--layer",
        "--date",
        "--date-tolerance",
        "--overwrite",
    ):
        assert option in sub.output
