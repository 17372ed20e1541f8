"""Labels burned from an inventory: pixel centres, rock cut-outs, scene nodata, the edge band, dates.

Expected pixels come from hand formulas (a pixel centre against a rectangle, Chebyshev
distances to it) or from independent code (pyproj on the pixel centres, scipy's binary
dilation and erosion), never from the burner itself.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from affine import Affine
from scipy import ndimage
from shapely.geometry import box

from geoglacier.errors import (
    ConfigError,
    CRSMissingError,
    InventoryError,
    NoOverlapError,
    OutputExistsError,
    OutputPathError,
)
from geoglacier.glaciers.labels import NODATA, burn_labels, edge_band
from geoglacier.glaciers.outline_dates import OutdatedOutlinesWarning, outline_age, parse_inventory_date
from tests.data import EVEREST, scene_array, write_raster
from tests.glacier_data import EQ_TRANSFORM, PX, SIZE, UTM, px_box, true_px_area, write_outlines

RNG_SEED = 25


def write_scene(
    path: Path, height: int = SIZE, width: int = SIZE, transform: Affine = EQ_TRANSFORM, **kw
) -> Path:
    data = scene_array(height, width, bands=3, seed=RNG_SEED)
    return write_raster(path, data, transform=transform, **kw)


def files(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def rect_mask(r0: int, c0: int, r1: int, c1: int, shape: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)


def cheb_band(
    r0: int, c0: int, r1: int, c1: int, n: int, shape: tuple[int, int] = (SIZE, SIZE)
) -> np.ndarray:
    """Hand formula of the edge band of the pixel rectangle rows r0..r1-1, cols c0..c1-1.

    Inside: fewer than n pixels between the pixel and the rectangle's rim; outside:
    Chebyshev distance to the rectangle at most n. The rectangle may run past the grid.
    """
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = rect_mask(r0, c0, r1, c1, shape)
    depth = np.minimum.reduce([rows - r0, r1 - 1 - rows, cols - c0, c1 - 1 - cols])
    dr = np.maximum.reduce([r0 - rows, np.zeros_like(rows), rows - (r1 - 1)])
    dc = np.maximum.reduce([c0 - cols, np.zeros_like(cols), cols - (c1 - 1)])
    return np.where(inside, depth < n, np.maximum(dr, dc) <= n)


# --------------------------------------------------------------------------- pixel centres


def test_square_outline_gives_exactly_the_pixels_whose_centres_fall_inside(tmp_path: Path) -> None:
    rng = np.random.default_rng(RNG_SEED)
    x0, y0 = EQ_TRANSFORM * (0, 0)
    # a square whose edges cut pixels at random fractions (never through a centre)
    left = x0 + PX * (12 + rng.uniform(0.05, 0.45))
    top = y0 - PX * (9 + rng.uniform(0.55, 0.95))
    side = PX * 23.3
    outline = box(left, top - side, left + side, top)
    inv = write_outlines(tmp_path / "sq.gpkg", [outline])
    labels = read(burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif").path)

    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    cx, cy = x0 + (cols + 0.5) * PX, y0 - (rows + 0.5) * PX
    expected = (cx > left) & (cx < left + side) & (cy > top - side) & (cy < top)
    assert expected.sum() > 400
    np.testing.assert_array_equal(labels, expected.astype(np.uint8))


def test_outlines_in_another_crs_match_pixel_centres_moved_there(tmp_path: Path) -> None:
    """An RGI-style outline in longitude/latitude against the pixel centres transformed with pyproj."""
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    x0, y0 = EQ_TRANSFORM * (0, 0)
    ring = [(x0 + PX * c, y0 - PX * r) for r, c in [(8.3, 10.6), (12.1, 50.2), (47.7, 44.4), (40.2, 6.9)]]
    ll = shapely.Polygon([to_ll.transform(x, y) for x, y in ring])
    inv = write_outlines(tmp_path / "ll.gpkg", [ll], crs="EPSG:4326")
    labels = read(burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif").path)

    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    lon, lat = to_ll.transform(x0 + (cols + 0.5) * PX, y0 - (rows + 0.5) * PX)
    pts = shapely.points(lon, lat)
    expected = shapely.contains(ll, pts)
    # edges straight in degrees bend by millimetres in UTM: only centres that close may differ
    near = shapely.distance(ll.exterior, pts) * 111_000 < 0.5
    assert expected.sum() > 900
    np.testing.assert_array_equal(labels[~near], expected[~near].astype(np.uint8))


def test_glims_rock_outcrop_is_not_glacier(tmp_path: Path) -> None:
    def row(line_type: str, anlys: int, date: str = "2009-10-01T00:00:00") -> dict:
        return {"line_type": line_type, "anlys_id": anlys, "glac_id": f"G{anlys}", "src_date": date}

    geoms = [px_box(10, 10, 40, 40), px_box(18, 20, 26, 31), px_box(30, 10, 40, 40)]
    props = [row("glac_bound", 7), row("intrnl_rock", 7), row("debris_cov", 7)]
    inv = write_outlines(tmp_path / "glims_polygons.shp", geoms, props=props)
    with pytest.warns(Warning, match="internal rock"):
        labels = read(burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif").path)
    expected = rect_mask(10, 10, 40, 40) & ~rect_mask(18, 20, 26, 31)
    np.testing.assert_array_equal(labels, expected.astype(np.uint8))
    assert labels[18:26, 20:31].max() == 0  # the nunatak, although the debris polygon is drawn too


def test_outlines_without_an_id_column_still_burn(tmp_path: Path) -> None:
    inv = write_outlines(
        tmp_path / "x.gpkg", [px_box(5, 5, 9, 12), px_box(5, 5, 9, 12)], props=[{"n": 1}] * 2
    )
    result = burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif")
    np.testing.assert_array_equal(read(result.path), rect_mask(5, 5, 9, 12).astype(np.uint8))
    assert result.outlines == 2 and result.glacier_pixels == 28
    assert result.glacier_area_km2 == pytest.approx(28 * true_px_area() / 1e6, rel=1e-6)


# --------------------------------------------------------------------------- scene nodata


def test_scene_nodata_value_nan_and_mask_band_become_255(tmp_path: Path) -> None:
    data = scene_array(SIZE, SIZE, bands=3, seed=RNG_SEED)
    data[1, 0:5, :] = -9999.0  # the nodata value in one band only
    data[0, 60:, 60:] = np.nan
    path = write_raster(tmp_path / "s.tif", data, transform=EQ_TRANSFORM, nodata=-9999.0)
    with rasterio.open(path, "r+") as ds:  # an internal GDAL mask band hides one more block
        valid = np.full((SIZE, SIZE), 255, np.uint8)
        valid[30:34, 0:64] = 0
        ds.write_mask(valid)
    inv = write_outlines(tmp_path / "i.gpkg", [px_box(2, 2, 40, 40)])
    result = burn_labels(path, inv, tmp_path / "l.tif")
    labels = read(result.path)

    nodata = np.zeros((SIZE, SIZE), bool)
    nodata[0:5, :] = nodata[60:, 60:] = nodata[30:34, :] = True
    expected = np.where(nodata, NODATA, rect_mask(2, 2, 40, 40)).astype(np.uint8)
    np.testing.assert_array_equal(labels, expected)
    with rasterio.open(result.path) as ds:
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8" and ds.crs == rasterio.crs.CRS.from_string(UTM)
        assert ds.transform == EQ_TRANSFORM
    assert result.nodata_pixels == result.scene_nodata_pixels == int(nodata.sum())
    assert result.glacier_pixels == int((expected == 1).sum())


# --------------------------------------------------------------------------- edge band


@pytest.mark.parametrize("n", [1, 2])
def test_edge_band_of_a_square_matches_the_hand_formula(tmp_path: Path, n: int) -> None:
    inv = write_outlines(tmp_path / "i.gpkg", [px_box(20, 15, 35, 41)])
    result = burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif", edge_pixels=n)
    labels = read(result.path)
    band = cheb_band(20, 15, 35, 41, n)
    expected = np.where(band, NODATA, rect_mask(20, 15, 35, 41)).astype(np.uint8)
    np.testing.assert_array_equal(labels, expected)
    # N pixels on each side: a ring 2N wide around the 26 x 15 square
    assert band.sum() == (26 + 2 * n) * (15 + 2 * n) - (26 - 2 * n) * (15 - 2 * n)
    assert result.edge_band_pixels == band.sum() and result.nodata_pixels == band.sum()


def test_edge_band_at_the_scene_edge_follows_the_outline_not_the_grid(tmp_path: Path) -> None:
    """A glacier cut by the scene: its outline beyond the edge is burned for the band, the edge is no outline."""
    inv = write_outlines(tmp_path / "i.gpkg", [px_box(-10, 40, 20, 80)])
    labels = read(burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif", edge_pixels=2).path)
    expected = np.where(cheb_band(-10, 40, 20, 80, 2), NODATA, rect_mask(-10, 40, 20, 80)).astype(np.uint8)
    np.testing.assert_array_equal(labels, expected)
    assert (labels[0, 42:] == 1).all()  # the top row inside the glacier stays glacier


@pytest.mark.parametrize("n", [1, 2])
def test_edge_band_with_rock_and_touching_glaciers_matches_scipy_morphology(tmp_path: Path, n: int) -> None:
    """Band = dilation minus erosion (3 x 3 square, N times) of the burned mask, on a padded grid.

    Two glaciers share an ice divide (column 32): glacier on both sides, so no band there;
    a hole (rock cut out) gets a band around its rim.
    """
    a = px_box(10, 8, 44, 32).difference(px_box(20, 14, 27, 22))
    b = px_box(14, 32, 50, 58)
    inv = write_outlines(tmp_path / "i.gpkg", [a, b])
    labels = read(burn_labels(write_scene(tmp_path / "s.tif"), inv, tmp_path / "l.tif", edge_pixels=n).path)

    pad = n + 1
    big = (SIZE + 2 * pad, SIZE + 2 * pad)
    g = rect_mask(10 + pad, 8 + pad, 44 + pad, 32 + pad, big) & ~rect_mask(
        20 + pad, 14 + pad, 27 + pad, 22 + pad, big
    )
    g |= rect_mask(14 + pad, 32 + pad, 50 + pad, 58 + pad, big)
    square = np.ones((3, 3), bool)
    band = ndimage.binary_dilation(g, square, iterations=n) & ~ndimage.binary_erosion(g, square, iterations=n)
    band, g = band[pad:-pad, pad:-pad], g[pad:-pad, pad:-pad]
    np.testing.assert_array_equal(labels, np.where(band, NODATA, g).astype(np.uint8))
    assert (labels[20:40, 32 - n : 32 + n] == 1).all()  # the ice divide stays glacier
    assert (labels[19 - n + 1 : 20, 14:22] == NODATA).all()  # just outside the rock


def test_edge_band_function_on_its_own() -> None:
    g = np.zeros((9, 9), bool)
    g[3:6, 3:6] = True  # with a halo of 2: core rows/cols 2..6
    band = edge_band(g, 2)
    assert band.shape == (5, 5)
    assert band.all()  # every core pixel is within 2 of the other class
    assert not edge_band(g, 0).any() and edge_band(g, 0).shape == g.shape


def test_windows_with_halos_give_the_same_labels_as_one_window(tmp_path: Path) -> None:
    """Several 256-px windows (seams inside glaciers) against one window and the hand formula."""
    h, w = 300, 560
    scene = write_scene(tmp_path / "s.tif", h, w)
    inv = write_outlines(tmp_path / "i.gpkg", [px_box(200, 230, 290, 300), px_box(250, 500, 320, 600)])
    small = read(burn_labels(scene, inv, tmp_path / "a.tif", edge_pixels=2, window=256).path)
    large = read(burn_labels(scene, inv, tmp_path / "b.tif", edge_pixels=2, window=4096).path)
    np.testing.assert_array_equal(small, large)
    band = cheb_band(200, 230, 290, 300, 2, (h, w)) | cheb_band(250, 500, 320, 600, 2, (h, w))
    glacier = rect_mask(200, 230, 290, 300, (h, w)) | rect_mask(250, 500, 320, 600, (h, w))
    np.testing.assert_array_equal(small, np.where(band, NODATA, glacier).astype(np.uint8))


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20001030", dt.date(2000, 10, 30)),
        ("20009999", dt.date(2000, 7, 1)),
        ("20001099", dt.date(2000, 10, 15)),
        ("-9999999", None),
        ("2009-10-01T00:00:00", dt.date(2009, 10, 1)),
        ("2015-09-01", dt.date(2015, 9, 1)),
        ("2004", dt.date(2004, 7, 1)),
        (dt.datetime(2011, 8, 3, 12), dt.date(2011, 8, 3)),
        ("", None),
        (None, None),
        ("n/a", None),
        ("0", None),
    ],
)
def test_inventory_dates_are_parsed_or_unknown(value: object, expected: dt.date | None) -> None:
    assert parse_inventory_date(value) == expected


def test_outline_age_median_and_range() -> None:
    dates = [dt.date(2000, 10, 30), None, dt.date(2010, 4, 9), dt.date(2002, 1, 5)]
    age = outline_age(dt.date(2023, 10, 15), dates)
    assert (age.outlines, age.dated, age.first, age.median, age.last) == (
        4, 3, dt.date(2000, 10, 30), dt.date(2002, 1, 5), dt.date(2010, 4, 9)
    )  # fmt: skip
    lo, mid, hi = age.years
    assert lo == pytest.approx((dt.date(2023, 10, 15) - dt.date(2010, 4, 9)).days / 365.25)
    assert hi == pytest.approx((dt.date(2023, 10, 15) - dt.date(2000, 10, 30)).days / 365.25)
    assert mid == pytest.approx((dt.date(2023, 10, 15) - dt.date(2002, 1, 5)).days / 365.25)


def _dated(tmp_path: Path, scene_date: str | None, bgn: str) -> tuple[Path, Path]:
    scene = write_scene(tmp_path / "s.tif")
    if scene_date:
        with rasterio.open(scene, "r+") as ds:
            ds.update_tags(ACQUISITION_DATE=scene_date)
    props = [{"RGIId": "G1", "BgnDate": bgn}, {"RGIId": "G2", "BgnDate": bgn}]
    return scene, write_outlines(
        tmp_path / "i.gpkg", [px_box(5, 5, 20, 20), px_box(30, 30, 40, 50)], props=props
    )


def test_dates_follow_the_outlines_that_reach_the_scene(tmp_path: Path) -> None:
    """An outline off the scene is dropped with its date; the others keep theirs (RGI and GLIMS columns)."""
    geoms = [px_box(5, 5, 20, 20), px_box(900, 900, 910, 910), px_box(30, 30, 40, 50)]
    bgn = [{"RGIId": f"G{i}", "BgnDate": d} for i, d in enumerate(["20001030", "19700101", "20040815"])]
    scene = write_scene(tmp_path / "s.tif")
    result = burn_labels(scene, write_outlines(tmp_path / "rgi.gpkg", geoms, props=bgn), tmp_path / "a.tif")
    assert (result.outlines, result.age.first, result.age.last) == (
        2,
        dt.date(2000, 10, 30),
        dt.date(2004, 8, 15),
    )
    src = [
        {"glac_id": f"G{i}", "src_date": d} for i, d in enumerate(["2011-09-01T00:00:00", "1970-01-01", ""])
    ]
    result = burn_labels(scene, write_outlines(tmp_path / "glims.gpkg", geoms, props=src), tmp_path / "b.tif")
    assert (result.age.dated, result.age.first, result.age.last) == (
        1,
        dt.date(2011, 9, 1),
        dt.date(2011, 9, 1),
    )
    assert result.age.describe() == "outlines 2011-09-01 (1 of 2 dated), scene date unknown"


def test_outlines_23_years_older_than_the_scene_warn_once(tmp_path: Path) -> None:
    scene, inv = _dated(tmp_path, "2023-10-15", "20001030")
    with pytest.warns(OutdatedOutlinesWarning) as caught:
        result = burn_labels(scene, inv, tmp_path / "l.tif")
    ours = [w for w in caught if issubclass(w.category, OutdatedOutlinesWarning)]
    assert len(ours) == 1
    assert "23.0 years older than the scene" in str(ours[0].message) and "2 dated outlines" in str(
        ours[0].message
    )
    assert result.age.years == pytest.approx((22.96, 22.96, 22.96), abs=0.01)
    assert result.path.exists()


@pytest.mark.parametrize(
    ("scene_date", "bgn"),
    [("2001-08-01", "20000815"), (None, "20001030"), ("2023-10-15", "-9999999")],
    ids=["one-year-apart", "scene-undated", "outlines-undated"],
)
def test_no_warning_within_the_tolerance_or_with_unknown_dates(tmp_path: Path, scene_date, bgn) -> None:
    scene, inv = _dated(tmp_path, scene_date, bgn)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutdatedOutlinesWarning)
        result = burn_labels(scene, inv, tmp_path / "l.tif")
    assert result.age.years is None or result.age.largest_gap < 2


def test_date_option_replaces_the_tag_and_tolerance_is_adjustable(tmp_path: Path) -> None:
    scene, inv = _dated(tmp_path, None, "20001030")
    with pytest.warns(OutdatedOutlinesWarning, match="5.0 years older"):
        burn_labels(scene, inv, tmp_path / "a.tif", date="2005-10-30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutdatedOutlinesWarning)
        burn_labels(scene, inv, tmp_path / "b.tif", date="2005-10-30", date_tolerance_years=6)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("no-overlap", NoOverlapError, "none of its outlines reaches the scene"),
        ("no-crs", CRSMissingError, "has no CRS"),
        ("exists", OutputExistsError, "already exists; pass --overwrite"),
        ("unreadable", InventoryError, "not a vector file GDAL can read"),
        ("same-as-scene", OutputPathError, "same file as the input SCENE"),
        ("bad-ext", ConfigError, "must end in .tif"),
        ("negative-edge", ConfigError, "--edge-pixels must be >= 0"),
        ("bad-date", ConfigError, "not an ISO 8601 date"),
    ],
)
def test_bad_inputs_raise_typed_errors_and_write_nothing(
    tmp_path: Path, case: str, error, match: str
) -> None:
    scene = write_scene(tmp_path / "s.tif")
    inv = write_outlines(tmp_path / "i.gpkg", [px_box(5, 5, 20, 20)])
    out = tmp_path / "out" / "l.tif"
    out.parent.mkdir()
    kw: dict = {}
    if case == "no-overlap":
        inv = write_outlines(tmp_path / "far.gpkg", [px_box(900, 900, 903, 903)])
    elif case == "no-crs":
        scene = write_scene(tmp_path / "nocrs.tif", crs=None)
    elif case == "exists":
        out.write_text("keep me")
    elif case == "unreadable":
        inv = tmp_path / "broken.gpkg"
        inv.write_bytes(b"not a geopackage")
    elif case == "same-as-scene":
        out, kw["overwrite"] = scene, True  # even with overwrite
    elif case == "bad-ext":
        out = out.with_suffix(".png")
    elif case == "negative-edge":
        kw["edge_pixels"] = -1
    elif case == "bad-date":
        kw["date"] = "15/10/2023"
    before = files(tmp_path)
    with pytest.raises(error, match=match):
        burn_labels(scene, inv, out, **kw)
    assert files(tmp_path) == before


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def everest_labels(tmp_path_factory: pytest.TempPathFactory):
    if not (EVEREST / "west_rgi60_outlines.gpkg").exists():
        pytest.skip("../shared/data/everest is not here")
    out = tmp_path_factory.mktemp("everest") / "labels.tif"
    return burn_labels(EVEREST / "west_scene.tif", EVEREST / "west_rgi60_outlines.gpkg", out)


def test_everest_labels_equal_the_shared_mask_pixel_for_pixel(everest_labels) -> None:
    labels = read(everest_labels.path)
    reference = read(EVEREST / "west_mask.tif")
    assert labels.shape == reference.shape == (655, 480)
    assert int((labels != reference).sum()) == 0
    with rasterio.open(everest_labels.path) as ds, rasterio.open(EVEREST / "west_mask.tif") as ref:
        assert ds.crs == ref.crs and ds.transform == ref.transform
    assert everest_labels.outlines == 59 and everest_labels.nodata_pixels == 0
    assert everest_labels.glacier_pixels == int(reference.sum())
    # README: 122.26 km2 at a nominal 900 m2 per pixel; true areas are larger by UTM's scale factor
    assert everest_labels.glacier_pixels * 900 / 1e6 == pytest.approx(122.26, abs=0.005)
    assert everest_labels.glacier_area_km2 == pytest.approx(122.26, rel=2e-3)
    from geoglacier.measure.areas import summarize_mask

    # what `geoglacier summarize` says of the reference mask
    assert everest_labels.glacier_area_km2 == pytest.approx(
        summarize_mask(EVEREST / "west_mask.tif").glacier_area_km2, rel=1e-9
    )
    assert everest_labels.age.first == dt.date(2000, 10, 30) and everest_labels.age.scene_date is None


def test_everest_edge_band_matches_scipy_morphology_away_from_the_scene_edge(
    everest_labels, tmp_path: Path
) -> None:
    """Away from the scene's edge (where the outlines go on), the band is dilation minus erosion."""
    out = tmp_path / "edge.tif"
    result = burn_labels(EVEREST / "west_scene.tif", EVEREST / "west_rgi60_outlines.gpkg", out, edge_pixels=1)
    labels = read(out)
    g = read(EVEREST / "west_mask.tif").astype(bool)
    square = np.ones((3, 3), bool)
    band = ndimage.binary_dilation(g, square) & ~ndimage.binary_erosion(g, square, border_value=1)
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_array_equal(labels[inner], np.where(band, NODATA, g).astype(np.uint8)[inner])
    assert 0.05 < result.share(result.edge_band_pixels) < 0.2
