"""Normalisation statistics: streaming and lazy (dask) sums against plain NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoglacier.errors import ConfigError
from geoglacier.training.normalization import Normalization, scan_scene, scene_statistics, stats_from_arrays
from tests.data import scene_array, write_raster


def _numpy_stats(blocks: list[np.ndarray], nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Reference: concatenate every valid pixel and ask NumPy."""
    cols = []
    for b in blocks:
        ok = np.isfinite(b).all(0)
        if nodata is not None:
            ok &= (b != nodata).all(0)
        cols.append(b[:, ok].astype(np.float64))
    x = np.concatenate(cols, axis=1)
    return x.mean(1), x.std(1)


def test_apply_matches_numpy_and_zeroes_invalid() -> None:
    rng = np.random.default_rng(0)
    block = rng.normal(50, 10, (5, 8, 9)).astype(np.float32)
    valid = rng.random((8, 9)) > 0.3
    norm = Normalization((1.0, 2.0, 3.0, 4.0, 5.0), (2.0, 4.0, 0.5, 1.0, 0.0))
    out = norm.apply(block, valid)
    std = np.maximum(np.array(norm.std), 1e-6)[:, None, None]
    expected = (block.astype(np.float64) - np.array(norm.mean)[:, None, None]) / std
    np.testing.assert_allclose(out[:, valid], expected[:, valid], rtol=1e-5)
    assert out.dtype == np.float32
    assert (out[:, ~valid] == 0).all()


def test_apply_in_place_and_nan_invalid() -> None:
    block = np.full((2, 4, 4), 3.0, dtype=np.float32)
    block[:, 0, 0] = np.nan
    valid = np.isfinite(block).all(0)
    out = Normalization((1.0, 1.0), (2.0, 2.0)).apply(block, valid, out=block)
    assert out is block
    assert out[0, 0, 0] == 0 and np.all(out[:, 1:, :] == 1.0)


def test_roundtrip_dict_and_band_mismatch() -> None:
    norm = Normalization((1.5, 2.0), (0.5, 3.0))
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ConfigError):
        norm.apply(np.zeros((3, 2, 2), np.float32), np.ones((2, 2), bool))


@pytest.mark.parametrize("nodata", [None, -9999.0])
def test_stats_from_arrays_excludes_nodata_and_nan(nodata: float | None) -> None:
    rng = np.random.default_rng(1)
    blocks = [rng.normal(100, 20, (5, h, w)).astype(np.float32) for h, w in [(10, 12), (7, 3), (16, 16)]]
    blocks[0][:, 2, 3] = np.nan
    blocks[1][2, 1, 1] = np.inf
    if nodata is not None:
        blocks[2][:, :4, :] = nodata
        blocks[2][1, 10, 10] = nodata  # one band is enough to make a pixel nodata
    norm = stats_from_arrays(blocks, nodata)
    mean, std = _numpy_stats(blocks, nodata)
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(norm.std, std, rtol=1e-9)


def test_stats_large_offset_keeps_precision() -> None:
    # sum(x**2) - n*mean**2 would lose most digits here; the pairwise merge does not.
    rng = np.random.default_rng(2)
    blocks = [(1e6 + rng.normal(0, 0.01, (1, 50, 50))).astype(np.float64) for _ in range(4)]
    norm = stats_from_arrays(blocks)
    _, std = _numpy_stats(blocks, None)
    np.testing.assert_allclose(norm.std, std, rtol=1e-6)


def test_stats_no_valid_pixels_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no valid pixels"):
        stats_from_arrays([np.full((2, 3, 3), np.nan, np.float32)])


def _nodata_scene(tmp_path: Path, nodata: float | None = -9999.0) -> tuple[Path, np.ndarray]:
    data = scene_array(70, 90, seed=3)
    data[:, :5, :] = -9999.0 if nodata is not None else np.nan
    data[:, 40:43, 60:70] = np.nan
    data[2, 50, 50] = -9999.0 if nodata is not None else np.nan
    return write_raster(tmp_path / "s.tif", data, nodata=nodata, block=16), data


@pytest.mark.parametrize("nodata", [None, -9999.0])
def test_scene_statistics_equals_numpy(tmp_path: Path, nodata: float | None) -> None:
    path, data = _nodata_scene(tmp_path, nodata)
    norm = scene_statistics(path, chunks=32)  # several chunks, ragged edges
    mean, std = _numpy_stats([data], nodata)
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(norm.std, std, rtol=1e-9)


def test_scene_statistics_regions_use_only_their_pixels(tmp_path: Path) -> None:
    path, data = _nodata_scene(tmp_path)
    regions = [(0, 0, 30, 40), (20, 30, 30, 50), (60, 80, 40, 40)]  # overlapping and past the edge
    inside = np.zeros(data.shape[1:], dtype=bool)
    for r, c, h, w in regions:
        inside[r : r + h, c : c + w] = True
    norm = scene_statistics(path, chunks=24, regions=regions)
    sub = np.where(inside[None], data, np.nan)
    mean, std = _numpy_stats([sub], -9999.0)
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(norm.std, std, rtol=1e-9)


def test_scan_scene_coarse_map_counts_valid_pixels(tmp_path: Path) -> None:
    path, data = _nodata_scene(tmp_path)
    _, coarse = scan_scene(path, chunks=32, cell=8)
    valid = np.isfinite(data).all(0) & (data != -9999.0).all(0)
    padded = np.zeros((72, 96), dtype=np.int64)
    padded[:70, :90] = valid
    expected = padded.reshape(9, 8, 12, 8).sum(axis=(1, 3))
    np.testing.assert_array_equal(coarse, expected)


def test_scene_statistics_accepts_open_dataarray(tmp_path: Path) -> None:
    from geoglacier.io.scene import open_scene

    path, data = _nodata_scene(tmp_path)
    norm = scene_statistics(open_scene(path, chunks=20))  # chunks not a multiple of the map cell
    mean, _ = _numpy_stats([data], -9999.0)
    np.testing.assert_allclose(norm.mean, mean, rtol=1e-9)


def test_constant_band_std_is_floored_as_apply_uses_it() -> None:
    from geoglacier.training.normalization import STD_FLOOR, stats_from_arrays

    block = np.ones((2, 4, 4), dtype=np.float32)
    block[0] = np.arange(16, dtype=np.float32).reshape(4, 4)
    norm = stats_from_arrays([block])
    assert norm.std[1] == STD_FLOOR
    assert norm.std[0] == pytest.approx(np.arange(16).std())
