"""Per-band normalisation statistics and their application to patches.

Two ways to get the statistics, for two kinds of data:

* :func:`stats_from_arrays` streams over in-memory arrays (the classic layout), and
* :func:`scene_statistics` reduces a whole GeoTIFF lazily with dask, one chunk at a
  time, so a 20000 x 20000 scene needs the memory of a few chunks, not of the scene.

Both exclude nodata and non-finite pixels and accumulate in float64. Per chunk they
keep ``(count, mean, M2)`` and merge chunks with Chan's parallel formula, which stays
exact where the naive ``sum(x**2) - n * mean**2`` loses digits on large scenes.

The same statistics serve both normalisation modes (``TrainConfig.normalization``):
``training`` computes them once over the training blocks and applies them to every
scene; ``scene`` computes them per scene (:func:`scene_scan` with ``whole=True``, the
whole scene's valid pixels) and standardises each scene by its own. Mean and std, not
a robust centre and spread such as the median and an interquantile range: these
moments merge exactly chunk by chunk in one pass and bounded memory, while exact
quantiles of a scene need its sorted pixels (or a second pass over it), and a
histogram would only approximate them. A snowier scene simply has a brighter mean and
its own spread, which per-scene standardisation removes.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoglacier.errors import ConfigError
from geoglacier.io.scene import GDAL_CACHE_BYTES, valid_pixels

STD_FLOOR = 1e-6


@dataclass(frozen=True)
class Normalization:
    """Per-band ``(x - mean) / std``; invalid pixels become 0 (the mean) after it."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ConfigError(f"normalisation has {len(self.mean)} means but {len(self.std)} stds")

    @property
    def bands(self) -> int:
        return len(self.mean)

    @functools.cached_property
    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(1 / std, -mean / std)`` per band: ``x * inv + shift`` is ``(x - mean) / std``.

        Computed once (in float64, then rounded) rather than on every patch.
        """
        inv = 1.0 / np.maximum(np.asarray(self.std, dtype=np.float64), STD_FLOOR)
        shift = -np.asarray(self.mean, dtype=np.float64) * inv
        return inv.astype(np.float32), shift.astype(np.float32)

    def apply(self, block: np.ndarray, valid: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Normalise a ``(C, h, w)`` block; pixels where ``valid`` is False become 0.

        Args:
            block: float array, bands first.
            valid: bool ``(h, w)``.
            out: optional float32 array to write into (may be ``block`` itself, which
                saves an allocation on the per-patch path).

        Returns:
            float32 ``(C, h, w)``.
        """
        if block.shape[0] != self.bands:
            raise ConfigError(
                f"normalisation is for {self.bands} bands but the block has {block.shape[0]}; "
                "compute statistics on data with the same bands"
            )
        inv, shift = self.coefficients
        if out is None:
            out = np.empty(block.shape, dtype=np.float32)
        # Band by band: the second pass finds the band still in cache (x * inv - mean * inv).
        for b in range(self.bands):
            np.multiply(block[b], inv[b], out=out[b], dtype=np.float32, casting="unsafe")
            np.add(out[b], shift[b], out=out[b])
        if not valid.all():
            np.copyto(out, np.float32(0.0), where=~valid[None])
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))


@dataclass
class Moments:
    """Running per-band count, mean and sum of squared deviations (float64)."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, bands: int) -> Moments:
        return cls(np.zeros(bands), np.zeros(bands), np.zeros(bands))

    @classmethod
    def of(cls, block: np.ndarray, valid: np.ndarray) -> Moments:
        """Moments of the valid pixels of a ``(C, h, w)`` block."""
        n = int(valid.sum())
        bands = block.shape[0]
        if n == 0:
            return cls.empty(bands)
        mean, m2 = np.empty(bands), np.empty(bands)
        for b in range(bands):  # one band at a time: a float64 copy of a band, not of the block
            x = block[b].astype(np.float64).ravel() if n == valid.size else block[b][valid].astype(np.float64)
            mean[b] = x.mean()
            x -= mean[b]
            m2[b] = np.dot(x, x)
        return cls(np.full(bands, float(n)), mean, m2)

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise combination of two sets of moments."""
        n = self.count + other.count
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / safe
        m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / safe
        return Moments(n, mean, m2)

    def normalization(self, what: str = "the training data") -> Normalization:
        if (self.count == 0).any():
            raise ConfigError(
                f"no valid pixels in {what} to compute normalisation statistics from; "
                "check the nodata value and the masks"
            )
        # A constant band (a saturated one, an all-zero index) has std 0: floor it, as
        # apply() does, so the stored statistics are the ones training used.
        std = np.maximum(np.sqrt(self.m2 / self.count), STD_FLOOR)
        return Normalization(tuple(float(v) for v in self.mean), tuple(float(v) for v in std))


def stats_from_arrays(arrays: Iterable[np.ndarray], nodata: float | None = None) -> Normalization:
    """Exact per-band mean and (population) std over ``(C, h, w)`` arrays.

    A pixel counts when all its bands are finite and differ from ``nodata``.
    """
    total: Moments | None = None
    for arr in arrays:
        block = np.asarray(arr)
        part = Moments.of(block, valid_pixels(block, nodata))
        total = part if total is None else total.merge(part)
    if total is None:
        raise ConfigError("no arrays to compute normalisation statistics from")
    return total.normalization()


