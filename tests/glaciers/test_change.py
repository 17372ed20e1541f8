"""geoglacier.glaciers.change: change maps and per-glacier change with hand-computed answers.

The fixture is a 64 x 64 grid of 30 m pixels (UTM 45N) with one square glacier of
32 x 32 pixels and its outline on the pixel edges. Shrinking it by a ring of 2 pixels
loses 32^2 - 28^2 = 240 pixels; the expected true areas are those pixels' exact areas
(:func:`geoglacier.measure.areas.pixel_area_at`, itself tested against closed forms).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.warp import transform_geom

from geoglacier.errors import ConfigError, CRSMissingError, MaskError, NoOverlapError
from geoglacier.glaciers.align import _source_window, pair_masks, strip_windows
from geoglacier.glaciers.change import glacier_change
from geoglacier.glaciers.changemap import ICE_GAINED, ICE_LOST, NODATA, STABLE_ICE, STABLE_NON_ICE, classify
from geoglacier.glaciers.dates import DAYS_PER_YEAR, parse_date
from geoglacier.measure.areas import pixel_area_at
from tests.data import UTM, UTM_TRANSFORM, write_raster

SIZE = 64
LO, HI = 16, 48  # the t0 glacier: rows and columns 16..47
RING = 2  # pixels lost on every side at t1
PX = 30.0


def square(lo: int = LO, hi: int = HI, value: int = 1) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    m[lo:hi, lo:hi] = value
    return m


def write_mask(path: Path, data: np.ndarray, date: str | None = None, **kwargs) -> Path:
    kwargs.setdefault("nodata", 255)
    write_raster(path, data, **kwargs)
    if date is not None:
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(ACQUISITION_DATE=date)
    return path


def outline(lo: int = LO, hi: int = HI, transform: Affine = UTM_TRANSFORM) -> shapely.Polygon:
    """The square's outline on the pixel edges, in map coordinates."""
    x0, y0 = transform * (lo, lo)
    x1, y1 = transform * (hi, hi)
    return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def write_inventory(path: Path, polygons: list[shapely.Polygon], crs: str = UTM) -> Path:
    schema = {"geometry": "Polygon", "properties": {"RGIId": "str", "Name": "str", "Area": "float"}}
    with fiona.open(path, "w", driver="GPKG", schema=schema, crs=crs, layer="glaciers") as dst:
        for i, poly in enumerate(polygons):
            dst.write(
                {
                    "geometry": shapely.geometry.mapping(poly),
                    "properties": {"RGIId": f"G{i}", "Name": f"glacier {i}", "Area": poly.area / 1e6},
                }
            )
    return path


def true_area_km2(selected: np.ndarray, transform: Affine = UTM_TRANSFORM, crs: str = UTM) -> float:
    rows, cols = np.nonzero(selected)
    return float(pixel_area_at(transform, crs, rows, cols).sum()) / 1e6


@pytest.fixture
def shrink(tmp_path: Path) -> dict[str, Path]:
    return {
        "t0": write_mask(tmp_path / "t0.tif", square()),
        "t1": write_mask(tmp_path / "t1.tif", square(LO + RING, HI - RING)),
        "inventory": write_inventory(tmp_path / "outlines.gpkg", [outline()]),
    }


# ----------------------------------------------------------------------------- classes


def test_classify_every_combination() -> None:
    m0 = np.array([[0, 1, 1, 0, 255, 0, 255]], dtype=np.uint8)
    m1 = np.array([[0, 1, 0, 1, 0, 255, 255]], dtype=np.uint8)
    expected = [STABLE_NON_ICE, STABLE_ICE, ICE_LOST, ICE_GAINED, NODATA, NODATA, NODATA]
    assert classify(m0, m1).tolist() == [expected]
    assert (STABLE_NON_ICE, STABLE_ICE, ICE_LOST, ICE_GAINED, NODATA) == (0, 1, 2, 3, 255)


# ------------------------------------------------------------------- the shrinking square


