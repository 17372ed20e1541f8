"""Patch datasets for training, and :func:`make_datasets`, which builds them from a data directory.

Samplers yield windows, datasets answer them. A window is ``(pair_index, row_off,
col_off)`` in pixels; its size is the patch size.
:func:`~geoglacier.training.split.spatial_split` cuts every scene into square blocks and
gives some blocks to validation; :func:`~geoglacier.training.sampling.sample_train_windows`
draws training windows that never touch a validation window
(:func:`~geoglacier.training.sampling.sample_balanced_windows` half on glacier, half on
other ground); :class:`ScenePatchDataset` reads exactly the window asked for.

The per-patch path is plain rasterio reading into a fresh array, NumPy normalisation
and ``torch.from_numpy``: no dask, no xarray, no per-patch file opening (handles are
opened lazily once per process, so they are valid after a DataLoader forks). Dask is
used once per scene, for the statistics and a coarse validity map
(:func:`geoglacier.training.normalization.scan_scene`).

Normalisation uses the training blocks' statistics for every scene, or with
``normalization="scene"`` each scene's (classic: each pair's) own statistics over all
its valid pixels (:func:`make_datasets`).

Every sample is a dict: ``image`` float32 ``(C, P, P)`` normalised with invalid
pixels 0, ``mask`` float32 ``(P, P)`` in {0, 1} (0 where ignored), ``valid`` bool
``(P, P)`` (False for nodata, mask nodata and padding), ``index`` int, and for scenes
``window`` int64 ``[pair_index, row_off, col_off]``.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from geoglacier.errors import ConfigError, GeoglacierWarning
from geoglacier.io.layouts import ClassicPair, ScenePair, find_pairs
from geoglacier.io.masks import IGNORE, read_mask
from geoglacier.io.scene import DEFAULT_BAND_NAMES, valid_pixels
from geoglacier.products.recipes import format_recipe
from geoglacier.training.checks import (
    check_patch_size,
    check_same_recipe,
    check_scenes_fit,
    check_scenes_hold,
)
from geoglacier.training.normalization import (
    Moments,
    Normalization,
    check_normalization_mode,
    scene_scan,
    stats_from_arrays,
)
from geoglacier.training.sampling import (
    CLASS_NAMES,
    VALIDITY_CELL,
    CellSampler,
    Sampling,
    ValidFractionFn,
    balanced_crop_centre,
    check_sampling_mode,
    class_samplers,
    coarse_valid_fraction,
    sample_balanced_windows,
    sample_train_windows,
)
from geoglacier.training.split import TrainRegions, classic_split, spatial_split

if TYPE_CHECKING:  # augment imports albumentations: only when augmenting
    from geoglacier.training.augment import AugmentFn


def _mask_values(raw: np.ndarray, nodata: float | None) -> np.ndarray:
    """Raw mask values to uint8 0/1/IGNORE without a per-patch ``np.unique``.

    The layout checks already guaranteed each mask is {0, 1} or {0, 255} (plus nodata),
    so 1 and 255 both mean glacier unless they are the nodata value.
    """
    out = ((raw == 1) | (raw == 255)).view(np.uint8)
    if raw.dtype.kind == "f":
        out[~np.isfinite(raw)] = IGNORE
    if nodata is not None and np.isfinite(nodata):
        out[raw == nodata] = IGNORE
    return out


def per_pair(normalization: Normalization | Sequence[Normalization], pairs: int) -> tuple[Normalization, ...]:
    """One normalisation per pair: the shared one repeated, or the per-scene ones as given.

    Raises:
        ConfigError: a sequence whose length is not the number of pairs.
    """
    if isinstance(normalization, Normalization):
        return (normalization,) * pairs
    norms = tuple(normalization)
    if len(norms) != pairs:
        raise ConfigError(f"{len(norms)} normalisations for {pairs} pairs; give one, or one per pair")
    return norms


def _normalise_valid(
    block: np.ndarray, valid: np.ndarray, nodata: float | None, normalization: Normalization
) -> None:
    """Normalise a ``(C, P, P)`` float32 block in place and AND its pixel validity into ``valid``.

    One band at a time, so each band is checked (finite, not ``nodata``) and normalised
    while it is still in the CPU cache: the per-patch work costs little next to the
    tile decode. The result equals :func:`~geoglacier.io.scene.valid_pixels` followed by
    :meth:`Normalization.apply`; invalid pixels become 0.
    """
    if block.shape[0] != normalization.bands:
        raise ConfigError(
            f"normalisation is for {normalization.bands} bands but the block has {block.shape[0]}; "
            "compute statistics on data with the same bands"
        )
    inv, shift = normalization.coefficients
    check_nodata = nodata is not None and np.isfinite(nodata)
    value = np.float32(nodata) if check_nodata else None
    tmp = np.empty(valid.shape, dtype=bool)
    for b in range(block.shape[0]):
        band = block[b]
        np.isfinite(band, out=tmp)
        valid &= tmp
        if check_nodata:
            np.not_equal(band, value, out=tmp)
            valid &= tmp
        band *= inv[b]
        band += shift[b]
    if not valid.all():
        np.copyto(block, np.float32(0.0), where=~valid[None])


def _sample(
    image: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    nodata: float | None,
    normalization: Normalization,
    augment: AugmentFn | None,
    index: int,
) -> dict[str, Any]:
    """Check, normalise (in place), augment and wrap one ``(C, P, P)`` block and its uint8 mask.

    ``valid`` comes in False only where the block has no data at all (padding); the
    image's own nodata/non-finite pixels and the mask's IGNORE are folded in here.
    """
    valid &= mask != IGNORE
    _normalise_valid(image, valid, nodata, normalization)
    if augment is not None:
        mask[~valid] = IGNORE
        hwc, mask = augment(np.ascontiguousarray(image.transpose(1, 2, 0)), mask)
        image = np.ascontiguousarray(hwc.transpose(2, 0, 1))
        valid = mask != IGNORE
        np.copyto(image, np.float32(0.0), where=~valid[None])
    target = ((mask == 1) & valid).view(np.uint8).astype(np.float32)
    return {
        "image": torch.from_numpy(image),
        "mask": torch.from_numpy(target),
        "valid": torch.from_numpy(valid),
        "index": int(index),
    }


class ClassicPatchDataset(Dataset):
    """One patch per classic pair (``masked_NAME.npy`` + ``NAME.tif``).

    Pairs larger than ``patch_size`` are cropped: at random when ``train`` (the offset
    is drawn from ``(seed, epoch, index)``, so it does not depend on which worker
    reads the sample), at the centre otherwise. Smaller pairs are placed top-left in
    a ``patch_size`` square whose padding is invalid (mask ignored). Every sample has
    the same shape, so batches collate. ``normalization`` is one for every pair, or one
    per pair (per-scene normalisation). With ``sampling="balanced"`` a training crop is
    centred on a glacier or a non-glacier pixel of the pair with equal probability
    (:func:`~geoglacier.training.sampling.balanced_crop_centre`).
    """

    def __init__(
        self,
        pairs: list[ClassicPair],
        patch_size: int,
        normalization: Normalization | Sequence[Normalization],
        augment: AugmentFn | None = None,
        train: bool = True,
        seed: int = 0,
        sampling: Sampling = "uniform",
    ) -> None:
        self.pairs = list(pairs)
        self.patch_size = check_patch_size(patch_size)
        self.normalization = normalization
        self.normalizations = per_pair(normalization, len(self.pairs))
        self.augment = augment
        self.train = train
        self.seed = seed
        self.sampling = check_sampling_mode(sampling)
        self.epoch = 0
        self._arrays: dict[int, np.ndarray] = {}
        self._masks: dict[int, np.ndarray] = {}
        self._counts: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"], state["_masks"] = {}, {}  # a memmap would pickle as a full copy
        return state

    def set_epoch(self, epoch: int) -> None:
        """Make random crops depend on ``epoch`` (deterministically)."""
        self.epoch = int(epoch)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._arrays:
            self._arrays[i] = np.load(self.pairs[i].image, mmap_mode="r")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GeoglacierWarning)  # warned once by the layout check
                self._masks[i] = read_mask(self.pairs[i].mask)
        return self._arrays[i], self._masks[i]

    def crop_offset(self, i: int) -> tuple[int, int]:
        """Top-left corner of the crop taken from pair ``i``."""
        h, w = self.pairs[i].shape
        p = self.patch_size
        if not self.train:
            return max(h - p, 0) // 2, max(w - p, 0) // 2
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.sampling == "balanced" and (h > p or w > p):
            centre = balanced_crop_centre(self.classes(i), w, rng)
            if centre is not None:
                row, col = centre
                return min(max(row - p // 2, 0), max(h - p, 0)), min(max(col - p // 2, 0), max(w - p, 0))
        return int(rng.integers(0, max(h - p, 0) + 1)), int(rng.integers(0, max(w - p, 0) + 1))

    def classes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices of the glacier and of the non-glacier pixels of pair ``i``'s mask.

        Found again for each crop (a scan of one small mask) rather than kept: int64
        indices of every training pair would take 8 bytes per pixel of the whole set.
        """
        flat = self._load(i)[1].ravel()
        return np.flatnonzero(flat == 1), np.flatnonzero(flat == 0)

    def class_counts(self, i: int) -> tuple[int, int]:
        """Glacier and non-glacier pixel counts of pair ``i``'s mask (cached)."""
        if i not in self._counts:
            flat = self._load(i)[1].ravel()
            self._counts[i] = (int(np.count_nonzero(flat == 1)), int(np.count_nonzero(flat == 0)))
        return self._counts[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        arr, full_mask = self._load(i)
        p = self.patch_size
        r, c = self.crop_offset(i)
        part = arr[r : r + p, c : c + p, :]
        h, w = part.shape[:2]
        image = np.zeros((arr.shape[2], p, p), dtype=np.float32)
        image[:, :h, :w] = part.transpose(2, 0, 1)
        mask = np.full((p, p), IGNORE, dtype=np.uint8)
        mask[:h, :w] = full_mask[r : r + p, c : c + p]
        valid = np.zeros((p, p), dtype=bool)
        valid[:h, :w] = True
        return _sample(image, mask, valid, None, self.normalizations[i], self.augment, i)


class ScenePatchDataset(Dataset):
    """Windows of large GeoTIFF scenes, read with rasterio exactly as asked.

    Windows may reach past the scene edge; the outside is invalid (image 0 after
    normalisation, mask ignored). File handles are opened on first use in each
    process and kept in ``_handles[pid][pair_index]``, so a DataLoader worker never
    uses a handle inherited from its parent and never reopens a file per patch.
    ``normalization`` is one for every scene, or one per scene (per-scene normalisation).
    """

    def __init__(
        self,
        pairs: list[ScenePair],
        windows: np.ndarray,
        patch_size: int,
        normalization: Normalization | Sequence[Normalization],
        augment: AugmentFn | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.patch_size = check_patch_size(patch_size)
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 3)
        self.normalization = normalization
        self.normalizations = per_pair(normalization, len(self.pairs))
        self.augment = augment
        self._nodata = [p.info.nodata for p in self.pairs]
        self._mask_nodata: list[float | None] = [None] * len(self.pairs)
        self._handles: dict[int, dict[int, tuple[Any, Any]]] = {}
        self.opens: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # handles never cross a pickle (spawned workers reopen)
        return state

    def _open(self, k: int) -> tuple[Any, Any]:
        pid = os.getpid()
        handles = self._handles.setdefault(pid, {})
        pair = handles.get(k)
        if pair is None:
            pair = handles[k] = (rasterio.open(self.pairs[k].image), rasterio.open(self.pairs[k].mask))
            self._mask_nodata[k] = pair[1].nodata
            self.opens[pid] = self.opens.get(pid, 0) + 2
        return pair

    def close(self) -> None:
        """Close this process's handles."""
        for img, msk in self._handles.pop(os.getpid(), {}).values():
            img.close()
            msk.close()

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(C, P, P)`` float32 block (NaN outside the scene) and uint8 mask of window ``i``."""
        k, row, col = (int(v) for v in self.windows[i])
        img, msk = self._open(k)
        p = self.patch_size
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + p, img.height), min(col + p, img.width)
        if r0 == row and c0 == col and r1 - row == p and c1 - col == p:
            window = Window(col, row, p, p)
            block = img.read(window=window, out_dtype=np.float32)
            mask = _mask_values(msk.read(1, window=window), self._mask_nodata[k])
            return block, mask
        block = np.full((img.count, p, p), np.nan, dtype=np.float32)
        mask = np.full((p, p), IGNORE, dtype=np.uint8)
        if r1 > r0 and c1 > c0:
            window = Window(c0, r0, c1 - c0, r1 - r0)
            inner = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            block[(slice(None), *inner)] = img.read(window=window, out_dtype=np.float32)
            mask[inner] = _mask_values(msk.read(1, window=window), self._mask_nodata[k])
        return block, mask

    def __getitem__(self, i: int) -> dict[str, Any]:
        block, mask = self.read(i)
        valid = np.ones(mask.shape, dtype=bool)  # NaN outside the scene: invalid like nodata
        k = int(self.windows[i, 0])
        sample = _sample(block, mask, valid, self._nodata[k], self.normalizations[k], self.augment, i)
        sample["window"] = torch.from_numpy(self.windows[i].copy())
        return sample


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoaders: give each worker its own augmentation draws.

    ``torch.initial_seed()`` differs per worker (base seed + worker id); pass a
    seeded ``generator`` to the DataLoader for reproducible runs.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    augment = getattr(info.dataset, "augment", None) if info is not None else None
    if augment is not None and hasattr(augment, "reseed"):
        augment.reseed(seed)


# ---------------------------------------------------------------------------------------
# putting it together


@dataclass
class TrainingData:
    """Training and validation datasets built from one data directory.

    Call :meth:`resample` at the start of every epoch, before creating the
    DataLoader iterator (workers copy the dataset when the iterator starts, so with
    ``persistent_workers=True`` new windows would not reach them).

    ``normalization`` holds the training statistics (stored in the checkpoint) in
    either ``normalization_mode``; with ``"scene"`` the datasets apply each scene's own
    statistics instead (their ``normalizations``).

    With ``sampling="balanced"`` scene windows are drawn by :func:`~geoglacier.training.sampling.sample_balanced_windows`
    from ``class_samplers`` (glacier, non-glacier); classic crops balance themselves.
    """

    train: ClassicPatchDataset | ScenePatchDataset
    val: ClassicPatchDataset | ScenePatchDataset
    normalization: Normalization
    band_names: tuple[str, ...]
    layout: Literal["classic", "scenes"]
    patch_size: int
    seed: int = 0
    patches_per_epoch: int | None = None
    regions: TrainRegions | None = None
    valid_fraction_fn: ValidFractionFn | None = field(default=None, repr=False)
    normalization_mode: str = "training"
    sampling: Sampling = "uniform"
    class_samplers: tuple[CellSampler | None, CellSampler | None] = field(default=(None, None), repr=False)
    val_fraction: float = 0.2

    def resample(self, epoch: int) -> None:
        """Redraw the random training windows (scenes) or crops (classic) from ``(seed, epoch)``."""
        if isinstance(self.train, ScenePatchDataset):
            assert self.regions is not None and self.patches_per_epoch is not None
            rng = np.random.default_rng([self.seed, int(epoch)])
            if self.sampling == "balanced":
                self.train.windows = sample_balanced_windows(
                    self.regions,
                    self.patches_per_epoch,
                    self.patch_size,
                    rng,
                    self.class_samplers,
                    self.valid_fraction_fn,
                )
                return
            self.train.windows = sample_train_windows(
                self.regions, self.patches_per_epoch, self.patch_size, rng, self.valid_fraction_fn
            )
        else:
            self.train.set_epoch(epoch)

    def no_validation_reason(self) -> str:
        """Why validation holds no window (for a run that has none): the option or the data to change."""
        if self.val_fraction <= 0:
            return "--val-fraction 0"
        if self.regions is None:
            return "a single classic pair cannot be split; add pairs to validate"
        if not any(v.any() for v in self.regions.is_val):
            return (
                f"each scene is a single block of {self.patch_size} px, none can be held out; "
                "use a smaller --patch-size"
            )
        return "the validation blocks hold no valid pixels"

    def describe(self) -> str:
        """One line on the split: what validation holds, what an epoch trains on."""
        if self.regions is None:
            n_val, n_all = len(self.val), len(self.val) + len(self.train)
            return f"Validation: {n_val} of {n_all} pairs; training crops of {self.patch_size} px from the other {n_all - n_val}"
        total = sum(h * w for h, w in self.regions.shapes)
        held = total - float(self.regions.train_pixels().sum())
        blocks = sum(int(v.sum()) for v in self.regions.is_val)
        sizes = "/".join(str(b) for b in sorted(set(self.regions.blocks), reverse=True))
        return (
            f"Validation: {held / total:.0%} of the scenes' pixels ({blocks} blocks of {sizes} px, "
            f"{len(self.regions.shapes)} scene(s)); {self.patches_per_epoch} training windows of "
            f"{self.patch_size} px per epoch ({self.sampling})"
        )


def _band_names(bands: int) -> tuple[str, ...]:
    return (
        DEFAULT_BAND_NAMES
        if bands == len(DEFAULT_BAND_NAMES)
        else tuple(f"band{i + 1}" for i in range(bands))
    )


def _own_statistics(moments: Moments, fallback: Normalization, what: str) -> Normalization:
    """A scene's (or pair's) own statistics; ``fallback`` when it has no valid pixel (no pixel of it is used then)."""
    return fallback if (moments.count == 0).any() else moments.normalization(what)


def _classic_datasets(
    classic: list[ClassicPair],
    p: int,
    val_fraction: float,
    seed: int,
    band_names: tuple[str, ...],
    aug: AugmentFn | None,
    mode: str,
    sampling: Sampling = "uniform",
) -> TrainingData:
    """The classic layout's datasets; with ``mode="scene"`` each pair is normalised by its own statistics."""

    def image(q: ClassicPair) -> np.ndarray:
        return np.moveaxis(np.load(q.image, mmap_mode="r"), -1, 0)

    train_pairs, val_pairs = classic_split(classic, val_fraction, seed)
    norm = stats_from_arrays(image(q) for q in train_pairs)
    train_norm: Normalization | list[Normalization] = norm
    val_norm: Normalization | list[Normalization] = norm
    if mode == "scene":

        def own(q: ClassicPair) -> Normalization:
            arr = image(q)
            return _own_statistics(Moments.of(arr, valid_pixels(arr, None)), norm, str(q.image))

        train_norm, val_norm = [own(q) for q in train_pairs], [own(q) for q in val_pairs]
    train = ClassicPatchDataset(train_pairs, p, train_norm, aug, train=True, seed=seed, sampling=sampling)
    if sampling == "balanced":
        _warn_missing_classes(train)
    return TrainingData(
        train=train,
        val=ClassicPatchDataset(val_pairs, p, val_norm, None, train=False, seed=seed),
        normalization=norm,
        band_names=band_names,
        layout="classic",
        patch_size=p,
        seed=seed,
        patches_per_epoch=len(train_pairs),
        normalization_mode=mode,
        sampling=sampling,
        val_fraction=val_fraction,
    )


