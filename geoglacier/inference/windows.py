"""Window arithmetic and blend weights for sliding-window inference.

Everything here is pure NumPy so it can be tested exhaustively without a model.

Geometry, per axis of ``length`` pixels, for a window of ``window`` pixels and an
overlap fraction ``overlap``::

    stride = max(1, window - round(window * overlap))
    starts = 0, stride, 2 * stride, ...  (all < length - window), then length - window
    starts = [0]                         if length <= window (the axis is padded to window)

The last window is made flush with the far edge instead of leaving the axis, so no
window ever reads outside the (padded) scene and every pixel is covered: consecutive
starts are at most ``stride <= window`` apart. ``round`` is Python's (half to even).

A scene smaller than one window on an axis is reflect-padded at its bottom/right end
up to ``window`` (:func:`padded_size`, :func:`pad_reflect`); the padded pixels are
predicted and then dropped, because the model needs a full window.

Overlapping predictions are blended by a weighted mean: each window's probabilities are
multiplied by a weight map that is highest in the centre (where the network sees the
most context) and small but positive at the edges, summed into a buffer together with
the weights, and divided at the end (:func:`accumulate`, :func:`finalize`).

For bounded memory, windows are read and run in blocks (:func:`block_plan`) and
blended into output tiles (the output file's tiles): a tile is divided out and written
as soon as every window that touches it is done (:func:`tile_window_counts`,
:func:`window_tile_pieces`), in whatever order the windows come, so only the tiles along
the front of processed blocks are held, never a whole row of the scene.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from geoglacier.errors import ConfigError

#: Windows must be a multiple of this, because U-Net++ / ResNet34 downsamples 5 times.
WINDOW_MULTIPLE: int = 32

#: Gaussian sigma as a fraction of the window (the value MONAI uses for sliding windows).
GAUSSIAN_SIGMA_SCALE: float = 0.125

#: Default smallest blend weight, so that every covered pixel has a positive total weight.
DEFAULT_WEIGHT_FLOOR: float = 1e-3

BlendMode = Literal["gaussian", "cosine", "none"]
BLEND_MODES: tuple[str, ...] = ("gaussian", "cosine", "none")


# --------------------------------------------------------------------------- validation


def check_window(window: int) -> int:
    """Return ``window`` if it is a positive multiple of 32, else raise :class:`ConfigError`.

    The encoder halves the resolution five times, so any other size would not map back
    onto whole pixels.
    """
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window <= 0:
        raise ConfigError(
            f"--window must be a positive integer multiple of {WINDOW_MULTIPLE} (got {window!r}); use 256"
        )
    window = int(window)
    if window % WINDOW_MULTIPLE:
        suggestion = max(WINDOW_MULTIPLE, round(window / WINDOW_MULTIPLE) * WINDOW_MULTIPLE)
        raise ConfigError(
            f"--window must be a multiple of {WINDOW_MULTIPLE} (got {window}); use {suggestion}"
        )
    return window


def check_overlap(overlap: float) -> float:
    """Return ``overlap`` as a float if it lies in [0, 1), else raise :class:`ConfigError`.

    An overlap of 1 would mean a stride of zero, i.e. the window never moves.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real):
        raise ConfigError(f"--overlap must be a number in [0, 1) (got {overlap!r}); use 0.5")
    overlap = float(overlap)
    if not (0.0 <= overlap < 1.0):  # also rejects NaN
        raise ConfigError(f"--overlap must be in [0, 1) (got {overlap}); use 0.5 (or 0 for no overlap)")
    return overlap


def stride_for(window: int, overlap: float) -> int:
    """Step between window starts: ``max(1, window - round(window * overlap))``.

    Validates both arguments first (see :func:`check_window`, :func:`check_overlap`).
    """
    window = check_window(window)
    overlap = check_overlap(overlap)
    return max(1, window - round(window * overlap))


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


# ----------------------------------------------------------------------------- geometry


