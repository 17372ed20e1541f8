"""``geoglacier stack`` through click, bad products, and the path on to ``segment-scene``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.cli.segment_scene import segment_scene
from geoglacier.cli.stack import stack
from geoglacier.errors import GeoglacierWarning
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene
from tests.products_data import S2_ORIGIN, write_landsat, write_s2_stac, write_safe

RECIPE = ("red", "green", "blue", "nir", "ndsi")


def group() -> click.Group:
    return type(cli)(name="geoglacier", commands={"stack": stack, "segment-scene": segment_scene})


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(group(), [str(a) for a in args])
    return result.exit_code, result.output


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".geoglacier-tmp"))


def test_stack_cli_reports_kind_tags_and_fractions(tmp_path: Path) -> None:
    fx = write_safe(tmp_path)
    out = tmp_path / "scene.tif"
    code, output = run(
        "stack", fx.folder, "--out", out, "--bands", "red,green,blue,nir,swir1", "--no-progress"
    )
    assert code == 0, output
    assert "sentinel2-safe: Sentinel-2A MSI, 2023-10-15" in output
    assert "BOA_ADD_OFFSET -1000 applied" in output
    assert "masked 0.6 % of pixels as nodata (0.4 % by the cloud mask)" in output  # 24 and 16 of 4096
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("red", "green", "blue", "nir", "swir1")
    code, output = run("stack", fx.folder, "--out", out, "--no-progress")
    assert code != 0 and "--overwrite" in output
    code, output = run(
        "stack", fx.folder, "--out", out, "--no-progress", "--overwrite", "--kind", "sentinel2-safe"
    )
    assert code == 0, output


def _one_line_error(code: int, output: str, *needles: str) -> None:
    assert code != 0
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


def test_bad_products(tmp_path: Path) -> None:
    out = tmp_path / "out.tif"
    unknown = tmp_path / "holiday"
    unknown.mkdir()
    (unknown / "photo.jpg").write_bytes(b"\xff\xd8")
    _one_line_error(*run("stack", unknown, "--out", out), "holiday", "not a known product", "--kind")
    _one_line_error(*run("stack", tmp_path / "nope", "--out", out), "not found")

    fx = write_landsat(tmp_path / "ls", mtl=("json",))
    (fx.folder / f"{fx.product_id}_SR_B6.TIF").unlink()
    _one_line_error(*run("stack", fx.folder, "--out", out, "--bands", "red,ndsi"), "SR_B6", "missing")
    code, output = run(
        "stack", fx.folder, "--out", out, "--bands", "red,green,blue,nir,ndvi", "--no-progress"
    )
    assert code == 0, output  # the recipe does not need SWIR
    out.unlink()

    (fx.folder / f"{fx.product_id}_SR_B4.TIF").write_bytes(b"this is not a tiff")
    _one_line_error(*run("stack", fx.folder, "--out", out), "SR_B4", "not a readable raster")

    fx2 = write_landsat(tmp_path / "ls2", mtl=("json",))
    (fx2.folder / f"{fx2.product_id}_QA_PIXEL.TIF").unlink()
    _one_line_error(*run("stack", fx2.folder, "--out", out), "QA_PIXEL", "--no-cloud-mask")

    s2 = write_safe(tmp_path / "s2")
    with rasterio.open(s2.paths["B08"], "r+") as ds:
        ds.transform = rasterio.Affine(10.0, 0.0, S2_ORIGIN[0] + 50_000, 0.0, -10.0, S2_ORIGIN[1])
    _one_line_error(*run("stack", s2.folder, "--out", out), "does not overlap")

    item, _ = write_s2_stac(tmp_path / "st")
    raw = json.loads(item.read_text())
    raw["assets"] = {}
    item.write_text(json.dumps(raw))
    _one_line_error(*run("stack", item, "--out", out), "no asset for the")
    _one_line_error(*run("stack", item, "--out", out, "--bands", "red,evi"), "unknown band 'evi'")
    _one_line_error(*run("stack", s2.folder, "--out", out, "--cloud-buffer", "-1"), "--cloud-buffer")
    _one_line_error(*run("stack", s2.folder, "--out", out, "--crs", "EPSG:999999"), "--crs")
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- on to segment-scene


@pytest.fixture(scope="module")
def ndsi_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(encoder="resnet18")
    meta = CheckpointMeta(model=config, bands=RECIPE, mean=(0.1,) * 5, std=(0.1,) * 5, patch_size=64)
    return save_checkpoint(build_model(config, None), meta, tmp_path_factory.mktemp("ck") / "ndsi.pth")


def test_segment_scene_takes_the_matching_recipe_and_carries_the_date(
    tmp_path: Path, ndsi_checkpoint: Path
) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    scene = tmp_path / "scene.tif"
    assert run("stack", fx.folder, "--out", scene, "--bands", ",".join(RECIPE), "--no-progress")[0] == 0
    mask, summary = tmp_path / "mask.tif", tmp_path / "summary.json"
    args = ["segment-scene", scene, "--model", ndsi_checkpoint, "--out", mask, "--summary", summary]
    code, output = run(*args, "--no-progress", "--device", "cpu")
    assert code == 0, output
    with rasterio.open(mask) as ds:
        tags = ds.tags()
    assert tags["ACQUISITION_DATE"] == "2023-10-15"
    assert tags["SENSOR"] == "Landsat 8 OLI" and tags["SOURCE_PRODUCT"] == fx.product_id
    report = json.loads(summary.read_text())
    assert report["acquisition_date"] == "2023-10-15" and report["sensor"] == "Landsat 8 OLI"
    assert report["source_product"] == fx.product_id

    code, output = run(*args, "--no-progress", "--device", "cpu", "--overwrite", "--date", "2023-10-16")
    assert code == 0, output
    with rasterio.open(mask) as ds:
        assert ds.tags()["ACQUISITION_DATE"] == "2023-10-16"
    assert json.loads(summary.read_text())["acquisition_date"] == "2023-10-16"
    _one_line_error(*run(*args, "--overwrite", "--date", "15/10/2023"), "--date", "YYYY-MM-DD")


def test_segment_scene_rejects_another_recipe(tmp_path: Path, ndsi_checkpoint: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",))
    scene = tmp_path / "ndvi.tif"
    assert run("stack", fx.folder, "--out", scene, "--no-progress")[0] == 0  # default recipe: ndvi, not ndsi
    mask = tmp_path / "mask.tif"
    _one_line_error(
        *run("segment-scene", scene, "--model", ndsi_checkpoint, "--out", mask, "--device", "cpu"),
        "red,green,blue,nir,ndvi",
        "red,green,blue,nir,ndsi",
    )
    assert not mask.exists() and leftovers(tmp_path) == []


def test_segment_scene_accepts_a_scene_without_descriptions_with_a_warning(
    tmp_path: Path, ndsi_checkpoint: Path
) -> None:
    from geoglacier.inference.segment import segment_scene as segment

    scene = write_scene(tmp_path / "bare.tif", height=64, width=64, seed=3)
    with pytest.warns(GeoglacierWarning, match="no band descriptions"):
        result = segment(scene, ndsi_checkpoint, tmp_path / "m.tif", device="cpu", progress=False)
    assert result.mask.exists()
    with rasterio.open(result.mask) as ds:
        assert "ACQUISITION_DATE" not in ds.tags()


@pytest.mark.slow
def test_stack_then_train_stores_the_recipe(tmp_path: Path) -> None:
    """stack -> train (scenes layout) -> the checkpoint holds the recipe -> segment-scene accepts the scene."""
    import numpy as np

    from geoglacier.checkpoint import read_checkpoint
    from geoglacier.training.loop import train

    fx = write_landsat(tmp_path / "product", mtl=("json",), height=128, width=192)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    scene = data / "images" / "l8.tif"
    assert run("stack", fx.folder, "--out", scene, "--bands", ",".join(RECIPE), "--no-progress")[0] == 0
    with rasterio.open(scene) as ds:
        ndsi, profile = ds.read(5), ds.profile
    mask = np.where(np.isnan(ndsi), 255, ndsi > np.nanmedian(ndsi)).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=255, driver="GTiff")
    with rasterio.open(data / "masks" / "l8.tif", "w", **profile) as ds:
        ds.write(mask, 1)
    torch.set_num_threads(1)
    out = tmp_path / "model.pth"
    train(
        data, out, arch="Unet", encoder="resnet18", encoder_weights="none", patch_size=64, batch_size=4,
        epochs=1, patches_per_epoch=4, val_fraction=0.25, device="cpu", num_workers=0, log=lambda _: None,
    )  # fmt: skip
    meta, _ = read_checkpoint(out)
    assert meta.bands == RECIPE
    code, output = run("segment-scene", scene, "--model", out, "--out", tmp_path / "m.tif", "--no-progress")
    assert code == 0, output


def test_stack_never_writes_over_its_product(tmp_path: Path) -> None:
    # An item's local assets, the item itself and a band inside a product folder are inputs:
    # --overwrite may not replace them.
    from tests.products_data import write_landsat_stac

    item, fx = write_landsat_stac(tmp_path / "lst")
    band = fx.folder / f"{fx.product_id}_SR_B4.TIF"
    before = {p: p.read_bytes() for p in (item, band)}
    _one_line_error(
        *run("stack", item, "--out", band, "--overwrite", "--no-progress"),
        "SR_B4.TIF", "--out", "same file as the input a band of SOURCE",
    )  # fmt: skip
    _one_line_error(
        *run("stack", fx.folder, "--out", fx.folder / ".." / fx.folder.name / band.name, "--overwrite"),
        "--out", "same file as the input SOURCE",
    )  # fmt: skip
    _one_line_error(*run("stack", item, "--out", item, "--overwrite"), "landsat-item.json", "--out", ".tif")
    assert {p: p.read_bytes() for p in before} == before
    assert leftovers(tmp_path) == []


def test_a_product_of_another_kind_is_named_as_such(tmp_path: Path) -> None:
    # --kind sentinel2-cogs on a Landsat folder or a .SAFE: no band of that kind at all, not a
    # "missing band, re-download it"
    out = tmp_path / "out.tif"
    fx = write_landsat(tmp_path / "ls", mtl=("json",))
    s2 = write_safe(tmp_path / "s2")
    for folder in (fx.folder, s2.folder):
        code, output = run("stack", folder, "--out", out, "--kind", "sentinel2-cogs")
        _one_line_error(code, output, "no Sentinel-2 band COGs", "leave out --kind")
        assert "re-download" not in output
    assert not out.exists() and leftovers(tmp_path) == []


def test_bounds_in_longitudes_and_latitudes_with_bounds_crs(tmp_path: Path) -> None:
    from rasterio.warp import transform_bounds

    fx = write_safe(tmp_path)
    with rasterio.open(fx.paths["B04"]) as ds:
        crs, full = ds.crs, ds.bounds
    w, h = full.right - full.left, full.top - full.bottom
    utm = (full.left + 0.3 * w, full.bottom + 0.3 * h, full.left + 0.7 * w, full.top - 0.3 * h)
    lonlat = transform_bounds(crs, "EPSG:4326", *utm)
    out = tmp_path / "cut.tif"
    code, output = run(
        "stack", fx.folder, "--out", out, "--bands", "red", "--bounds", *lonlat, "--bounds-crs", "EPSG:4326"
    )
    assert code == 0, output
    expected = transform_bounds("EPSG:4326", crs, *lonlat, densify_pts=21)  # rasterio's own reprojection
    with rasterio.open(out) as ds:
        got = ds.bounds
        assert ds.crs == crs and ds.res == (10.0, 10.0)
    # the output covers the reprojected box, snapped outwards to whole 10 m pixels
    assert got.left <= expected[0] < got.left + 10 and got.right - 10 < expected[2] <= got.right
    assert got.bottom <= expected[1] < got.bottom + 10 and got.top - 10 < expected[3] <= got.top
    # the same numbers read as UTM metres miss the product, and the message points at --bounds-crs
    code, output = run(
        "stack", fx.folder, "--out", tmp_path / "miss.tif", "--bands", "red", "--bounds", *lonlat
    )
    assert code != 0 and "--bounds-crs" in output and "Traceback" not in output
    code, output = run(
        "stack",
        fx.folder,
        "--out",
        tmp_path / "bad.tif",
        "--bands",
        "red",
        "--bounds",
        *lonlat,
        "--bounds-crs",
        "EPSG:99999",
    )
    assert code != 0 and "--bounds-crs 'EPSG:99999' is not a CRS" in output
    assert not (tmp_path / "miss.tif").exists() and not (tmp_path / "bad.tif").exists()


# ----------------------------------------------------------------------------- a DEM and a scene as source


SEVEN = ("red", "green", "blue", "nir", "ndvi", "elevation", "slope")


def _horn(z, spacing: float):
    """Horn's slope (degrees) of the inner pixels, written out here independently of the library."""
    import numpy as np

    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    gx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * spacing)
    gy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * spacing)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


