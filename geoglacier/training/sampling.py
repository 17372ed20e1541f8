"""Where training windows are centred: anywhere (``uniform``) or half on each class (``balanced``).

Every epoch draws its scene windows afresh (:func:`sample_train_windows`, or
:func:`sample_balanced_windows` for ``balanced``); no window touches a validation block
of the split (:class:`~geoglacier.training.split.TrainRegions`), and a coarse validity
map (:func:`coarse_valid_fraction`) rejects mostly-nodata windows without reading pixels.

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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
import rasterio
from rasterio.windows import Window

from geoglacier.errors import ConfigError, GeoglacierWarning
from geoglacier.io.layouts import ScenePair
from geoglacier.training.checks import check_patch_size
from geoglacier.training.normalization import cell_counts
from geoglacier.training.split import TrainRegions

Sampling = Literal["uniform", "balanced"]
SAMPLING_MODES: tuple[str, ...] = ("uniform", "balanced")
CLASS_NAMES = ("glacier", "non-glacier")
STRIP_ROWS = 1024
ValidFractionFn = Callable[[np.ndarray], np.ndarray]
VALIDITY_CELL = 8


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


# ---------------------------------------------------------------------------------------
# each epoch's scene windows


def coarse_valid_fraction(
    maps: Sequence[np.ndarray], patch_size: int, cell: int = VALIDITY_CELL
) -> ValidFractionFn:
    """A ``valid_fraction_fn`` from coarse valid-pixel counts (see :func:`~geoglacier.training.normalization.scan_scene`).

    The fraction counts the valid pixels of every cell a window touches, divided by
    the window area: exact for cell-aligned windows, a slight overestimate otherwise
    (never an underestimate), and exactly 0 only when the window has no valid pixel.
    """
    integrals = []
    for m in maps:
        ii = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int64)
        ii[1:, 1:] = m.astype(np.int64).cumsum(0).cumsum(1)
        integrals.append(ii)

    def fraction(windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
        out = np.zeros(len(windows))
        for k in np.unique(windows[:, 0]):
            sel = windows[:, 0] == k
            ii = integrals[k]
            ny, nx = ii.shape[0] - 1, ii.shape[1] - 1
            r, c = windows[sel, 1], windows[sel, 2]
            a, b = np.clip(r // cell, 0, ny), np.clip(-(-(r + patch_size) // cell), 0, ny)
            d, e = np.clip(c // cell, 0, nx), np.clip(-(-(c + patch_size) // cell), 0, nx)
            out[sel] = ii[b, e] - ii[a, e] - ii[b, d] + ii[a, d]
        return np.minimum(out / float(patch_size * patch_size), 1.0)

    return fraction


@dataclass
class _Accepted:
    """The candidate windows accepted so far, at most ``n``, and the rules they pass.

    A candidate is kept when its in-scene part lies in training blocks and, with
    ``valid_fraction_fn``, when at least ``min_valid`` of it is valid; candidates
    beyond ``n`` are dropped in the order drawn.
    """

    regions: TrainRegions
    n: int
    patch_size: int
    valid_fraction_fn: ValidFractionFn | None
    min_valid: float
    found: list[np.ndarray] = field(default_factory=lambda: [np.zeros((0, 3), dtype=np.int64)])
    count: int = 0

    @property
    def missing(self) -> int:
        """How many windows are still wanted."""
        return self.n - self.count

    def keep(self, cands: np.ndarray, check_valid: bool = True) -> None:
        """Accept the candidates that pass (the validity rule only when ``check_valid``)."""
        cands = cands[self.regions.allowed(cands, self.patch_size)]
        if check_valid and self.valid_fraction_fn is not None and len(cands):
            cands = cands[self.valid_fraction_fn(cands) >= self.min_valid]
        cands = cands[: self.missing]
        self.found.append(cands)
        self.count += len(cands)

    def windows(self) -> np.ndarray:
        """The accepted windows, ``(count, 3)`` int64."""
        return np.concatenate(self.found).astype(np.int64).reshape(-1, 3)[: self.n]


def _scene_weights(train_regions: TrainRegions) -> np.ndarray:
    """Each scene's share of the training pixels.

    Raises:
        ConfigError: the validation split left no training block.
    """
    weights = train_regions.train_pixels()
    if weights.sum() <= 0:
        raise ConfigError("no training blocks left after the validation split; lower --val-fraction")
    return weights / weights.sum()


def _draw_in_scenes(accepted: _Accepted, weights: np.ndarray, rng: np.random.Generator) -> None:
    """Up to 50 rounds of windows uniform over scenes picked by ``weights``."""
    p = accepted.patch_size
    shapes = np.asarray(accepted.regions.shapes, dtype=np.int64)
    for _ in range(50):
        if accepted.count >= accepted.n:
            break
        m = 2 * accepted.missing + 16
        k = rng.choice(len(weights), size=m, p=weights)
        r = rng.integers(0, np.maximum(shapes[k, 0] - p, 0) + 1)
        c = rng.integers(0, np.maximum(shapes[k, 1] - p, 0) + 1)
        accepted.keep(np.stack([k, r, c], axis=1))


def _draw_in_blocks(
    accepted: _Accepted, boxes: np.ndarray, rng: np.random.Generator, check_valid: bool
) -> None:
    """Up to 20 rounds of windows anchored inside single training blocks (rows of :meth:`TrainRegions.boxes`)."""
    p = accepted.patch_size
    for _ in range(20):
        if accepted.count >= accepted.n:
            break
        m = 2 * accepted.missing + 16
        pick = boxes[rng.integers(0, len(boxes), size=m)]
        r = pick[:, 1] + rng.integers(0, np.maximum(pick[:, 3] - p, 0) + 1)
        c = pick[:, 2] + rng.integers(0, np.maximum(pick[:, 4] - p, 0) + 1)
        accepted.keep(np.stack([pick[:, 0], r, c], axis=1), check_valid)


def sample_train_windows(
    train_regions: TrainRegions,
    n: int,
    patch_size: int,
    rng: np.random.Generator,
    valid_fraction_fn: ValidFractionFn | None = None,
    min_valid: float = 0.5,
) -> np.ndarray:
    """Draw ``n`` training windows ``(pair_index, row_off, col_off)`` that avoid validation.

    Scenes are picked in proportion to their training area; positions are uniform over
    the scene and rejected when they touch a validation block or, with
    ``valid_fraction_fn``, when less than ``min_valid`` of the window is valid (the
    check uses the coarse validity map, so no pixels are read). When rejection keeps
    failing (tiny training areas) windows are anchored inside single training blocks;
    if even those are mostly nodata, the rest are taken regardless, with a warning.
    """
    p = check_patch_size(patch_size)
    if n <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    weights = _scene_weights(train_regions)
    accepted = _Accepted(train_regions, n, p, valid_fraction_fn, min_valid)
    _draw_in_scenes(accepted, weights, rng)
    boxes = train_regions.boxes()
    for check_valid in (True, False):
        _draw_in_blocks(accepted, boxes, rng, check_valid)
        if accepted.count < n and check_valid and valid_fraction_fn is not None:
            warnings.warn(
                f"only {accepted.count} of {n} training windows are at least {min_valid:.0%} valid; "
                "the rest are mostly nodata",
                GeoglacierWarning,
                stacklevel=2,
            )
    return accepted.windows()


def sample_balanced_windows(
    train_regions: TrainRegions,
    n: int,
    patch_size: int,
    rng: np.random.Generator,
    samplers: Sequence[CellSampler | None],
    valid_fraction_fn: ValidFractionFn | None = None,
    min_valid: float = 0.5,
) -> np.ndarray:
    """Draw ``n`` training windows, half centred on glacier and half on non-glacier ground.

    ``samplers`` are the glacier and the non-glacier :class:`CellSampler`; the glacier
    half gets the extra window of an odd ``n``. Centres are drawn from a sampler and
    turned into windows moved inside the scene (:func:`centred_windows`); the rules of
    :func:`sample_train_windows` hold (no validation block touched, at least
    ``min_valid`` valid). A half whose sampler is None (no pixel of the class), or
    whose candidates keep being rejected, is completed by :func:`sample_train_windows`.
    The windows come back shuffled. Windows centred near a validation block are rejected
    more often than others, so the glacier share of the centres can fall a little short
    of one half where glaciers lie along validation blocks (0.47 in a three-scene probe).
    """
    p = check_patch_size(patch_size)
    if n <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    wanted = ((n + 1) // 2, n // 2)
    parts: list[np.ndarray] = []
    for sampler, m in zip(samplers, wanted, strict=True):
        got = np.zeros((0, 3), dtype=np.int64)
        if sampler is not None:
            got = _centred_on(sampler, train_regions, m, p, rng, valid_fraction_fn, min_valid)
        parts.append(got)
        if len(got) < m:
            parts.append(
                sample_train_windows(train_regions, m - len(got), p, rng, valid_fraction_fn, min_valid)
            )
    windows = np.concatenate(parts).astype(np.int64).reshape(-1, 3)
    return windows[rng.permutation(len(windows))]


def _centred_on(
    sampler: CellSampler,
    train_regions: TrainRegions,
    n: int,
    p: int,
    rng: np.random.Generator,
    valid_fraction_fn: ValidFractionFn | None,
    min_valid: float,
) -> np.ndarray:
    """Up to ``n`` allowed windows centred on ``sampler``'s pixels (fewer when rejection keeps failing)."""
    accepted = _Accepted(train_regions, n, p, valid_fraction_fn, min_valid)
    for _ in range(50):
        if accepted.count >= n:
            break
        accepted.keep(centred_windows(sampler.draw(2 * accepted.missing + 16, rng), train_regions.shapes, p))
    return accepted.windows()


