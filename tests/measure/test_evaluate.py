"""Mask evaluation against scikit-learn, and the evaluate command."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS
from sklearn.metrics import f1_score, jaccard_score, matthews_corrcoef, precision_score, recall_score

from geoglacier.cli.evaluate import evaluate
from geoglacier.cli.main import _Group
from geoglacier.errors import GeoglacierWarning, GridMismatchError
from geoglacier.measure.areas import area_summary
from geoglacier.measure.evaluate import evaluate_masks, mcc_from_counts
from geoglacier.measure.outlines import write_outlines

UTM = "EPSG:32645"
TRANSFORM = Affine(30.0, 0, 450000.0, 0, -30.0, 3100000.0)


def write_mask(
    path: Path,
    arr: np.ndarray,
    transform: Affine = TRANSFORM,
    crs: str | CRS | None = UTM,
    nodata: float | None = 255,
    block: int = 32,
) -> Path:
    profile = dict(driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype=arr.dtype.name)
    profile.update(
        transform=transform, crs=crs, nodata=nodata, tiled=True, blockxsize=block, blockysize=block
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr, 1)
    return path


def random_pair(seed: int, shape: tuple[int, int] = (96, 160)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = (rng.random(shape) < 0.35).astype(np.uint8)
    flip = rng.random(shape) < 0.2
    pred = np.where(flip, 1 - ref, ref).astype(np.uint8)
    pred[rng.random(shape) < 0.1] = 255
    ref[rng.random(shape) < 0.1] = 255
    return pred, ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed: int, tmp_path: Path) -> None:
    pred, ref = random_pair(seed)
    m = evaluate_masks(write_mask(tmp_path / "p.tif", pred), write_mask(tmp_path / "r.tif", ref))
    keep = (pred != 255) & (ref != 255)
    y_true, y_pred = ref[keep], pred[keep]
    assert m["valid_pixels"] == keep.sum() and m["excluded_pixels"] == (~keep).sum()
    assert (m["tp"], m["fp"]) == (
        ((y_true == 1) & (y_pred == 1)).sum(),
        ((y_true == 0) & (y_pred == 1)).sum(),
    )
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y_true, y_pred), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
    assert m["precision"] == pytest.approx(precision_score(y_true, y_pred), abs=1e-12)
    assert m["recall"] == pytest.approx(recall_score(y_true, y_pred), abs=1e-12)
    assert m["iou"] == pytest.approx(jaccard_score(y_true, y_pred), abs=1e-12)
    # Areas over the jointly valid pixels, on the same true-area basis as `summarize`.
    p_only = np.where(keep, pred, 255).astype(np.uint8)
    r_only = np.where(keep, ref, 255).astype(np.uint8)
    pa = area_summary(p_only, TRANSFORM, UTM).glacier_area_km2
    ra = area_summary(r_only, TRANSFORM, UTM).glacier_area_km2
    assert m["pred_area_km2"] == pytest.approx(pa, rel=1e-9)
    assert m["area_error_km2"] == pytest.approx(pa - ra, rel=1e-9)
    assert m["area_error_relative"] == pytest.approx((pa - ra) / ra, rel=1e-9)
    assert m["crs"] == "EPSG:32645"


def add_mask_band(path: Path, valid: np.ndarray) -> Path:
    """Give a mask file an internal GDAL mask band (gdal_translate -mask, gdalwarp with a cutline)."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    return path


