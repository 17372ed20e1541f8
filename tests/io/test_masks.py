"""Tests of geoglacier.io.masks: values, nodata, grid checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from geoglacier.errors import GeoglacierWarning, GridMismatchError, MaskError
from geoglacier.io.masks import IGNORE, check_mask_values, check_same_grid, inspect_mask, read_mask
from geoglacier.io.scene import inspect_scene
from tests.data import UTM_TRANSFORM, write_raster


def _mask(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint8)


def test_zero_one_mask_reads_as_is(tmp_path: Path) -> None:
    raw = _mask(np.random.default_rng(0).integers(0, 2, (40, 30)))
    path = write_raster(tmp_path / "m.tif", raw)
    np.testing.assert_array_equal(read_mask(path), raw)


def test_zero_255_mask_warns_and_maps(tmp_path: Path) -> None:
    raw = _mask(np.random.default_rng(1).integers(0, 2, (40, 30)) * 255)
    path = write_raster(tmp_path / "m.tif", raw)
    with pytest.warns(GeoglacierWarning, match="0/255"):
        out = read_mask(path)
    np.testing.assert_array_equal(out, raw // 255)


def test_nodata_becomes_ignore(tmp_path: Path) -> None:
    raw = _mask(np.zeros((8, 8)))
    raw[0, :4] = 1
    raw[5, 5] = 9
    path = write_raster(tmp_path / "m.tif", raw, nodata=9)
    out = read_mask(path)
    assert out[5, 5] == IGNORE
    assert out[0, :4].tolist() == [1, 1, 1, 1]
    assert set(np.unique(out).tolist()) == {0, 1, IGNORE}


def test_255_as_nodata_with_zero_one(tmp_path: Path) -> None:
    raw = _mask(np.zeros((8, 8)))
    raw[1, 1] = 1
    raw[2, 2] = 255
    out = read_mask(write_raster(tmp_path / "m.tif", raw, nodata=255))
    assert out[1, 1] == 1 and out[2, 2] == IGNORE


def test_other_values_are_listed(tmp_path: Path) -> None:
    raw = _mask(np.zeros((8, 8)))
    raw[0, 0] = 7
    path = write_raster(tmp_path / "m.tif", raw)
    with pytest.raises(MaskError, match=r"found \{0, 7\}") as info:
        check_mask_values(path)
    assert str(path) in str(info.value)


def test_two_band_mask_is_refused(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "m.tif", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(MaskError, match="1 band, found 2"):
        inspect_mask(path)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"shape": (30, 40)}, "shape 30x40 vs scene 32x32"),
        ({"transform": Affine(30.0, 0.0, 478030.0, 0.0, -30.0, 3108140.0)}, "transform"),
        ({"crs": "EPSG:32644"}, "CRS EPSG:32644 vs scene EPSG:32645"),
    ],
)
def test_grid_mismatch_says_how(tmp_path: Path, kwargs: dict, words: str) -> None:
    scene = write_raster(tmp_path / "s.tif", np.zeros((5, 32, 32), np.float32))
    shape = kwargs.pop("shape", (32, 32))
    mask = write_raster(tmp_path / "m.tif", np.zeros(shape, np.uint8), **kwargs)
    with pytest.raises(GridMismatchError, match=words):
        check_same_grid(inspect_scene(scene), inspect_mask(mask))


def test_same_grid_passes(tmp_path: Path) -> None:
    scene = write_raster(tmp_path / "s.tif", np.zeros((5, 32, 32), np.float32), transform=UTM_TRANSFORM)
    mask = write_raster(tmp_path / "m.tif", np.zeros((32, 32), np.uint8), transform=UTM_TRANSFORM)
    check_same_grid(inspect_scene(scene), inspect_mask(mask))


def test_real_everest_mask(everest: Path) -> None:
    mask = read_mask(everest / "west_mask.tif")
    assert mask.shape == (655, 480)
    assert abs(mask.mean() - 0.432) < 0.005
    check_same_grid(inspect_scene(everest / "west_scene.tif"), inspect_mask(everest / "west_mask.tif"))


def test_a_mask_with_nodata_0_is_read_as_it_says_but_with_a_warning(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:8] = 1
    path = write_raster(tmp_path / "m.tif", mask, nodata=0)
    with pytest.warns(GeoglacierWarning, match="nodata is 0, the value of 'not glacier'"):
        info = inspect_mask(path)
    values = read_mask(path, info=info)
    assert (values == 1).sum() == 8 * 64 and (values == IGNORE).sum() == 56 * 64
    clean = write_raster(tmp_path / "ok.tif", mask, nodata=255)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inspect_mask(clean)