def _warn_missing_classes(train: ClassicPatchDataset) -> None:
    """Warn when no training pair holds a glacier (or a non-glacier) pixel: balanced crops cannot be."""
    for which, name in enumerate(CLASS_NAMES):
        if not any(train.class_counts(i)[which] for i in range(len(train))):
            warnings.warn(
                f"--sampling balanced: no training pair holds a valid {name} pixel, so crops are "
                "centred on the other class or drawn uniformly",
                GeoglacierWarning,
                stacklevel=4,
            )


def _scan_scenes(
    scenes: list[ScenePair], regions: TrainRegions, bands: int, mode: str, what: str
) -> tuple[Normalization, list[Normalization] | None, list[np.ndarray]]:
    """The training blocks' statistics, each scene's own (``mode="scene"``) and the coarse validity maps.

    One lazy pass per scene yields all three.
    """
    total = Moments.empty(bands)
    maps: list[np.ndarray] = []
    whole: list[Moments] = []
    for k, q in enumerate(scenes):
        boxes = regions.boxes(k)[:, 1:]
        scan = scene_scan(q.image, regions=boxes, cell=VALIDITY_CELL, whole=mode == "scene")
        total = total.merge(scan.moments)
        maps.append(scan.coarse)
        if scan.scene_moments is not None:
            whole.append(scan.scene_moments)
    norm = total.normalization(what)
    if mode != "scene":
        return norm, None, maps
    own = [_own_statistics(m, norm, str(q.image)) for m, q in zip(whole, scenes, strict=True)]
    return norm, own, maps


