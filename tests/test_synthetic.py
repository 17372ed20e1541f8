"""Tests for the seeded synthetic scene generator (geoglacier.synthetic)."""

from __future__ import annotations

import hashlib
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from geoglacier.errors import ConfigError, OutputExistsError
from geoglacier.io.layouts import classic_pairs, detect_layout
from geoglacier.io.masks import check_same_grid, inspect_mask, read_mask
from geoglacier.io.scene import inspect_scene
from geoglacier.synthetic import (
    BAND_NAMES,
    MASK_NODATA,
    NODATA,
    generate_scene,
    render_block,
    write_classic_layout,
)


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), dict(ds.profile, descriptions=ds.descriptions, tags=ds.tags())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    kw = dict(height=96, width=80, nodata_border=True, clouds=True)
    a = generate_scene(tmp_path / "a.tif", tmp_path / "a_mask.tif", seed=7, **kw)
    b = generate_scene(tmp_path / "b.tif", tmp_path / "b_mask.tif", seed=7, **kw)
    c = generate_scene(tmp_path / "c.tif", tmp_path / "c_mask.tif", seed=8, **kw)
    assert _digest(a.scene_path) == _digest(b.scene_path)
    assert _digest(a.mask_path) == _digest(b.mask_path)
    assert a.glacier_fraction == b.glacier_fraction
    scene_a, _ = _read(a.scene_path)
    scene_c, _ = _read(c.scene_path)
    assert not np.array_equal(scene_a, scene_c)


def test_block_size_does_not_change_the_pixels(tmp_path: Path) -> None:
    kw = dict(height=200, width=300, seed=3, nodata_border=True, clouds=True)
    small = generate_scene(tmp_path / "s.tif", tmp_path / "s_mask.tif", block_size=64, **kw)
    big = generate_scene(tmp_path / "b.tif", tmp_path / "b_mask.tif", block_size=256, **kw)
    assert np.array_equal(_read(small.scene_path)[0], _read(big.scene_path)[0])
    assert np.array_equal(_read(small.mask_path)[0], _read(big.mask_path)[0])


def test_render_block_equals_the_same_region_of_a_whole_render() -> None:
    whole, whole_mask = render_block(0, 0, 150, 170, 11, scene_shape=(150, 170), nodata_border=True)
    part, part_mask = render_block(37, 81, 50, 60, 11, scene_shape=(150, 170), nodata_border=True)
    assert np.array_equal(part, whole[:, 37:87, 81:141])
    assert np.array_equal(part_mask, whole_mask[37:87, 81:141])


def test_band_values_order_and_ndvi() -> None:
    bands, mask = render_block(0, 0, 128, 128, 2)
    assert bands.dtype == np.float32 and bands.shape == (5, 128, 128)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    dn = bands[:4]
    assert dn.min() >= 0 and dn.max() <= 255
    assert np.array_equal(dn, np.rint(dn))  # digital numbers
    red, nir = bands[0].astype(np.float64), bands[3].astype(np.float64)
    expected = np.divide(nir - red, nir + red, out=np.zeros_like(red), where=(nir + red) > 0)
    np.testing.assert_allclose(bands[4], expected, atol=1e-6)
    # Snow and ice saturate the visible bands somewhere, as on real Landsat scenes.
    assert (bands[2] == 255).any()


def test_glacier_ice_is_brighter_and_bluer_than_the_rest() -> None:
    """The learnable cue: glacier pixels are brighter in blue and bluer relative to nir."""
    bands, mask = render_block(0, 0, 512, 512, 1)
    glacier, other = mask == 1, mask == 0
    assert np.median(bands[2][glacier]) > np.median(bands[2][other]) + 30
    ratio = bands[2] / np.maximum(bands[3], 1)
    assert np.median(ratio[glacier]) > np.median(ratio[other]) + 0.2
    # ...but not trivially: some glacier (debris, shadow) is as dark as typical rock.
    assert (bands[2][glacier] < np.median(bands[2][other])).mean() > 0.05


