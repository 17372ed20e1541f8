"""Zone rasters: each pixel in at most one glacier, windows stitch, rings stay outside outlines."""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from geoglacier.glaciers.zones import ZoneRasterizer, grid_windows, rasterize_zones
from tests.glacier_data import EQ_TRANSFORM, SIZE, px_box


def test_touching_squares_share_no_pixel() -> None:
    zones, _ = rasterize_zones([px_box(10, 10, 20, 20), px_box(10, 20, 20, 30)], EQ_TRANSFORM, SIZE, SIZE)
    assert np.count_nonzero(zones == 1) == 100
    assert np.count_nonzero(zones == 2) == 100
    assert (zones[10:20, 10:20] == 1).all() and (zones[10:20, 20:30] == 2).all()


def test_overlap_goes_to_the_first_glacier() -> None:
    # the second square overlaps the first by 4 columns: those 40 pixels are the first's
    zones, _ = rasterize_zones([px_box(10, 10, 20, 20), px_box(10, 16, 20, 26)], EQ_TRANSFORM, SIZE, SIZE)
    assert np.count_nonzero(zones == 1) == 100
    assert np.count_nonzero(zones == 2) == 60
    zones_rev, _ = rasterize_zones([px_box(10, 16, 20, 26), px_box(10, 10, 20, 20)], EQ_TRANSFORM, SIZE, SIZE)
    assert np.count_nonzero(zones_rev == 1) == 100


def test_pixel_centre_rule_for_an_outline_off_the_pixel_edges() -> None:
    # cols 10.4..20.4 hold the centres of cols 10..19; rows 10.6..20.6 those of rows 11..20
    x0, y0 = EQ_TRANSFORM * (10.4, 10.6)
    x1, y1 = EQ_TRANSFORM * (20.4, 20.6)
    from shapely.geometry import box

    zones, _ = rasterize_zones([box(x0, y1, x1, y0)], EQ_TRANSFORM, SIZE, SIZE)
    rows, cols = np.nonzero(zones)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (11, 20, 10, 19)


def test_windows_stitch_to_the_whole_grid() -> None:
    rng = np.random.default_rng(0)
    geoms = []
    for _ in range(12):
        r, c = rng.integers(0, SIZE - 12, 2)
        h, w = rng.integers(3, 12, 2)
        geoms.append(px_box(r, c, r + h, c + w).buffer(17.0))  # off-grid, overlapping
    zr = ZoneRasterizer(geoms, EQ_TRANSFORM, SIZE, SIZE, ring_pixels=2)
    whole_z, whole_r = zr.zones_and_rings()
    stitched_z = np.full((SIZE, SIZE), -1)
    stitched_r = np.full((SIZE, SIZE), -1)
    windows = list(grid_windows(SIZE, SIZE, (1, 1), size=17))
    for w in windows:
        z, r = zr.zones_and_rings(w)
        sl = w.toslices()
        assert (stitched_z[sl] == -1).all()  # every pixel once
        stitched_z[sl], stitched_r[sl] = z, r
    assert (stitched_z == whole_z).all() and (stitched_r == whole_r).all()


def test_ring_is_outside_every_outline_and_the_right_width() -> None:
    n = 10
    a, b = px_box(20, 20, 20 + n, 20 + n), px_box(20, 20 + n, 20 + n, 20 + 2 * n)
    zr = ZoneRasterizer([a], EQ_TRANSFORM, SIZE, SIZE, ring_pixels=2)
    _, ring = zr.zones_and_rings()
    # 2-pixel band on four sides, plus the 3 corner pixels per corner whose centres lie
    # within 2 pixels of the corner (offsets (0.5, 0.5), (0.5, 1.5), (1.5, 0.5))
    assert np.count_nonzero(ring == 1) == 4 * n * 2 + 4 * 3
    zr2 = ZoneRasterizer([a, b], EQ_TRANSFORM, SIZE, SIZE, ring_pixels=2)
    zones, ring2 = zr2.zones_and_rings(Window(0, 0, SIZE, SIZE))
    assert not np.any((ring2 > 0) & (zones > 0))
    # b's side is glacier now; a keeps its 4 corners (where rings overlap the first glacier wins)
    assert np.count_nonzero(ring2 == 1) == 3 * n * 2 + 4 * 3
    # b: three bands and its two free corners, less the 2 x 3 pixels a's corners took
    assert np.count_nonzero(ring2 == 2) == 3 * n * 2 + 2 * 3 - 2 * 3


def test_grid_windows_cover_once_and_follow_blocks() -> None:
    seen = np.zeros((100, 70), dtype=int)
    for w in grid_windows(100, 70, (16, 16), size=40):
        seen[w.toslices()] += 1
        assert w.row_off % 16 == 0 and w.col_off % 16 == 0
    assert (seen == 1).all()