def test_pixels_outside_a_gdal_mask_band_are_left_out(tmp_path: Path) -> None:
    pred, ref = random_pair(3)
    outside = np.zeros(ref.shape, dtype=bool)
    outside[:40, 100:] = True
    ref_raw = ref.copy()
    ref_raw[outside] = 7  # whatever lies under the mask band is not a mask value
    r = add_mask_band(write_mask(tmp_path / "r.tif", ref_raw), ~outside)
    m = evaluate_masks(write_mask(tmp_path / "p.tif", pred), r)
    keep = (pred != 255) & (ref != 255) & ~outside
    assert m["valid_pixels"] == keep.sum()
    assert m["mcc"] == pytest.approx(matthews_corrcoef(ref[keep], pred[keep]), abs=1e-12)
    summary = area_summary(r)
    assert summary.nodata_pixels == int(((ref == 255) | outside).sum())
    assert summary.glacier_pixels == int(((ref == 1) & ~outside).sum())
    ref_raw[outside] = 1  # glacier under the mask band: no outline may reach there
    r1 = add_mask_band(write_mask(tmp_path / "r1.tif", ref_raw), ~outside)
    n = write_outlines(r1, tmp_path / "o.gpkg")
    import fiona
    from shapely.geometry import shape

    with fiona.open(tmp_path / "o.gpkg") as src:
        traced = sum(shape(f.geometry).area for f in src) / 900.0
    assert n > 0 and traced == pytest.approx(((ref == 1) & ~outside).sum())


COUNT_CASES = [
    (5, 3, 7, 2),
    (0, 0, 10, 0),  # everything negative in both
    (10, 0, 0, 0),  # everything positive in both
    (0, 4, 6, 0),  # truth all negative
    (0, 0, 6, 4),  # prediction all negative
    (3, 0, 0, 5),  # truth all positive
    (0, 7, 0, 0),
    (1, 1, 1, 1),
    (12345, 789, 98765, 4321),
]


@pytest.mark.parametrize(("tp", "fp", "tn", "fn"), COUNT_CASES)
def test_mcc_from_counts_matches_sklearn(tp: int, fp: int, tn: int, fn: int) -> None:
    y_true = np.repeat([1, 0, 0, 1], [tp, fp, tn, fn])
    y_pred = np.repeat([1, 1, 0, 0], [tp, fp, tn, fn])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = matthews_corrcoef(y_true, y_pred)
    assert mcc_from_counts(tp, fp, tn, fn) == pytest.approx(expected, abs=1e-12)
    assert mcc_from_counts(np.int64(tp), np.int64(fp), np.int64(tn), np.int64(fn)) == mcc_from_counts(
        tp, fp, tn, fn
    )


def test_mcc_from_counts_edges() -> None:
    assert mcc_from_counts(10**9, 0, 10**9, 0) == 1.0
    assert mcc_from_counts(0, 10**9, 0, 10**9) == -1.0
    with pytest.raises(ValueError):
        mcc_from_counts(-1, 0, 0, 0)


