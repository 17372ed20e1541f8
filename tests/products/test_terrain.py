"""Terrain bands: Horn's slope by hand and by a naive loop, and stacking with a DEM in another CRS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoglacier.products.terrain import aspect_components, metres_per_degree, slope_degrees
from tests.data import UTM_TRANSFORM, write_scene
from tests.products_data import write_plane_dem

RECIPE5 = ("red", "green", "blue", "nir", "ndvi")


def _plane(a: float, b: float, dx: float, dy: float, shape: tuple[int, int] = (7, 9)) -> np.ndarray:
    """``z = a * east + b * north`` on a grid with column spacing ``dx`` and row spacing ``dy`` (row 0 north)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return a * cols * dx + b * (-rows * dy)


@pytest.mark.parametrize(
    ("a", "b", "dx", "dy"),
    [
        (1.0, 0.0, 30.0, 30.0),
        (0.0, 1.0, 30.0, 30.0),
        (0.3, -0.4, 10.0, 20.0),
        (-2.0, 0.5, 92.6, 25.0),
        (0, 0, 5, 5),
    ],
)
def test_slope_of_tilted_planes_is_atan_of_the_gradient(a: float, b: float, dx: float, dy: float) -> None:
    slope = slope_degrees(_plane(a, b, dx, dy), dx, dy)
    assert slope.shape == (5, 7)
    np.testing.assert_allclose(slope, math.degrees(math.atan(math.hypot(a, b))), atol=1e-4)


def test_spacing_matters_per_axis() -> None:
    # the same array read with another x spacing: a slope of 45 degrees along x at dx = 10
    # becomes atan(10 / 20) at dx = 20; the y spacing does not change it
    z = _plane(1.0, 0.0, 10.0, 10.0)
    np.testing.assert_allclose(slope_degrees(z, 10.0, 10.0), 45.0, atol=1e-4)
    np.testing.assert_allclose(slope_degrees(z, 20.0, 999.0), math.degrees(math.atan(0.5)), atol=1e-4)
    # per-row spacing: row i of the output uses dx[i]
    dx = np.array([10.0, 20.0, 40.0, 10.0, 5.0])
    expected = np.degrees(np.arctan(10.0 / dx))
    np.testing.assert_allclose(slope_degrees(z, dx, 10.0), np.repeat(expected[:, None], 7, axis=1), atol=1e-4)


def test_cone_has_its_flank_slope_away_from_the_apex() -> None:
    # z = 1000 - 0.5 r: a 26.57 degree flank; Horn's 3 x 3 smoothing only bends it near the apex
    n, d = 41, 10.0
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    r = np.hypot(rows - 20, cols - 20) * d
    slope = slope_degrees(1000 - 0.5 * r, d, d)
    inner_r = r[1:-1, 1:-1]
    far = inner_r >= 5 * d
    np.testing.assert_allclose(slope[far], math.degrees(math.atan(0.5)), atol=0.3)
    assert slope[19, 19] == pytest.approx(0.0, abs=1e-9)  # the apex: symmetric neighbours cancel
    np.testing.assert_allclose(slope, slope.T, atol=1e-5)  # symmetric, like the cone
    np.testing.assert_allclose(slope, slope[::-1, ::-1], atol=1e-5)


def _naive_horn(z: np.ndarray, dx: float, dy: float) -> np.ndarray:
    out = np.full((z.shape[0] - 2, z.shape[1] - 2), np.nan)
    for i in range(1, z.shape[0] - 1):
        for j in range(1, z.shape[1] - 1):
            w = z[i - 1 : i + 2, j - 1 : j + 2]
            gx = (w[0, 2] + 2 * w[1, 2] + w[2, 2] - w[0, 0] - 2 * w[1, 0] - w[2, 0]) / (8 * dx)
            gy = (w[2, 0] + 2 * w[2, 1] + w[2, 2] - w[0, 0] - 2 * w[0, 1] - w[0, 2]) / (8 * dy)
            out[i - 1, j - 1] = math.degrees(math.atan(math.sqrt(gx * gx + gy * gy)))
    return out


def test_slope_equals_a_naive_loop_and_voids_spread_to_neighbours() -> None:
    rng = np.random.default_rng(25)
    z = rng.normal(3000, 200, (12, 15))
    z[4, 6] = np.nan
    got = slope_degrees(z, 30.0, 22.0)
    ref = _naive_horn(z, 30.0, 22.0)  # NaN around the void; at the void itself Horn's weights skip it
    ref[3, 5] = np.nan  # a void has no slope
    np.testing.assert_allclose(got, ref, rtol=1e-5, equal_nan=True)
    nan = np.isnan(got)
    assert nan.sum() == 9 and nan[2:5, 4:7].all()  # the void's 3 x 3 neighbourhood (in inner coordinates)


