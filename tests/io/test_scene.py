"""Tests of geoglacier.io.scene: lazy opening, checks, nodata, the real Everest scene."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoglacier.errors import BandCountError, GeoglacierWarning, InvalidRasterError, SceneNotFoundError
from geoglacier.io.scene import inspect_scene, nodata_mask, open_scene, read_window, valid_pixels
from tests.data import UTM_TRANSFORM, scene_array, write_raster, write_scene


def _listing(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.iterdir()}


def test_open_scene_is_lazy_and_keeps_georeferencing(scene_path: Path) -> None:
    da = open_scene(scene_path, chunks=32)
    assert da.dims == ("band", "y", "x")
    assert da.shape == (5, 64, 80)
    assert da.chunks == ((5,), (32, 32), (32, 32, 16))
    assert type(da.data).__module__.startswith("dask")
    with rasterio.open(scene_path) as ds:
        assert da.rio.crs == ds.crs
        assert da.rio.transform() == ds.transform
        expected = ds.read()
    np.testing.assert_array_equal(da.values, expected)
    assert da.attrs["band_names"] == ("red", "green", "blue", "nir", "ndvi")


def test_window_read_gives_float32_from_integer_scene(tmp_path: Path) -> None:
    path = write_scene(tmp_path / "u8.tif", height=64, width=64, dtype="uint8", seed=3)
    da = open_scene(path, chunks=32)
    window = da[:, 10:20, 5:30].values
    assert window.dtype == np.float32
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(window, ds.read(window=Window(5, 10, 25, 10)).astype(np.float32))
    assert da.attrs["source_dtype"] == "uint8"


def test_window_read_touches_only_its_chunks(scene_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Window] = []
    original = rasterio.io.DatasetReader.read

    def counting_read(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counting_read)
    da = open_scene(scene_path, chunks=32)
    reads.clear()
    _ = da[:, 2:10, 40:50].values  # inside the chunk rows 0-31, cols 32-63
    assert len(reads) == 1
    win = reads[0]
    assert win is not None
    if not isinstance(win, Window):  # rioxarray passes ((row_start, row_stop), (col_start, col_stop))
        win = Window.from_slices(*win)
    # The read covers the request and stays inside its one chunk (rows 0-31, cols 32-63).
    assert win.row_off <= 2 and win.row_off + win.height >= 10
    assert win.col_off <= 40 and win.col_off + win.width >= 50
    assert win.row_off >= 0 and win.row_off + win.height <= 32
    assert win.col_off >= 32 and win.col_off + win.width <= 64
    reads.clear()
    _ = da.values
    assert len(reads) == 6  # 2 x 3 chunks, each read once


def test_descriptions_and_nodata_are_kept(tmp_path: Path) -> None:
    data = scene_array(40, 40)
    data[2, 5, 6] = -9999.0
    names = ("b1", "b2", "b3", "b4", "b5")
    path = write_raster(tmp_path / "s.tif", data, nodata=-9999.0, descriptions=names)
    da = open_scene(path)
    assert da.attrs["band_names"] == names
    assert da.attrs["nodata"] == -9999.0
    assert da.rio.nodata == -9999.0
    bad = nodata_mask(da).values
    assert bad.sum() == 1 and bad[5, 6]


def test_nodata_from_value_and_nan_in_any_band() -> None:
    block = np.ones((5, 4, 4), dtype=np.float32)
    block[4, 0, 0] = np.nan
    block[1, 2, 3] = -1.0
    block[0, 3, 3] = np.inf
    ok = valid_pixels(block, nodata=-1.0)
    expected = np.ones((4, 4), bool)
    expected[0, 0] = expected[2, 3] = expected[3, 3] = False
    np.testing.assert_array_equal(ok, expected)
    np.testing.assert_array_equal(valid_pixels(block, None)[2, 3], True)


def test_nan_nodata_mask_lazily(tmp_path: Path) -> None:
    data = scene_array(32, 32)
    data[3, 1:3, 4] = np.nan
    da = open_scene(write_raster(tmp_path / "n.tif", data))
    bad = nodata_mask(da)
    assert type(bad.data).__module__.startswith("dask")
    assert bad.values.sum() == 2 and bad.values[1, 4] and bad.values[2, 4]


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: d / "missing.tif", SceneNotFoundError, "not found"),
        (lambda d: d, InvalidRasterError, "is a directory"),
        (lambda d: _text_tif(d), InvalidRasterError, "not a readable GeoTIFF"),
        (lambda d: _truncated(d), InvalidRasterError, "corrupt"),
        (lambda d: write_scene(d / "three.tif", bands=3), BandCountError, "expected 5 bands"),
        (lambda d: _complex(d), InvalidRasterError, "not supported"),
    ],
)
def test_bad_scenes_fail_with_one_clear_line(tmp_path: Path, make, error, words) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "data"
    folder.mkdir()
    path = make(folder)
    before = _listing(folder)
    with pytest.raises(error) as info:
        open_scene(path)
    message = str(info.value)
    assert words in message
    assert str(path) in message
    assert "\n" not in message
    assert _listing(folder) == before


def _text_tif(folder: Path) -> Path:
    path = folder / "notes.tif"
    path.write_text("this is not a raster\n")
    return path


def _truncated(folder: Path) -> Path:
    path = write_scene(folder / "full.tif", height=128, width=128, seed=2)
    raw = path.read_bytes()
    cut = folder / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    path.unlink()
    return cut


def _complex(folder: Path) -> Path:
    data = scene_array(32, 32).astype(np.complex64)
    return write_raster(folder / "c.tif", data)


def test_band_count_is_configurable(tmp_path: Path) -> None:
    path = write_scene(tmp_path / "three.tif", bands=3)
    assert open_scene(path, expected_bands=3).shape[0] == 3
    assert open_scene(path, expected_bands=None).shape[0] == 3


def test_scene_without_crs_opens_with_a_warning(tmp_path: Path) -> None:
    path = write_scene(tmp_path / "nocrs.tif", crs=None)
    with pytest.warns(GeoglacierWarning, match="no CRS"):
        da = open_scene(path)
    assert da.rio.crs is None


def test_point_and_area_tags_keep_rasterio_transform(tmp_path: Path) -> None:
    for tag in ("Point", "Area"):
        path = write_scene(tmp_path / f"{tag}.tif")
        with rasterio.open(path, "r+") as ds:
            ds.update_tags(AREA_OR_POINT=tag)
        with rasterio.open(path) as ds:
            expected = ds.transform
        assert open_scene(path).rio.transform() == expected


def test_read_window_is_boundless(scene_path: Path) -> None:
    with rasterio.open(scene_path) as ds:
        full = ds.read().astype(np.float32)
        out = read_window(ds, -3, 70, 10, 20)
    assert out.shape == (5, 10, 20)
    assert np.isnan(out[:, :3]).all() and np.isnan(out[:, :, 10:]).all()
    np.testing.assert_array_equal(out[:, 3:, :10], full[:, 0:7, 70:80])
    np.testing.assert_array_equal(read_window(scene_path, 5, 6, 7, 8), full[:, 5:12, 6:14])


def test_inspect_scene_reports_header(scene_path: Path) -> None:
    info = inspect_scene(scene_path)
    assert (info.height, info.width, info.count, info.dtype) == (64, 80, 5, "float32")
    assert info.transform == UTM_TRANSFORM
    assert info.crs.to_epsg() == 32645


def test_real_everest_scene(everest: Path) -> None:
    path = everest / "west_scene.tif"
    da = open_scene(path)
    assert da.shape == (5, 655, 480)
    assert da.rio.crs.to_epsg() == 32645
    assert tuple(da.rio.transform())[:6] == (30.0, 0.0, 478000.0, 0.0, -30.0, 3108140.0)
    assert da.attrs["band_names"] == ("red", "green", "blue", "nir", "ndvi")
    with rasterio.open(path) as ds:
        window = ds.read(window=Window(100, 200, 64, 48))
    np.testing.assert_array_equal(da[:, 200:248, 100:164].values, window)
    red = da[0, :100, :100].values
    assert red.max() <= 255.0 and red.min() >= 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not nodata_mask(da[:, :64, :64]).values.any()
    assert os.access(path, os.R_OK)
