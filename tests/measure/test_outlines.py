"""Glacier outlines: polygons, their geodesic areas, formats and CRSs."""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import shape

from geoglacier.errors import ConfigError, CRSMissingError, OutputExistsError
from geoglacier.measure.areas import summarize_mask
from geoglacier.measure.outlines import write_outlines
from tests.data import EVEREST

UTM = "EPSG:32623"


def utm_transform(size: int = 128, res: float = 30.0) -> Affine:
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(-45.0, 61.0)
    return Affine(res, 0.0, x0 - size * res / 2, 0.0, -res, y0 + size * res / 2)


def glacier_mask(size: int = 128) -> np.ndarray:
    """Two large blobs (one with a hole), three 1-4 pixel specks and a nodata corner."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[(yy - 40) ** 2 + (xx - 40) ** 2 < 30**2] = 1
    mask[(yy - 40) ** 2 + (xx - 40) ** 2 < 6**2] = 0  # a nunatak
    mask[(yy - 90) ** 2 / 4 + (xx - 95) ** 2 < 20**2] = 1
    mask[5, 120] = 1
    mask[120:122, 5:7] = 1
    mask[110, 60:63] = 1
    mask[:4, :4] = 255
    return mask


def write_mask(path: Path, arr: np.ndarray, transform: Affine, crs: str | CRS | None) -> Path:
    profile = dict(driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1, dtype="uint8")
    profile.update(transform=transform, nodata=255, crs=crs)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr, 1)
    return path


def read_features(path: Path) -> tuple[list[dict], str]:
    with fiona.open(path) as src:
        feats = [{"geometry": shape(f.geometry), **dict(f.properties)} for f in src]
        return feats, src.crs.to_string() if src.crs else ""


@pytest.mark.parametrize("dst_crs", [UTM, "EPSG:3413", "EPSG:3857", "EPSG:4326"])
def test_gpkg_areas_sum_to_raster_true_area(dst_crs: str, tmp_path: Path) -> None:
    src = glacier_mask()
    if dst_crs == UTM:
        arr, transform = src, utm_transform()
    else:
        bounds = rasterio.transform.array_bounds(128, 128, utm_transform())
        transform, w, h = calculate_default_transform(UTM, dst_crs, 128, 128, *bounds)
        arr = np.full((h, w), 255, dtype=np.uint8)
        reproject(
            src,
            arr,
            src_transform=utm_transform(),
            src_crs=UTM,
            dst_transform=transform,
            dst_crs=dst_crs,
            resampling=Resampling.nearest,
            src_nodata=255,
            dst_nodata=255,
        )
    mask_path = write_mask(tmp_path / "mask.tif", arr, transform, dst_crs)
    n = write_outlines(mask_path, tmp_path / "out.gpkg")
    feats, crs = read_features(tmp_path / "out.gpkg")
    assert len(feats) == n >= 5
    assert pyproj.CRS(crs) == pyproj.CRS(dst_crs)
    raster = summarize_mask(mask_path)
    assert sum(f["area_km2"] for f in feats) == pytest.approx(raster.glacier_area_km2, rel=0.01)
    assert [f["id"] for f in feats] == list(range(1, n + 1))
    # Polygons stay on pixel edges in the mask's CRS: planar area = pixel count * |det|.
    det = abs(transform.a * transform.e - transform.b * transform.d)
    assert sum(f["geometry"].area for f in feats) == pytest.approx(raster.glacier_pixels * det, rel=1e-9)


def test_hole_is_subtracted(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:40, 10:40] = 1
    mask[20:30, 20:30] = 0
    path = write_mask(tmp_path / "m.tif", mask, utm_transform(64), UTM)
    write_outlines(path, tmp_path / "o.gpkg")
    feats, _ = read_features(tmp_path / "o.gpkg")
    assert len(feats) == 1 and len(feats[0]["geometry"].interiors) == 1
    # 800 pixels of 900 m2 on UTM's central meridian (scale 0.9996).
    assert feats[0]["area_km2"] == pytest.approx(800 * 900 / 0.9996**2 / 1e6, rel=1e-5)


def test_min_area_drops_specks(tmp_path: Path) -> None:
    path = write_mask(tmp_path / "m.tif", glacier_mask(), utm_transform(), UTM)
    n_all = write_outlines(path, tmp_path / "all.gpkg")
    n_big = write_outlines(path, tmp_path / "big.gpkg", min_area_km2=0.01)  # 0.01 km2 = ~11 pixels
    assert (n_all, n_big) == (5, 2)
    feats, _ = read_features(tmp_path / "big.gpkg")
    assert min(f["area_km2"] for f in feats) >= 0.01
    with pytest.raises(ConfigError, match="min-area"):
        write_outlines(path, tmp_path / "neg.gpkg", min_area_km2=-1)


def test_geojson_is_wgs84_lonlat(tmp_path: Path) -> None:
    path = write_mask(tmp_path / "m.tif", glacier_mask(), utm_transform(), UTM)
    n = write_outlines(path, tmp_path / "o.geojson")
    feats, crs = read_features(tmp_path / "o.geojson")
    assert len(feats) == n == 5
    assert pyproj.CRS(crs) == pyproj.CRS("EPSG:4326")
    lon, lat = feats[0]["geometry"].exterior.coords[0]
    assert -46 < lon < -44 and 60.9 < lat < 61.1  # longitude first (RFC 7946)
    gpkg_n = write_outlines(path, tmp_path / "o.gpkg")
    gpkg, _ = read_features(tmp_path / "o.gpkg")
    assert gpkg_n == n
    assert sorted(f["area_km2"] for f in feats) == pytest.approx(
        sorted(f["area_km2"] for f in gpkg), rel=1e-9
    )


def test_errors_and_atomicity(tmp_path: Path) -> None:
    path = write_mask(tmp_path / "m.tif", glacier_mask(), utm_transform(), UTM)
    with pytest.raises(ConfigError, match=r"\.shp"):
        write_outlines(path, tmp_path / "o.shp")
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        write_outlines(path, out)
    assert out.read_bytes() == b"keep"
    assert write_outlines(path, out, overwrite=True) == 5
    no_crs = write_mask(tmp_path / "nocrs.tif", glacier_mask(), Affine(30, 0, 0, 0, -30, 0), None)
    with pytest.raises(CRSMissingError, match="no CRS"):
        write_outlines(no_crs, tmp_path / "x.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "nocrs.tif", "o.gpkg"]


def test_empty_mask_writes_empty_layer(tmp_path: Path) -> None:
    path = write_mask(tmp_path / "m.tif", np.zeros((32, 32), np.uint8), utm_transform(32), UTM)
    assert write_outlines(path, tmp_path / "o.gpkg") == 0
    feats, _ = read_features(tmp_path / "o.gpkg")
    assert feats == []


@pytest.mark.skipif(not (EVEREST / "west_mask.tif").exists(), reason="real Everest data not available")
def test_everest_outlines_match_raster_area(tmp_path: Path) -> None:
    mask = EVEREST / "west_mask.tif"
    raster = summarize_mask(mask)
    # README: 122.26 km2 nominal (135,845 px of 900 m2); UTM 45N shrinks areas by ~0.08 % here.
    assert raster.nominal_glacier_area_km2 == pytest.approx(122.26, abs=0.01)
    assert raster.glacier_area_km2 == pytest.approx(raster.nominal_glacier_area_km2 / 0.9996**2, rel=2e-4)
    n = write_outlines(mask, tmp_path / "everest.gpkg")
    feats, crs = read_features(tmp_path / "everest.gpkg")
    assert len(feats) == n > 0 and pyproj.CRS(crs) == pyproj.CRS("EPSG:32645")
    assert sum(f["area_km2"] for f in feats) == pytest.approx(raster.glacier_area_km2, rel=1e-6)


def test_band_tracing_matches_in_memory_tracing(tmp_path: Path) -> None:
    """The bounded-memory path (GDAL reads the band) gives the polygons of the in-memory path."""
    from geoglacier.io.masks import inspect_mask
    from geoglacier.measure import outlines as mod

    arr = glacier_mask()
    plain = write_mask(tmp_path / "plain.tif", arr, utm_transform(), UTM)
    with rasterio.open(plain) as ds:
        assert mod._is_plain(ds, 255.0)
    info = inspect_mask(plain)
    from_band = sorted(p.wkt for p in mod._glacier_shapes(info))
    # the same mask as float32 takes the in-memory path
    profile = dict(driver="GTiff", height=128, width=128, count=1, dtype="float32", nodata=255.0)
    with rasterio.open(tmp_path / "f.tif", "w", transform=utm_transform(), crs=UTM, **profile) as ds:
        ds.write(arr.astype("float32"), 1)
    finfo = inspect_mask(tmp_path / "f.tif")
    with rasterio.open(finfo.path) as ds:
        assert not mod._is_plain(ds, finfo.nodata)
    assert sorted(p.wkt for p in mod._glacier_shapes(finfo)) == from_band
    assert len(from_band) == 5


def test_polygons_carry_the_id_of_the_zone_they_overlap_most(tmp_path: Path) -> None:
    from shapely.geometry import box

    arr = np.zeros((64, 64), dtype=np.uint8)
    arr[10:20, 10:30] = 1  # straddles both zones, mostly the second
    arr[40:45, 40:45] = 1  # in no zone
    t = utm_transform(64)
    path = write_mask(tmp_path / "m.tif", arr, t, UTM)
    x0, y0 = t * (0, 0)
    zones = (
        [box(x0, y0 - 64 * 30, x0 + 18 * 30, y0), box(x0 + 18 * 30, y0 - 30 * 30, x0 + 35 * 30, y0)],
        ["A", "B"],
    )
    out = tmp_path / "o.gpkg"
    assert write_outlines(path, out, zones=zones) == 2
    with fiona.open(out) as src:
        ids = sorted(f.properties["glacier_id"] for f in src)
    assert ids == ["", "B"]
