"""Where training windows are centred: anywhere (``uniform``) or half on each class (``balanced``).

With ``sampling="balanced"`` half of each epoch's windows are centred on glacier ground
and half on non-glacier ground, the idea of MONAI's ``RandCropByPosNegLabel`` with
``pos = neg = 1``, but in bounded memory: the full-resolution mask is never held. One
windowed pass over each mask (:func:`mask_class_counts`) counts the glacier and the
non-glacier pixels of every ``cell x cell`` cell, on the grid of the coarse validity
map; a :class:`CellSampler` then draws a cell in proportion to its count and a uniform
pixel inside it. A centre is thus always in a cell holding its class, and exactly on a
pixel of its class wherever a cell holds one class only (everywhere but along glacier
edges). Mask nodata (:data:`~geoglacier.io.masks.IGNORE`, the file's nodata, NaN)
counts as neither class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import rasterio
from rasterio.windows import Window

from geoglacier.errors import ConfigError
from geoglacier.training.normalization import cell_counts

Sampling = Literal["uniform", "balanced"]
SAMPLING_MODES: tuple[str, ...] = ("uniform", "balanced")
CLASS_NAMES = ("glacier", "non-glacier")
STRIP_ROWS = 1024


def check_sampling_mode(mode: str) -> Sampling:
    """Return ``mode`` if it is one of :data:`SAMPLING_MODES`, else raise :class:`ConfigError`."""
    if mode not in SAMPLING_MODES:
        raise ConfigError(f"--sampling must be one of {', '.join(SAMPLING_MODES)}, got {mode!r}")
    return cast(Sampling, mode)


def mask_class_counts(
    path: str | os.PathLike[str], cell: int, strip_rows: int = STRIP_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Glacier and non-glacier pixels of every ``cell x cell`` cell of a mask, read strip by strip.

    Memory stays at one strip of ``strip_rows`` (rounded up to a multiple of ``cell``)
    full-width rows. Mask values are read as training reads them: 1 and 255 are
    glacier, 0 is not (the layout checks allow {0, 1} or {0, 255}), the file's nodata
    value and NaN are neither.

    Returns:
        ``(glacier, non_glacier)``: two uint16 ``(ceil(h / cell), ceil(w / cell))`` maps.
    """
    strip = max(1, -(-int(strip_rows) // cell)) * cell
    with rasterio.open(path) as ds:
        h, w, nodata = ds.height, ds.width, ds.nodata
        shape = (-(-h // cell), -(-w // cell))
        glacier = np.zeros(shape, dtype=np.uint16)
        other = np.zeros(shape, dtype=np.uint16)
        for r0 in range(0, h, strip):
            raw = ds.read(1, window=Window(0, r0, w, min(strip, h - r0)))
            ignore = raw == nodata if nodata is not None and np.isfinite(nodata) else None
            is_glacier = (raw == 1) | (raw == 255)
            is_other = raw == 0
            if ignore is not None:
                is_glacier &= ~ignore
                is_other &= ~ignore
            rows = slice(r0 // cell, r0 // cell + -(-raw.shape[0] // cell))
            glacier[rows] = cell_counts(is_glacier, cell)
            other[rows] = cell_counts(is_other, cell)
    return glacier, other


def training_cells(is_val: np.ndarray, block: int, cell: int, cells_shape: tuple[int, int]) -> np.ndarray:
    """True for the cells that lie in training blocks (``block`` is a multiple of ``cell``)."""
    rows = np.arange(cells_shape[0]) * cell // block
    cols = np.arange(cells_shape[1]) * cell // block
    return ~np.asarray(is_val, dtype=bool)[np.ix_(rows, cols)]


@dataclass(frozen=True)
class CellSampler:
    """Draws pixels of one class over several scenes, each cell in proportion to its count.

    Only the cells that hold the class are kept (their flat index and the running
    total of their counts), so a rare class costs little memory.

    Attributes:
        shapes: ``(height, width)`` of each scene.
        cell: cell side in pixels.
        scene_starts: index in ``cells`` where each scene's cells start (one more than scenes).
        cells: flat cell index within its scene's cell grid, of every kept cell.
        cumulative: running total of the kept cells' counts (int64).
    """

    shapes: tuple[tuple[int, int], ...]
    cell: int
    scene_starts: np.ndarray
    cells: np.ndarray
    cumulative: np.ndarray

    @classmethod
    def from_counts(
        cls, counts: Sequence[np.ndarray], shapes: Sequence[tuple[int, int]], cell: int
    ) -> CellSampler | None:
        """A sampler over per-scene count maps; None when no cell of any scene holds the class."""
        cells, weights, starts = [], [], [0]
        for m in counts:
            flat = np.asarray(m).ravel()
            nonzero = np.flatnonzero(flat)
            cells.append(nonzero)
            weights.append(flat[nonzero].astype(np.int64))
            starts.append(starts[-1] + len(nonzero))
        if starts[-1] == 0:
            return None
        return cls(
            shapes=tuple((int(h), int(w)) for h, w in shapes),
            cell=int(cell),
            scene_starts=np.asarray(starts, dtype=np.int64),
            cells=np.concatenate(cells).astype(np.int64),
            cumulative=np.cumsum(np.concatenate(weights)),
        )

    @property
    def total(self) -> int:
        """Number of pixels of the class over all scenes."""
        return int(self.cumulative[-1])

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 3)`` int64 pixels ``(pair_index, row, col)``: a cell by its count, then a uniform pixel in it."""
        pick = np.searchsorted(self.cumulative, rng.integers(0, self.total, size=n), side="right")
        k = np.searchsorted(self.scene_starts, pick, side="right") - 1
        shapes = np.asarray(self.shapes, dtype=np.int64).reshape(-1, 2)
        h, w = shapes[k, 0], shapes[k, 1]
        nx = -(-w // self.cell)
        i, j = np.divmod(self.cells[pick], nx)
        r0, c0 = i * self.cell, j * self.cell
        # A cell on the scene's ragged edge is partly outside: draw inside its in-scene part.
        row = r0 + (rng.random(n) * np.minimum(self.cell, h - r0)).astype(np.int64)
        col = c0 + (rng.random(n) * np.minimum(self.cell, w - c0)).astype(np.int64)
        return np.stack([k, row, col], axis=1).astype(np.int64)


def centred_windows(centres: np.ndarray, shapes: Sequence[tuple[int, int]], patch_size: int) -> np.ndarray:
    """Windows ``(pair_index, row_off, col_off)`` centred on ``centres``, moved inside their scene.

    The centre pixel of a window is ``(row_off + P // 2, col_off + P // 2)``; a window
    that would hang over the scene edge is shifted flush with it (in a scene smaller than
    the patch it starts at 0), so its centre moves by at most ``P // 2``.
    """
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    dims = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)[centres[:, 0]]
    half = patch_size // 2
    row = np.clip(centres[:, 1] - half, 0, np.maximum(dims[:, 0] - patch_size, 0))
    col = np.clip(centres[:, 2] - half, 0, np.maximum(dims[:, 1] - patch_size, 0))
    return np.stack([centres[:, 0], row, col], axis=1)


def balanced_crop_centre(
    classes: tuple[np.ndarray, np.ndarray], width: int, rng: np.random.Generator
) -> tuple[int, int] | None:
    """A pixel of a small in-memory mask: glacier or non-glacier with equal probability.

    Args:
        classes: flat pixel indices of the glacier and of the non-glacier pixels.
        width: the mask's width (to turn a flat index into row and column).
        rng: the crop's generator.

    Returns:
        ``(row, col)``; a pixel of the other class when the drawn one is absent, None
        when the mask holds neither.
    """
    first = 0 if rng.random() < 0.5 else 1
    for which in (first, 1 - first):
        idx = classes[which]
        if len(idx):
            row, col = divmod(int(idx[rng.integers(0, len(idx))]), width)
            return row, col
    return None
