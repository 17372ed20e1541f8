"""Tests for geoglacier.inference.blend: tile-wise blending equals blending the whole scene at once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from geoglacier.errors import ConfigError
from geoglacier.inference.blend import TileBlender
from geoglacier.inference.windows import (
    accumulate,
    blend_weights,
    block_plan,
    finalize,
    padded_size,
    tile_grid,
    tile_shape,
    window_tile_ranges,
)


def blend_whole(probs, offsets, weights, height, width, window):
    """The reference: one scene-sized float64 buffer, windows in grid order."""
    ph, pw = padded_size(height, window), padded_size(width, window)
    sums, wsum = np.zeros((ph, pw)), np.zeros((ph, pw))
    accumulate(sums, wsum, probs, offsets, weights)
    return finalize(sums, wsum, fill=np.nan)[:height, :width]


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 200),
    width=st.integers(1, 200),
    window=st.sampled_from([32, 64]),
    overlap=st.floats(0.0, 0.9, exclude_max=True),
    tile=st.integers(8, 150),
    batch=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
@example(height=200, width=200, window=32, overlap=0.85, tile=8, batch=5, seed=1)
@example(height=20, width=7, window=64, overlap=0.5, tile=150, batch=1, seed=2)
def test_any_window_order_gives_the_whole_scene_blend(height, width, window, overlap, tile, batch, seed):
    rng = np.random.default_rng(seed)
    offsets = tile_grid(height, width, window, overlap)
    weights = blend_weights(window, "gaussian")
    probs = rng.random((len(offsets), window, window)).astype(np.float32)
    # Some windows have no data at all: they are skipped and their pixels are nodata,
    # unless another window with data covers them.
    skipped = rng.random(len(offsets)) < 0.2
    valid = np.ones((height, width), dtype=bool)
    ph, pw = padded_size(height, window), padded_size(width, window)
    valid_padded = np.zeros((ph, pw), dtype=bool)
    valid_padded[:height, :width] = valid
    for n in np.flatnonzero(skipped):
        r, c = offsets[n]
        valid_padded[r : r + window, c : c + window] = False
    for n in np.flatnonzero(~skipped):  # a window with data keeps its pixels valid
        r, c = offsets[n]
        valid_padded[r : r + window, c : c + window] = True
    valid_padded[height:, :] = valid_padded[:, width:] = False
    run = ~skipped
    expected = blend_whole(probs[run], offsets[run], weights, height, width, window)
    expected[~valid_padded[:height, :width]] = np.nan

    blender = TileBlender(height, width, offsets, weights, tile)
    ranges = window_tile_ranges(offsets, window, tile, height, width)
    left = np.zeros(tile_shape(height, width, tile), dtype=np.int64)
    for ty0, ty1, tx0, tx1 in ranges:
        left[ty0:ty1, tx0:tx1] += 1
    out = np.full((height, width), -1.0, dtype=np.float32)
    order = rng.permutation(len(offsets))
    for k in range(0, len(order), batch):
        chunk = order[k : k + batch]
        for n in chunk:
            ty0, ty1, tx0, tx1 = ranges[n]
            left[ty0:ty1, tx0:tx1] -= 1
        run_here = chunk[~skipped[chunk]]
        finished = blender.skip(offsets[chunk[skipped[chunk]]])
        if len(run_here):
            ok = np.stack([valid_padded[r : r + window, c : c + window] for r, c in offsets[run_here]])
            finished += blender.add(probs[run_here], offsets[run_here], ok)
        for t in finished:
            h, w = t.probabilities.shape
            ty, tx = t.row_off // tile, t.col_off // tile
            assert left[ty, tx] == 0  # only once every window touching it has come
            assert (out[t.row_off : t.row_off + h, t.col_off : t.col_off + w] == -1).all()  # once
            out[t.row_off : t.row_off + h, t.col_off : t.col_off + w] = t.probabilities
    assert blender.done and blender.open_pixels == 0
    assert (out != -1).all()
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)
    assert np.array_equal(np.isnan(out), np.isnan(expected))


@pytest.mark.parametrize(("height", "width"), [(256, 16384), (16384, 256)])
def test_block_order_keeps_few_tiles_open(height, width):
    """Along the long axis, open tiles stay a band across the short side, whatever the length."""
    window, overlap, block, tile = 64, 0.25, 256, 64
    offsets = tile_grid(height, width, window, overlap)
    blender = TileBlender(height, width, offsets, blend_weights(window, "none"), tile)
    for b in block_plan(height, width, window, overlap, block):
        n = len(b.offsets)
        blender.add(np.zeros((n, window, window), np.float32), b.offsets, np.ones((n, window, window), bool))
    assert blender.done
    short = min(height, width)
    assert blender.max_open_pixels <= (block + window + tile) * short
    assert blender.max_open_pixels < height * width / 20


def test_blender_rejects_misuse():
    offsets = tile_grid(64, 64, 32, 0.0)
    weights = blend_weights(32, "none")
    with pytest.raises(ConfigError, match="uncovered"):
        TileBlender(64, 64, offsets[:1], weights, 32)
    blender = TileBlender(64, 64, offsets, weights, 32)
    ones = np.ones((1, 32, 32), np.float32)
    with pytest.raises(ConfigError, match="do not match"):
        blender.add(ones, offsets[:2], ones.astype(bool))
    blender.add(ones, offsets[:1], ones.astype(bool))
    with pytest.raises(ConfigError, match="more windows"):
        blender.add(ones, offsets[:1], ones.astype(bool))
