"""Tests for geoglacier.inference.windows: window geometry, padding, blend weights, blocks, tiles, blending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from geoglacier.errors import ConfigError
from geoglacier.inference.windows import (
    BLEND_MODES,
    DEFAULT_WEIGHT_FLOOR,
    accumulate,
    blend_weights,
    block_plan,
    check_overlap,
    check_window,
    finalize,
    pad_reflect,
    padded_size,
    stride_for,
    tile_bounds,
    tile_grid,
    tile_shape,
    tile_window_counts,
    window_starts,
    window_tile_pieces,
    window_tile_ranges,
    windows_per_block,
)

windows_st = st.integers(1, 16).map(lambda k: 32 * k)
overlaps_st = st.floats(0.0, 0.9, exclude_max=True, allow_nan=False)
modes_st = st.sampled_from(BLEND_MODES)


def assert_axis_ok(starts: np.ndarray, length: int, window: int, stride: int) -> None:
    """Every property an axis of window starts must have, checked independently."""
    padded = max(length, window)
    assert starts.dtype == np.int64 and starts.ndim == 1 and starts.size >= 1
    assert starts[0] == 0
    assert np.all(np.diff(starts) > 0), "starts must strictly increase"
    assert np.all(starts >= 0) and np.all(starts + window <= padded), "a window leaves the padded axis"
    assert starts[-1] + window == padded, "last window not flush with the edge"
    # all steps but the last are exactly the stride; the last one is shorter or equal
    diffs = np.diff(starts)
    assert np.all(diffs[:-1] == stride)
    if diffs.size:
        assert 1 <= diffs[-1] <= stride
    # every pixel covered, counted with a difference array
    cover = np.zeros(padded + 1, dtype=np.int64)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + window, -1)
    assert np.all(np.cumsum(cover)[:padded] >= 1), "an axis pixel is not covered"


def coverage_2d(offsets: np.ndarray, height: int, width: int, window: int) -> np.ndarray:
    """Number of windows covering each pixel of the padded scene (2-D difference array)."""
    ph, pw = max(height, window), max(width, window)
    diff = np.zeros((ph + 1, pw + 1), dtype=np.int64)
    r, c = offsets[:, 0], offsets[:, 1]
    np.add.at(diff, (r, c), 1)
    np.add.at(diff, (r + window, c), -1)
    np.add.at(diff, (r, c + window), -1)
    np.add.at(diff, (r + window, c + window), 1)
    return diff.cumsum(0).cumsum(1)[:ph, :pw]


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("window", [32, 64, 256, 512, 1024, np.int64(96)])
def test_check_window_accepts_multiples_of_32(window):
    assert check_window(window) == int(window)


@pytest.mark.parametrize(
    ("window", "suggestion"),
    [(0, "256"), (-32, "256"), (31, "32"), (33, "32"), (250, "256"), (300, "288"), (1, "32")],
)
def test_check_window_rejects_and_suggests(window, suggestion):
    with pytest.raises(ConfigError, match="--window") as info:
        check_window(window)
    assert f"use {suggestion}" in str(info.value)


@pytest.mark.parametrize("window", [256.0, True, "256", None])
def test_check_window_rejects_non_integers(window):
    with pytest.raises(ConfigError, match=r"--window.*use 256"):
        check_window(window)


@pytest.mark.parametrize("overlap", [0, 0.0, 0.25, 0.5, 0.999])
def test_check_overlap_accepts_unit_interval(overlap):
    assert check_overlap(overlap) == float(overlap)


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1, 1.5, math.nan, math.inf, "0.5", None, True])
def test_check_overlap_rejects(overlap):
    with pytest.raises(ConfigError, match="--overlap"):
        check_overlap(overlap)


@pytest.mark.parametrize(
    ("window", "overlap", "stride"),
    [(256, 0.0, 256), (256, 0.5, 128), (256, 0.25, 192), (32, 0.9, 3), (32, 0.99, 1), (96, 1 / 3, 64)],
)
def test_stride_for_hand_values(window, overlap, stride):
    assert stride_for(window, overlap) == stride


def test_tile_grid_and_block_plan_validate_options():
    with pytest.raises(ConfigError, match="--window"):
        tile_grid(100, 100, 100, 0.5)
    with pytest.raises(ConfigError, match="--overlap"):
        tile_grid(100, 100, 64, 1.0)
    with pytest.raises(ConfigError, match="--window"):
        block_plan(100, 100, 48, 0.5, 256)
    with pytest.raises(ConfigError, match="block"):
        block_plan(100, 100, 64, 0.5, 0)


# -------------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("length", "window", "stride", "expected"),
    [
        (100, 32, 16, [0, 16, 32, 48, 64, 68]),
        (64, 32, 32, [0, 32]),
        (65, 32, 32, [0, 32, 33]),
        (33, 32, 32, [0, 1]),
        (32, 32, 16, [0]),
        (10, 32, 8, [0]),
        (1, 32, 32, [0]),
        (40, 32, 1, list(range(9))),
    ],
)
def test_window_starts_hand_cases(length, window, stride, expected):
    assert window_starts(length, window, stride).tolist() == expected


def test_window_starts_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="stride"):
        window_starts(100, 32, 33)
    for bad in [(0, 32, 16), (100, 0, 16), (100, 32, 0)]:
        with pytest.raises(ConfigError):
            window_starts(*bad)


def test_window_starts_exhaustive_small():
    for window in (32, 64, 96):
        for stride in range(1, window + 1, 3):
            for length in range(1, 3 * window + 2):
                assert_axis_ok(window_starts(length, window, stride), length, window, stride)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 5000), window=windows_st, overlap=overlaps_st)
@example(length=1, window=32, overlap=0.0)
@example(length=5000, window=32, overlap=0.8999)
def test_window_starts_properties(length, window, overlap):
    stride = stride_for(window, overlap)
    assert stride == window - round(window * overlap) and 1 <= stride <= window
    assert_axis_ok(window_starts(length, window, stride), length, window, stride)


@pytest.mark.parametrize(
    ("length", "window", "expected"), [(1, 32, 32), (32, 32, 32), (33, 32, 33), (700, 512, 700)]
)
def test_padded_size(length, window, expected):
    assert padded_size(length, window) == expected


@settings(max_examples=100, deadline=None)
@given(height=st.integers(1, 700), width=st.integers(1, 700), window=windows_st, overlap=overlaps_st)
@example(height=700, width=700, window=32, overlap=0.89)
@example(height=1, width=1, window=512, overlap=0.0)
@example(height=700, width=1, window=512, overlap=0.5)
def test_tile_grid_covers_padded_scene(height, width, window, overlap):
    stride = stride_for(window, overlap)
    grid = tile_grid(height, width, window, overlap)
    rows = window_starts(height, window, stride)
    cols = window_starts(width, window, stride)
    assert grid.shape == (rows.size * cols.size, 2) and grid.dtype == np.int64
    # row-major: sorted lexicographically by (row, col), no duplicates
    keys = grid[:, 0] * (10 * max(width, window)) + grid[:, 1]
    assert np.all(np.diff(keys) > 0)
    assert set(grid[:, 0].tolist()) == set(rows.tolist())
    assert set(grid[:, 1].tolist()) == set(cols.tolist())
    ph, pw = padded_size(height, window), padded_size(width, window)
    assert grid.min() >= 0
    assert np.all(grid[:, 0] + window <= ph) and np.all(grid[:, 1] + window <= pw)
    assert (grid[:, 0] + window == ph).any() and (grid[:, 1] + window == pw).any()
    assert coverage_2d(grid, height, width, window).min() >= 1


# --------------------------------------------------------------------------------- padding


def reflect_index(i: np.ndarray, n: int) -> np.ndarray:
    """Source index of padded position ``i`` under mirror-without-edge-repeat (edge for n == 1)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    j = i % period
    return np.where(j < n, j, period - j)