def class_samplers(
    scenes: Sequence[ScenePair], regions: TrainRegions, valid_maps: Sequence[np.ndarray]
) -> tuple[CellSampler | None, CellSampler | None]:
    """Glacier and non-glacier :class:`CellSampler` over the training blocks of ``scenes``.

    One windowed pass over each mask (:func:`mask_class_counts`),
    on the grid of the coarse validity maps; cells in validation blocks and cells
    without a valid image pixel are left out. A class found nowhere gives None and a
    :class:`GeoglacierWarning`: that half of the windows is then drawn uniformly.
    """
    glacier, other = [], []
    for k, q in enumerate(scenes):
        counts = mask_class_counts(q.mask, VALIDITY_CELL)
        keep = training_cells(regions.is_val[k], regions.blocks[k], VALIDITY_CELL, counts[0].shape)
        keep &= np.asarray(valid_maps[k]) > 0
        glacier.append(np.where(keep, counts[0], 0))
        other.append(np.where(keep, counts[1], 0))
    samplers = tuple(CellSampler.from_counts(c, regions.shapes, VALIDITY_CELL) for c in (glacier, other))
    for sampler, name in zip(samplers, CLASS_NAMES, strict=True):
        if sampler is None:
            warnings.warn(
                f"--sampling balanced: the training blocks hold no valid {name} pixel, so the {name} "
                "half of the windows is drawn uniformly instead",
                GeoglacierWarning,
                stacklevel=3,
            )
    return samplers[0], samplers[1]