@pytest.mark.parametrize("seed", [0, 1, 2, 4])
def test_glacier_fraction_is_plausible(tmp_path: Path, seed: int) -> None:
    out = generate_scene(tmp_path / "s.tif", tmp_path / "m.tif", height=256, width=256, seed=seed)
    mask, _ = _read(out.mask_path)
    assert 0.10 <= out.glacier_fraction <= 0.70
    assert out.glacier_fraction == pytest.approx(float((mask == 1).mean()))


def test_utm_scene_crs_transform_and_profile(tmp_path: Path) -> None:
    out = generate_scene(tmp_path / "s.tif", tmp_path / "m.tif", height=64, width=96, crs="utm")
    scene, prof = _read(out.scene_path)
    mask, mprof = _read(out.mask_path)
    assert prof["crs"] == CRS.from_epsg(32645) == mprof["crs"]
    t = prof["transform"]
    assert (t.a, t.b, t.d, t.e) == (30.0, 0.0, 0.0, -30.0)
    assert t == mprof["transform"] == out.transform
    # The top-left corner lies near 87E 28N, on a 30 m grid.
    lon, lat = Transformer.from_crs("EPSG:32645", "EPSG:4326", always_xy=True).transform(t.c, t.f)
    assert abs(lon - 86.8) < 0.01 and abs(lat - 28.1) < 0.01
    assert t.c % 30 == 0 and t.f % 30 == 0
    assert prof["count"] == 5 and prof["dtype"] == "float32" and scene.shape == (5, 64, 96)
    assert prof["descriptions"] == BAND_NAMES
    assert prof["compress"] == "deflate" and prof["tiled"] and prof["blockxsize"] in (256, 512)
    assert prof["nodata"] is None and mprof["nodata"] is None
    assert mprof["count"] == 1 and mprof["dtype"] == "uint8" and mask.shape == (1, 64, 96)
    check_same_grid(inspect_scene(out.scene_path), inspect_mask(out.mask_path))


def test_geographic_scene_has_degree_pixels_near_everest(tmp_path: Path) -> None:
    utm = generate_scene(tmp_path / "u.tif", tmp_path / "um.tif", height=64, width=64, seed=5, crs="utm")
    geo = generate_scene(
        tmp_path / "g.tif", tmp_path / "gm.tif", height=64, width=64, seed=5, crs="EPSG:4326"
    )
    scene, prof = _read(geo.scene_path)
    assert prof["crs"] == CRS.from_epsg(4326)
    t = prof["transform"]
    assert t == Affine(1 / 3600, 0.0, 86.8, 0.0, -1 / 3600, 28.1)
    # One arc second is about 30 m on the ground at 28N.
    assert 25 < t.a * 111_320 * math.cos(math.radians(28.1)) < 32
    assert 28 < -t.e * 110_950 < 33
    # Pixels come from global pixel coordinates only: the CRS changes georeferencing alone.
    assert np.array_equal(scene, _read(utm.scene_path)[0])


def test_any_projected_crs_and_pixel_size(tmp_path: Path) -> None:
    out = generate_scene(
        tmp_path / "s.tif", tmp_path / "m.tif", height=32, width=32, crs="EPSG:32644", pixel_size=15
    )
    _, prof = _read(out.scene_path)
    assert prof["crs"] == CRS.from_epsg(32644)
    assert prof["transform"].a == 15.0 and prof["transform"].e == -15.0