def test_a_shrinking_square_loses_its_ring(shrink: dict[str, Path], tmp_path: Path) -> None:
    result = glacier_change(
        shrink["t0"],
        shrink["t1"],
        tmp_path / "change.tif",
        inventory=shrink["inventory"],
        glaciers=tmp_path / "glaciers.csv",
        summary=tmp_path / "change.json",
        quicklook=tmp_path / "change.png",
        t0_date="2000-08-01",
        t1_date="2020-08-01",
    )
    ring = (square() == 1) & (square(LO + RING, HI - RING) == 0)
    assert ring.sum() == 32**2 - 28**2 == 240
    ring_km2 = true_area_km2(ring)
    assert ring_km2 == pytest.approx(240 * PX * PX / 1e6, rel=2e-3)  # UTM: within its scale factor
    a = result.areas
    assert a.ice_lost_km2 == pytest.approx(ring_km2, rel=1e-6)
    assert a.ice_gained_km2 == 0.0
    assert a.net_change_km2 == pytest.approx(-ring_km2, rel=1e-6)
    assert a.ice_t0_km2 == pytest.approx(true_area_km2(square() == 1), rel=1e-6)
    assert a.valid_pixels == SIZE * SIZE and a.nodata_pixels == 0
    years = (parse_date("2020-08-01") - parse_date("2000-08-01")).days / DAYS_PER_YEAR
    assert result.years == pytest.approx(years) and result.note is None
    assert a.net_rate_km2_per_year == pytest.approx(-ring_km2 / years, rel=1e-6)

    g = result.glaciers.iloc[0]
    assert g["glacier_id"] == "G0" and g["name"] == "glacier 0"
    assert g["lost_km2"] == pytest.approx(ring_km2, rel=1e-6)
    assert g["change_km2"] == pytest.approx(-ring_km2, rel=1e-6)
    assert g["area_t0_km2"] == pytest.approx(true_area_km2(square() == 1), rel=1e-6)
    assert g["relative_change"] == pytest.approx(-240 / 1024, rel=2e-3)
    assert g["coverage"] == pytest.approx(1.0, abs=1e-3)
    # Buffer method: perimeter x half a pixel; the perimeter is 4 x 960 m (geodesic, ~UTM scale).
    assert g["perimeter_km"] == pytest.approx(3.84, rel=2e-3)
    assert g["sigma_t0_km2"] == pytest.approx(g["perimeter_km"] * 0.015, rel=1e-3)
    assert g["sigma_t1_km2"] == pytest.approx(g["sigma_t0_km2"], rel=1e-3)  # same 30 m grid
    assert g["sigma_change_km2"] == pytest.approx(math.hypot(g["sigma_t0_km2"], g["sigma_t1_km2"]))
    assert g["snr"] == pytest.approx(ring_km2 / g["sigma_change_km2"], rel=1e-6)
    assert g["snr"] > 2  # 0.216 km2 against 0.081 km2
    assert g["rate_km2_per_year"] == pytest.approx(-ring_km2 / years, rel=1e-6)
    assert g["sigma_rate_km2_per_year"] == pytest.approx(g["sigma_change_km2"] / years)
    assert bool(g["in_totals"]) and not g["within_uncertainty"] and not g["low_coverage"]
    tot = result.glacier_totals["in_totals"]
    assert tot["glaciers"] == 1
    assert tot["change_km2"] == pytest.approx(-ring_km2, rel=1e-6)
    assert tot["sigma_change_km2"] == pytest.approx(g["sigma_change_km2"])

    # The outputs: COG with a colour table, the table, the JSON, the PNG.
    with rasterio.open(tmp_path / "change.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.crs == rasterio.crs.CRS.from_string(UTM) and ds.transform == UTM_TRANSFORM
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8"
        assert ds.colormap(1)[ICE_LOST][:3] == (214, 40, 40)
        assert ds.colormap(1)[NODATA][3] == 0
        classes = ds.read(1)
        assert ds.tags()["T0_DATE"] == "2000-08-01"
    assert np.array_equal(classes == ICE_LOST, ring)
    assert np.array_equal(classes == STABLE_ICE, square(LO + RING, HI - RING) == 1)
    assert (tmp_path / "change.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "change.json").read_text())
    assert summary["areas"]["ice_lost_km2"] == pytest.approx(ring_km2)
    assert summary["classes"]["2"] == "ice lost"
    assert summary["glacier_totals"]["in_totals"]["glaciers"] == 1
    csv = (tmp_path / "glaciers.csv").read_text().splitlines()
    assert csv[0].startswith("glacier_id,name,") and csv[1].startswith("G0,glacier 0,")


def test_the_table_as_geopackage_carries_the_outlines(shrink: dict[str, Path], tmp_path: Path) -> None:
    glacier_change(
        shrink["t0"],
        shrink["t1"],
        tmp_path / "c.tif",
        inventory=shrink["inventory"],
        glaciers=tmp_path / "g.gpkg",
    )
    with fiona.open(tmp_path / "g.gpkg") as src:
        (feat,) = list(src)
        assert feat.properties["glacier_id"] == "G0"
        assert feat.properties["in_totals"] in (True, 1)
        assert feat.properties["rate_km2_per_year"] is None  # no dates
        assert shapely.geometry.shape(feat.geometry).equals(outline())


# -------------------------------------------------------------------------------- clouds


def test_a_cloud_at_t1_is_left_out_at_both_dates(shrink: dict[str, Path], tmp_path: Path) -> None:
    t1 = square(LO + RING, HI - RING)
    t1[LO:32, :] = 255  # a cloud over the top half of the glacier (and beyond it) at t1 only
    cloudy = write_mask(tmp_path / "cloudy.tif", t1)
    result = glacier_change(
        shrink["t0"], cloudy, tmp_path / "c.tif", inventory=shrink["inventory"], min_coverage=0.8
    )
    bottom = np.zeros((SIZE, SIZE), dtype=bool)
    bottom[32:HI, LO:HI] = True  # the half of the glacier valid at both dates
    lost = bottom & (t1 == 0)
    assert lost.sum() == 16 * 32 - 14 * 28 == 120
    g = result.glaciers.iloc[0]
    assert g["area_t0_km2"] == pytest.approx(true_area_km2(bottom), rel=1e-6)  # not the whole square
    assert g["area_t1_km2"] == pytest.approx(true_area_km2(bottom & (t1 == 1)), rel=1e-6)
    assert g["lost_km2"] == pytest.approx(true_area_km2(lost), rel=1e-6)
    assert g["coverage"] == pytest.approx(0.5, abs=2e-3)
    assert bool(g["low_coverage"]) and not g["in_totals"]
    assert result.glacier_totals["in_totals"]["glaciers"] == 0
    assert result.glacier_totals["flagged_low_coverage"] == 1
    assert result.areas.nodata_pixels == 16 * SIZE
    assert result.areas.ice_lost_km2 == pytest.approx(true_area_km2(lost), rel=1e-6)
    with rasterio.open(tmp_path / "c.tif") as ds:
        assert np.array_equal(ds.read(1) == NODATA, t1 == 255)


# ---------------------------------------------------------------- another CRS and pixel size


def _rasterize_in(crs: str, transform: Affine, shape: tuple[int, int], poly: shapely.Polygon) -> np.ndarray:
    geom = transform_geom(UTM, crs, shapely.geometry.mapping(shapely.segmentize(poly, 10.0)))
    return rasterio.features.rasterize([(geom, 1)], out_shape=shape, transform=transform, dtype="uint8")


def test_t1_on_another_crs_and_pixel_size(shrink: dict[str, Path], tmp_path: Path) -> None:
    # t1: the shrunk square drawn on a 10 m grid of UTM zone 44N (the neighbouring zone).
    crs1 = "EPSG:32644"
    shrunk = outline(LO + RING, HI - RING)
    x, y = rasterio.warp.transform(UTM, crs1, [UTM_TRANSFORM.c], [UTM_TRANSFORM.f])
    t1_transform = Affine(
        10.0, 0.0, math.floor(x[0] / 10) * 10 - 200, 0.0, -10.0, math.ceil(y[0] / 10) * 10 + 200
    )
    t1 = _rasterize_in(crs1, t1_transform, (240, 240), shrunk)
    path1 = write_mask(tmp_path / "t1_utm44_10m.tif", t1, crs=crs1, transform=t1_transform)
    pair = pair_masks(shrink["t0"], path1)
    assert not pair.same_grid
    result = glacier_change(shrink["t0"], path1, tmp_path / "c.tif", inventory=shrink["inventory"])
    # Every t0 pixel centre is 15 m from the shrunk outline's edges and lands within 7.1 m of
    # the centre of the 10 m pixel it falls in: nearest resampling gives back the same classes.
    with rasterio.open(tmp_path / "c.tif") as ds:
        classes = ds.read(1)
    # t1 reaches 200 m past t0 on every side (more than the 2.7 degree grid convergence turns).
    assert np.array_equal(classes, classify(square(), square(LO + RING, HI - RING)))
    ring = (square() == 1) & (square(LO + RING, HI - RING) == 0)
    g = result.glaciers.iloc[0]
    assert g["lost_km2"] == pytest.approx(true_area_km2(ring), rel=1e-6)
    # 5.8 degrees east of zone 44's central meridian UTM stretches lengths by about 0.36 %.
    assert result.pixel_size_t1_m == pytest.approx(10.0 / 1.0036, rel=5e-4)
    # t1's area is counted on t0's 30 m grid, so its uncertainty uses the coarser 30 m.
    assert g["sigma_t1_km2"] == pytest.approx(g["sigma_t0_km2"], rel=1e-3)
    assert result.resampling == "nearest"


def test_mode_takes_the_majority_where_nearest_takes_the_centre(tmp_path: Path) -> None:
    # t1 at 10 m on the same CRS, 3 x 3 sub-pixels per t0 pixel: 5 of 9 glacier, centre not.
    block = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=np.uint8)
    t1 = np.tile(block, (SIZE, SIZE))
    fine = Affine(10.0, 0.0, UTM_TRANSFORM.c, 0.0, -10.0, UTM_TRANSFORM.f)
    p1 = write_mask(tmp_path / "fine.tif", t1, transform=fine)
    p0 = write_mask(tmp_path / "t0.tif", np.zeros((SIZE, SIZE), dtype=np.uint8))
    near = glacier_change(p0, p1, tmp_path / "near.tif")
    mode = glacier_change(p0, p1, tmp_path / "mode.tif", resampling="mode")
    assert near.areas.ice_gained_km2 == 0.0
    assert mode.areas.ice_gained_km2 == pytest.approx(true_area_km2(np.ones((SIZE, SIZE), bool)), rel=1e-6)


# ------------------------------------------------------------------------- dates and rates


def test_no_dates_no_rates(shrink: dict[str, Path], tmp_path: Path) -> None:
    result = glacier_change(shrink["t0"], shrink["t1"], tmp_path / "c.tif", inventory=shrink["inventory"])
    assert result.years is None and result.t0_date is None
    assert "no rates" in result.note and "t0 and t1" in result.note
    assert result.areas.net_rate_km2_per_year is None
    assert result.glaciers["rate_km2_per_year"].isna().all()
    assert result.glacier_totals["in_totals"]["rate_km2_per_year"] is None
    assert result.areas.net_change_km2 < 0  # change is still there


def test_dates_from_the_tags_and_overrides(tmp_path: Path) -> None:
    p0 = write_mask(tmp_path / "t0.tif", square(), date="2000-10-30")
    p1 = write_mask(tmp_path / "t1.tif", square(LO + 1, HI - 1), date="2024-10-30T04:50:00Z")
    result = glacier_change(p0, p1, tmp_path / "a.tif")
    assert result.years == pytest.approx(8766 / 365.25) and result.years == pytest.approx(24.0)
    assert result.t1_date.isoformat() == "2024-10-30"
    over = glacier_change(p0, p1, tmp_path / "b.tif", t0_date="2012-10-30")
    assert over.years == pytest.approx(4383 / 365.25)
    with pytest.raises(ConfigError, match="not after"):
        glacier_change(p1, p0, tmp_path / "c.tif")
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        glacier_change(p0, p1, tmp_path / "c.tif", t0_date="30/10/2000")
    assert not (tmp_path / "c.tif").exists()


# ---------------------------------------------------------------------- coverage of outlines


def test_coverage_is_what_the_scene_sees_not_the_rasterized_share(tmp_path: Path) -> None:
    # Three outlines a clear scene sees whole: G0, the square on pixel edges; G1, a small
    # box 2.8 pixels wide that only 2 x 2 pixel centres fall in (4 of its 7.84 pixels);
    # G2, a box overlapping G0, whose shared pixels go to G0 (listed first). Coverage is
    # about clouds and scene edges, so all three are covered whole, as `geoglacier glaciers`
    # says; a fourth, G3, lies half past the grid's west edge and is covered by half.
    from geoglacier.glaciers.areas import glacier_areas

    x0, y0 = UTM_TRANSFORM * (LO + 20.6, LO - 8.4)
    small = shapely.box(x0, y0 - 2.8 * PX, x0 + 2.8 * PX, y0)
    overlapping = outline(HI - 4, HI + 8)
    half_out = shapely.box(*(UTM_TRANSFORM * (-8, 50)), *(UTM_TRANSFORM * (8, 58)))
    half_out = shapely.box(*shapely.bounds(half_out))
    inventory = write_inventory(tmp_path / "o.gpkg", [outline(), small, overlapping, half_out])
    t0 = write_mask(tmp_path / "t0.tif", square())
    result = glacier_change(t0, t0, tmp_path / "c.tif", inventory=inventory)
    change = result.glaciers.set_index("glacier_id")
    areas = glacier_areas(t0, inventory).table.set_index("glacier_id")
    assert change.loc["G1", "valid_km2"] == pytest.approx(4 * PX * PX / 1e6, rel=2e-3)
    for gid in ("G0", "G1", "G2"):
        assert change.loc[gid, "coverage"] == pytest.approx(1.0, abs=1e-6), gid
        assert not change.loc[gid, "low_coverage"], gid
    assert change.loc["G3", "coverage"] == pytest.approx(0.5, abs=0.01)
    assert change.loc["G3", "low_coverage"]
    assert np.allclose(change["coverage"], areas.loc[change.index, "coverage"], atol=1e-6)
    assert result.glacier_totals["flagged_low_coverage"] == 1


# ------------------------------------------------------------------------ identical masks


def test_identical_masks_give_zero_change_with_its_uncertainty(
    shrink: dict[str, Path], tmp_path: Path
) -> None:
    result = glacier_change(shrink["t0"], shrink["t0"], tmp_path / "c.tif", inventory=shrink["inventory"])
    assert result.areas.ice_lost_km2 == 0.0 and result.areas.ice_gained_km2 == 0.0
    g = result.glaciers.iloc[0]
    assert g["change_km2"] == 0.0 and g["snr"] == 0.0
    sigma = g["perimeter_km"] * 0.015
    assert g["sigma_change_km2"] == pytest.approx(math.sqrt(2) * sigma, rel=1e-3)
    assert g["sigma_change_km2"] == pytest.approx(math.sqrt(2) * 3.84 * 0.015, rel=3e-3)
    assert bool(g["within_uncertainty"]) and not g["in_totals"]
    covered = result.glacier_totals["all_with_coverage"]
    assert covered["glaciers"] == 1 and covered["change_km2"] == 0.0
    assert covered["sigma_change_km2"] == pytest.approx(g["sigma_change_km2"])
    assert result.glacier_totals["in_totals"]["glaciers"] == 0


# ------------------------------------------------------------------------------ bad inputs


def test_masks_that_do_not_overlap(shrink: dict[str, Path], tmp_path: Path) -> None:
    far = Affine(30.0, 0.0, UTM_TRANSFORM.c + 100_000, 0.0, -30.0, UTM_TRANSFORM.f)
    p1 = write_mask(tmp_path / "far.tif", square(), transform=far)
    with pytest.raises(NoOverlapError, match="does not overlap"):
        glacier_change(shrink["t0"], p1, tmp_path / "c.tif")
    assert not (tmp_path / "c.tif").exists()


def test_other_bad_masks(shrink: dict[str, Path], tmp_path: Path) -> None:
    two = write_raster(tmp_path / "two.tif", np.stack([square(), square()]))
    with pytest.raises(MaskError, match="1 band, found 2"):
        glacier_change(shrink["t0"], two, tmp_path / "c.tif")
    nocrs = write_mask(tmp_path / "nocrs.tif", square(), crs=None)
    with pytest.raises(CRSMissingError, match="no CRS"):
        glacier_change(shrink["t0"], nocrs, tmp_path / "c.tif")
    with pytest.raises(MaskError, match="reclassify"):
        glacier_change(shrink["t0"], write_mask(tmp_path / "seven.tif", square() * 7), tmp_path / "c.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nocrs.tif",
        "outlines.gpkg",
        "seven.tif",
        "t0.tif",
        "t1.tif",
        "two.tif",
    ]


# ------------------------------------------------------------------------- bounded memory


def test_strips_cover_the_grid_once() -> None:
    seen = np.zeros((70, 2100), dtype=int)
    rows = []
    for row_off, windows in strip_windows(70, 2100, strip=32, chunk=1024):
        rows.append(row_off)
        for w in windows:
            seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
            assert w.width <= 1024 and w.height <= 32
    assert rows == [0, 32, 64] and (seen == 1).all()


def test_only_the_t1_pixels_under_a_window_are_read(tmp_path: Path) -> None:
    # A large fine t1 (3000 x 3000 at 10 m) under a small t0: a 16 x 16 window of 30 m pixels
    # needs about 48 x 48 t1 pixels (plus the margin), never the whole file.
    fine = Affine(10.0, 0.0, UTM_TRANSFORM.c - 5000, 0.0, -10.0, UTM_TRANSFORM.f + 5000)
    p1 = tmp_path / "big.tif"
    with rasterio.open(
        p1,
        "w",
        driver="GTiff",
        height=3000,
        width=3000,
        count=1,
        dtype="uint8",
        crs=UTM,
        transform=fine,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    ) as ds:
        ds.write(np.zeros((3000, 3000), dtype=np.uint8), 1)
    p0 = write_mask(tmp_path / "t0.tif", square())
    pair = pair_masks(p0, p1)
    win = _source_window(pair, rasterio.windows.Window(8, 8, 16, 16))
    assert win is not None and win.width <= 48 + 2 * 2 + 2 and win.height <= 48 + 2 * 2 + 2
    assert win.col_off == pytest.approx(500 + 24 - 2, abs=1)
