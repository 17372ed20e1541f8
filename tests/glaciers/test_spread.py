"""The ensemble spread as a per-glacier area uncertainty (``uncertainty_ensemble_km2``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.features import rasterize

from geoglacier.cli.main import cli
from geoglacier.errors import GridMismatchError, InvalidRasterError
from geoglacier.glaciers.areas import format_table, format_totals, glacier_areas
from tests.data import UTM_TRANSFORM, write_raster, write_scene
from tests.glacier_data import EQ_TRANSFORM, SIZE, px_box, true_px_area, write_mask, write_outlines
from tests.inference.test_ensemble import BANDS, _member

A_PX_KM2 = true_px_area() / 1e6
# G1: rows 10-19, cols 10-19 (100 px); G2: rows 30-41, cols 30-39 (120 px)
OUTLINES = [px_box(10, 10, 20, 20), px_box(30, 30, 42, 40)]


def _mask() -> np.ndarray:
    """Glacier and not glacier inside both outlines (both count), 20 nodata pixels in G1."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:15] = 1
    mask[30:42, 30:40] = 1
    mask[30:42, 35:40] = 0
    mask[5:25, 50:60] = 1  # glacier outside every outline
    mask[10:12, 10:20] = 255  # nodata: not counted
    return mask


def _inputs(
    tmp_path: Path, spread: np.ndarray, nodata: float | None = float("nan")
) -> tuple[Path, Path, Path]:
    mask = write_mask(tmp_path / "mask.tif", _mask())
    inv = write_outlines(tmp_path / "inv.gpkg", OUTLINES)
    u = write_raster(tmp_path / "u.tif", spread.astype(np.float32), transform=EQ_TRANSFORM, nodata=nodata)
    return mask, inv, u


def _constant_spread() -> np.ndarray:
    spread = np.full((SIZE, SIZE), 0.45, np.float32)  # outside the outlines: must not count
    spread[10:20, 10:20] = 0.1
    spread[30:42, 30:40] = 0.25
    return spread


def test_constant_spread_inside_each_outline_by_hand(tmp_path: Path) -> None:
    mask, inv, u = _inputs(tmp_path, _constant_spread())
    res = glacier_areas(mask, inv, spread=u)
    valid = np.array([80, 120]) * A_PX_KM2  # G1 loses its 20 nodata pixels
    np.testing.assert_allclose(res.table["valid_area_km2"], valid, rtol=1e-6)
    expected = np.array([0.1, 0.25]) * valid
    np.testing.assert_allclose(res.table["uncertainty_ensemble_km2"], expected, rtol=1e-6)
    # G1 sees 80 % of its outline (< --min-coverage 0.9): flagged, not in the totals
    assert list(res.table["low_coverage"]) == [True, False]
    assert res.totals.uncertainty_ensemble_km2 == pytest.approx(expected[1], rel=1e-6)
    kept = glacier_areas(mask, inv, spread=u, min_coverage=0.5).totals
    assert kept.uncertainty_ensemble_km2 == pytest.approx(expected.sum(), rel=1e-6)
    assert res.totals.spread_raster == str(u)
    assert "ensemble spread (std)" in format_totals(res.totals)
    assert "ens. km2" in format_table(res.table)
    # small windows give the same sums as one block
    small = glacier_areas(mask, inv, spread=u, window=16).table["uncertainty_ensemble_km2"]
    np.testing.assert_allclose(small, res.table["uncertainty_ensemble_km2"], rtol=1e-12)
    # without a spread raster the column and the total are absent
    plain = glacier_areas(mask, inv)
    assert "uncertainty_ensemble_km2" not in plain.table
    assert plain.totals.uncertainty_ensemble_km2 is None
    assert "ensemble spread" not in format_totals(plain.totals)


def test_zero_spread_gives_zero_and_missing_spread_counts_as_zero(tmp_path: Path) -> None:
    mask, inv, u = _inputs(tmp_path, np.zeros((SIZE, SIZE)))
    res = glacier_areas(mask, inv, spread=u)
    np.testing.assert_array_equal(res.table["uncertainty_ensemble_km2"], [0.0, 0.0])
    assert res.totals.uncertainty_ensemble_km2 == 0.0
    spread = _constant_spread()
    spread[30, 30:40] = np.nan  # 10 pixels of G2 with a NaN spread
    spread[31, 30:35] = -1.0  # 5 more that are the file's nodata
    (tmp_path / "b").mkdir()
    mask, inv, u = _inputs(tmp_path / "b", spread, nodata=-1.0)
    got = glacier_areas(mask, inv, spread=u).table["uncertainty_ensemble_km2"]
    np.testing.assert_allclose(got, [0.1 * 80 * A_PX_KM2, 0.25 * 105 * A_PX_KM2], rtol=1e-6)


def test_bad_spread_rasters(tmp_path: Path) -> None:
    mask, inv, _ = _inputs(tmp_path, _constant_spread())
    write_raster(tmp_path / "small.tif", np.zeros((32, 32), np.float32), transform=EQ_TRANSFORM)
    with pytest.raises(GridMismatchError, match="not on the grid") as err:
        glacier_areas(mask, inv, spread=tmp_path / "small.tif")
    assert "--uncertainty of the same run" in str(err.value) and "resample the mask" not in str(err.value)
    write_raster(tmp_path / "big.tif", np.full((SIZE, SIZE), 3.0, np.float32), transform=EQ_TRANSFORM)
    with pytest.raises(InvalidRasterError, match="segment-scene --uncertainty"):
        glacier_areas(mask, inv, spread=tmp_path / "big.tif")


