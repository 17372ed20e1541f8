"""Sentinel-2 L2A: .SAFE and COG folders, quantification and offset, SCL classes, the 20 m -> 10 m grid."""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from geoglacier.errors import FootprintError, ProductError
from geoglacier.products.quality import CLEAR, CLOUD, INVALID, scl_classes
from geoglacier.products.sentinel2 import read_l2a_metadata
from geoglacier.products.stack import detect_kind, stack
from tests.products_data import S2_ORIGIN, SCL_PIXELS, SCL_SNOW_PIXEL, write_s2_cogs, write_safe


def read(path: Path) -> tuple[np.ndarray, rasterio.Affine, dict, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.tags(), ds.descriptions


def bilinear_2x(v: np.ndarray) -> np.ndarray:
    """20 m -> 10 m bilinear by hand, interior pixels: a 10 m centre sits a quarter of a 20 m pixel off."""
    v = v.astype(np.float64)

    def along(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, 0)
        out = np.full((2 * a.shape[0], *a.shape[1:]), np.nan)
        out[1:-1:2] = 0.75 * a[:-1] + 0.25 * a[1:]  # odd 10 m index 2k+1: between k and k+1
        out[2::2] = 0.25 * a[:-1] + 0.75 * a[1:]  # even 10 m index 2k: between k-1 and k
        return np.moveaxis(out, 0, axis)

    return along(along(v, 0), 1)


def scl_mask_10m(scl: np.ndarray) -> np.ndarray:
    masked = np.isin(scl, (0, 1, 3, 8, 9, 10))
    return np.repeat(np.repeat(masked, 2, axis=0), 2, axis=1)


def test_scl_classes() -> None:
    values = np.arange(12, dtype=np.uint8)
    expected = [INVALID, INVALID, CLEAR, CLOUD, CLEAR, CLEAR, CLEAR, CLEAR, CLOUD, CLOUD, CLOUD, CLEAR]
    np.testing.assert_array_equal(scl_classes(values), expected)


def test_metadata_xml(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    meta = read_l2a_metadata(fx.folder / "MTD_MSIL2A.xml")
    assert meta.quantification == 10000 and meta.baseline == "05.09"
    assert meta.offsets["B04"] == -1000 and meta.offsets["B11"] == -1000
    assert meta.date == "2023-10-15" and meta.sensor == "Sentinel-2A MSI"


def test_safe_reflectance_offset_scl_and_20m_to_10m(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    assert detect_kind(fx.folder) == "sentinel2-safe"
    out = tmp_path / "s2.tif"
    result = stack(fx.folder, out, bands="red,green,blue,nir,swir1,swir2")
    data, transform, tags, descriptions = read(out)
    assert descriptions == ("red", "green", "blue", "nir", "swir1", "swir2")
    assert transform == fx.transform10 and data.shape == (6, 64, 64)  # the finest (10 m) grid
    assert tags["ACQUISITION_DATE"] == "2023-10-15" and tags["SENSOR"] == "Sentinel-2A MSI"
    assert tags["SOURCE_PRODUCT"] == fx.folder.name.removesuffix(".SAFE")

    masked = scl_mask_10m(fx.scl)  # each masked SCL class covers 2 x 2 pixels at 10 m (nearest)
    np.testing.assert_array_equal(np.isnan(data).any(axis=0), masked)
    r, c = SCL_SNOW_PIXEL
    assert np.isfinite(data[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2]).all()  # snow and ice kept
    ok = ~masked
    for i, band in enumerate(("B04", "B03", "B02", "B08")):
        expected = (fx.dn[band].astype(np.float64) - 1000) / 10000  # baseline >= 04.00: BOA_ADD_OFFSET
        np.testing.assert_allclose(data[i][ok], expected[ok], atol=1e-6)
    for i, band in ((4, "B11"), (5, "B12")):
        expected = (bilinear_2x(fx.dn[band]) - 1000) / 10000
        inner = ok & np.isfinite(expected)
        np.testing.assert_allclose(data[i][inner], expected[inner], atol=1e-5)
    assert result.masked_fraction == pytest.approx(4 * len(SCL_PIXELS) / 64**2)
    assert result.cloud_fraction == pytest.approx(4 * 4 / 64**2)  # classes 3, 8, 9, 10


def test_old_baseline_without_offset(tmp_path: Path) -> None:
    fx = write_safe(tmp_path, baseline="03.01", offset=False)
    stack(fx.folder, tmp_path / "old.tif", bands="red")
    data, *_ = read(tmp_path / "old.tif")
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(data[0][ok], (fx.dn["B04"] / 10000.0)[ok], atol=1e-6)


def test_indices_from_resampled_bands(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    stack(fx.folder, tmp_path / "i.tif", bands="green,swir1,nir,ndsi,ndwi")
    data, *_ = read(tmp_path / "i.tif")
    green, swir1, nir = (d.astype(np.float64) for d in data[:3])
    ok = np.isfinite(data).all(axis=0)
    np.testing.assert_allclose(data[3][ok], ((green - swir1) / (green + swir1))[ok], atol=1e-5)
    np.testing.assert_allclose(data[4][ok], ((green - nir) / (green + nir))[ok], atol=1e-5)
    g = (fx.dn["B03"] - 1000.0) / 10000
    s = (bilinear_2x(fx.dn["B11"]) - 1000.0) / 10000
    inner = ok & np.isfinite(s)
    np.testing.assert_allclose(data[3][inner], ((g - s) / (g + s))[inner], atol=1e-5)


def test_jpeg2000_safe(tmp_path: Path) -> None:
    with rasterio.Env() as env:
        if "JP2OpenJPEG" not in env.drivers():
            pytest.skip("GDAL has no JPEG2000 driver")
    fx = write_safe(tmp_path, driver="JP2OpenJPEG")
    assert next(fx.folder.rglob("*_B04_10m.jp2"))
    stack(fx.folder, tmp_path / "j.tif", bands="red,swir1")
    data, transform, *_ = read(tmp_path / "j.tif")
    assert transform == fx.transform10
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(data[0][ok], ((fx.dn["B04"] - 1000.0) / 10000)[ok], atol=1e-6)  # lossless


def test_cog_folder_with_and_without_metadata(tmp_path: Path) -> None:
    bare = write_s2_cogs(tmp_path / "a")
    assert detect_kind(bare.folder) == "sentinel2-cogs"
    stack(bare.folder, tmp_path / "a.tif", bands="red")
    data, transform, tags, _ = read(tmp_path / "a.tif")
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(
        data[0][ok], (bare.dn["B04"] / 10000.0)[ok], atol=1e-6
    )  # no metadata: no offset
    assert tags["ACQUISITION_DATE"] == "2023-10-15" and tags["SENSOR"] == "Sentinel-2B MSI"  # from the name
    np.testing.assert_array_equal(np.isnan(data[0]), scl_mask_10m(bare.scl))

    with_meta = write_s2_cogs(tmp_path / "b", metadata=True)
    stack(with_meta.folder, tmp_path / "b.tif", bands="red")
    data, *_ = read(tmp_path / "b.tif")
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(data[0][ok], ((with_meta.dn["B04"] - 1000.0) / 10000)[ok], atol=1e-6)


def test_resolution_bounds_and_crs(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    x0, y0 = S2_ORIGIN
    r20 = stack(fx.folder, tmp_path / "r20.tif", bands="red,swir1", resolution=20)
    assert (r20.grid.width, r20.grid.height) == (32, 32) and r20.grid.transform == fx.transform20

    box = (x0 + 95.0, y0 - 300.0, x0 + 300.0, y0 - 101.0)  # snapped outward to whole 10 m pixels
    cropped = stack(fx.folder, tmp_path / "c.tif", bands="red", bounds=box)
    assert cropped.grid.bounds == (x0 + 90.0, y0 - 300.0, x0 + 300.0, y0 - 100.0)
    data, *_ = read(tmp_path / "c.tif")
    assert data.shape == (1, 20, 21)
    ref = (fx.dn["B04"][10:30, 9:30] - 1000.0) / 10000
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(data[0][ok], ref[ok], atol=1e-6)

    geo = stack(fx.folder, tmp_path / "g.tif", bands="red", crs="EPSG:4326")
    assert geo.grid.crs.to_epsg() == 4326
    with rasterio.open(tmp_path / "g.tif") as ds:
        expected = transform_bounds("EPSG:32645", "EPSG:4326", x0, y0 - 640, x0 + 640, y0)
        np.testing.assert_allclose(ds.bounds, expected, atol=2 * ds.res[0])
        assert np.isfinite(ds.read(1)[ds.height // 2, ds.width // 2])


def _write_aoi(path: Path, crs: str, x0: float, y0: float) -> Path:
    """A 100 x 200 m rectangle 200 m east and 200-400 m south of (x0, y0), labelled ``crs``."""
    schema = {"geometry": "Polygon", "properties": {"name": "str"}}
    ring = [(x0 + 200, y0 - 400), (x0 + 300, y0 - 400), (x0 + 300, y0 - 200), (x0 + 200, y0 - 200)]
    with fiona.open(path, "w", driver="GPKG", crs=crs, schema=schema) as dst:
        dst.write(
            {"geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}, "properties": {"name": "g"}}
        )
    return path


def test_clip_to_aoi_with_buffer(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    x0, y0 = S2_ORIGIN
    aoi = _write_aoi(tmp_path / "aoi.gpkg", "EPSG:32645", x0, y0)
    result = stack(fx.folder, tmp_path / "clip.tif", bands="red", clip=aoi, clip_buffer=50)
    assert result.grid.bounds == (x0 + 150, y0 - 450, x0 + 350, y0 - 150)


def test_clip_file_with_utm_coordinates_labelled_wgs84_says_so(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    x0, y0 = S2_ORIGIN
    aoi = _write_aoi(tmp_path / "mislabelled.gpkg", "EPSG:4326", x0, y0)  # UTM metres labelled as degrees
    with pytest.raises(ProductError, match="are not longitudes and latitudes, but the file says EPSG:4326"):
        stack(fx.folder, tmp_path / "clip.tif", bands="red", clip=aoi)
    assert not (tmp_path / "clip.tif").exists()


def test_bands_without_a_shared_footprint(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    b11 = fx.paths["B11"]
    with rasterio.open(b11, "r+") as ds:
        ds.transform = rasterio.Affine(20.0, 0.0, S2_ORIGIN[0] + 100_000, 0.0, -20.0, S2_ORIGIN[1])
    with pytest.raises(FootprintError, match="does not overlap"):
        stack(fx.folder, tmp_path / "x.tif", bands="red,swir1")
    assert not (tmp_path / "x.tif").exists()
    with pytest.raises(FootprintError, match="--bounds"):
        stack(fx.folder, tmp_path / "y.tif", bands="red", bounds=(0.0, 0.0, 10.0, 10.0))


def test_cog_folder_without_metadata_uses_the_scale_and_offset_its_files_declare(tmp_path: Path) -> None:
    """Band COGs that carry scale/offset in their GDAL metadata (earth-search Collection 1,
    gdal_translate -a_scale/-a_offset) but come without MTD XML: those values, not 1/10000 and 0."""
    fx = write_s2_cogs(tmp_path)
    for band in ("B02", "B03", "B04", "B08", "B11", "B12"):
        with rasterio.open(fx.folder / f"{band}.tif", "r+") as ds:
            ds.scales, ds.offsets = (0.0001,), (-0.1,)
    result = stack(fx.folder, tmp_path / "s.tif", bands="red,swir1", cloud_mask=False)
    data, *_ = read(tmp_path / "s.tif")
    np.testing.assert_allclose(data[0], fx.dn["B04"] * 0.0001 - 0.1, atol=1e-6)
    assert any("-0.1" in note for note in result.notes)
    # the metadata XML, when there, still decides (it says -1000 / 10000 too, for every band)
    with_meta = write_s2_cogs(tmp_path / "m", metadata=True)
    with rasterio.open(with_meta.folder / "B04.tif", "r+") as ds:
        ds.scales, ds.offsets = (0.0002,), (0.0,)
    stack(with_meta.folder, tmp_path / "m.tif", bands="red", cloud_mask=False)
    data, *_ = read(tmp_path / "m.tif")
    np.testing.assert_allclose(data[0], (with_meta.dn["B04"] - 1000.0) / 10000, atol=1e-6)


def test_a_level1c_cog_folder_is_refused(tmp_path: Path) -> None:
    # earth-search's sentinel-2-l1c COGs, named like the L2A ones: top-of-atmosphere, no SCL
    fx = write_s2_cogs(tmp_path, name="S2B_45RVL_20231015_0_L1C")
    (fx.folder / "SCL.tif").unlink()
    with pytest.raises(ProductError, match="Level-1C"):
        stack(fx.folder, tmp_path / "x.tif", bands="red", cloud_mask=False)
    assert not (tmp_path / "x.tif").exists()
