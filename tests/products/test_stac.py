"""STAC items (pystac): assets by eo:bands common names, scale/offset, quality layer, tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoglacier.errors import MissingBandError
from geoglacier.products.stac import read_stac_item
from geoglacier.products.stack import detect_kind, stack
from tests.products_data import S2_COG_ID, write_landsat_stac, write_s2_stac


def test_sentinel2_item_offset_from_processing_baseline(tmp_path: Path) -> None:
    item, fx = write_s2_stac(tmp_path)
    assert detect_kind(item) == "stac"
    product = read_stac_item(item)
    assert set(product.bands) == {"blue", "green", "red", "nir", "swir1", "swir2"}  # swir16/swir22 mapped
    assert product.quality is not None and product.quality.kind == "scl"
    out = tmp_path / "s.tif"
    stack(item, out, bands="red,green,blue,nir,ndsi")
    with rasterio.open(out) as ds:
        data, tags = ds.read(), ds.tags()
        assert ds.transform == fx.transform10
    assert tags["ACQUISITION_DATE"] == "2023-10-15"
    assert tags["SENSOR"] == "Sentinel-2B MSI" and tags["SOURCE_PRODUCT"] == S2_COG_ID
    ok = np.isfinite(data).all(axis=0)
    np.testing.assert_allclose(data[0][ok], ((fx.dn["B04"] - 1000.0) / 10000)[ok], atol=1e-6)
    r, c = 20, 20  # SCL snow at 20 m
    assert ok[2 * r, 2 * c]


def test_raster_bands_scale_and_offset_win(tmp_path: Path) -> None:
    rb = {"scale": 0.0002, "offset": 0.05, "nodata": 0}
    item, fx = write_s2_stac(tmp_path, raster_bands={"B04": rb})
    stack(item, tmp_path / "r.tif", bands="red", cloud_mask=False)
    with rasterio.open(tmp_path / "r.tif") as ds:
        red = ds.read(1)
    np.testing.assert_allclose(red, fx.dn["B04"] * 0.0002 + 0.05, atol=1e-6)


def test_earth_search_offset_already_applied_is_not_applied_again(tmp_path: Path) -> None:
    # Earth Search items keep raster:bands offset -0.1 on COGs whose DN already hold it
    rb = {"scale": 0.0001, "offset": -0.1, "nodata": 0}
    for applied, offset in ((True, 0.0), (False, -0.1)):
        folder = tmp_path / str(applied)
        folder.mkdir()
        item, fx = write_s2_stac(
            folder, properties={"earthsearch:boa_offset_applied": applied}, raster_bands={"B04": rb}
        )
        product = read_stac_item(item)
        assert ("already hold the BOA offset" in " ".join(product.notes)) is applied
        stack(item, folder / "r.tif", bands="red", cloud_mask=False)
        with rasterio.open(folder / "r.tif") as ds:
            red = ds.read(1)
        np.testing.assert_allclose(red, fx.dn["B04"] * 0.0001 + offset, atol=1e-6)


def test_landsat_item_nir08_and_qa_pixel(tmp_path: Path) -> None:
    item, fx = write_landsat_stac(tmp_path)
    product = read_stac_item(item)
    assert product.sensor == "Landsat 8 OLI" and product.quality is not None
    stack(item, tmp_path / "l.tif", bands="nir,swir2")
    with rasterio.open(tmp_path / "l.tif") as ds:
        data = ds.read()
    ok = np.isfinite(data).all(axis=0)
    assert (~ok).sum() == 2 * 64 + 4  # fill rows and the four cloud bits, as in the folder
    np.testing.assert_allclose(data[0][ok], (fx.dn[5] * 2.75e-5 - 0.2)[ok], atol=1e-6)  # nir08 = SR_B5
    np.testing.assert_allclose(data[1][ok], (fx.dn[7] * 2.75e-5 - 0.2)[ok], atol=1e-6)


def test_item_without_the_needed_assets(tmp_path: Path) -> None:
    item, _ = write_s2_stac(tmp_path)
    raw = json.loads(item.read_text())
    raw["assets"] = {k: v for k, v in raw["assets"].items() if k not in ("swir16",)}
    item.write_text(json.dumps(raw))
    with pytest.raises(MissingBandError, match="swir16") as info:
        stack(item, tmp_path / "x.tif", bands="red,green,blue,nir,ndsi")
    assert "\n" not in str(info.value)
    raw["assets"] = {k: v for k, v in raw["assets"].items() if k != "scl"}
    item.write_text(json.dumps(raw))
    with pytest.raises(MissingBandError, match="--no-cloud-mask"):
        stack(item, tmp_path / "x.tif", bands="red")
    raw["assets"] = {}
    item.write_text(json.dumps(raw))
    with pytest.raises(MissingBandError):
        stack(item, tmp_path / "x.tif", bands="red", cloud_mask=False)
    assert not (tmp_path / "x.tif").exists()


def test_urls_and_jp2_copies(tmp_path: Path) -> None:
    """URLs go to GDAL as they are; of a COG and its JPEG2000 copy (earth-search lists both) the COG wins."""
    item, _ = write_s2_stac(tmp_path)
    raw = json.loads(item.read_text())
    raw["assets"]["red"]["href"] = "https://example.com/S2B/B04.tif"
    raw["assets"]["red-jp2"] = {
        "href": "https://example.com/S2B/B04.jp2",
        "type": "image/jp2",
        "eo:bands": [{"name": "B04", "common_name": "red"}],
    }
    raw["assets"] = {"red-jp2": raw["assets"].pop("red-jp2"), **raw["assets"]}
    item.write_text(json.dumps(raw))
    product = read_stac_item(item)
    assert product.bands["red"].path == "https://example.com/S2B/B04.tif"
    assert Path(product.bands["green"].path) == (tmp_path / "cogs" / "B03.tif").resolve()


def test_percent_encoded_and_file_uri_hrefs_of_local_files(tmp_path: Path) -> None:
    """STAC hrefs are URIs: a folder with a space may be written my%20cogs/ or as file:///.../my%20cogs/."""
    item, fx = write_s2_stac(tmp_path)
    (tmp_path / "cogs").rename(tmp_path / "my cogs")
    raw = json.loads(item.read_text())
    folder_uri = (tmp_path / "my cogs").resolve().as_uri()  # file:///.../my%20cogs
    for key, asset in raw["assets"].items():
        name = asset["href"].split("/")[-1]
        asset["href"] = f"{folder_uri}/{name}" if key == "red" else f"my%20cogs/{name}"
    item.write_text(json.dumps(raw))
    product = read_stac_item(item)
    assert Path(product.bands["red"].path) == (tmp_path / "my cogs" / "B04.tif").resolve()
    assert Path(product.bands["green"].path) == (tmp_path / "my cogs" / "B03.tif").resolve()
    stack(item, tmp_path / "s.tif", bands="red,green")
    with rasterio.open(tmp_path / "s.tif") as ds:
        data = ds.read()
    ok = np.isfinite(data).all(axis=0)
    np.testing.assert_allclose(data[0][ok], ((fx.dn["B04"] - 1000.0) / 10000)[ok], atol=1e-6)


@pytest.mark.parametrize("level1", ["landsat", "sentinel2"])
def test_a_level1_item_is_refused(tmp_path: Path, level1: str) -> None:
    """Top-of-atmosphere DN through the Level-2 scale and offset were stacked as surface reflectance."""
    from geoglacier.errors import ProductError

    if level1 == "landsat":  # as the Planetary Computer's landsat-c2-l1 lists it, qa_pixel included
        item, fx = write_landsat_stac(tmp_path)
        patch = {"id": fx.product_id.replace("L2SP", "L1TP"), "properties": {"landsat:correction": "L1TP"}}
    else:  # earth-search's sentinel-2-l1c
        item, _ = write_s2_stac(tmp_path)
        patch = {"id": S2_COG_ID.replace("L2A", "L1C"), "properties": {"s2:product_type": "S2MSI1C"}}
    raw = json.loads(item.read_text())
    raw["id"] = patch["id"]
    raw["properties"].update(patch["properties"])
    item.write_text(json.dumps(raw))
    with pytest.raises(ProductError, match="a Level-1 item .*Level-2") as info:
        stack(item, tmp_path / "x.tif", bands="red", cloud_mask=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.tif").exists()
