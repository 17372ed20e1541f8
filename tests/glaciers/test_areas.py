"""Per-glacier areas on tiny grids whose answers are computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from shapely.geometry import box

from geoglacier.errors import ConfigError, CRSMissingError, GridMismatchError, InvalidRasterError
from geoglacier.glaciers.areas import glacier_areas
from geoglacier.glaciers.inventory import read_inventory_for_mask
from tests.data import write_raster
from tests.glacier_data import EQ_TRANSFORM, PX, SIZE, px_box, true_px_area, write_mask, write_outlines

A_PX_KM2 = true_px_area() / 1e6
SIDE_M = PX / 0.9996  # ground side of a pixel on the central meridian


def _run(tmp_path: Path, mask: np.ndarray, geoms: list, **kw):
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = write_outlines(tmp_path / "inv.gpkg", geoms)
    return glacier_areas(m, inv, **kw)


def test_square_mapped_area_coverage_recall_and_buffer_uncertainty(tmp_path: Path) -> None:
    n = 12
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10 : 10 + n, 10 : 10 + n] = 1
    row = _run(tmp_path, mask, [px_box(10, 10, 10 + n, 10 + n)]).table.iloc[0]
    assert row["mapped_area_km2"] == pytest.approx(n * n * A_PX_KM2, rel=1e-6)
    assert row["outline_area_km2"] == pytest.approx(n * n * A_PX_KM2, rel=1e-6)
    assert row["coverage"] == pytest.approx(1.0) and row["recall"] == pytest.approx(1.0)
    assert row["pixel_size_m"] == pytest.approx(SIDE_M, rel=1e-6)
    # buffer method: perimeter x half a pixel
    perimeter = 4 * n * SIDE_M
    assert row["perimeter_km"] == pytest.approx(perimeter / 1e3, rel=1e-6)
    assert row["uncertainty_buffer_km2"] == pytest.approx(perimeter * SIDE_M / 2 / 1e6, rel=1e-6)
    assert not row["low_coverage"]


def test_two_touching_squares_count_no_pixel_twice(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:30] = 1
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20), px_box(10, 20, 20, 30)])
    np.testing.assert_allclose(res.table["mapped_area_km2"], [100 * A_PX_KM2] * 2, rtol=1e-6)
    assert res.totals.mapped_area_km2 == pytest.approx(res.totals.mask_glacier_area_km2, rel=1e-9)
    assert res.totals.mapped_outside_outlines_km2 == 0.0
    np.testing.assert_allclose(res.table["ring_area_km2"], 0.0)


def test_overlapping_outlines_count_the_overlap_once(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:26] = 1
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20), px_box(10, 16, 20, 26)])
    np.testing.assert_allclose(res.table["mapped_area_km2"], [100 * A_PX_KM2, 60 * A_PX_KM2], rtol=1e-6)
    assert res.table["mapped_area_km2"].sum() == pytest.approx(160 * A_PX_KM2, rel=1e-6)


def test_glacier_half_outside_the_scene_has_coverage_one_half(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 54:64] = 1
    res = _run(tmp_path, mask, [px_box(10, 54, 20, 74), px_box(30, 10, 40, 20)], min_coverage=0.9)
    half, whole = res.table.iloc[0], res.table.iloc[1]
    assert half["coverage"] == pytest.approx(0.5, rel=1e-6)
    assert half["outline_area_km2"] == pytest.approx(200 * A_PX_KM2, rel=1e-6)
    assert half["mapped_area_km2"] == pytest.approx(100 * A_PX_KM2, rel=1e-6)
    assert half["low_coverage"] and not whole["low_coverage"]
    assert res.totals.glaciers_counted == 1 and res.totals.glaciers_low_coverage == 1
    assert res.totals.outline_area_km2 == pytest.approx(100 * A_PX_KM2, rel=1e-6)  # only the whole one
    assert res.totals.mapped_area_km2 == pytest.approx(0.0)
    kept = glacier_areas(tmp_path / "mask.tif", tmp_path / "inv.gpkg", min_coverage=0.4)
    assert kept.totals.glaciers_counted == 2


def test_glacier_under_nodata(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:20] = 255  # all of the first glacier is nodata (cloud)
    mask[30:40, 30:40] = 1
    mask[30:40, 30:35] = 255  # half of the second
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20), px_box(30, 30, 40, 40)])
    first, second = res.table.iloc[0], res.table.iloc[1]
    assert first["coverage"] == 0.0 and np.isnan(first["recall"]) and first["low_coverage"]
    assert first["mapped_area_km2"] == 0.0
    assert second["coverage"] == pytest.approx(0.5, rel=1e-6)
    assert second["recall"] == pytest.approx(1.0)
    assert second["valid_area_km2"] == pytest.approx(50 * A_PX_KM2, rel=1e-6)


def test_recall_ring_and_mapped_area_outside_outlines(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:15] = 1  # half the outline mapped
    mask[10:20, 20] = 1  # one column just east of it: in the ring
    mask[50:52, 50:52] = 1  # far from any outline
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20)], ring_pixels=3)
    row = res.table.iloc[0]
    assert row["recall"] == pytest.approx(0.5)
    assert row["ring_area_km2"] == pytest.approx(10 * A_PX_KM2, rel=1e-6)
    assert res.totals.mapped_outside_outlines_km2 == pytest.approx(14 * A_PX_KM2, rel=1e-6)


def test_probability_spread_uncertainty(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:20] = 1
    prob = np.full((SIZE, SIZE), 0.1, np.float32)
    prob[10:20, 10:20] = 0.9
    prob[10:20, 10:14] = 0.55  # 40 pixels between 0.4 and 0.6
    prob[10:20, 20:22] = 0.45  # 20 more just outside the outline: not its area
    write_raster(tmp_path / "prob.tif", prob, transform=EQ_TRANSFORM, nodata=float("nan"))
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20)], probabilities=tmp_path / "prob.tif")
    row = res.table.iloc[0]
    assert row["uncertainty_probability_km2"] == pytest.approx(40 * A_PX_KM2 / 2, rel=1e-6)
    assert res.totals.uncertainty_probability_km2 == pytest.approx(40 * A_PX_KM2 / 2, rel=1e-6)
    assert res.totals.thresholds == (0.4, 0.6)
    assert "uncertainty_probability_km2" not in _run(tmp_path / "..", mask, [px_box(1, 1, 3, 3)]).table


def test_inventory_in_lon_lat_against_a_projected_mask(tmp_path: Path) -> None:
    to_ll = pyproj.Transformer.from_crs("EPSG:32645", "EPSG:4326", always_xy=True)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[8:40, 8:40] = 1
    sq = px_box(8, 8, 40, 40)
    ll = shapely.transform(sq, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = write_outlines(tmp_path / "ll.geojson", [ll], crs="EPSG:4326")
    row = glacier_areas(m, inv).table.iloc[0]
    assert abs(row["mapped_area_km2"] - row["outline_area_km2"]) <= row["uncertainty_buffer_km2"]
    assert row["mapped_area_km2"] == pytest.approx(32 * 32 * A_PX_KM2, rel=1e-6)
    assert row["coverage"] == pytest.approx(1.0, abs=1e-9)


def test_geographic_mask_areas_match_geodesic_polygon_areas(tmp_path: Path) -> None:
    t = Affine(0.001, 0.0, 86.8, 0.0, -0.001, 28.0)  # ~100 m lon/lat cells at 28 N
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[5:25, 10:40] = 1
    lon0, lat0 = t * (10, 5)
    lon1, lat1 = t * (40, 25)
    outline = box(lon0, lat1, lon1, lat0)
    m = write_mask(tmp_path / "mask.tif", mask, crs="EPSG:4326", transform=t)
    inv = write_outlines(tmp_path / "inv.gpkg", [outline], crs="EPSG:4326")
    row = glacier_areas(m, inv).table.iloc[0]
    # independent reference: a lat/lon quadrangle on the WGS 84 ellipsoid, finely densified
    geod = pyproj.Geod(ellps="WGS84")
    ref, ref_perim = geod.geometry_area_perimeter(shapely.segmentize(outline, 1e-4))
    assert row["mapped_area_km2"] == pytest.approx(ref / 1e6, rel=1e-6)
    assert row["outline_area_km2"] == pytest.approx(ref / 1e6, rel=1e-6)
    assert row["perimeter_km"] == pytest.approx(ref_perim / 1e3, rel=1e-5)
    # the pixel is not square in metres: the buffer uses the side of its true area
    side = np.sqrt(ref / (20 * 30))
    assert row["uncertainty_buffer_km2"] == pytest.approx(ref_perim * side / 2 / 1e6, rel=1e-5)


def test_windows_give_the_same_answer_as_one_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    h, w = 300, 260
    mask = (rng.random((h, w)) < 0.5).astype(np.uint8)
    mask[rng.random((h, w)) < 0.05] = 255
    geoms = [px_box(r, c, r + 40, c + 35).buffer(20) for r in range(0, 260, 50) for c in range(0, 220, 45)]
    write_raster(tmp_path / "m.tif", mask, transform=EQ_TRANSFORM, nodata=255, block=32)
    inv = write_outlines(tmp_path / "i.gpkg", geoms)
    small = glacier_areas(tmp_path / "m.tif", inv, window=32).table  # 32-pixel windows
    big = glacier_areas(tmp_path / "m.tif", inv, window=10_000).table  # one window
    cols = ["mapped_area_km2", "valid_area_km2", "ring_area_km2", "coverage"]
    np.testing.assert_allclose(small[cols].to_numpy(), big[cols].to_numpy(), rtol=1e-12)
    # a naive reference: rasterize everything at once with the pixel-centre rule
    from geoglacier.glaciers.zones import rasterize_zones

    z, _ = rasterize_zones(geoms, EQ_TRANSFORM, h, w)
    counts = np.bincount(z[mask == 1], minlength=len(geoms) + 1)[1:]
    np.testing.assert_allclose(small["mapped_area_km2"], counts * A_PX_KM2, rtol=1e-6)


def test_bad_options_and_inputs(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(1, 1, 5, 5)])
    with pytest.raises(ConfigError, match="--min-coverage"):
        glacier_areas(m, inv, min_coverage=1.5)
    write_raster(tmp_path / "p.tif", np.zeros((32, 32), np.float32), transform=EQ_TRANSFORM)
    with pytest.raises(GridMismatchError, match="not on the grid") as err:
        glacier_areas(m, inv, probabilities=tmp_path / "p.tif")
    assert "--probabilities of the same run" in str(err.value) and "resample the mask" not in str(err.value)
    for option in ("probabilities", "spread"):  # the mask given again where a float raster belongs
        with pytest.raises(InvalidRasterError, match="a uint8 raster is not a .*not the mask"):
            glacier_areas(m, inv, **{option: m})
    nocrs = write_mask(tmp_path / "nocrs.tif", mask, crs=None)
    with pytest.raises(CRSMissingError, match="no CRS"):
        glacier_areas(nocrs, inv)


def test_an_inventory_read_once_serves_the_mask(tmp_path: Path) -> None:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[1:5, 1:5] = 1
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = read_inventory_for_mask(write_outlines(tmp_path / "inv.gpkg", [px_box(1, 1, 5, 5)]), m)
    assert glacier_areas(m, inv).table["mapped_area_km2"].iloc[0] == pytest.approx(16 * A_PX_KM2, rel=1e-6)


def test_area_ratio_and_quicklook(tmp_path: Path) -> None:
    from geoglacier.glaciers.quicklook import area_ratio, write_glacier_quicklook

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:15] = 1  # half of the first outline
    mask[10:20, 20] = 1  # plus a column in its ring: (50 + 10) / 100
    mask[30:40, 30:40] = 1
    mask[30:40, 40:42] = 1  # the second spills 2 columns east: (100 + 20) / 100
    mask[50:60, 50:60] = 255  # the third is all nodata
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20), px_box(30, 30, 40, 40), px_box(50, 50, 60, 60)])
    ratio = area_ratio(res)
    np.testing.assert_allclose(ratio[:2], [0.6, 1.2], rtol=1e-6)
    assert np.isnan(ratio[2])
    png = write_glacier_quicklook(tmp_path / "mask.tif", res, tmp_path / "q.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quicklook_draws_outlines_where_they_lie_on_the_decimated_mask(tmp_path: Path) -> None:
    from geoglacier.glaciers.quicklook import _mask_picture, _outlines_on_picture
    from geoglacier.io.masks import inspect_mask

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:20] = 1
    mask[40:48, 40:48] = 255
    res = _run(tmp_path, mask, [px_box(10, 10, 20, 20)])
    info = inspect_mask(tmp_path / "mask.tif")
    image = _mask_picture(info, max_side=SIZE // 2)  # every other pixel
    assert image.shape == (SIZE // 2, SIZE // 2, 3)
    assert np.all(image[5:10, 5:10] == 0.72) and np.all(image[20:24, 20:24] == 0.0)
    assert image[0, 0, 0] == np.float32(0.32)
    (ring,), (ratio,), (dashed,) = _outlines_on_picture(res, info, image.shape[:2])
    # the outline's corners, pixel (10, 10) to (20, 20), at half scale
    assert {tuple(p) for p in np.round(ring, 9)} == {(5.0, 5.0), (10.0, 5.0), (10.0, 10.0), (5.0, 10.0)}
    assert ratio == pytest.approx(1.0) and dashed is False


def test_an_inventory_object_is_cut_to_the_mask(tmp_path: Path) -> None:
    from geoglacier.glaciers.inventory import read_inventory

    mask = np.zeros((SIZE, SIZE), np.uint8)
    m = write_mask(tmp_path / "mask.tif", mask)
    path = write_outlines(tmp_path / "inv.gpkg", [px_box(1, 1, 5, 5), px_box(900, 900, 905, 905)])
    inv = read_inventory(path, "EPSG:32645")  # no region: both outlines
    assert len(inv) == 2
    assert list(glacier_areas(m, inv).table["glacier_id"]) == ["G1"]


def test_run_glaciers_never_writes_over_an_input(tmp_path: Path) -> None:
    from geoglacier.errors import OutputPathError
    from geoglacier.glaciers.areas import run_glaciers

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:20] = 1
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(10, 10, 20, 20)])
    prob = write_raster(tmp_path / "prob.tif", np.full((SIZE, SIZE), 0.5, np.float32), transform=EQ_TRANSFORM)
    files = {p: p.read_bytes() for p in (m, inv, prob)}
    cases = [
        ({"summary": prob}, OutputPathError, "--summary is the same file as the input --probabilities"),
        (
            {"summary": tmp_path / "." / "mask.tif"},
            OutputPathError,
            "--summary is the same file as the input MASK",
        ),
        ({"quicklook": m}, ConfigError, r"--quicklook .*mask\.tif: writes a PNG picture.*\.png"),
        ({"summary": tmp_path / "t.json", "quicklook": tmp_path / "T.png"}, None, ""),
    ]
    for kwargs, error, match in cases:
        out = tmp_path / "t.csv" if error else tmp_path / "t.gpkg"
        if error is None:
            run_glaciers(m, inv, out, overwrite=True, probabilities=prob, **kwargs)
            continue
        with pytest.raises(error, match=match):
            run_glaciers(m, inv, out, overwrite=True, probabilities=prob, **kwargs)
        assert not out.exists()
    with pytest.raises(OutputPathError, match="--out is the same file as the input --inventory"):
        run_glaciers(m, inv, tmp_path / "inv.gpkg", overwrite=True)
    assert {p: p.read_bytes() for p in files} == files


def test_run_glaciers_writes_all_outputs_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geoglacier.glaciers.quicklook as quicklook
    from geoglacier.glaciers.areas import run_glaciers

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:20] = 1
    m = write_mask(tmp_path / "mask.tif", mask)
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(10, 10, 20, 20)])
    outs = {"out": tmp_path / "t.csv", "summary": tmp_path / "t.json", "quicklook": tmp_path / "t.png"}

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quicklook, "write_glacier_quicklook", disk_full)  # the last output written
    with pytest.raises(OSError, match="No space"):
        run_glaciers(m, inv, **outs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.gpkg", "mask.tif"]  # nor temporaries
    monkeypatch.undo()
    result = run_glaciers(m, inv, **outs)
    assert all(p.exists() for p in outs.values())
    assert len(result.table) == 1


def test_a_gdal_mask_band_marks_nodata_as_summarize_sees_it(tmp_path: Path) -> None:
    import rasterio

    from geoglacier.measure.areas import summarize_mask

    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, : SIZE // 2] = 1  # glacier on the left half
    m = write_mask(tmp_path / "mask.tif", mask)
    valid = np.zeros((SIZE, SIZE), bool)
    valid[:, :20] = True  # the mask band keeps the first 20 columns only
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(m, "r+") as ds:
        ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(0, 0, SIZE, SIZE // 2)])
    table = glacier_areas(m, inv).table
    seen = int((mask.astype(bool) & valid).sum())
    assert table["mapped_area_km2"].iloc[0] == pytest.approx(seen * A_PX_KM2, rel=1e-6)
    assert table["mapped_area_km2"].iloc[0] == pytest.approx(summarize_mask(m).glacier_area_km2, rel=1e-9)
    assert table["coverage"].iloc[0] == pytest.approx(20 / (SIZE // 2), rel=1e-6)