@pytest.mark.parametrize(
    ("case", "match"),
    [("grid", "not on the grid"), ("range", "lies in [0, 1]"), ("missing", "not found")],
)
def test_cli_bad_spread_one_line_error_nothing_written(tmp_path: Path, case: str, match: str) -> None:
    mask, inv, _ = _inputs(tmp_path, _constant_spread())
    if case == "grid":  # the same pixels shifted by one pixel
        shifted = EQ_TRANSFORM * EQ_TRANSFORM.translation(1, 0)
        u = write_raster(tmp_path / "bad.tif", _constant_spread(), transform=shifted, nodata=float("nan"))
    elif case == "range":
        u = write_raster(tmp_path / "bad.tif", _constant_spread() + 1.0, transform=EQ_TRANSFORM)
    else:
        u = tmp_path / "nope.tif"
    out, js = tmp_path / "out" / "g.csv", tmp_path / "out" / "t.json"
    out.parent.mkdir()
    args = ["glaciers", str(mask), "--inventory", str(inv), "--uncertainty", str(u)]
    res = CliRunner().invoke(cli, [*args, "--out", str(out), "--summary", str(js), "--no-progress"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and match in lines[0], res.output
    assert list(out.parent.iterdir()) == []


def test_cli_glaciers_uncertainty(tmp_path: Path) -> None:
    mask, inv, u = _inputs(tmp_path, _constant_spread())
    out, js = tmp_path / "g.csv", tmp_path / "t.json"
    args = ["glaciers", str(mask), "--inventory", str(inv), "--uncertainty", str(u)]
    res = CliRunner().invoke(cli, [*args, "--out", str(out), "--summary", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    expected = np.array([0.1 * 80, 0.25 * 120]) * A_PX_KM2
    np.testing.assert_allclose(pd.read_csv(out)["uncertainty_ensemble_km2"], expected, rtol=1e-5)
    totals = json.loads(js.read_text())
    assert totals["uncertainty_ensemble_km2"] == pytest.approx(expected[1], rel=1e-6)  # G1 flagged
    assert totals["spread_raster"] == str(u)
    assert "ensemble spread (std)" in res.output


def _reference_spread_km2(mask: Path, spread: Path, outlines: list) -> np.ndarray:
    """Independent sum of spread x true pixel area per outline: rasterio zones, pyproj scale factors."""
    with rasterio.open(mask) as ds:
        m, transform, crs, shape = ds.read(1), ds.transform, ds.crs, ds.shape
    with rasterio.open(spread) as ds:
        s = np.nan_to_num(ds.read(1).astype(np.float64), nan=0.0)
    zones = rasterize(
        [(g, i + 1) for i, g in enumerate(outlines)], out_shape=shape, transform=transform, dtype="int32"
    )
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    scale = pyproj.Proj(crs).get_factors(lon, lat).areal_scale.reshape(shape)
    area = abs(transform.a * transform.e) / scale  # m^2 on the ellipsoid
    weights = np.where(m != 255, s * area, 0.0)
    return np.bincount(zones.ravel(), weights=weights.ravel(), minlength=len(outlines) + 1)[1:] / 1e6


def test_segment_scene_ensemble_table_has_the_ensemble_uncertainty(
    tmp_path: Path, one_torch_thread: None
) -> None:
    scene = write_scene(
        tmp_path / "scene.tif", height=96, width=112, seed=4, nodata=-9999.0, descriptions=BANDS
    )
    with rasterio.open(scene, "r+") as ds:  # a nodata corner inside G1
        data = ds.read()
        data[:, :10, :12] = -9999.0
        ds.write(data)
    a, b = _member(tmp_path / "a.pth", 1, 0.4, 1.5), _member(tmp_path / "b.pth", 2, 0.6)
    # G3 reaches past the scene's east edge (112 columns)
    outlines = [px_box(2, 2, 30, 30, UTM_TRANSFORM), px_box(35, 40, 60, 100, UTM_TRANSFORM)]
    outlines.append(px_box(65, 90, 90, 130, UTM_TRANSFORM))
    inv = write_outlines(tmp_path / "inv.gpkg", outlines)
    mask, u, table = tmp_path / "m.tif", tmp_path / "u.tif", tmp_path / "g.csv"
    args = ["segment-scene", str(scene), "--model", str(a), "--model", str(b), "--out", str(mask)]
    args += ["--uncertainty", str(u), "--inventory", str(inv), "--glaciers", str(table)]
    res = CliRunner().invoke(cli, [*args, "--window", "64", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert f"wrote {table}" in res.output and "ensemble spread (std)" in res.output
    written = pd.read_csv(table)
    ref = _reference_spread_km2(mask, u, outlines)
    assert (ref > 0).all()
    np.testing.assert_allclose(written["uncertainty_ensemble_km2"], ref, rtol=1e-5)
    # measuring the written mask afterwards gives the same column
    again = CliRunner().invoke(
        cli, ["glaciers", str(mask), "--inventory", str(inv), "--uncertainty", str(u), "--out",
              str(tmp_path / "again.csv"), "--no-progress"],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    np.testing.assert_allclose(
        pd.read_csv(tmp_path / "again.csv")["uncertainty_ensemble_km2"], written["uncertainty_ensemble_km2"]
    )
    # an ensemble's --glaciers without --inventory fails before any member runs
    bad = CliRunner().invoke(
        cli, [*args[:7], str(tmp_path / "m2.tif"), "--glaciers", str(tmp_path / "g2.csv"), "--no-progress"]
    )
    assert bad.exit_code != 0 and "--glaciers needs --inventory" in bad.output
    bad = CliRunner().invoke(
        cli, [*args[:7], str(tmp_path / "m2.tif"), "--inventory", str(inv), "--no-progress"]
    )
    assert bad.exit_code != 0 and "needs --glaciers" in bad.output
    assert not (tmp_path / "m2.tif").exists()