def test_everest_west_scene_with_srtm_gives_seven_bands(everest: Path, tmp_path: Path) -> None:
    import numpy as np
    from rasterio.enums import Resampling
    from rasterio.warp import reproject, transform
    from scipy.ndimage import map_coordinates

    hgt = everest.parent / "dem" / "N27E086.hgt"
    if not hgt.exists():
        pytest.skip("../shared/data/dem/N27E086.hgt is not here")
    out = tmp_path / "west7.tif"
    with pytest.warns(GeoglacierWarning, match=r"55\.\d % of the output has no DEM"):
        code, output = run(
            "stack", everest / "west_scene.tif", "--dem", hgt, "--bands", ",".join(SEVEN), "--out", out, "--no-progress"
        )  # fmt: skip
    assert code == 0, output
    assert "no DEM under 55." in output  # about 364 of 655 rows
    with rasterio.open(everest / "west_scene.tif") as src, rasterio.open(out) as ds:
        assert ds.descriptions == SEVEN and ds.count == 7
        assert ds.profile["tiled"] and ds.overviews(1)  # a COG: tiled, with overviews
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        assert src.tags().items() - {"BAND_RECIPE": ""}.items() <= ds.tags().items()  # tags kept
        data = ds.read()
        np.testing.assert_array_equal(data[:5][:, 400:], src.read()[:, 400:])  # copied where the DEM is
        shape, dst_t, dst_crs = ds.shape, ds.transform, ds.crs
    with rasterio.open(hgt) as dem:
        ref = np.full(shape, np.nan, np.float32)
        reproject(
            rasterio.band(dem, 1), ref, dst_transform=dst_t, dst_crs=dst_crs, resampling=Resampling.bilinear,
            src_nodata=dem.nodata, dst_nodata=np.nan,
        )  # fmt: skip
        # GDAL's warp approximates the transform to 1/8 DEM pixel; an exact bilinear by hand:
        z = dem.read(1).astype(np.float64)
        z[z == dem.nodata] = np.nan
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
        lon, lat = transform(dst_crs, dem.crs, *(dst_t * (cols.ravel() + 0.5, rows.ravel() + 0.5)))
        c, r = ~dem.transform * (np.asarray(lon), np.asarray(lat))
        exact = map_coordinates(z, [r - 0.5, c - 0.5], order=1, mode="constant", cval=np.nan).reshape(shape)
    elevation, slope = data[5], data[6]
    valid = np.isfinite(elevation)
    assert not valid[:360].any() and valid[370:].all()  # nodata north of 28 N, valid south
    assert np.isnan(data[:, :360]).all()
    both = valid & np.isfinite(ref)
    assert np.median(np.abs(elevation[both] - ref[both])) < 1.0
    inside = valid & np.isfinite(
        exact
    )  # not the DEM's outer half pixel, where the hand bilinear has no 4 samples
    assert inside.sum() > 0.99 * valid.sum()
    assert np.abs(elevation[inside] - exact[inside]).max() < 1.0
    horn = _horn(ref.astype(np.float64), 30.0)
    inner = np.isfinite(horn) & np.isfinite(slope[1:-1, 1:-1])
    assert inner.sum() > 0.35 * horn.size
    assert np.median(np.abs(slope[1:-1, 1:-1][inner] - horn[inner])) < 1.0
    assert 15 < np.median(slope[valid]) < 45  # Himalayan slopes, in degrees