def padded_size(length: int, window: int) -> int:
    """Size of an axis after padding: ``max(length, window)``.

    Only an axis shorter than one window is padded (by reflection, at its far end);
    longer axes are covered exactly by flush windows and need no padding.
    """
    return max(_check_positive_int(length, "length"), _check_positive_int(window, "window"))


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of the windows along one axis.

    ``0, stride, 2*stride, ...`` while the window stays inside the axis, then one last
    start at ``length - window`` so that the final window is flush with the edge. If
    ``length <= window`` there is a single start 0 (the axis is padded up to ``window``).

    Args:
        length: Axis length in pixels (>= 1).
        window: Window size in pixels (>= 1; any size, the multiple-of-32 rule is
            enforced by :func:`check_window`).
        stride: Step in pixels, ``1 <= stride <= window`` (a larger stride leaves gaps).

    Returns:
        Strictly increasing int64 array of starts; each satisfies
        ``0 <= start <= padded_size(length, window) - window``.
    """
    length = _check_positive_int(length, "length")
    window = _check_positive_int(window, "window")
    stride = _check_positive_int(stride, "stride")
    if stride > window:
        raise ConfigError(f"stride {stride} is larger than the window {window}: pixels would be skipped")
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    last = length - window
    starts = np.arange(0, last, stride, dtype=np.int64)  # all < last
    return np.append(starts, np.int64(last))


def tile_grid(height: int, width: int, window: int, overlap: float) -> np.ndarray:
    """All window offsets over a scene, row-major.

    Args:
        height: Scene height in pixels.
        width: Scene width in pixels.
        window: Window size (positive multiple of 32).
        overlap: Overlap fraction in [0, 1).

    Returns:
        int64 array of shape ``(N, 2)`` with ``(row_off, col_off)`` of each window in the
        padded scene (``padded_size(height, window)`` by ``padded_size(width, window)``),
        ordered by row offset, then column offset.
    """
    stride = stride_for(window, overlap)
    rows = window_starts(height, window, stride)
    cols = window_starts(width, window, stride)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def pad_reflect(array: np.ndarray, window: int) -> np.ndarray:
    """Pad the last two axes of ``array`` (``(C, H, W)`` or ``(H, W)``) up to ``window``.

    Padding goes at the bottom and right so window offsets computed on the original
    scene stay valid. Reflection (mirror without repeating the edge pixel) keeps image
    statistics plausible for the network; an axis of length 1 has nothing to reflect,
    so it is repeated instead ("edge"). Axes already ``>= window`` are left alone and
    the input is returned unchanged (not copied) when no padding is needed.
    """
    window = _check_positive_int(window, "window")
    if array.ndim < 2:
        raise ConfigError(f"pad_reflect needs an array of at least 2 dimensions, got shape {array.shape}")
    if 0 in array.shape[-2:]:
        raise ConfigError(f"pad_reflect cannot pad an empty block of shape {array.shape}")
    height, width = array.shape[-2:]
    pad_h, pad_w = max(0, window - height), max(0, window - width)
    if pad_h == 0 and pad_w == 0:
        return array
    lead = [(0, 0)] * (array.ndim - 2)
    out = array
    # Pad one axis at a time so each can pick its own mode.
    for axis, size, pad in ((-2, height, pad_h), (-1, width, pad_w)):
        if pad == 0:
            continue
        widths = lead + [(0, 0), (0, 0)]
        widths[axis] = (0, pad)
        out = np.pad(out, widths, mode="reflect" if size > 1 else "edge")
    return out


# -------------------------------------------------------------------------- blend weights


def _profile(window: int, mode: str) -> np.ndarray:
    """1-D weight profile over pixel centres, peak near 1, float64."""
    x = np.arange(window, dtype=np.float64) + 0.5  # pixel centres in (0, window)
    if mode == "gaussian":
        sigma = GAUSSIAN_SIGMA_SCALE * window
        return np.exp(-0.5 * ((x - window / 2.0) / sigma) ** 2)
    if mode == "cosine":
        # Hann window sampled at pixel centres: sin^2 is > 0 for every centre.
        return np.sin(np.pi * x / window) ** 2
    return np.ones(window, dtype=np.float64)


@functools.lru_cache(maxsize=32)
def _blend_weights_cached(window: int, mode: str, floor: float) -> np.ndarray:
    prof = _profile(window, mode)
    weights = np.outer(prof, prof)
    weights /= weights.max()
    np.maximum(weights, floor, out=weights)
    out = weights.astype(np.float32)
    out.flags.writeable = False  # shared by every caller through the cache
    return out


def blend_weights(
    window: int, mode: BlendMode = "gaussian", floor: float = DEFAULT_WEIGHT_FLOOR
) -> np.ndarray:
    """Per-pixel weights of one window's prediction when blending overlapping windows.

    Modes:
        ``"gaussian"``: separable Gaussian centred on the window with
        ``sigma = window / 8`` (MONAI's default ``sigma_scale`` of 0.125), so edge pixels,
        which see less context, count less.
        ``"cosine"``: separable Hann window ``sin^2(pi * (x + 0.5) / window)`` sampled at
        pixel centres, smoother than a Gaussian near the edges.
        ``"none"``: all ones (plain mean of overlapping windows).

    Weights are normalised to a maximum of 1 and raised to at least ``floor`` so that
    every pixel a window covers gets a strictly positive weight (a zero total weight
    would make the blended value undefined).

    Args:
        window: Window size in pixels (>= 1).
        mode: One of ``"gaussian"``, ``"cosine"``, ``"none"``.
        floor: Smallest weight, in ``(0, 1]``.

    Returns:
        Read-only float32 array ``(window, window)``, cached per argument set; copy it
        before modifying.
    """
    window = _check_positive_int(window, "window")
    if mode not in BLEND_MODES:
        raise ConfigError(f"--blend must be one of {', '.join(BLEND_MODES)} (got {mode!r}); use gaussian")
    floor = float(floor)
    if not (0.0 < floor <= 1.0):
        raise ConfigError(f"blend weight floor must be in (0, 1] (got {floor}); use {DEFAULT_WEIGHT_FLOOR}")
    return _blend_weights_cached(window, mode, floor)


# ---------------------------------------------------------------------- block planning


def windows_per_block(block: int, window: int, stride: int) -> int:
    """Windows along one side of a block of at most ``block`` pixels (at least one).

    The largest ``n`` with ``(n - 1) * stride + window <= block``, or 1 when even one
    window is larger than ``block``.
    """
    block = _check_positive_int(block, "block")
    window = _check_positive_int(window, "window")
    stride = _check_positive_int(stride, "stride")
    return max(1, 1 + (block - window) // stride) if block >= window else 1


@dataclass(frozen=True)
class WindowBlock:
    """A rectangle of windows that is read from the scene and sent to the model together.

    Attributes:
        row_starts: Window row starts of the block (scene coordinates, increasing).
        col_starts: Window column starts of the block.
        window: Window edge in pixels.
    """

    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]
    window: int

    @property
    def origin(self) -> tuple[int, int]:
        """Scene ``(row, col)`` of the block's top-left pixel."""
        return self.row_starts[0], self.col_starts[0]

    @property
    def shape(self) -> tuple[int, int]:
        """Pixels the block's windows cover, in the padded scene: ``last start + window - first start``."""
        return (
            self.row_starts[-1] + self.window - self.row_starts[0],
            self.col_starts[-1] + self.window - self.col_starts[0],
        )

    @property
    def offsets(self) -> np.ndarray:
        """``(N, 2)`` int64 ``(row_off, col_off)`` of the block's windows, row-major."""
        rr, cc = np.meshgrid(
            np.asarray(self.row_starts, dtype=np.int64),
            np.asarray(self.col_starts, dtype=np.int64),
            indexing="ij",
        )
        return np.stack([rr.ravel(), cc.ravel()], axis=1)


def block_plan(height: int, width: int, window: int, overlap: float, block: int) -> list[WindowBlock]:
    """Group the windows of a scene into blocks of at most ``block`` x ``block`` pixels.

    Each block holds ``n x n`` consecutive windows of :func:`tile_grid`, with ``n =``
    :func:`windows_per_block` (fewer at the scene's far edges); together the blocks hold
    every window exactly once. Blocks are ordered along the scene's longer axis: row by
    row of blocks when ``height >= width``, column by column otherwise. Blended
    inference can finish an output tile only once every window touching it is done
    (:func:`tile_window_counts`), so the tiles held open at any time are those along
    the front between processed and pending blocks; walking along the longer axis keeps
    that front across the shorter one, so a very wide (or very tall) scene needs no more
    memory than a square one whose side is its short side.

    Args:
        height: Scene height in pixels.
        width: Scene width in pixels.
        window: Window size (positive multiple of 32).
        overlap: Overlap fraction in [0, 1).
        block: Largest block edge in pixels (a block holds at least one window).

    Returns:
        Blocks in processing order.
    """
    stride = stride_for(window, overlap)
    n = windows_per_block(block, window, stride)
    rows = [int(r) for r in window_starts(height, window, stride)]
    cols = [int(c) for c in window_starts(width, window, stride)]
    row_groups = [tuple(rows[i : i + n]) for i in range(0, len(rows), n)]
    col_groups = [tuple(cols[i : i + n]) for i in range(0, len(cols), n)]
    if height >= width:
        return [WindowBlock(r, c, window) for r in row_groups for c in col_groups]
    return [WindowBlock(r, c, window) for c in col_groups for r in row_groups]


# ------------------------------------------------------------------------- output tiles


def tile_shape(height: int, width: int, tile: int) -> tuple[int, int]:
    """Number of ``tile`` x ``tile`` output tiles along each axis (the last ones clipped)."""
    height = _check_positive_int(height, "height")
    width = _check_positive_int(width, "width")
    tile = _check_positive_int(tile, "tile")
    return -(-height // tile), -(-width // tile)


def tile_bounds(ty: int, tx: int, tile: int, height: int, width: int) -> tuple[int, int, int, int]:
    """Scene pixels ``(r0, r1, c0, c1)`` (half-open) of output tile ``(ty, tx)``, clipped to the scene."""
    r0, c0 = ty * tile, tx * tile
    return r0, min(r0 + tile, height), c0, min(c0 + tile, width)


def window_tile_ranges(offsets: np.ndarray, window: int, tile: int, height: int, width: int) -> np.ndarray:
    """Output tiles each window touches, as half-open index ranges.

    A window at ``(r, c)`` covers scene pixels ``[r, min(r + window, height))`` x
    ``[c, min(c + window, width))`` (pixels of a padded scene beyond its edge are not
    output), so it touches tile rows ``r // tile`` to ``(min(r + window, height) - 1) // tile``
    and the same for columns.

    Args:
        offsets: ``(N, 2)`` window ``(row_off, col_off)`` as from :func:`tile_grid`.
        window: Window size in pixels.
        tile: Output tile edge in pixels.
        height, width: Scene size in pixels.

    Returns:
        ``(N, 4)`` int64 ``(ty0, ty1, tx0, tx1)`` per window.
    """
    window = _check_positive_int(window, "window")
    tile = _check_positive_int(tile, "tile")
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if off.size and (off.min() < 0 or off[:, 0].max() >= height or off[:, 1].max() >= width):
        raise ConfigError(f"window offsets must lie inside the {height}x{width} scene")
    r_end = np.minimum(off[:, 0] + window, height)
    c_end = np.minimum(off[:, 1] + window, width)
    return np.stack(
        [off[:, 0] // tile, (r_end - 1) // tile + 1, off[:, 1] // tile, (c_end - 1) // tile + 1], axis=1
    )


def tile_window_counts(offsets: np.ndarray, window: int, tile: int, height: int, width: int) -> np.ndarray:
    """How many windows touch each output tile: ``(tiles_y, tiles_x)`` int64.

    A tile's blended values are final once that many of its windows are accumulated
    (or skipped), whatever the order the windows come in.
    """
    ranges = window_tile_ranges(offsets, window, tile, height, width)
    ny, nx = tile_shape(height, width, tile)
    diff = np.zeros((ny + 1, nx + 1), dtype=np.int64)
    # 2-D difference array: +1 at each range's corner, cumulative sums fill the rectangle.
    np.add.at(diff, (ranges[:, 0], ranges[:, 2]), 1)
    np.add.at(diff, (ranges[:, 0], ranges[:, 3]), -1)
    np.add.at(diff, (ranges[:, 1], ranges[:, 2]), -1)
    np.add.at(diff, (ranges[:, 1], ranges[:, 3]), 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:ny, :nx]


def windows_needed(
    offsets: np.ndarray, window: int, tile: int, height: int, width: int, done: np.ndarray
) -> np.ndarray:
    """Which windows touch at least one output tile not yet ``done``: ``(N,)`` bool.

    A resumed run runs only these; a window whose tiles are all written already would
    change nothing.

    Args:
        offsets: ``(N, 2)`` window offsets.
        window, tile, height, width: as for :func:`window_tile_ranges`.
        done: ``(tiles_y, tiles_x)`` bool, True for tiles already written.
    """
    ranges = window_tile_ranges(offsets, window, tile, height, width)
    todo = np.zeros((done.shape[0] + 1, done.shape[1] + 1), dtype=np.int64)
    todo[1:, 1:] = (~done).astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    y0, y1, x0, x1 = ranges.T
    return (todo[y1, x1] - todo[y0, x1] - todo[y1, x0] + todo[y0, x0]) > 0


def window_tile_pieces(
    row_off: int, col_off: int, window: int, tile: int, height: int, width: int
) -> list[tuple[int, int, tuple[slice, slice], tuple[slice, slice]]]:
    """Cut one window along the output tile grid.

    Returns:
        One ``(ty, tx, in_tile, in_window)`` per tile the window touches: ``in_tile``
        indexes the tile's ``(h, w)`` array and ``in_window`` the window's, over the
        same scene pixels. Together the pieces cover the window's part inside the scene
        once.
    """
    (ty0, ty1, tx0, tx1) = window_tile_ranges(np.array([[row_off, col_off]]), window, tile, height, width)[0]
    r_end, c_end = min(row_off + window, height), min(col_off + window, width)
    pieces = []
    for ty in range(int(ty0), int(ty1)):
        a, b = max(row_off, ty * tile), min(r_end, (ty + 1) * tile)
        for tx in range(int(tx0), int(tx1)):
            c, d = max(col_off, tx * tile), min(c_end, (tx + 1) * tile)
            in_tile = (slice(a - ty * tile, b - ty * tile), slice(c - tx * tile, d - tx * tile))
            in_window = (slice(a - row_off, b - row_off), slice(c - col_off, d - col_off))
            pieces.append((ty, tx, in_tile, in_window))
    return pieces


# ----------------------------------------------------------------------------- blending


def accumulate(
    sum_buf: np.ndarray,
    weight_buf: np.ndarray,
    probs: np.ndarray,
    offsets: np.ndarray,
    weights: np.ndarray,
    origin_row: int = 0,
) -> None:
    """Add weighted window predictions into running buffers, in place.

    For window ``n`` at ``(r, c) = offsets[n]``, adds ``probs[n] * weights`` to
    ``sum_buf[..., r - origin_row : r - origin_row + h, c : c + w]`` and ``weights`` to the
    same rows and columns of ``weight_buf``.

    Args:
        sum_buf: ``(H, W)`` or ``(C, H, W)`` float buffer of weighted sums.
        weight_buf: ``(H, W)`` float buffer of summed weights.
        probs: ``(N, h, w)`` or ``(N, C, h, w)`` window predictions, matching ``sum_buf``.
        offsets: ``(N, 2)`` scene ``(row_off, col_off)`` of each window.
        weights: ``(h, w)`` blend weights (see :func:`blend_weights`).
        origin_row: Scene row of the buffers' first row.

    Raises:
        ConfigError: If shapes disagree or a window falls outside the buffers.
    """
    offsets = np.asarray(offsets)
    h, w = weights.shape
    buf_h, buf_w = weight_buf.shape
    if sum_buf.shape[-2:] != weight_buf.shape or probs.ndim != sum_buf.ndim + 1:
        raise ConfigError(
            f"accumulate: buffers {sum_buf.shape} / {weight_buf.shape} do not fit predictions {probs.shape}"
        )
    if probs.shape[-2:] != (h, w) or probs.shape[1:-2] != sum_buf.shape[:-2]:
        raise ConfigError(f"accumulate: predictions {probs.shape} do not match weights {weights.shape}")
    if offsets.shape != (probs.shape[0], 2):
        raise ConfigError(f"accumulate: offsets {offsets.shape} must be ({probs.shape[0]}, 2)")
    if offsets.size:
        rows = offsets[:, 0] - origin_row
        cols = offsets[:, 1]
        if rows.min() < 0 or cols.min() < 0 or rows.max() + h > buf_h or cols.max() + w > buf_w:
            raise ConfigError(
                f"accumulate: a window falls outside the {buf_h}x{buf_w} buffer at origin row {origin_row}"
            )
    for pred, (r, c) in zip(probs, offsets, strict=True):
        r = int(r) - origin_row
        c = int(c)
        sum_buf[..., r : r + h, c : c + w] += pred * weights
        weight_buf[r : r + h, c : c + w] += weights


def finalize(sum_buf: np.ndarray, weight_buf: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Blended probabilities ``sum_buf / weight_buf`` as float32.

    Pixels with zero total weight (never covered by a window, which the planning above
    rules out) get ``fill`` instead of a division by zero.
    """
    if sum_buf.shape[-2:] != weight_buf.shape:
        raise ConfigError(f"finalize: sum buffer {sum_buf.shape} does not match weights {weight_buf.shape}")
    covered = weight_buf > 0
    safe = np.where(covered, weight_buf, 1.0)
    out = np.where(covered, sum_buf / safe, fill)
    return out.astype(np.float32, copy=False)


__all__ = [
    "BLEND_MODES",
    "DEFAULT_WEIGHT_FLOOR",
    "GAUSSIAN_SIGMA_SCALE",
    "WINDOW_MULTIPLE",
    "BlendMode",
    "WindowBlock",
    "accumulate",
    "blend_weights",
    "check_overlap",
    "check_window",
    "finalize",
    "padded_size",
    "pad_reflect",
    "stride_for",
    "tile_bounds",
    "tile_shape",
    "tile_window_counts",
    "window_tile_pieces",
    "window_tile_ranges",
    "windows_per_block",
    "block_plan",
    "tile_grid",
    "window_starts",
]
