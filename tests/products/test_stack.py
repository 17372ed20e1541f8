"""Stacking as a whole: what an interrupted run leaves behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.products_data import write_landsat

# Stack in a child process that stops itself with SIGTERM (what a job scheduler sends) after
# the first output tile, as the stage file and the COG's temporary name exist.
_CHILD = """
import os, signal, sys
import geoglacier.products.stack as st

real, calls = st._stack_window, []

def stop_after_one_tile(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

st._stack_window = stop_after_one_tile
st.stack(sys.argv[1], sys.argv[2], bands="red")
"""


def test_sigterm_leaves_neither_output_nor_temporaries(tmp_path: Path) -> None:
    fx = write_landsat(tmp_path, mtl=("json",), height=300, width=300)  # 4 tiles of 256 px
    out = tmp_path / "scene.tif"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(fx.folder), str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert done.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [fx.folder.name], done.stderr[-2000:]


def test_a_cloud_in_any_part_of_a_coarser_output_pixel_masks_it(tmp_path: Path) -> None:
    """At 40 m from Sentinel-2's 20 m SCL each output pixel covers 2 x 2 SCL pixels; one
    nearest sample per output pixel would miss a cloud in the other three."""
    import numpy as np
    import rasterio

    from geoglacier.products.stack import stack
    from tests.products_data import SCL_VEGETATION, write_s2_cogs

    fx = write_s2_cogs(tmp_path, metadata=True)
    scl_path = fx.folder / "SCL.tif"
    with rasterio.open(scl_path, "r+") as ds:
        scl = np.full((ds.height, ds.width), SCL_VEGETATION, np.uint8)
        for r, c in ((4, 4), (4, 9), (9, 4), (9, 9)):  # one cloud in each corner of 2 x 2 blocks
            scl[r, c] = 9  # cloud, high probability
        ds.write(scl, 1)
    result = stack(fx.folder, tmp_path / "s40.tif", bands="red", resolution=40)
    with rasterio.open(result.path) as out:
        red = out.read(1)
        inv = ~out.transform
    masked = set()
    for r, c in ((4, 4), (4, 9), (9, 4), (9, 9)):
        x, y = fx.transform20 * (c + 0.5, r + 0.5)
        col, row = (int(v) for v in inv * (x, y))
        assert np.isnan(red[row, col]), (r, c)
        masked.add((row, col))
    stack(fx.folder, tmp_path / "all.tif", bands="red", resolution=40, cloud_mask=False)
    with rasterio.open(tmp_path / "all.tif") as out:
        no_data = np.isnan(out.read(1))  # the edge pixels the bands do not reach
    expected = no_data.copy()
    expected[tuple(np.array(sorted(masked)).T)] = True
    np.testing.assert_array_equal(np.isnan(red), expected)  # the cloudy pixels and no others
    assert result.cloud_fraction == len(masked) / red.size


# ----------------------------------------------------------------------------- a scene as the source


def _tagged_scene(path: Path, descriptions=("red", "green", "blue", "nir", "swir1"), nodata=None) -> Path:
    import numpy as np
    import rasterio

    from tests.data import scene_array, write_raster

    data = scene_array(48, 40, len(descriptions), seed=7) / 255.0
    if nodata is not None:
        data[:, 5, 7] = nodata
    write_raster(path, data.astype("float32"), nodata=nodata, descriptions=descriptions)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2023-10-15", SENSOR="Landsat 8 OLI", SOURCE_PRODUCT="LC08_X")
    assert np.isfinite(data).all()
    return path


def test_a_scene_is_copied_computed_and_keeps_its_tags_and_nodata(tmp_path: Path) -> None:
    import numpy as np
    import rasterio

    from geoglacier.products.stack import detect_kind, stack

    scene = _tagged_scene(tmp_path / "scene.tif", nodata=-9999.0)
    assert detect_kind(scene) == "scene"
    result = stack(scene, tmp_path / "out.tif", bands="nir,red,ndsi,ndvi")
    with rasterio.open(scene) as src, rasterio.open(result.path) as out:
        red, green, nir, swir1 = (src.read(i).astype(np.float64) for i in (1, 2, 4, 5))
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)  # its own grid
        assert out.descriptions == ("nir", "red", "ndsi", "ndvi")
        assert out.tags()["ACQUISITION_DATE"] == "2023-10-15" and out.tags()["SENSOR"] == "Landsat 8 OLI"
        assert out.tags()["SOURCE_PRODUCT"] == "LC08_X"
        got = out.read().astype(np.float64)
    valid = red != -9999
    np.testing.assert_array_equal(got[0][valid], nir[valid])
    np.testing.assert_allclose(got[2][valid], ((green - swir1) / (green + swir1))[valid], rtol=1e-5)
    np.testing.assert_allclose(got[3][valid], ((nir - red) / (nir + red))[valid], rtol=1e-5)
    assert np.isnan(got[:, 5, 7]).all() and np.isnan(got).sum() == 4  # the scene's nodata, nothing else
    assert result.kind == "scene" and result.masked_fraction == 1 / red.size


def test_a_scene_index_is_copied_not_recomputed_and_names_come_from_scene_bands(tmp_path: Path) -> None:
    import numpy as np
    import rasterio

    from geoglacier.errors import ConfigError, MissingBandError, ProductError
    from geoglacier.products.stack import stack
    from tests.data import write_scene

    scene = write_scene(tmp_path / "bare.tif", height=40, width=48, seed=2)  # no descriptions
    with pytest.raises(ProductError, match="--scene-bands"):
        stack(scene, tmp_path / "a.tif")
    with pytest.raises(ConfigError, match="names 4 bands .* has 5"):
        stack(scene, tmp_path / "a.tif", scene_bands="red,green,blue,nir")
    result = stack(scene, tmp_path / "a.tif", bands="ndvi,blue", scene_bands="red,green,blue,nir,ndvi")
    with rasterio.open(scene) as src, rasterio.open(result.path) as out:
        np.testing.assert_array_equal(out.read(1), src.read(5))  # the scene's own ndvi band
        np.testing.assert_array_equal(out.read(2), src.read(3))
    with pytest.raises(MissingBandError, match="holds red,green,blue,nir,ndvi, not ndsi .*green and swir1"):
        stack(scene, tmp_path / "b.tif", bands="red,ndsi", scene_bands="red,green,blue,nir,ndvi")
    assert not (tmp_path / "b.tif").exists()
