"""Blend window predictions into output tiles and hand each tile on as soon as it is final.

:class:`TileBlender` keeps weighted sums only for the output tiles that some processed
window has touched and some pending window still touches. Every tile knows from the
start how many windows touch it (:func:`geoglacier.inference.windows.tile_window_counts`);
each window accumulated or skipped counts down the tiles it touches, and a tile whose
count reaches zero is divided out (:func:`geoglacier.inference.windows.finalize`) and
returned. The result for every pixel is the weighted mean of all windows covering it,
whatever order the windows arrive in; the order only decides how many tiles are open
at once (see :func:`geoglacier.inference.windows.block_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoglacier.errors import ConfigError
from geoglacier.inference.windows import (
    finalize,
    tile_bounds,
    tile_window_counts,
    window_tile_pieces,
)


@dataclass(frozen=True)
class FinishedTile:
    """One output tile of the scene, blended and final.

    ``probabilities`` is ``(h, w)`` float32 for scene pixels ``[row_off, row_off + h)`` x
    ``[col_off, col_off + w)``, NaN where the scene has nodata.
    """

    row_off: int
    col_off: int
    probabilities: np.ndarray


class _OpenTile:
    """Running weighted sums of one tile, and which of its pixels hold data."""

    __slots__ = ("sums", "valid", "weights")

    def __init__(self, shape: tuple[int, int]) -> None:
        self.sums = np.zeros(shape, dtype=np.float32)
        self.weights = np.zeros(shape, dtype=np.float32)
        self.valid = np.zeros(shape, dtype=bool)


class TileBlender:
    """Weighted-mean blending of windows into ``tile`` x ``tile`` output tiles, in bounded memory.

    Args:
        height, width: scene size in pixels.
        offsets: ``(N, 2)`` ``(row_off, col_off)`` of every window that will arrive
            (through :meth:`add` or :meth:`skip`), each exactly once.
        weights: ``(window, window)`` blend weights (:func:`~geoglacier.inference.windows.blend_weights`).
        tile: output tile edge in pixels (the output file's block size, so that each
            finished tile is written once, whole).
        done: ``(tiles_y, tiles_x)`` bool of tiles an interrupted run already wrote: they
            are never returned, and windows' parts on them are ignored.
    """

    def __init__(
        self,
        height: int,
        width: int,
        offsets: np.ndarray,
        weights: np.ndarray,
        tile: int,
        done: np.ndarray | None = None,
    ) -> None:
        if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
            raise ConfigError(f"blend weights must be a square (window, window) array, got {weights.shape}")
        self.height, self.width, self.tile = int(height), int(width), int(tile)
        self.window = int(weights.shape[0])
        self.weights = weights
        self._pending = tile_window_counts(offsets, self.window, self.tile, self.height, self.width)
        self._done = np.zeros(self._pending.shape, bool) if done is None else np.asarray(done, bool)
        if self._done.shape != self._pending.shape:
            raise ConfigError(
                f"done tiles {self._done.shape} do not match the tile grid {self._pending.shape}"
            )
        if (self._pending[~self._done] == 0).any():
            raise ConfigError("the windows leave an output tile uncovered")
        self._pending[self._done] = 0
        self._open: dict[tuple[int, int], _OpenTile] = {}
        self.open_pixels = 0
        self.max_open_pixels = 0

    @property
    def done(self) -> bool:
        """True once every tile has been handed on."""
        return not self._pending.any()

    def add(self, probs: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> list[FinishedTile]:
        """Accumulate window predictions; return the tiles they finish.

        Args:
            probs: ``(N, window, window)`` probabilities.
            offsets: ``(N, 2)`` window offsets.
            valid: ``(N, window, window)`` bool, True where the scene has data.
        """
        if probs.shape != valid.shape or probs.shape[1:] != self.weights.shape or len(offsets) != len(probs):
            raise ConfigError(
                f"TileBlender.add: predictions {probs.shape}, validity {valid.shape} and "
                f"{len(offsets)} offsets do not match windows of {self.weights.shape}"
            )
        finished: list[FinishedTile] = []
        for prob, ok, (r, c) in zip(probs, valid, np.asarray(offsets).tolist(), strict=True):
            for ty, tx, in_tile, in_window in self._pieces(r, c):
                tile = self._open.get((ty, tx)) or self._open_tile(ty, tx)
                w = self.weights[in_window]
                tile.sums[in_tile] += prob[in_window] * w
                tile.weights[in_tile] += w
                tile.valid[in_tile] |= ok[in_window]
                finished.extend(self._count_down(ty, tx))
        return finished

    def skip(self, offsets: np.ndarray) -> list[FinishedTile]:
        """Count windows without data (never run through the model); return the tiles this finishes."""
        finished: list[FinishedTile] = []
        for r, c in np.asarray(offsets).reshape(-1, 2).tolist():
            for ty, tx, _, _ in self._pieces(r, c):
                finished.extend(self._count_down(ty, tx))
        return finished

    # ------------------------------------------------------------------------ internals

    def _pieces(self, r: int, c: int) -> list[tuple[int, int, tuple[slice, slice], tuple[slice, slice]]]:
        pieces = window_tile_pieces(r, c, self.window, self.tile, self.height, self.width)
        return [p for p in pieces if not self._done[p[0], p[1]]]

    def _open_tile(self, ty: int, tx: int) -> _OpenTile:
        r0, r1, c0, c1 = tile_bounds(ty, tx, self.tile, self.height, self.width)
        tile = self._open[(ty, tx)] = _OpenTile((r1 - r0, c1 - c0))
        self.open_pixels += tile.sums.size
        self.max_open_pixels = max(self.max_open_pixels, self.open_pixels)
        return tile

    def _count_down(self, ty: int, tx: int) -> list[FinishedTile]:
        if self._pending[ty, tx] <= 0:
            raise ConfigError(f"output tile ({ty}, {tx}) got more windows than touch it")
        self._pending[ty, tx] -= 1
        if self._pending[ty, tx]:
            return []
        r0, r1, c0, c1 = tile_bounds(ty, tx, self.tile, self.height, self.width)
        tile = self._open.pop((ty, tx), None)
        if tile is None:  # only skipped windows touched it: nodata throughout
            return [FinishedTile(r0, c0, np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32))]
        self.open_pixels -= tile.sums.size
        probs = finalize(tile.sums, tile.weights, fill=np.nan)
        probs[~tile.valid] = np.nan
        return [FinishedTile(r0, c0, probs)]


__all__ = ["FinishedTile", "TileBlender"]