def test_pad_reflect_1x1_repeats_the_pixel():
    block = np.array([[[7.0]], [[-2.0]]], dtype=np.float32)  # (C=2, 1, 1)
    out = pad_reflect(block, 32)
    assert out.shape == (2, 32, 32) and out.dtype == np.float32
    assert np.all(out[0] == 7.0) and np.all(out[1] == -2.0)


def test_pad_reflect_2x3_by_hand():
    block = np.arange(6, dtype=np.int16).reshape(1, 2, 3)
    out = pad_reflect(block, 6)
    expected = np.array(
        [
            [0, 1, 2, 1, 0, 1],
            [3, 4, 5, 4, 3, 4],
            [0, 1, 2, 1, 0, 1],
            [3, 4, 5, 4, 3, 4],
            [0, 1, 2, 1, 0, 1],
            [3, 4, 5, 4, 3, 4],
        ],
        dtype=np.int16,
    )
    assert out.shape == (1, 6, 6)
    np.testing.assert_array_equal(out[0], expected)


def test_pad_reflect_leaves_large_blocks_alone_and_accepts_2d():
    big = np.zeros((3, 40, 33))
    assert pad_reflect(big, 32) is big
    out = pad_reflect(np.ones((5, 40)), 32)
    assert out.shape == (32, 40)  # only the short axis grows
    with pytest.raises(ConfigError):
        pad_reflect(np.zeros((2, 0, 3)), 32)
    with pytest.raises(ConfigError):
        pad_reflect(np.zeros(5), 32)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), window=st.sampled_from([32, 64]), seed=st.integers(0, 2**16)
)
def test_pad_reflect_matches_index_reference(h, w, window, seed):
    block = np.random.default_rng(seed).random((2, h, w))
    out = pad_reflect(block, window)
    ph, pw = max(h, window), max(w, window)
    assert out.shape == (2, ph, pw)
    rows = reflect_index(np.arange(ph), h)
    cols = reflect_index(np.arange(pw), w)
    np.testing.assert_array_equal(out, block[:, rows][:, :, cols])