def test_nodata_border(tmp_path: Path) -> None:
    out = generate_scene(
        tmp_path / "s.tif", tmp_path / "m.tif", height=160, width=128, seed=1, nodata_border=True
    )
    scene, prof = _read(out.scene_path)
    mask, mprof = _read(out.mask_path)
    assert prof["nodata"] == NODATA and mprof["nodata"] == MASK_NODATA
    outside = mask[0] == MASK_NODATA
    # Corners are outside a rotated footprint, the centre inside; all bands agree.
    assert outside[0, 0] and outside[0, -1] and outside[-1, 0] and outside[-1, -1]
    assert not outside[80, 64]
    assert 0.02 < outside.mean() < 0.5
    assert (scene[:, outside] == NODATA).all()
    assert (scene[:, ~outside] != NODATA).all()
    assert set(np.unique(mask[0][~outside])) <= {0, 1}
    assert "255" in mprof["tags"]["MASK_VALUES"]
    # The library's mask reader turns the nodata into its ignore value.
    assert np.array_equal(read_mask(out.mask_path) == 255, outside)
    # The glacier fraction counts valid pixels only.
    assert out.glacier_fraction == pytest.approx(float((mask[0][~outside] == 1).mean()))


def test_clouds_brighten_some_pixels_but_leave_the_mask_alone() -> None:
    clear, clear_mask = render_block(0, 0, 256, 256, 0)
    cloudy, cloudy_mask = render_block(0, 0, 256, 256, 0, clouds=True)
    assert np.array_equal(clear_mask, cloudy_mask)
    assert not np.array_equal(clear, cloudy)
    assert (cloudy[3] > clear[3] + 60).mean() > 0.01  # bright in nir, unlike ice


def test_memory_stays_bounded_for_a_larger_scene(tmp_path: Path) -> None:
    size = 2048
    tracemalloc.start()
    try:
        generate_scene(
            tmp_path / "big.tif", tmp_path / "big_mask.tif", height=size, width=size, block_size=256
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * size * size * 5 * 4


def test_overwrite_false_raises_and_keeps_the_file(tmp_path: Path) -> None:
    scene, mask = tmp_path / "s.tif", tmp_path / "m.tif"
    scene.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        generate_scene(scene, mask, height=32, width=32)
    assert scene.read_bytes() == b"keep me"
    assert not mask.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]  # no temporaries left
    generate_scene(scene, mask, height=32, width=32, overwrite=True)
    assert inspect_scene(scene).shape == (32, 32)


def test_bad_options_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate_scene(tmp_path / "s.tif", tmp_path / "s.tif")
    with pytest.raises(ConfigError):
        generate_scene(tmp_path / "s.tif", tmp_path / "m.tif", height=0)
    with pytest.raises(ConfigError):
        generate_scene(tmp_path / "s.tif", tmp_path / "m.tif", crs="not a crs")
    with pytest.raises(ConfigError):
        generate_scene(tmp_path / "s.tif", tmp_path / "m.tif", pixel_size=-1.0)
    with pytest.raises(ConfigError):
        render_block(0, 0, 8, 8, 0, nodata_border=True)
    assert not list(tmp_path.iterdir())


def test_classic_layout(tmp_path: Path) -> None:
    pairs = write_classic_layout(tmp_path / "data", n=3, size=64, seed=2)
    assert len(pairs) == 3
    assert detect_layout(tmp_path / "data") == "classic"
    found = classic_pairs(tmp_path / "data")
    assert [p.name for p in found] == ["synth_000", "synth_001", "synth_002"]
    images = []
    for image_path, mask_path in pairs:
        image = np.load(image_path)
        assert image.shape == (64, 64, 5) and image.dtype == np.float32
        images.append(image)
        with rasterio.open(mask_path) as ds:
            mask = ds.read(1)
            assert ds.dtypes[0] == "uint8" and ds.crs == CRS.from_epsg(32645)
            assert ds.transform.a == 30.0
        assert set(np.unique(mask)) <= {0, 1}
    assert not np.array_equal(images[0], images[1])
    # Each sample is the matching region of the generator's scene, channels last.
    bands, mask = render_block(0, 0, 64, 64, 2)
    assert np.array_equal(images[0], bands.transpose(1, 2, 0))
    with pytest.raises(OutputExistsError):
        write_classic_layout(tmp_path / "data", n=1, size=64, seed=2)