def test_all_one_class_masks(tmp_path: Path) -> None:
    ones = np.ones((40, 40), np.uint8)
    m = evaluate_masks(write_mask(tmp_path / "p.tif", ones), write_mask(tmp_path / "r.tif", ones))
    assert m["mcc"] == 0.0  # sklearn's convention
    assert m["f1"] == m["iou"] == m["precision"] == m["recall"] == 1.0
    assert m["area_error_km2"] == 0.0
    zeros = np.zeros((40, 40), np.uint8)
    m = evaluate_masks(write_mask(tmp_path / "p0.tif", zeros), write_mask(tmp_path / "r0.tif", zeros))
    assert (m["mcc"], m["f1"], m["precision"], m["recall"], m["iou"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert m["area_error_relative"] is None


def test_reference_without_nodata_and_0_255(tmp_path: Path) -> None:
    pred, ref = random_pair(4)
    ref01 = np.where(ref == 255, 0, ref).astype(np.uint8)
    p = write_mask(tmp_path / "p.tif", pred)
    plain = evaluate_masks(p, write_mask(tmp_path / "r.tif", ref01, nodata=None))
    with pytest.warns(GeoglacierWarning, match="0/255"):
        wide = evaluate_masks(p, write_mask(tmp_path / "r255.tif", ref01 * 255, nodata=None))
    for key in ("tp", "fp", "tn", "fn", "mcc"):
        assert plain[key] == wide[key]
    assert plain["valid_pixels"] == (pred != 255).sum()


def test_grid_mismatch_says_how(tmp_path: Path) -> None:
    a = np.zeros((32, 48), np.uint8)
    p = write_mask(tmp_path / "p.tif", a)
    with pytest.raises(GridMismatchError, match="shape 32x48 vs 48x32"):
        evaluate_masks(p, write_mask(tmp_path / "r1.tif", a.T.copy()))
    with pytest.raises(GridMismatchError, match="transform"):
        evaluate_masks(p, write_mask(tmp_path / "r2.tif", a, transform=TRANSFORM * Affine.translation(1, 0)))
    with pytest.raises(GridMismatchError, match="CRS EPSG:32645 vs EPSG:32644"):
        evaluate_masks(p, write_mask(tmp_path / "r3.tif", a, crs="EPSG:32644"))


def test_no_crs_areas(tmp_path: Path) -> None:
    pred, ref = random_pair(5)
    p = write_mask(tmp_path / "p.tif", pred, crs=None)
    r = write_mask(tmp_path / "r.tif", ref, crs=None)
    m = evaluate_masks(p, r)
    assert m["area_error_km2"] is None and m["mcc"] is not None
    m = evaluate_masks(p, r, pixel_size=10.0)
    assert m["area_error_km2"] == pytest.approx((m["fp"] - m["fn"]) * 100 / 1e6)


def test_cli_evaluate(tmp_path: Path) -> None:
    pred, ref = random_pair(6)
    p, r = write_mask(tmp_path / "p.tif", pred), write_mask(tmp_path / "r.tif", ref)
    out = tmp_path / "m.json"
    runner = CliRunner()
    res = runner.invoke(evaluate, [str(p), str(r), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "mcc" in res.output and "area error" in res.output
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(evaluate_masks(p, r)))
    before = out.read_text()
    group = _Group("geoglacier", commands=[evaluate])  # errors become one-line messages, as in main
    res = runner.invoke(group, ["evaluate", str(p), str(r), "--json", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output and "Traceback" not in res.output
    assert out.read_text() == before
    res = runner.invoke(group, ["evaluate", str(p), str(tmp_path / "missing.tif")])
    assert res.exit_code == 1 and "missing.tif" in res.output
    assert runner.invoke(evaluate, [str(p), str(r), "--json", str(out), "--overwrite"]).exit_code == 0


@pytest.mark.parametrize("which", ["pred", "ref", "ref-hardlink"])
def test_cli_evaluate_json_is_never_a_mask(tmp_path: Path, which: str) -> None:
    pred, ref = random_pair(7)
    p, r = write_mask(tmp_path / "p.tif", pred), write_mask(tmp_path / "r.tif", ref)
    before = {f: f.read_bytes() for f in (p, r)}
    target = {"pred": p, "ref": r}.get(which)
    if target is None:
        target = tmp_path / "r_link.json"
        target.hardlink_to(r)
    group = _Group("geoglacier", commands=[evaluate])
    res = CliRunner().invoke(group, ["evaluate", str(p), str(r), "--json", str(target), "--overwrite"])
    assert res.exit_code == 1, res.output
    assert f"--json is the same file as the input {'PRED' if which == 'pred' else 'REF'}" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert {f: f.read_bytes() for f in (p, r)} == before


def test_pixel_size_with_a_crs_is_refused(tmp_path: Path) -> None:
    pred, ref = random_pair(8)
    p, r = write_mask(tmp_path / "p.tif", pred), write_mask(tmp_path / "r.tif", ref)
    group = _Group("geoglacier", commands=[evaluate])
    res = CliRunner().invoke(group, ["evaluate", str(p), str(r), "--pixel-size", "10"])
    assert res.exit_code == 1 and "EPSG:32645" in res.output and "drop --pixel-size" in res.output