# --------------------------------------------------------------------------- blend weights


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("window", [32, 64, 96, 256, 512])
def test_blend_weights_basic_properties(mode, window):
    w = blend_weights(window, mode)
    assert w.shape == (window, window) and w.dtype == np.float32
    assert np.all(np.isfinite(w)) and np.all(w > 0) and w.min() >= np.float32(DEFAULT_WEIGHT_FLOOR)
    assert w.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(w, w.T, atol=1e-7)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-7)
    assert blend_weights(window, mode) is w  # cached
    assert not w.flags.writeable
    with pytest.raises(ValueError):
        w[0, 0] = 5.0
    if mode == "none":
        assert np.all(w == 1.0)
    else:
        # centre dominates, weights fall monotonically (non-strictly, because of the floor) to the edge
        half = w[window // 2, window // 2 :]
        assert np.all(np.diff(half) <= 0) and half[0] > 10 * half[-1]


@settings(max_examples=40, deadline=None)
@given(window=st.integers(1, 600), mode=modes_st, floor=st.floats(1e-6, 1.0))
def test_blend_weights_any_size_strictly_positive(window, mode, floor):
    w = blend_weights(window, mode, floor)
    assert w.shape == (window, window)
    assert np.all(np.isfinite(w)) and w.min() >= np.float32(floor) * (1 - 1e-6) and w.min() > 0
    assert w.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("window", [64, 256])
def test_gaussian_sigma_is_window_over_8(window):
    # log of a Gaussian profile is a parabola with leading coefficient -1 / (2 sigma^2)
    w = blend_weights(window, "gaussian").astype(np.float64)
    profile = w[window // 2]
    x = np.arange(window) + 0.5
    keep = profile > 10 * DEFAULT_WEIGHT_FLOOR
    a = np.polyfit(x[keep], np.log(profile[keep]), 2)[0]
    assert math.sqrt(-1 / (2 * a)) == pytest.approx(window / 8, rel=1e-3)


def test_cosine_profile_is_hann_at_pixel_centres():
    window = 64
    w = blend_weights(window, "cosine").astype(np.float64)
    x = (np.arange(window) + 0.5) / window
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * x)  # sin^2(pi x) written the other way
    expected = np.maximum(np.outer(hann, hann) / np.outer(hann, hann).max(), DEFAULT_WEIGHT_FLOOR)
    np.testing.assert_allclose(w, expected, atol=1e-6)


@pytest.mark.parametrize("window", [32, 128])
def test_gaussian_agrees_with_monai_importance_map(window):
    utils = pytest.importorskip("monai.data.utils")
    ref = utils.compute_importance_map((window, window), mode="gaussian", sigma_scale=0.125).numpy()
    ref = ref / ref.max()
    ours = blend_weights(window, "gaussian")
    assert ref.shape == ours.shape
    # same curve once both are scaled to a peak of 1 (MONAI also floors at 1e-3)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert np.argmax(ours) in np.flatnonzero(ref.ravel() == ref.max())


def test_blend_weights_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="--blend"):
        blend_weights(64, "linear")
    for floor in (0.0, -1.0, 1.5):
        with pytest.raises(ConfigError, match="floor"):
            blend_weights(64, "gaussian", floor)
    with pytest.raises(ConfigError):
        blend_weights(0, "none")


# ----------------------------------------------------------------------- blocks and tiles