def test_dem_and_scene_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    import numpy as np

    from tests.data import UTM_TRANSFORM, write_raster
    from tests.products_data import write_plane_dem

    five = write_scene(
        tmp_path / "five.tif", height=64, width=64, seed=5, descriptions=RECIPE[:4] + ("ndvi",)
    )
    bare = write_scene(tmp_path / "bare.tif", height=64, width=64, seed=5)
    t = UTM_TRANSFORM
    dem, _ = write_plane_dem(tmp_path / "dem.tif", (t.c, t.f - 1920, t.c + 1920, t.f), 0.1, 0.1)
    far = write_raster(
        tmp_path / "far.tif", np.ones((20, 20), np.float32), crs="EPSG:4326",
        transform=rasterio.Affine(0.01, 0, -70.0, 0, -0.01, -10.0),
    )  # fmt: skip
    no_crs = write_raster(tmp_path / "nocrs.tif", np.ones((20, 20), np.float32), crs=None)
    text = tmp_path / "text.tif"
    text.write_text("not a raster")
    out = tmp_path / "out.tif"
    seven = ["--bands", ",".join(SEVEN), "--out", out, "--no-progress"]
    _one_line_error(*run("stack", five, "--dem", far, *seven), "far.tif", "does not overlap")
    _one_line_error(*run("stack", five, "--dem", no_crs, *seven), "nocrs.tif", "no CRS")
    _one_line_error(*run("stack", five, "--dem", text, *seven), "text.tif", "not a readable raster")
    _one_line_error(*run("stack", five, "--dem", tmp_path / "nope.hgt", *seven), "nope.hgt", "not found")
    _one_line_error(*run("stack", five, *seven), "elevation", "--dem")
    _one_line_error(
        *run("stack", bare, "--dem", dem, *seven), "bare.tif", "no band descriptions", "--scene-bands"
    )
    _one_line_error(
        *run("stack", bare, "--dem", dem, "--scene-bands", "red,green,blue,nir", *seven),
        "--scene-bands",
        "has 5",
    )
    _one_line_error(
        *run("stack", five, "--dem", dem, "--bands", "red,ndsi", "--out", out),
        "holds red,green,blue,nir,ndvi",
    )
    assert not out.exists() and leftovers(tmp_path) == []
    code, output = run("stack", bare, "--dem", dem, "--scene-bands", "red,green,blue,nir,ndvi", *seven)
    assert code == 0, output
    assert "scene: unknown sensor" in output and "no DEM under 0.0 %" in output
