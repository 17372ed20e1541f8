"""The training/validation split: scenes by square blocks (:func:`spatial_split`), classic pairs at random.

Neighbouring pixels are strongly correlated, so scenes are split by whole blocks rather
than by random windows; :class:`TrainRegions` records which blocks each side may use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geoglacier.errors import ConfigError
from geoglacier.io.layouts import ClassicPair
from geoglacier.training.checks import check_patch_size


@dataclass(frozen=True)
class TrainRegions:
    """The block grid of every scene and which blocks belong to validation.

    Attributes:
        shapes: ``(height, width)`` of each scene.
        blocks: block size in pixels of each scene.
        is_val: per scene, a bool ``(n_block_rows, n_block_cols)`` grid.
    """

    shapes: tuple[tuple[int, int], ...]
    blocks: tuple[int, ...]
    is_val: tuple[np.ndarray, ...]

    def boxes(self, pair_index: int | None = None, train: bool = True) -> np.ndarray:
        """``(M, 5)`` rectangles ``(pair_index, row_off, col_off, height, width)``, clipped to the scene."""
        rows = []
        for k, ((h, w), b, val) in enumerate(zip(self.shapes, self.blocks, self.is_val, strict=True)):
            if pair_index is not None and k != pair_index:
                continue
            for i, j in zip(*np.nonzero(~val if train else val), strict=True):
                r, c = int(i) * b, int(j) * b
                rows.append((k, r, c, min(b, h - r), min(b, w - c)))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 5)

    def train_pixels(self) -> np.ndarray:
        """Number of training pixels of each scene."""
        boxes = self.boxes()
        return np.bincount(boxes[:, 0], weights=boxes[:, 3] * boxes[:, 4], minlength=len(self.shapes))

    def allowed(self, windows: np.ndarray, patch_size: int) -> np.ndarray:
        """True for windows whose in-scene part lies entirely in training blocks."""
        out = np.zeros(len(windows), dtype=bool)
        for k in np.unique(windows[:, 0]) if len(windows) else []:
            sel = windows[:, 0] == k
            (h, w), b, val = self.shapes[k], self.blocks[k], self.is_val[k]
            r, c = windows[sel, 1], windows[sel, 2]
            r0, c0 = np.clip(r, 0, h - 1) // b, np.clip(c, 0, w - 1) // b
            r1 = np.clip(np.minimum(r + patch_size, h) - 1, 0, h - 1) // b
            c1 = np.clip(np.minimum(c + patch_size, w) - 1, 0, w - 1) // b
            # A window spans at most two blocks per axis because block >= patch size.
            bad = val[r0, c0] | val[r0, c1] | val[r1, c0] | val[r1, c1]
            out[sel] = ~bad
        return out


def _val_starts(b0: int, b1: int, size: int, patch: int) -> list[int]:
    """Window starts covering block ``[b0, b1)`` of an axis of length ``size``.

    Windows tile the block from its start; a last window that would cross into the
    next block is moved flush with the block end (an overlap inside the block), unless
    the block ends at the scene edge, where it may hang outside (padding, invalid).
    """
    starts = list(range(b0, b1 - patch + 1, patch))
    covered = starts[-1] + patch if starts else b0
    if covered < b1:
        starts.append(b1 - patch if b1 < size and b1 - patch >= b0 else covered)
    return starts


#: A block size is kept when its validation blocks hold the asked share of a scene's
#: pixels within this relative tolerance (0.5: 10-30 % for ``val_fraction=0.2``);
#: otherwise the split is tried again with smaller blocks.
VAL_SHARE_TOLERANCE = 0.5


def _block_sides(n: int, b: int) -> np.ndarray:
    """Lengths of the blocks of side ``b`` along an axis of ``n`` pixels (the last clipped)."""
    return np.minimum(b, n - np.arange(0, n, b))


def block_areas(h: int, w: int, b: int) -> np.ndarray:
    """Pixel count of every block of side ``b`` on an ``h x w`` scene (edge blocks are clipped)."""
    return np.outer(_block_sides(h, b), _block_sides(w, b)).astype(np.int64)


def pick_val_blocks(areas: np.ndarray, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Validation blocks holding about ``val_fraction`` of the pixels of a block grid.

    Blocks are visited in a seeded random order; each is taken when it brings the
    held-out pixel count strictly closer to the target. When none does (each is more
    than twice the target), the one closest to the target is taken. Nothing is held out
    when the grid has a single block or ``val_fraction`` is 0; one block is always kept
    for training.
    """
    flat = areas.ravel()
    val = np.zeros(flat.size, dtype=bool)
    if flat.size < 2 or val_fraction <= 0:
        return val.reshape(areas.shape)
    target, held = val_fraction * float(flat.sum()), 0.0
    order = rng.permutation(flat.size)
    for i in order:
        if held >= target or val.sum() == flat.size - 1:
            break
        if abs(held + flat[i] - target) < abs(held - target):
            val[i] = True
            held += float(flat[i])
    if not val.any():
        val[order[np.argmin(np.abs(flat[order] - target))]] = True
    return val.reshape(areas.shape)


