"""HLS v2.0 granules (L30, S30): names and dates, reflectance by hand, each Fmask class, refusals, the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoglacier.errors import MissingBandError, ProductError
from geoglacier.products.hls import parse_granule, read_hls
from geoglacier.products.quality import CLEAR, CLOUD, INVALID, fmask_classes
from geoglacier.products.stack import detect_kind, open_product, stack
from tests.hls_data import (
    BAND_FILL_PIXEL,
    FILL_ROWS,
    FMASK_KEPT,
    FMASK_MASKED,
    L30_ID,
    NEGATIVE_DN,
    NEGATIVE_PIXEL,
    S30_ID,
    reflectance,
    write_hls,
    write_hls_stac_item,
    write_landsat_l1,
    write_s2_l1c,
)
from tests.products_data import write_landsat, write_s2_cogs

SIX = "red,green,blue,nir,swir1,swir2"


def read(path: Path) -> tuple[np.ndarray, dict, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.tags(), ds.descriptions


def expected_nodata(shape: tuple[int, int]) -> np.ndarray:
    """Fill rows, the red band's fill pixel and the masked Fmask classes (cloud, adjacent, shadow)."""
    mask = np.zeros(shape, bool)
    mask[:FILL_ROWS] = True
    mask[BAND_FILL_PIXEL] = True
    for (r, c), _ in FMASK_MASKED.values():
        mask[r, c] = True
    return mask


# ----------------------------------------------------------------------------- names and Fmask bits


def test_granule_id_date_from_year_and_day_of_year() -> None:
    g = parse_granule(L30_ID)
    assert (g.product, g.tile, g.date, g.version) == ("L30", "T45RVL", "2023-10-15", "2.0")
    assert g.file_name("B06") == "HLS.L30.T45RVL.2023288T045019.v2.0.B06.tif"
    assert parse_granule("HLS.S30.T45RVL.2024366T050701.v2.0").date == "2024-12-31"  # leap year
    assert parse_granule("HLS.S30.T45RVL.2023001T050701.v2.0").date == "2023-01-01"
    with pytest.raises(ProductError, match="day of year 366 does not exist in 2023"):
        parse_granule("HLS.S30.T45RVL.2023366T050701.v2.0")
    with pytest.raises(ProductError, match="HLS version 1.5; geoglacier reads HLS v2.0"):
        parse_granule("HLS.S30.T45RVL.2020097T222759.v1.5")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0b0000_0001, CLOUD),  # bit 0: cirrus in v1.4, "reserved, but not used" in v2.0: masked where set
        (0b0000_0011, CLOUD),  # cloud (cirrus is part of it in v2.0)
        (0b0000_0010, CLOUD),  # cloud
        (0b0000_0100, CLOUD),  # adjacent to cloud/shadow
        (0b0000_1000, CLOUD),  # cloud shadow
        (0b0001_0000, CLEAR),  # snow/ice: never masked
        (0b0010_0000, CLEAR),  # water: never masked
        (0b0100_0000, CLEAR),  # aerosol low
        (0b1000_0000, CLEAR),  # aerosol moderate
        (0b1100_0000, CLEAR),  # aerosol high
        (0b1111_0000, CLEAR),  # snow/ice + water + aerosol high
        (0b0001_0010, CLOUD),  # snow under a cloud flag is still cloud
        (255, INVALID),  # fill
        (0, CLEAR),
    ],
)
def test_fmask_bits_one_by_one(value: int, expected: int) -> None:
    assert fmask_classes(np.array([value], np.uint8))[0] == expected


# ----------------------------------------------------------------------------- stacking


