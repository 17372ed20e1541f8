"""The output grid at the edges: a scene across the antimeridian in longitudes, a pixel in the wrong units."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform, transform_bounds
from scipy.ndimage import map_coordinates

from geoglacier.errors import ConfigError, FootprintError
from geoglacier.products.stack import stack
from tests.products_data import write_landsat, write_safe

UTM60 = "EPSG:32660"
#: 128 px of 120 m from here reach from 179.91 E to 179.86 W at 52 N (the western Aleutians)
ORIGIN = (700000.0, 5770000.0)


def _across_antimeridian(tmp_path: Path):
    fx = write_landsat(tmp_path, mtl=("json",), height=128, width=128)
    t = Affine(120.0, 0.0, ORIGIN[0], 0.0, -120.0, ORIGIN[1])
    for f in fx.folder.glob("*.TIF"):
        with rasterio.open(f, "r+") as ds:
            ds.crs, ds.transform = UTM60, t
    return fx, t


def test_scene_across_the_antimeridian_in_longitudes(tmp_path: Path) -> None:
    fx, t = _across_antimeridian(tmp_path)
    west, south, east, north = transform_bounds(
        UTM60, "EPSG:4326", *rasterio.transform.array_bounds(128, 128, t)
    )
    assert west > 0 > east  # the product really straddles 180 degrees

    out = tmp_path / "geo.tif"
    result = stack(fx.folder, out, bands="red,nir", crs="EPSG:4326", cloud_mask=False)
    with rasterio.open(out) as ds:
        data, dt, bounds = ds.read(), ds.transform, ds.bounds
    # one continuous raster past 180 (not a box of no width), about as many pixels as the band
    assert bounds.left < 180 < bounds.right
    np.testing.assert_allclose(
        (bounds.left, bounds.bottom, bounds.right, bounds.top),
        (west, south, east + 360, north),
        atol=2 * dt.a,
    )
    assert 0.5 < result.grid.width * result.grid.height / 128**2 < 2

    # each pixel holds the product's reflectance at its centre: bilinear by hand in the UTM band
    rows, cols = np.nonzero(np.isfinite(data[0]))
    lon, lat = dt * (cols + 0.5, rows + 0.5)
    x, y = transform("EPSG:4326", UTM60, ((lon + 180) % 360) - 180, lat)
    c, r = ~t * (np.asarray(x), np.asarray(y))
    dn = map_coordinates(fx.dn[4].astype(np.float64), [r - 0.5, c - 0.5], order=1, mode="nearest")
    inside = (r > 3) & (r < 125) & (c > 1) & (c < 127)  # away from the fill rows and the edges
    error = np.abs(data[0][rows, cols] - (dn * 2.75e-5 - 0.2))[inside]
    assert inside.sum() > 0.6 * 128**2
    assert np.median(error) < 2e-3 and error.max() < 0.03


def test_a_pixel_larger_than_the_product_is_a_unit_mistake(tmp_path: Path) -> None:
    # metres meant, degrees read: was a 1 px raster and "every pixel is cloud or no data"
    fx = write_safe(tmp_path)
    with pytest.raises(ConfigError, match=r"--resolution 10 is larger than the whole product .* degree"):
        stack(fx.folder, tmp_path / "g.tif", bands="red", crs="EPSG:4326", resolution=10)
    with pytest.raises(ConfigError, match=r"--resolution 1000 is larger .*\(640 x 640 metre in EPSG:32645\)"):
        stack(fx.folder, tmp_path / "u.tif", bands="red", resolution=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [fx.folder.name]
    # half the product: fine (without the cloud mask: every 320 m pixel holds a cloudy SCL pixel)
    result = stack(fx.folder, tmp_path / "ok.tif", bands="red", resolution=320, cloud_mask=False)
    assert result.grid.resolution == 320 and result.grid.width <= 3


def test_an_aoi_elsewhere_is_not_told_to_give_bounds(tmp_path: Path) -> None:
    # --clip is reprojected by stack itself: "give bounds in the output CRS" was no fix for it
    fx = write_safe(tmp_path)
    aoi = tmp_path / "alps.geojson"
    ring = [[7.0, 46.0], [7.1, 46.0], [7.1, 46.1], [7.0, 46.1], [7.0, 46.0]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    aoi.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": geometry}],
            }
        )
    )
    with pytest.raises(FootprintError, match="alps.geojson does not overlap") as info:
        stack(fx.folder, tmp_path / "c.tif", bands="red", clip=aoi)
    assert "give bounds" not in str(info.value) and "product that covers the AOI" in str(info.value)
