"""Find training pairs in a data directory, in either supported layout.

classic
    ``masked_NAME.npy`` (H, W, bands) float32 beside ``NAME.tif`` (0/1 mask), matched
    by NAME. Each pair is one small sample held in memory.
scenes
    ``images/NAME.tif`` (multi-band GeoTIFF) + ``masks/NAME.tif`` (single-band mask on
    the same grid): large scenes read lazily, window by window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from geoglacier.errors import BandCountError, LayoutError, SceneNotFoundError
from geoglacier.io.masks import check_mask_values, check_same_grid, inspect_mask, warn_one_class
from geoglacier.io.scene import SceneInfo, inspect_scene

Layout = Literal["classic", "scenes"]
CLASSIC_PREFIX = "masked_"


@dataclass(frozen=True)
class ClassicPair:
    """One classic-layout sample: an (H, W, bands) ``.npy`` array and its mask."""

    name: str
    image: Path
    mask: Path
    shape: tuple[int, int]


@dataclass(frozen=True)
class ScenePair:
    """One scene-layout sample: a GeoTIFF scene and its mask on the same grid."""

    name: str
    image: Path
    mask: Path
    info: SceneInfo


def detect_layout(data_dir: str | os.PathLike[str]) -> Layout:
    """Tell which layout ``data_dir`` follows."""
    root = Path(data_dir)
    if not root.exists():
        raise SceneNotFoundError(f"{root}: data directory not found; check the path")
    if not root.is_dir():
        raise LayoutError(f"{root} is not a directory; give the folder that holds the training data")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "scenes"
    if any(root.glob(f"{CLASSIC_PREFIX}*.npy")):
        return "classic"
    raise LayoutError(
        f"{root}: no training data found; expected masked_NAME.npy + NAME.tif pairs (classic layout) "
        "or images/NAME.tif + masks/NAME.tif (scene layout)"
    )


def classic_pairs(data_dir: str | os.PathLike[str], bands: int = 5) -> list[ClassicPair]:
    """Match ``masked_NAME.npy`` with ``NAME.tif`` and check shapes and band counts.

    Arrays are opened memory-mapped, so checking a large folder reads only headers.
    Warns when the masks together hold a single class (:func:`~geoglacier.io.masks.warn_one_class`).
    """
    root = Path(data_dir)
    images = {p.name[len(CLASSIC_PREFIX) : -len(".npy")]: p for p in root.glob(f"{CLASSIC_PREFIX}*.npy")}
    masks = {p.stem: p for p in list(root.glob("*.tif")) + list(root.glob("*.tiff"))}
    if not images:
        raise LayoutError(f"{root}: no masked_NAME.npy files found (classic layout)")
    lone_images = sorted(set(images) - set(masks))
    if lone_images:
        name = lone_images[0]
        raise LayoutError(
            f"{images[name]} has no mask {root / (name + '.tif')}; add the mask or remove the array"
            + (f" (and {len(lone_images) - 1} more)" if len(lone_images) > 1 else "")
        )
    lone_masks = sorted(set(masks) - set(images))
    if lone_masks:
        name = lone_masks[0]
        raise LayoutError(
            f"{masks[name]} has no image {root / (CLASSIC_PREFIX + name + '.npy')}; add the array or "
            "remove the mask" + (f" (and {len(lone_masks) - 1} more)" if len(lone_masks) > 1 else "")
        )
    pairs = []
    counts: list[tuple[int, int]] = []
    for name in sorted(images):
        try:
            arr = np.load(images[name], mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise LayoutError(f"{images[name]}: not a readable .npy array ({exc})") from exc
        if arr.ndim != 3 or arr.shape[2] != bands:
            hint = (
                f"; it looks channels-first, transpose it to (H, W, {bands}) with arr.transpose(1, 2, 0)"
                if arr.ndim == 3 and arr.shape[0] == bands
                else ""
            )
            raise BandCountError(
                f"{images[name]}: expected an (H, W, {bands}) array, found shape {tuple(arr.shape)}{hint}"
            )
        minfo = inspect_mask(masks[name])
        if (minfo.height, minfo.width) != arr.shape[:2]:
            raise LayoutError(
                f"{masks[name]}: mask shape {minfo.height}x{minfo.width} differs from "
                f"{images[name]} shape {arr.shape[0]}x{arr.shape[1]}; they must be the same size"
            )
        counts.append(check_mask_values(masks[name], minfo))
        pairs.append(ClassicPair(name, images[name], masks[name], (int(arr.shape[0]), int(arr.shape[1]))))
    warn_one_class(root, sum(c[0] for c in counts), sum(c[1] for c in counts))
    return pairs


def scene_pairs(
    data_dir: str | os.PathLike[str], bands: int = 5, band_names: Sequence[str] | None = None
) -> list[ScenePair]:
    """Match ``images/NAME.tif`` with ``masks/NAME.tif``; check bands, grids and mask values.

    Warns when the masks together hold a single class (:func:`~geoglacier.io.masks.warn_one_class`).

    ``band_names`` (a recipe asked for) name the bands in a band-count error.
    """
    root = Path(data_dir)

    def tifs(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".tif", ".tiff")}

    images, masks = tifs(root / "images"), tifs(root / "masks")
    if not images:
        raise LayoutError(f"{root / 'images'}: no .tif scenes found")
    for name in sorted(set(images) ^ set(masks)):
        if name in images:
            raise LayoutError(
                f"{images[name]} has no mask {root / 'masks' / images[name].name}; add it or remove the scene"
            )
        raise LayoutError(
            f"{masks[name]} has no scene {root / 'images' / masks[name].name}; add it or remove the mask"
        )
    pairs = []
    counts: list[tuple[int, int]] = []
    for name in sorted(images):
        sinfo = inspect_scene(images[name], bands, band_names=band_names)
        minfo = inspect_mask(masks[name])
        check_same_grid(sinfo, minfo)
        counts.append(check_mask_values(masks[name], minfo))
        pairs.append(ScenePair(name, images[name], masks[name], sinfo))
    warn_one_class(root / "masks", sum(c[0] for c in counts), sum(c[1] for c in counts))
    return pairs


def find_pairs(
    data_dir: str | os.PathLike[str], bands: int = 5, band_names: Sequence[str] | None = None
) -> tuple[Layout, list[ClassicPair] | list[ScenePair]]:
    """Detect the layout of ``data_dir`` and return its checked pairs (``band_names``: see :func:`scene_pairs`)."""
    layout = detect_layout(data_dir)
    if layout == "classic":
        return layout, classic_pairs(data_dir, bands)
    return layout, scene_pairs(data_dir, bands, band_names)