@pytest.mark.parametrize(
    ("block", "window", "stride", "expected"),
    [
        (1024, 256, 192, 5),
        (1024, 1024, 1, 1),
        (100, 256, 192, 1),
        (64, 32, 24, 2),
        (56, 32, 24, 2),
        (55, 32, 24, 1),
    ],
)
def test_windows_per_block_hand_values(block, window, stride, expected):
    n = windows_per_block(block, window, stride)
    assert n == expected
    assert n == 1 or (n - 1) * stride + window <= block < n * stride + window


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(1, 1500),
    width=st.integers(1, 1500),
    window=st.sampled_from([32, 64, 96, 256]),
    overlap=overlaps_st,
    block=st.integers(1, 1200),
)
@example(height=1024, width=65536, window=256, overlap=0.25, block=1024)
@example(height=20, width=7, window=64, overlap=0.5, block=1)
def test_block_plan_holds_every_window_once_along_the_long_axis(height, width, window, overlap, block):
    blocks = block_plan(height, width, window, overlap, block)
    stride = stride_for(window, overlap)
    n = windows_per_block(block, window, stride)
    grid = tile_grid(height, width, window, overlap)
    got = np.concatenate([b.offsets for b in blocks])
    assert len(got) == len(grid)
    assert {tuple(o) for o in got.tolist()} == {tuple(o) for o in grid.tolist()}
    for b in blocks:
        assert 1 <= len(b.row_starts) <= n and 1 <= len(b.col_starts) <= n
        h, w = b.shape
        assert (h <= block or len(b.row_starts) == 1) and (w <= block or len(b.col_starts) == 1)
        assert b.origin == (b.offsets[:, 0].min(), b.offsets[:, 1].min())
        assert (h, w) == (
            b.offsets[:, 0].max() + window - b.origin[0],
            b.offsets[:, 1].max() + window - b.origin[1],
        )
    # Along the longer axis: the shorter axis's block index changes fastest.
    fast = 1 if height >= width else 0
    keys = [(b.origin[1 - fast], b.origin[fast]) for b in blocks]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("height", "width", "tile", "expected"),
    [(1024, 1024, 512, (2, 2)), (1, 1, 512, (1, 1)), (513, 100, 256, (3, 1))],
)
def test_tile_shape(height, width, tile, expected):
    assert tile_shape(height, width, tile) == expected


def test_window_tile_ranges_hand_case():
    # 100 x 70 scene, 64 px windows, 32 px tiles (4 x 3 tiles)
    offsets = np.array([[0, 0], [36, 6], [0, 6]])
    np.testing.assert_array_equal(
        window_tile_ranges(offsets, 64, 32, 100, 70), [[0, 2, 0, 2], [1, 4, 0, 3], [0, 2, 0, 3]]
    )
    # a padded scene: the window reaches past the edge, only the scene's tile counts
    np.testing.assert_array_equal(window_tile_ranges(np.array([[0, 0]]), 64, 32, 20, 30), [[0, 1, 0, 1]])
    with pytest.raises(ConfigError, match="inside"):
        window_tile_ranges(np.array([[100, 0]]), 64, 32, 100, 70)


@settings(max_examples=80, deadline=None)
@given(
    height=st.integers(1, 260),
    width=st.integers(1, 260),
    window=st.sampled_from([32, 64, 96]),
    overlap=overlaps_st,
    tile=st.integers(1, 300),
)
@example(height=260, width=260, window=32, overlap=0.0, tile=32)
@example(height=1, width=260, window=96, overlap=0.5, tile=1)
def test_tile_counts_and_pieces_match_a_pixel_reference(height, width, window, overlap, tile):
    offsets = tile_grid(height, width, window, overlap)
    ny, nx = tile_shape(height, width, tile)
    counts = tile_window_counts(offsets, window, tile, height, width)
    expected = np.zeros((ny, nx), dtype=np.int64)
    cover = np.zeros((height, width), dtype=np.int64)
    for r, c in offsets.tolist():
        touched = np.zeros((height, width), dtype=bool)
        touched[r : r + window, c : c + window] = True  # numpy clips at the scene edge
        cover += touched
        for ty in range(ny):
            for tx in range(nx):
                r0, r1, c0, c1 = tile_bounds(ty, tx, tile, height, width)
                expected[ty, tx] += touched[r0:r1, c0:c1].any()
        # The pieces cut exactly the window's part inside the scene, each pixel once,
        # and map tile and window coordinates onto the same scene pixels.
        hits = np.zeros((height, width), dtype=np.int64)
        for ty, tx, in_tile, in_window in window_tile_pieces(r, c, window, tile, height, width):
            r0, r1, c0, c1 = tile_bounds(ty, tx, tile, height, width)
            rows = np.arange(r0, r1)[in_tile[0]]
            cols = np.arange(c0, c1)[in_tile[1]]
            assert rows.size and cols.size
            np.testing.assert_array_equal(rows, r + np.arange(window)[in_window[0]])
            np.testing.assert_array_equal(cols, c + np.arange(window)[in_window[1]])
            hits[np.ix_(rows, cols)] += 1
        assert np.array_equal(hits, touched.astype(np.int64))
    np.testing.assert_array_equal(counts, expected)
    assert (counts > 0).all() and (cover > 0).all()


