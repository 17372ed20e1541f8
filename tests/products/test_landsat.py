"""Landsat Collection 2 Level-2 products: MTL parsing, reflectance by hand, QA_PIXEL bits, tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoglacier.products.landsat import parse_mtl_text, read_landsat, read_mtl
from geoglacier.products.quality import CLEAR, CLOUD, INVALID, qa_pixel_classes
from geoglacier.products.stack import detect_kind, stack
from tests.products_data import QA_BIT_PIXELS, QA_FILL_ROWS, QA_SNOW_PIXEL, mtl_text, write_landsat


def refl(dn: np.ndarray) -> np.ndarray:
    return dn.astype(np.float64) * 0.0000275 - 0.2


def read(path: Path) -> tuple[np.ndarray, dict, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags(), ds.descriptions


def test_mtl_text_parses_like_mtl_json(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path)
    from_json = read_mtl(fx.folder / f"{fx.product_id}_MTL.json")
    from_txt = read_mtl(fx.folder / f"{fx.product_id}_MTL.txt")
    assert from_json == from_txt == fx.mtl["LANDSAT_METADATA_FILE"]
    assert parse_mtl_text(
        'GROUP = A\n  X = "1"\n  GROUP = B\n    Y = 2\n  END_GROUP = B\nEND_GROUP = A\nEND\n'
    ) == {"A": {"X": "1", "B": {"Y": "2"}}}


def test_qa_pixel_bits() -> None:
    values = np.array(
        [21824, 1, 21824 | 2, 21824 | 4, 21824 | 8, 21824 | 16, 21824 | 32, 21824 | 128], np.uint16
    )
    # clear, fill, dilated cloud, cirrus, cloud, shadow, snow (kept), water (kept)
    expected = [CLEAR, INVALID, CLOUD, CLOUD, CLOUD, CLOUD, CLEAR, CLEAR]
    np.testing.assert_array_equal(qa_pixel_classes(values), expected)


def test_landsat8_reflectance_indices_masks_and_tags(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    assert detect_kind(fx.folder) == "landsat"
    out = tmp_path / "scene.tif"
    result = stack(fx.folder, out, bands="red,green,blue,nir,ndsi")
    data, tags, descriptions = read(out)
    assert descriptions == ("red", "green", "blue", "nir", "ndsi")
    assert tags["ACQUISITION_DATE"] == "2023-10-15"
    assert tags["SENSOR"] == "Landsat 8 OLI"
    assert tags["SOURCE_PRODUCT"] == fx.product_id
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.transform == fx.transform and ds.crs.to_epsg() == 32645
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.compression is not None and ds.block_shapes[0] == (256, 256)

    masked = np.isnan(data).any(axis=0)
    expected_mask = np.zeros((64, 64), bool)
    expected_mask[:QA_FILL_ROWS] = True
    for r, c in QA_BIT_PIXELS.values():
        expected_mask[r, c] = True
    np.testing.assert_array_equal(masked, expected_mask)  # each cloud bit and fill; nothing else
    assert np.isnan(data[:, expected_mask]).all()  # every band
    assert not masked[QA_SNOW_PIXEL]  # snow is kept

    ok = ~expected_mask
    np.testing.assert_allclose(data[0][ok], refl(fx.dn[4])[ok], atol=1e-6)  # red = SR_B4
    np.testing.assert_allclose(data[1][ok], refl(fx.dn[3])[ok], atol=1e-6)  # green = SR_B3
    np.testing.assert_allclose(data[2][ok], refl(fx.dn[2])[ok], atol=1e-6)  # blue = SR_B2
    np.testing.assert_allclose(data[3][ok], refl(fx.dn[5])[ok], atol=1e-6)  # nir = SR_B5
    green, swir1 = refl(fx.dn[3]), refl(fx.dn[6])
    np.testing.assert_allclose(data[4][ok], ((green - swir1) / (green + swir1))[ok], atol=1e-5)
    assert result.masked_fraction == pytest.approx((2 * 64 + 4) / 64**2)
    assert result.cloud_fraction == pytest.approx(4 / 64**2)


def test_landsat7_from_mtl_txt_maps_etm_bands(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, spacecraft=7, mtl=("txt",), date="2003-09-15")
    product = read_landsat(fx.folder)
    assert product.sensor == "Landsat 7 ETM+" and product.acquisition_date == "2003-09-15"
    out = tmp_path / "l7.tif"
    stack(fx.folder, out, bands="red,nir,swir1,swir2,ndvi")
    data, tags, _ = read(out)
    ok = ~np.isnan(data).any(axis=0)
    np.testing.assert_allclose(data[0][ok], refl(fx.dn[3])[ok], atol=1e-6)  # ETM+ red = SR_B3
    np.testing.assert_allclose(data[1][ok], refl(fx.dn[4])[ok], atol=1e-6)  # nir = SR_B4
    np.testing.assert_allclose(data[2][ok], refl(fx.dn[5])[ok], atol=1e-6)  # swir1 = SR_B5
    np.testing.assert_allclose(data[3][ok], refl(fx.dn[7])[ok], atol=1e-6)  # swir2 = SR_B7
    assert tags["ACQUISITION_DATE"] == "2003-09-15" and tags["SENSOR"] == "Landsat 7 ETM+"


def test_mtl_scale_and_offset_are_read(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    path = fx.folder / f"{fx.product_id}_MTL.json"
    meta = json.loads(path.read_text())
    meta["LANDSAT_METADATA_FILE"]["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]["REFLECTANCE_MULT_BAND_4"] = (
        "5.5E-05"
    )
    path.write_text(json.dumps(meta))
    stack(fx.folder, tmp_path / "s.tif", bands="red")
    data, _, _ = read(tmp_path / "s.tif")
    ok = np.isfinite(data[0])
    np.testing.assert_allclose(data[0][ok], (fx.dn[4] * 5.5e-5 - 0.2)[ok], atol=1e-6)


def test_cloud_buffer_grows_clouds_not_fill(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    result = stack(fx.folder, tmp_path / "b.tif", bands="red", cloud_buffer=2)
    data, _, _ = read(tmp_path / "b.tif")
    expected = np.zeros((64, 64), bool)
    expected[:QA_FILL_ROWS] = True
    for r, c in QA_BIT_PIXELS.values():
        expected[r - 2 : r + 3, c - 2 : c + 3] = True
    np.testing.assert_array_equal(np.isnan(data[0]), expected)
    assert result.cloud_fraction == pytest.approx(4 * 25 / 64**2)


def test_no_cloud_mask_keeps_clouds_but_not_fill(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    result = stack(fx.folder, tmp_path / "n.tif", bands="red", cloud_mask=False)
    data, _, _ = read(tmp_path / "n.tif")
    assert np.isnan(data[0, :QA_FILL_ROWS]).all()  # DN 0 is no data
    assert np.isfinite(data[0, QA_FILL_ROWS:]).all()
    assert result.cloud_fraction == 0.0


def test_landsat9_and_the_mtl_file_as_source(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, spacecraft=9, mtl=("txt",))
    mtl = fx.folder / f"{fx.product_id}_MTL.txt"
    assert detect_kind(mtl) == "landsat"
    stack(mtl, tmp_path / "l9.tif", bands="blue")
    _, tags, _ = read(tmp_path / "l9.tif")
    assert tags["SENSOR"] == "Landsat 9 OLI" and tags["SOURCE_PRODUCT"].startswith("LC09_L2SP")


def test_mtl_text_writer_round_trips(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    assert parse_mtl_text(mtl_text(fx.mtl)) == fx.mtl


def test_cloud_buffer_crosses_tile_edges(tmp_path: Path) -> None:
    """Output tiles are processed one by one: a cloud beside a tile edge still grows into the next tile."""
    fx = write_landsat(tmp_path, mtl=("json",), height=300, width=300)
    qa_path = fx.folder / f"{fx.product_id}_QA_PIXEL.TIF"
    edge = (257, 254)  # tiles are 256 px: the buffer reaches into all four tiles
    with rasterio.open(qa_path, "r+") as ds:
        qa = ds.read(1)
        qa[edge] = qa[100, 100] | (1 << 3)  # cloud bit on a clear pixel
        ds.write(qa, 1)
    stack(fx.folder, tmp_path / "t.tif", bands="red", cloud_buffer=3)
    data, _, _ = read(tmp_path / "t.tif")
    expected = np.zeros((300, 300), bool)
    expected[:QA_FILL_ROWS] = True
    for r, c in [*QA_BIT_PIXELS.values(), edge]:
        expected[max(0, r - 3) : r + 4, max(0, c - 3) : c + 4] = True
    np.testing.assert_array_equal(np.isnan(data[0]), expected)


def test_a_stack_written_into_the_product_folder_can_be_redone_but_a_product_file_is_kept(
    tmp_path: Path,
) -> None:
    from geoglacier.errors import OutputPathError

    fx = write_landsat(tmp_path, mtl=("json",))
    inside = fx.folder / "stack.tif"
    stack(fx.folder, inside, bands="red,green,blue,nir,ndvi")
    stack(fx.folder, inside, bands="red,green,blue,nir,ndvi", overwrite=True)  # our own earlier output
    assert read(inside)[2] == ("red", "green", "blue", "nir", "ndvi")
    extra = fx.folder / f"{fx.product_id}_ST_B10.TIF"  # a product file the recipe does not read
    extra.write_bytes((fx.folder / f"{fx.product_id}_SR_B4.TIF").read_bytes())
    before = extra.read_bytes()
    with pytest.raises(OutputPathError, match="ST_B10.TIF: --out is the same file as the input SOURCE"):
        stack(fx.folder, extra, bands="red,green,blue,nir,ndvi", overwrite=True)
    assert extra.read_bytes() == before
    with rasterio.open(extra, "r+") as ds:  # a product file whose provider named its band "nir"
        ds.set_band_description(1, "nir")
    with pytest.raises(OutputPathError, match="ST_B10.TIF: --out is the same file as the input SOURCE"):
        stack(fx.folder, extra, bands="red,green,blue,nir,ndvi", overwrite=True)


@pytest.mark.parametrize("form", ["json", "txt"])
def test_product_id_from_the_mtl_name_when_the_mtl_omits_it(tmp_path: Path, form: str) -> None:
    fx = write_landsat(tmp_path, mtl=(form,))
    meta = json.loads(json.dumps(fx.mtl))
    del meta["LANDSAT_METADATA_FILE"]["PRODUCT_CONTENTS"]["LANDSAT_PRODUCT_ID"]
    path = fx.folder / f"{fx.product_id}_MTL.{form}"
    path.write_text(json.dumps(meta) if form == "json" else mtl_text(meta), encoding="utf-8")
    assert read_landsat(fx.folder).product_id == fx.product_id