def _split_scene(
    h: int, w: int, p: int, val_fraction: float, rng: np.random.Generator, block: int | None
) -> tuple[int, np.ndarray]:
    """Block size and validation grid of one scene (see :func:`spatial_split`)."""
    sizes = [block] if block is not None else [2 * p, p]
    for b in sizes:
        areas = block_areas(h, w, b)
        val = pick_val_blocks(areas, val_fraction, rng)
        share = float(areas[val].sum()) / float(areas.sum())
        if b == sizes[-1] or abs(share - val_fraction) <= VAL_SHARE_TOLERANCE * val_fraction:
            return b, val
    raise AssertionError("unreachable: the last block size is always kept")


def spatial_split(
    info_shapes: Sequence[tuple[int, int]],
    patch_size: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    block: int | None = None,
) -> tuple[TrainRegions, np.ndarray]:
    """Split scenes into training and validation blocks.

    Each scene is cut into square blocks of ``2 * patch_size`` and validation takes
    blocks until they hold about ``val_fraction`` of the scene's pixels
    (:func:`pick_val_blocks`). Where the blocks drawn do not come within
    :data:`VAL_SHARE_TOLERANCE` of that share (typically a scene only a few blocks wide,
    whose one held-out block would be half of it or more; the draw is seeded, so the
    block size of a scene can depend on the seed), the scene gets blocks of
    ``patch_size`` instead, whatever share they reach: a scene one or two patches
    across cannot hold out a fifth of itself in whole blocks. ``block`` forces one size. Neighbouring pixels are strongly
    correlated, so a split by blocks rather than by random windows keeps validation
    honest.

    Returns:
        ``(train_regions, val_windows)``: the block grids, and an ``(N, 3)`` int64 array
        of validation windows ``(pair_index, row_off, col_off)`` tiling the
        validation blocks.
    """
    p = check_patch_size(patch_size)
    if block is not None and block < p:
        raise ConfigError(f"block size {block} is smaller than --patch-size {p}; use a block >= {p}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    shapes, blocks, grids, val_windows = [], [], [], []
    for k, (h, w) in enumerate(info_shapes):
        b, val = _split_scene(int(h), int(w), p, val_fraction, rng, block)
        for i, j in zip(*np.nonzero(val), strict=True):
            r0, c0 = int(i) * b, int(j) * b
            for r in _val_starts(r0, min(r0 + b, h), h, p):
                for c in _val_starts(c0, min(c0 + b, w), w, p):
                    val_windows.append((k, r, c))
        shapes.append((int(h), int(w)))
        blocks.append(b)
        grids.append(val)
    regions = TrainRegions(tuple(shapes), tuple(blocks), tuple(grids))
    return regions, np.asarray(val_windows, dtype=np.int64).reshape(-1, 3)


def classic_split(
    classic: list[ClassicPair], val_fraction: float, seed: int
) -> tuple[list[ClassicPair], list[ClassicPair]]:
    """Training and validation pairs: ``val_fraction`` of them at random, at least one of two or more."""
    order = np.random.default_rng(seed).permutation(len(classic))
    n_val = int(round(val_fraction * len(classic)))
    if len(classic) >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), len(classic) - 1)
    else:
        n_val = 0
    val_pairs = [classic[i] for i in sorted(order[:n_val])]
    train_pairs = [classic[i] for i in sorted(order[n_val:])]
    return train_pairs, val_pairs