# ------------------------------------------------------------------------------ blending


def blend_full(probs, offsets, weights, height, width, window, dtype=np.float64):
    ph, pw = padded_size(height, window), padded_size(width, window)
    sums = np.zeros(probs.shape[1:-2] + (ph, pw), dtype=dtype)
    wsum = np.zeros((ph, pw), dtype=dtype)
    accumulate(sums, wsum, probs, offsets, weights)
    return finalize(sums, wsum)[..., :height, :width]


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    window=st.sampled_from([32, 64, 96, 128]),
    overlap=overlaps_st,
    mode=modes_st,
    c=st.floats(0.0, 1.0),
)
@example(height=300, width=300, window=32, overlap=0.89, mode="gaussian", c=0.3)
@example(height=1, width=1, window=128, overlap=0.5, mode="cosine", c=1.0)
@example(height=299, width=33, window=96, overlap=0.0, mode="none", c=0.123456)
def test_blending_a_constant_field_gives_it_back(height, width, window, overlap, mode, c):
    offsets = tile_grid(height, width, window, overlap)
    probs = np.full((len(offsets), window, window), c, dtype=np.float32)
    out = blend_full(probs, offsets, blend_weights(window, mode), height, width, window)
    assert out.shape == (height, width)
    np.testing.assert_allclose(out, np.float32(c), rtol=0, atol=1e-6)


def test_blending_a_constant_field_float32_buffers():
    offsets = tile_grid(300, 250, 32, 0.875)  # stride 4: up to 64 windows per pixel
    probs = np.full((len(offsets), 32, 32), 0.7, dtype=np.float32)
    out = blend_full(probs, offsets, blend_weights(32, "gaussian"), 300, 250, 32, dtype=np.float32)
    np.testing.assert_allclose(out, 0.7, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", BLEND_MODES)
@pytest.mark.parametrize("channels", [None, 2])
def test_accumulate_matches_naive_per_pixel_loop(mode, channels):
    height, width, window, overlap = 70, 45, 32, 0.5
    offsets = tile_grid(height, width, window, overlap)
    rng = np.random.default_rng(7)
    extra = () if channels is None else (channels,)
    probs = rng.random((len(offsets), *extra, window, window)).astype(np.float32)
    weights = blend_weights(window, mode)
    out = blend_full(probs, offsets, weights, height, width, window)

    expected = np.zeros((*extra, height, width))
    for y in range(height):
        for x in range(width):
            num = np.zeros(extra)
            den = 0.0
            for n, (r, c) in enumerate(offsets):
                if r <= y < r + window and c <= x < c + window:
                    wt = float(weights[y - r, x - c])
                    num = num + wt * probs[n, ..., y - r, x - c]
                    den += wt
            expected[..., y, x] = num / den
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_accumulate_rejects_mismatches():
    w = blend_weights(32, "none")
    sums, wsum = np.zeros((64, 64)), np.zeros((64, 64))
    probs = np.ones((1, 32, 32), dtype=np.float32)
    with pytest.raises(ConfigError, match="outside"):
        accumulate(sums, wsum, probs, np.array([[40, 0]]), w)
    with pytest.raises(ConfigError, match="outside"):
        accumulate(sums, wsum, probs, np.array([[0, 0]]), w, origin_row=10)
    with pytest.raises(ConfigError):
        accumulate(sums, wsum, np.ones((1, 16, 16)), np.array([[0, 0]]), w)
    with pytest.raises(ConfigError):
        accumulate(sums, wsum, probs, np.array([[0, 0], [0, 0]]), w)
    with pytest.raises(ConfigError):
        accumulate(np.zeros((2, 64, 64)), wsum, probs, np.array([[0, 0]]), w)
    assert not sums.any() and not wsum.any()  # nothing written on error
    accumulate(sums, wsum, probs[:0], np.zeros((0, 2), dtype=np.int64), w)  # empty batch is fine


def test_finalize_handles_zero_weight():
    sums = np.array([[2.0, 0.0], [3.0, 1.0]])
    wsum = np.array([[4.0, 0.0], [3.0, 2.0]])
    out = finalize(sums, wsum, fill=-1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0.5, -1.0], [1.0, 0.5]], dtype=np.float32))
