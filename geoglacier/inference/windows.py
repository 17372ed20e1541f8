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

For bounded memory, windows are processed one band of window rows ("strip") at a time
(:func:`strip_plan`, :func:`finalized_rows`): once a strip is done, the output rows
above the next strip's first window row can never be touched again and are written out.
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


# ----------------------------------------------------------------------- strip planning


def finalized_rows(starts: np.ndarray | list[int], window: int, height: int) -> list[tuple[int, int]]:
    """Output rows that become final after each window row is processed.

    Windows are processed in order of their row start. After window row ``i`` no later
    window touches a row above ``starts[i + 1]`` (starts increase), so rows
    ``[starts[i], starts[i + 1])`` can be flushed; after the last window row, all rows
    up to ``height`` can. Ranges are clipped to ``height`` (rows of a padded scene
    beyond it are dropped).

    Args:
        starts: Strictly increasing window row starts beginning at 0, as from
            :func:`window_starts`; the last window must reach ``height``.
        window: Window height in pixels.
        height: Scene height in pixels (unpadded).

    Returns:
        One half-open range ``(a, b)`` per window row; together they partition
        ``[0, height)`` in order (each row exactly once). Ranges are non-empty for
        starts from :func:`window_starts`; a start at or beyond ``height`` gives an empty one.
    """
    window = _check_positive_int(window, "window")
    height = _check_positive_int(height, "height")
    s = np.asarray(starts, dtype=np.int64)
    if s.ndim != 1 or s.size == 0 or s[0] != 0 or np.any(np.diff(s) <= 0):
        raise ConfigError(f"window row starts must be strictly increasing and begin at 0 (got {s.tolist()})")
    if np.any(np.diff(s) > window):
        raise ConfigError(f"window row starts {s.tolist()} leave gaps larger than the window {window}")
    if s[-1] + window < height:
        raise ConfigError(f"the last window row (start {int(s[-1])}) does not reach height {height}")
    ends = np.minimum(np.append(s[1:], height), height)
    begins = np.minimum(s, height)
    return [(int(a), int(b)) for a, b in zip(begins, ends, strict=True)]


@dataclass(frozen=True)
class Strip:
    """One band of window rows processed together with a bounded buffer.

    Attributes:
        row_starts: Window row starts in this strip (scene coordinates).
        col_starts: Window column starts, the same for every strip.
        origin: Scene row of the buffer's first row (``row_starts[0]``).
        buffer_height: Rows the buffer needs: ``row_starts[-1] + window - origin``.
        flush: Half-open scene rows ``(a, b)`` final once this strip is accumulated;
            ``a == origin`` and the next strip's ``origin == b`` (unless clipped to the
            scene height), so buffer rows ``[b - origin, buffer_height)`` carry over.
    """

    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]
    origin: int
    buffer_height: int
    flush: tuple[int, int]

    @property
    def offsets(self) -> np.ndarray:
        """``(N, 2)`` int64 ``(row_off, col_off)`` of this strip's windows, row-major."""
        rr, cc = np.meshgrid(
            np.asarray(self.row_starts, dtype=np.int64),
            np.asarray(self.col_starts, dtype=np.int64),
            indexing="ij",
        )
        return np.stack([rr.ravel(), cc.ravel()], axis=1)


def strip_plan(height: int, width: int, window: int, overlap: float, rows_per_strip: int = 1) -> list[Strip]:
    """Group the window rows of a scene into strips for bounded-memory inference.

    Usage: for each strip, allocate (or roll) buffers of ``(buffer_height,
    padded_size(width, window))``, :func:`accumulate` the strip's windows with
    ``origin_row=strip.origin``, then write out buffer rows ``flush[0] - origin`` to
    ``flush[1] - origin`` after :func:`finalize`, and carry the remaining rows into the
    next strip's buffer. Peak buffer height is at most
    ``(rows_per_strip - 1) * stride + window`` instead of the scene height.

    Args:
        height: Scene height in pixels.
        width: Scene width in pixels.
        window: Window size (positive multiple of 32).
        overlap: Overlap fraction in [0, 1).
        rows_per_strip: Window rows per strip (>= 1); more rows mean larger batches but
            a taller buffer.

    Returns:
        Strips in processing order; their ``flush`` ranges partition ``[0, height)``.
    """
    stride = stride_for(window, overlap)
    rows_per_strip = _check_positive_int(rows_per_strip, "rows_per_strip")
    rows = window_starts(height, window, stride)
    cols = tuple(int(c) for c in window_starts(width, window, stride))
    final = finalized_rows(rows, window, height)
    strips = []
    for i in range(0, rows.size, rows_per_strip):
        group = tuple(int(r) for r in rows[i : i + rows_per_strip])
        last = i + len(group) - 1
        strips.append(
            Strip(
                row_starts=group,
                col_starts=cols,
                origin=group[0],
                buffer_height=group[-1] + window - group[0],
                flush=(final[i][0], final[last][1]),
            )
        )
    return strips


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
        origin_row: Scene row of the buffers' first row (a strip's ``origin``).

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
    "Strip",
    "accumulate",
    "blend_weights",
    "check_overlap",
    "check_window",
    "finalize",
    "finalized_rows",
    "padded_size",
    "pad_reflect",
    "stride_for",
    "strip_plan",
    "tile_grid",
    "window_starts",
]