def test_l30_reflectance_by_hand_fmask_and_tags(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30")
    assert detect_kind(fx.folder) == "hls"
    out = tmp_path / "l30.tif"
    result = stack(fx.folder, out, bands=SIX)
    data, tags, descriptions = read(out)
    assert descriptions == tuple(SIX.split(","))
    assert result.kind == "hls"
    assert tags["ACQUISITION_DATE"] == "2023-10-15"
    assert tags["SENSOR"] == "HLS L30 (Landsat 8/9 OLI)"
    assert tags["SOURCE_PRODUCT"] == L30_ID
    with rasterio.open(out) as ds, rasterio.open(fx.paths["B04"]) as src:
        assert ds.crs == src.crs and ds.crs.to_epsg() == 32645
        assert ds.transform == src.transform == fx.transform and ds.res == (30.0, 30.0)

    # by hand at chosen pixels: DN * 0.0001
    for r, c in [(10, 40), (33, 7), (63, 63)]:
        assert data[0, r, c] == pytest.approx(int(fx.dn["B04"][r, c]) * 0.0001, abs=1e-7)  # red = B04
        assert data[3, r, c] == pytest.approx(int(fx.dn["B05"][r, c]) * 0.0001, abs=1e-7)  # nir = B05
        assert data[4, r, c] == pytest.approx(int(fx.dn["B06"][r, c]) * 0.0001, abs=1e-7)  # swir1 = B06
        assert data[5, r, c] == pytest.approx(int(fx.dn["B07"][r, c]) * 0.0001, abs=1e-7)  # swir2 = B07
    assert data[0][NEGATIVE_PIXEL] == pytest.approx(NEGATIVE_DN * 0.0001, abs=1e-7)  # negative is not fill

    nodata = expected_nodata((64, 64))
    np.testing.assert_array_equal(np.isnan(data).any(axis=0), nodata)
    assert np.isnan(data[:, nodata]).all()
    ok = ~nodata
    for i, band in enumerate(("B04", "B03", "B02", "B05", "B06", "B07")):
        np.testing.assert_allclose(data[i][ok], reflectance(fx.dn[band])[ok], atol=1e-6)
    # L30 B11 is thermal: not what swir1 holds
    assert not np.allclose(data[4][ok], reflectance(fx.dn["B11"])[ok], atol=1e-3)
    assert result.cloud_fraction == pytest.approx(len(FMASK_MASKED) / 64**2)
    assert result.masked_fraction == pytest.approx(nodata.sum() / 64**2)


def test_s30_maps_narrow_nir_and_its_own_swir_bands(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "S30", seed=3)
    assert detect_kind(fx.folder) == "hls"
    out = tmp_path / "s30.tif"
    stack(fx.folder, out, bands=SIX)
    data, tags, _ = read(out)
    assert tags["ACQUISITION_DATE"] == "2023-10-17"  # 2023290
    assert tags["SENSOR"] == "HLS S30 (Sentinel-2 MSI)" and tags["SOURCE_PRODUCT"] == S30_ID
    for r, c in [(12, 44), (60, 3)]:
        assert data[3, r, c] == pytest.approx(int(fx.dn["B8A"][r, c]) * 0.0001, abs=1e-7)  # nir = B8A
        assert data[4, r, c] == pytest.approx(int(fx.dn["B11"][r, c]) * 0.0001, abs=1e-7)  # swir1 = B11
        assert data[5, r, c] == pytest.approx(int(fx.dn["B12"][r, c]) * 0.0001, abs=1e-7)  # swir2 = B12
    nodata = expected_nodata((64, 64))
    np.testing.assert_array_equal(np.isnan(data).any(axis=0), nodata)
    ok = ~nodata
    for i, band in enumerate(("B04", "B03", "B02", "B8A", "B11", "B12")):
        np.testing.assert_allclose(data[i][ok], reflectance(fx.dn[band])[ok], atol=1e-6)
    assert not np.allclose(data[3][ok], reflectance(fx.dn["B08"])[ok], atol=1e-3)  # not the broad B08


@pytest.mark.parametrize("name", [*FMASK_MASKED, *FMASK_KEPT])
def test_each_fmask_class_alone(tmp_path: Path, name: str) -> None:
    """One class on an otherwise clear Fmask: masked exactly there, or nowhere."""
    fx = write_hls(tmp_path, "L30")
    (r, c), value = {**FMASK_MASKED, **FMASK_KEPT}[name]
    fmask = np.full((64, 64), 0b0100_0000, np.uint8)
    fmask[r, c] = value
    with rasterio.open(fx.paths["Fmask"], "r+") as ds:
        ds.write(fmask, 1)
    for band in fx.dn:  # no fill anywhere either
        with rasterio.open(fx.paths[band], "r+") as ds:
            ds.write(np.full((64, 64), 1234, np.int16), 1)
    stack(fx.folder, tmp_path / "one.tif", bands="red,ndsi")
    data, _, _ = read(tmp_path / "one.tif")
    expected = np.zeros((64, 64), bool)
    expected[r, c] = name in FMASK_MASKED
    np.testing.assert_array_equal(np.isnan(data).any(axis=0), expected)
    assert np.nanmax(np.abs(data[0] - 0.1234)) < 1e-6


def test_one_band_file_stands_for_its_granule(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "S30")
    band = fx.paths["B03"]
    assert detect_kind(band) == "hls"
    assert detect_kind(fx.paths["Fmask"]) == "hls"
    stack(band, tmp_path / "from-file.tif", bands="green,swir1")
    stack(fx.folder, tmp_path / "from-folder.tif", bands="green,swir1")
    a, tags, _ = read(tmp_path / "from-file.tif")
    b, _, _ = read(tmp_path / "from-folder.tif")
    np.testing.assert_array_equal(a, b)
    assert tags["SOURCE_PRODUCT"] == S30_ID


def test_uppercase_tif_suffix_and_any_folder_name(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30", folder_name="downloads")
    for p in list(fx.folder.iterdir()):
        if p.suffix == ".tif":
            p.rename(p.with_suffix(".TIF"))
    product = open_product(fx.folder, "hls")
    assert Path(product.bands["swir1"].path).name == f"{L30_ID}.B06.TIF"
    assert product.quality is not None and Path(product.quality.path).name == f"{L30_ID}.Fmask.TIF"
    assert detect_kind(fx.folder) == "hls"


@pytest.mark.parametrize(
    ("product", "platform", "nir_band", "date"),
    [
        ("S30", None, "B8A", "2023-10-17"),
        ("S30", "sentinel-2b", "B8A", "2023-10-17"),
        ("L30", "landsat-8", "B05", "2023-10-15"),
    ],
)
def test_a_nasa_stac_item_of_a_granule(
    tmp_path: Path, product: str, platform: str | None, nir_band: str, date: str
) -> None:
    """Read by asset key, with or without a platform: S30's nir is the narrow B8A, although
    NASA's items give the broad B08 the common name "nir" and B8A none."""
    fx = write_hls(tmp_path, product, folder_name="granule")
    item = write_hls_stac_item(tmp_path / "item.json", fx, platform=platform)
    assert detect_kind(item) == "stac"
    out = tmp_path / "stac.tif"
    stack(item, out, bands=SIX)
    stack(fx.folder, tmp_path / "folder.tif", bands=SIX)
    data, tags, _ = read(out)
    np.testing.assert_array_equal(data, read(tmp_path / "folder.tif")[0])
    assert tags["SOURCE_PRODUCT"] == fx.granule and tags["ACQUISITION_DATE"] == date
    assert tags["SENSOR"] == ("HLS S30 (Sentinel-2 MSI)" if product == "S30" else "HLS L30 (Landsat 8/9 OLI)")
    r, c = 12, 44
    assert data[3, r, c] == pytest.approx(int(fx.dn[nir_band][r, c]) * 0.0001, abs=1e-7)
    np.testing.assert_array_equal(np.isnan(data).any(axis=0), expected_nodata((64, 64)))


def test_the_user_guide_spelling_v_upper_2_0(tmp_path: Path) -> None:
    """The HLS v2.0 User Guide writes its examples ``...T155956.V2.0.B01.tif``; LP DAAC ``v2.0``."""
    granule = "HLS.L30.T45RVL.2023288T045019.V2.0"
    fx = write_hls(tmp_path, "L30", granule=granule)
    assert detect_kind(fx.folder) == "hls" and detect_kind(fx.paths["B04"]) == "hls"
    assert parse_granule(granule).version == "2.0"
    stack(fx.folder, tmp_path / "upper.tif", bands="red,nir")
    data, tags, _ = read(tmp_path / "upper.tif")
    assert tags["SOURCE_PRODUCT"] == granule and tags["ACQUISITION_DATE"] == "2023-10-15"
    np.testing.assert_allclose(
        data[1][~expected_nodata((64, 64))], reflectance(fx.dn["B05"])[~expected_nodata((64, 64))], atol=1e-6
    )


# ----------------------------------------------------------------------------- refusals


def test_missing_band_names_the_file_expected(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30")
    fx.paths["B06"].unlink()
    out = tmp_path / "out.tif"
    with pytest.raises(
        MissingBandError, match=r"HLS\.L30\.T45RVL\.2023288T045019\.v2\.0\.B06\.tif: the swir1 band"
    ):
        stack(fx.folder, out, bands="red,green,blue,nir,ndsi")
    assert not out.exists()
    stack(fx.folder, out)  # the default recipe needs no swir1
    assert read(out)[2] == ("red", "green", "blue", "nir", "ndvi")
    fx.paths["Fmask"].unlink()
    with pytest.raises(MissingBandError, match=r"v2\.0\.Fmask\.tif: the quality layer .* --no-cloud-mask"):
        stack(fx.folder, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_a_folder_mixing_granules_is_refused_but_one_file_of_it_works(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30")
    other = write_hls(tmp_path / "other", "S30")
    shutil.copy(other.paths["B04"], fx.folder)
    with pytest.raises(ProductError, match=f"mixes 2 HLS granules \\({L30_ID}, {S30_ID}\\)"):
        stack(fx.folder, tmp_path / "mixed.tif")
    assert not (tmp_path / "mixed.tif").exists()
    assert read_hls(fx.paths["B04"]).product_id == L30_ID


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (write_landsat_l1, "looks like a Landsat Level-1 product: HLS needs"),
        (write_s2_l1c, "looks like a Sentinel-2 Level-1C product: HLS needs"),
        (
            lambda p: write_landsat(p, mtl=("json",)).folder,
            "looks like a Landsat Collection 2 Level-2 product",
        ),
        (lambda p: write_s2_cogs(p).folder, "looks like a Sentinel-2 Level-2A product"),
    ],
)
def test_other_products_with_kind_hls_are_named(tmp_path: Path, make, named: str) -> None:
    folder = make(tmp_path / "in")
    out = tmp_path / "out.tif"
    with pytest.raises(ProductError, match=named):
        stack(folder, out, kind="hls")
    band = next(p for p in sorted(folder.rglob("*")) if p.suffix.upper() == ".TIF")
    with pytest.raises(ProductError, match=named.split(":")[0]):  # one of its files says the same
        stack(band, out, kind="hls")
    assert not out.exists()


def test_a_non_hls_folder_with_kind_hls(tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "photo.tif").write_bytes(b"II*\x00")
    with pytest.raises(ProductError, match="holiday: no HLS band files here; HLS needs the HLS v2.0"):
        stack(folder, tmp_path / "out.tif", kind="hls")
    with pytest.raises(ProductError, match="photo.tif: no HLS band files here"):
        stack(folder / "photo.tif", tmp_path / "out.tif", kind="hls")
    assert not (tmp_path / "out.tif").exists()


def test_a_folder_of_granule_folders_points_at_one(tmp_path: Path) -> None:
    write_hls(tmp_path / "downloads", "L30")
    write_hls(tmp_path / "downloads", "S30")
    write_landsat_l1(tmp_path / "downloads")  # a Level-1 folder beside them does not make this one Level-1
    with pytest.raises(ProductError, match=f"its folders hold 2 HLS granules \\({L30_ID}, ...\\); give one"):
        stack(tmp_path / "downloads", tmp_path / "out.tif", kind="hls")


# ----------------------------------------------------------------------------- the CLI


def run(*args: object) -> tuple[int, str]:
    from geoglacier.cli.main import cli
    from geoglacier.cli.stack import stack as stack_cmd

    group = type(cli)(name="geoglacier", commands={"stack": stack_cmd})
    result = CliRunner().invoke(group, [str(a) for a in args])
    return result.exit_code, result.output


def test_cli_default_recipe_and_six_band_recipe(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30")
    out = tmp_path / "default.tif"
    code, output = run("stack", fx.folder, "--out", out, "--no-progress")
    assert code == 0, output
    assert f"hls: HLS L30 (Landsat 8/9 OLI), 2023-10-15, {L30_ID}" in output
    assert "Fmask cirrus, cloud, adjacent and cloud shadow masked, snow/ice and water kept" in output
    assert "grid 64 x 64 px of 30 in EPSG:32645" in output
    assert "(0.1 % by the cloud mask)" in output  # 3 of 4096
    data, _, descriptions = read(out)
    assert descriptions == ("red", "green", "blue", "nir", "ndvi")
    red, nir = reflectance(fx.dn["B04"]), reflectance(fx.dn["B05"])
    ok = ~expected_nodata((64, 64))
    np.testing.assert_allclose(data[4][ok], ((nir - red) / (nir + red))[ok], atol=1e-5)

    s30 = write_hls(tmp_path / "s", "S30")
    out6 = tmp_path / "six.tif"
    code, output = run("stack", s30.paths["B02"], "--out", out6, "--bands", "red,green,blue,nir,swir1,ndsi")
    assert code == 0, output
    assert "hls: HLS S30 (Sentinel-2 MSI), 2023-10-17" in output
    data, tags, descriptions = read(out6)
    assert descriptions == ("red", "green", "blue", "nir", "swir1", "ndsi")
    green, swir1 = reflectance(s30.dn["B03"]), reflectance(s30.dn["B11"])
    np.testing.assert_allclose(data[5][ok], ((green - swir1) / (green + swir1))[ok], atol=1e-5)
    np.testing.assert_allclose(data[3][ok], reflectance(s30.dn["B8A"])[ok], atol=1e-6)
    assert tags["ACQUISITION_DATE"] == "2023-10-17"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    fx = write_hls(tmp_path, "L30")
    fx.paths["B06"].unlink()
    out = tmp_path / "out.tif"
    cases = [
        (("stack", fx.folder, "--out", out, "--bands", "swir1"), f"{L30_ID}.B06.tif"),
        (("stack", write_landsat_l1(tmp_path / "l1"), "--out", out, "--kind", "hls"), "Landsat Level-1"),
    ]
    for args, needle in cases:
        code, output = run(*args)
        assert code != 0 and needle in output, output
        lines = output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in output
    assert not out.exists()