def _scene_datasets(
    scenes: list[ScenePair],
    p: int,
    val_fraction: float,
    seed: int,
    patches_per_epoch: int | None,
    recipe: tuple[str, ...] | None,
    aug: AugmentFn | None,
    mode: str,
    what: str,
    sampling: Sampling = "uniform",
) -> TrainingData:
    """The scene layout's datasets; with ``mode="scene"`` each scene is normalised by its own statistics.

    With a ``recipe`` every scene must hold it (:func:`~geoglacier.training.checks.check_scenes_hold`) and the
    checkpoint names it; without, the scenes must agree among themselves.
    """
    if recipe is None:
        check_same_recipe(scenes)
    else:
        check_scenes_hold(scenes, recipe)
    check_scenes_fit(scenes, p)
    bands = scenes[0].info.count
    regions, val_windows = spatial_split([q.info.shape for q in scenes], p, val_fraction, seed)
    norm, own, maps = _scan_scenes(scenes, regions, bands, mode, what)
    fraction = coarse_valid_fraction(maps, p)
    if len(val_windows):
        val_windows = val_windows[fraction(val_windows) > 0]
    if patches_per_epoch is None:
        patches_per_epoch = max(8, int(np.ceil(regions.train_pixels().sum() / (p * p))))
    per_scene = norm if own is None else own
    data = TrainingData(
        train=ScenePatchDataset(scenes, np.zeros((0, 3), dtype=np.int64), p, per_scene, aug),
        val=ScenePatchDataset(scenes, val_windows, p, per_scene, None),
        normalization=norm,
        band_names=scenes[0].info.band_names if recipe is None else recipe,
        layout="scenes",
        patch_size=p,
        seed=seed,
        patches_per_epoch=int(patches_per_epoch),
        regions=regions,
        valid_fraction_fn=fraction,
        normalization_mode=mode,
        sampling=sampling,
        class_samplers=class_samplers(scenes, regions, maps) if sampling == "balanced" else (None, None),
        val_fraction=val_fraction,
    )
    data.resample(0)
    return data