@pytest.mark.parametrize(
    ("a", "b", "north", "east"),
    [(0.0, 1.0, -1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (1.0, 0.0, 0.0, -1.0), (-0.5, -0.5, 0.7071, 0.7071)],
)
def test_aspect_is_the_downslope_direction(a: float, b: float, north: float, east: float) -> None:
    # rising to the north faces south (northness -1); falling to the north-east faces north-east
    northness, eastness = aspect_components(_plane(a, b, 30.0, 30.0), 30.0, 30.0)
    np.testing.assert_allclose(northness, north, atol=1e-4)
    np.testing.assert_allclose(eastness, east, atol=1e-4)


def test_flat_ground_faces_nowhere() -> None:
    northness, eastness = aspect_components(np.full((4, 4), 7.0), 30.0, 30.0)
    assert (northness == 0).all() and (eastness == 0).all()


@pytest.mark.parametrize("lat", [0.0, 27.9, 45.0, 60.0, -70.0])
def test_metres_per_degree_matches_geodesic_distances(lat: float) -> None:
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    step = 1e-3
    per_lon, per_lat = metres_per_degree(lat)
    assert per_lon == pytest.approx(geod.inv(0, lat, step, lat)[2] / step, rel=1e-6)
    assert per_lat == pytest.approx(geod.inv(0, lat - step / 2, 0, lat + step / 2)[2] / step, rel=1e-6)


# ----------------------------------------------------------------------------- stacking with a DEM


def _scene(tmp_path: Path, size: int = 300) -> Path:
    return write_scene(tmp_path / "scene.tif", height=size, width=size, seed=4, descriptions=RECIPE5)


def _bounds(size: int) -> tuple[float, float, float, float]:
    t = UTM_TRANSFORM
    return (t.c, t.f - 30.0 * size, t.c + 30.0 * size, t.f)


@pytest.fixture
def plane_dem(tmp_path: Path) -> tuple[Path, Path, tuple[float, float]]:
    scene = _scene(tmp_path)
    dem, centre = write_plane_dem(tmp_path / "dem.tif", _bounds(300), 0.3, -0.2)
    return scene, dem, centre


def test_a_dem_in_degrees_gives_the_slope_in_ground_metres(tmp_path: Path, plane_dem) -> None:
    from geoglacier.products.stack import stack

    scene, dem, (e0, n0) = plane_dem
    result = stack(scene, tmp_path / "out.tif", bands="red,elevation,slope,northness,eastness", dem=dem)
    assert result.no_dem_fraction == 0.0
    with rasterio.open(result.path) as ds:
        red, elevation, slope, northness, eastness = ds.read()
        rows, cols = np.mgrid[0 : ds.height, 0 : ds.width]
        e, n = ds.transform * (cols + 0.5, rows + 0.5)
        assert ds.descriptions == ("red", "elevation", "slope", "northness", "eastness")
    with rasterio.open(scene) as src:
        np.testing.assert_array_equal(red, src.read(1))  # copied from the scene as it is
    np.testing.assert_allclose(elevation, 5000 + 0.3 * (e - e0) - 0.2 * (n - n0), atol=0.05)
    np.testing.assert_allclose(slope, math.degrees(math.atan(math.hypot(0.3, -0.2))), atol=0.01)
    np.testing.assert_allclose(northness, 0.2 / math.hypot(0.3, 0.2), atol=1e-3)  # falls to the north
    np.testing.assert_allclose(eastness, -0.3 / math.hypot(0.3, 0.2), atol=1e-3)  # rises to the east


def test_slope_is_seamless_across_tiles(tmp_path: Path) -> None:
    # 300 px: four 256 px tiles. A rough DEM: the slope of each tile must use its neighbours' rows.
    from geoglacier.products.stack import stack

    scene = _scene(tmp_path)
    dem, _ = write_plane_dem(tmp_path / "dem.tif", _bounds(300), 0.1, 0.1)
    with rasterio.open(dem, "r+") as ds:
        z = ds.read(1)
        rows, cols = np.mgrid[0 : ds.height, 0 : ds.width]
        ds.write((z + 40 * np.sin(rows / 7.0) * np.cos(cols / 5.0)).astype(np.float32), 1)
    result = stack(scene, tmp_path / "out.tif", bands="elevation,slope", dem=dem)
    with rasterio.open(result.path) as ds:
        elevation, slope = ds.read()
    np.testing.assert_allclose(slope[1:-1, 1:-1], slope_degrees(elevation, 30.0, 30.0), atol=1e-3)
    assert np.isfinite(slope).all()  # the outer rows too: the DEM reaches past the grid


def test_a_geographic_output_grid_uses_metres_per_degree_at_each_row(tmp_path: Path, plane_dem) -> None:
    from geoglacier.products.stack import stack

    scene, dem, _ = plane_dem
    result = stack(scene, tmp_path / "geo.tif", bands="slope", dem=dem, crs="EPSG:4326")
    with rasterio.open(result.path) as ds:
        assert ds.crs.is_geographic
        slope = ds.read(1)
    inside = slope[np.isfinite(slope)]
    assert inside.size > 0.5 * slope.size
    # UTM's scale factor (0.9996 .. 1.0004 here) is all that separates ground from projected metres
    np.testing.assert_allclose(inside, math.degrees(math.atan(math.hypot(0.3, -0.2))), atol=0.05)


def test_voids_and_the_edge_of_the_dem_are_nodata_and_counted(tmp_path: Path) -> None:
    from geoglacier.errors import DemCoverageWarning
    from geoglacier.products.stack import stack

    size = 64
    scene = _scene(tmp_path, size)
    dem, _ = write_plane_dem(tmp_path / "dem.tif", _bounds(size), 0.1, 0.0, void=(slice(0, 28), slice(None)))
    with pytest.warns(DemCoverageWarning, match="no DEM"):
        result = stack(scene, tmp_path / "out.tif", bands="red,green,slope", dem=dem)
    with rasterio.open(result.path) as ds:
        data = ds.read()
    void = np.isnan(data[2])
    assert 0.5 < void.mean() < 1 and void[0].all() and not void[-1].any()
    assert (np.isnan(data) == void).all()  # the whole pixel is nodata, as other stack nodata
    assert result.no_dem_fraction == pytest.approx(void.mean())
    assert result.masked_fraction == pytest.approx(void.mean())
