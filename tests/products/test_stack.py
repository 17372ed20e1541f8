"""Stacking as a whole: what an interrupted run leaves behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