def make_datasets(
    data_dir: str | os.PathLike[str],
    patch_size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
    patches_per_epoch: int | None = None,
    bands: int = 5,
    augment: bool = True,
    radiometric: bool = False,
    normalization: str = "scene",
    recipe: Sequence[str] | None = None,
    sampling: str = "uniform",
) -> TrainingData:
    """Find the pairs in ``data_dir``, split them, compute statistics, build datasets.

    classic layout: pairs are split ``1 - val_fraction`` / ``val_fraction`` at random
    (seeded; at least one validation pair when there are two or more), statistics come
    from the training arrays. scene layout: :func:`~geoglacier.training.split.spatial_split` by blocks, statistics
    from the training blocks only (one lazy dask pass per scene, which also yields the
    coarse validity map used to skip mostly-nodata windows), ``patches_per_epoch``
    random training windows per epoch (default: as many as tile the training area,
    at least 8). Nodata never enters the statistics.

    ``normalization="scene"`` normalises every scene (classic: every pair) by the mean
    and std of its own valid pixels, the whole scene's, validation blocks included, as
    inference will; the training statistics are still computed and returned in
    :attr:`TrainingData.normalization` (the checkpoint keeps them).

    ``recipe`` (a parsed band recipe, ``bands`` long) names the bands: scenes must
    describe theirs so (:func:`~geoglacier.training.checks.check_scenes_hold`), classic pairs are taken to hold it.
    Without it, scenes name their own bands and classic pairs get default names.

    ``sampling="balanced"`` centres half of the training windows (classic: each crop
    with probability one half) on glacier ground and half on non-glacier ground
    (:mod:`geoglacier.training.sampling`; scenes take one more windowed pass over each
    mask for it); ``"uniform"`` draws positions uniformly.
    """
    from geoglacier.training.augment import build_augment

    p = check_patch_size(patch_size)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    mode = check_normalization_mode(normalization)
    balance = check_sampling_mode(sampling)
    names = None if recipe is None else tuple(recipe)
    if names is not None and len(names) != bands:
        raise ConfigError(f"the band recipe {format_recipe(names)} names {len(names)} bands, not {bands}")
    layout, pairs = find_pairs(data_dir, bands, names)
    aug = build_augment(seed, radiometric) if augment else None
    if layout == "classic":
        classic_names = _band_names(bands) if names is None else names
        return _classic_datasets(list(pairs), p, val_fraction, seed, classic_names, aug, mode, balance)  # type: ignore[arg-type]
    what = f"the training blocks of {Path(data_dir)}"
    scenes: list[ScenePair] = list(pairs)  # type: ignore[assignment]
    return _scene_datasets(scenes, p, val_fraction, seed, patches_per_epoch, names, aug, mode, what, balance)