def _region_mask(regions: np.ndarray | None, r0: int, c0: int, h: int, w: int) -> np.ndarray | None | bool:
    """Pixels of the chunk at ``(r0, c0, h, w)`` inside any region; ``False`` when none."""
    if regions is None:
        return None
    rr0 = np.clip(regions[:, 0] - r0, 0, h)
    rr1 = np.clip(regions[:, 0] + regions[:, 2] - r0, 0, h)
    cc0 = np.clip(regions[:, 1] - c0, 0, w)
    cc1 = np.clip(regions[:, 1] + regions[:, 3] - c0, 0, w)
    hit = (rr1 > rr0) & (cc1 > cc0)
    if not hit.any():
        return False
    mask = np.zeros((h, w), dtype=bool)
    for a, b, c, d in zip(rr0[hit], rr1[hit], cc0[hit], cc1[hit], strict=True):
        mask[a:b, c:d] = True
    return mask


def cell_counts(pixels: np.ndarray, cell: int) -> np.ndarray:
    """True pixels of every ``cell x cell`` block of a bool array (uint16; a ragged edge is padded False)."""
    h, w = pixels.shape
    ph, pw = -(-h // cell) * cell, -(-w // cell) * cell
    padded = np.zeros((ph, pw), dtype=np.uint16)
    padded[:h, :w] = pixels
    return padded.reshape(ph // cell, cell, pw // cell, cell).sum(axis=(1, 3), dtype=np.uint16)


def _chunk_scan(
    block: np.ndarray,
    nodata: float | None,
    regions: np.ndarray | None,
    r0: int,
    c0: int,
    cell: int,
    whole: bool = False,
) -> tuple[Moments, Moments | None, np.ndarray]:
    """Moments of one chunk inside ``regions``, of all its valid pixels (``whole``), and its coarse counts."""
    valid = valid_pixels(block, nodata)
    h, w = valid.shape
    inside = _region_mask(regions, r0, c0, h, w)
    if inside is None:
        counted = valid
    elif inside is False:
        counted = np.zeros_like(valid)
    else:
        counted = valid & inside
    moments = Moments.of(block, counted)
    everything = None
    if whole:
        everything = moments if inside is None else Moments.of(block, valid)
    return moments, everything, cell_counts(valid, cell)


@dataclass
class SceneScan:
    """What one lazy pass over a scene found (see :func:`scene_scan`).

    Attributes:
        moments: moments of the valid pixels inside the regions (the whole scene without regions).
        coarse: valid-pixel counts of every ``cell x cell`` block of the scene (uint16).
        scene_moments: moments of all the scene's valid pixels, when asked for (``whole=True``).
    """

    moments: Moments
    coarse: np.ndarray
    scene_moments: Moments | None = None


def _scene_array(path_or_dataarray: str | os.PathLike[str] | Any, chunks: int, cell: int) -> tuple[Any, Any]:
    """The scene as a dask array chunked for the scan (whole bands, chunks a multiple of ``cell``) and its DataArray."""
    from geoglacier.io.scene import open_scene

    if isinstance(path_or_dataarray, (str, os.PathLike)):
        da = open_scene(path_or_dataarray, chunks=chunks, expected_bands=None)
    else:
        da = path_or_dataarray
        if da.chunks is None or max(max(c) for c in da.chunks[1:]) % cell:
            da = da.chunk({"band": -1, "y": chunks, "x": chunks})
    data = da.data
    if data.numblocks[0] != 1:
        data = data.rechunk({0: -1})
    # Every chunk but the last in each axis must be a multiple of ``cell`` so the
    # coarse maps of neighbouring chunks tile the scene's map exactly.
    if any(c % cell for axis in (1, 2) for c in data.chunks[axis][:-1]):
        data = data.rechunk({1: chunks, 2: chunks})
    return data, da


def _compute(tasks: list[Any], scheduler: str | None, progress: bool, desc: str) -> tuple[Any, ...]:
    """``dask.compute`` of ``tasks``, with a tqdm bar of tasks on stderr when ``progress``."""
    import dask
    import rasterio

    # GDAL's block cache (5% of RAM by default) would otherwise fill with the whole
    # scene's tiles, none of which is read twice here.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        if not progress:
            return dask.compute(*tasks, scheduler=scheduler)
        from tqdm.dask import TqdmCallback

        with TqdmCallback(desc=desc, unit="task", file=sys.stderr, leave=False):
            return dask.compute(*tasks, scheduler=scheduler)


def scene_scan(
    path_or_dataarray: str | os.PathLike[str] | Any,
    nodata: float | None = None,
    chunks: int = 1024,
    regions: np.ndarray | Sequence[Sequence[int]] | None = None,
    cell: int = 8,
    *,
    whole: bool = False,
    scheduler: str | None = None,
    progress: bool = False,
) -> SceneScan:
    """One lazy pass over a scene: moments inside ``regions``, optionally of the whole scene, and a validity map.

    See :func:`scan_scene` for the map and the first four arguments.

    Args:
        whole: also the moments of every valid pixel of the scene, regions or not (per-scene
            normalisation needs them beside the training blocks' ones: one read, two sums).
        scheduler: dask scheduler (``None``: dask's default). Inference passes ``"threads"``
            so a scan inside a dask.distributed task never hands its chunks back to a
            cluster whose workers are all busy waiting on them.
        progress: a tqdm bar of dask tasks on stderr.
    """
    import dask

    chunks = -(-int(chunks) // cell) * cell
    data, da = _scene_array(path_or_dataarray, chunks, cell)
    if nodata is None:
        nodata = da.attrs.get("nodata")
    reg = None if regions is None else np.asarray(regions, dtype=np.int64).reshape(-1, 4)
    delayed = data.to_delayed()
    row_starts = np.concatenate([[0], np.cumsum(data.chunks[1])])
    col_starts = np.concatenate([[0], np.cumsum(data.chunks[2])])
    grid = [(i, j) for i in range(len(data.chunks[1])) for j in range(len(data.chunks[2]))]
    tasks = [
        dask.delayed(_chunk_scan)(
            delayed[0, i, j], nodata, reg, int(row_starts[i]), int(col_starts[j]), cell, whole
        )
        for i, j in grid
    ]
    name = Path(str(getattr(path_or_dataarray, "name", path_or_dataarray))).name
    results = _compute(tasks, scheduler, progress, f"{name} statistics")
    bands = data.shape[0]
    total, everything = Moments.empty(bands), Moments.empty(bands)
    height, width = data.shape[1:]
    coarse = np.zeros((-(-height // cell), -(-width // cell)), dtype=np.uint16)
    for (i, j), (part, part_all, cmap) in zip(grid, results, strict=True):
        total = total.merge(part)
        if part_all is not None:
            everything = everything.merge(part_all)
        r, c = int(row_starts[i]) // cell, int(col_starts[j]) // cell
        coarse[r : r + cmap.shape[0], c : c + cmap.shape[1]] = cmap
    return SceneScan(total, coarse, everything if whole else None)


def scan_scene(
    path_or_dataarray: str | os.PathLike[str] | Any,
    nodata: float | None = None,
    chunks: int = 1024,
    regions: np.ndarray | Sequence[Sequence[int]] | None = None,
    cell: int = 8,
) -> tuple[Moments, np.ndarray]:
    """One lazy pass over a scene: moments inside ``regions`` and a coarse validity map.

    The map holds, for every ``cell x cell`` block of the scene, how many of its pixels
    are valid (uint16). The samplers use it to skip windows that are mostly nodata
    without reading them; it costs nothing extra because the statistics read every
    chunk anyway. Chunks outside all regions are not read for the statistics, but are
    still scanned for the map when ``regions`` is given (the map covers the scene).

    Args:
        path_or_dataarray: a GeoTIFF path or a DataArray from :func:`geoglacier.io.scene.open_scene`.
        nodata: overrides the scene's nodata value (``None``: use the file's).
        chunks: dask chunk size (rounded up to a multiple of ``cell``).
        regions: optional ``(M, 4)`` rectangles ``(row_off, col_off, height, width)``
            in pixels; statistics use only pixels inside their union.
        cell: size in pixels of a cell of the validity map.

    Returns:
        ``(moments, coarse_valid_counts)``.
    """
    scan = scene_scan(path_or_dataarray, nodata=nodata, chunks=chunks, regions=regions, cell=cell)
    return scan.moments, scan.coarse


def scene_statistics(
    path_or_dataarray: str | os.PathLike[str] | Any,
    nodata: float | None = None,
    chunks: int = 1024,
    regions: np.ndarray | Sequence[Sequence[int]] | None = None,
    *,
    scheduler: str | None = None,
    progress: bool = False,
) -> Normalization:
    """Per-band mean and std of a whole scene, computed lazily chunk by chunk.

    Memory stays bounded by a few chunks per dask worker thread plus a 64 MB GDAL
    block cache, whatever the scene size. ``regions`` restricts the statistics to training blocks (``(M, 4)``
    rectangles ``(row_off, col_off, height, width)``) so validation pixels do not leak
    into the normalisation. ``scheduler`` and ``progress`` as for :func:`scene_scan`.
    """
    scan = scene_scan(
        path_or_dataarray,
        nodata=nodata,
        chunks=chunks,
        regions=regions,
        scheduler=scheduler,
        progress=progress,
    )
    return scan.moments.normalization(str(getattr(path_or_dataarray, "name", path_or_dataarray)))


def check_normalization_mode(mode: str) -> str:
    """Return ``mode`` when it is a known normalisation mode (``training`` or ``scene``).

    Raises:
        ConfigError: naming ``--normalization`` and the known modes.
    """
    from geoglacier.checkpoint import NORMALIZATION_MODES

    if mode not in NORMALIZATION_MODES:
        raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATION_MODES)}, got {mode!r}")
    return mode
