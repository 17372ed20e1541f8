"""Checks on what training is given: the patch size, the scenes' size and their band recipe.

Each raises a typed error from :mod:`geoglacier.errors` naming the fix; the split, the
samplers and the dataset builders share them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from geoglacier.errors import ConfigError, GeoglacierWarning, RecipeMismatchError
from geoglacier.io.atomic import check_distinct_files
from geoglacier.io.layouts import ScenePair
from geoglacier.products.recipes import format_recipe, scene_descriptions


def check_patch_size(patch_size: int) -> int:
    """Raise :class:`ConfigError` unless ``patch_size`` is a positive multiple of 32 (U-Net++ needs it)."""
    if not isinstance(patch_size, (int, np.integer)) or patch_size <= 0 or patch_size % 32:
        raise ConfigError(
            f"--patch-size must be a positive multiple of 32 (the U-Net++ encoder halves it 5 times), "
            f"got {patch_size}; try {max(32, int(round(float(patch_size) / 32)) * 32)}"
        )
    return int(patch_size)


def check_scenes_fit(scenes: Sequence[ScenePair], patch_size: int) -> None:
    """At least one scene must hold a whole ``patch_size`` window (its height and width >= the patch).

    A scene narrower than the patch is trained on windows that are partly padding and,
    being a single block, cannot give blocks to validation: when no scene holds a whole
    window, the patch is too large for the data.

    Raises:
        ConfigError: every scene is smaller than the patch in height or width; the
            message names the largest patch size that fits (a multiple of 32).
    """
    p = int(patch_size)
    if not scenes or any(min(q.info.shape) >= p for q in scenes):
        return
    widest = max(scenes, key=lambda q: min(q.info.shape))
    h, w = widest.info.shape
    fits = min(h, w) // 32 * 32
    what = f"scene {widest.image}" if len(scenes) == 1 else f"every scene (the widest, {widest.image}, is"
    size = f"({h}x{w})" if len(scenes) == 1 else f"{h}x{w})"
    advice = (
        f"use --patch-size {fits} or less"
        if fits >= 32
        else "scenes must be at least 32 px in height and width (the smallest patch)"
    )
    raise ConfigError(f"--patch-size {p} is larger than {what} {size}; {advice}")


def check_same_recipe(scenes: list[ScenePair]) -> None:
    """All scenes must hold the same bands in the same order (their descriptions): the checkpoint stores one recipe.

    Raises:
        RecipeMismatchError: two scenes name their bands differently.
    """
    first = scenes[0].info
    for q in scenes[1:]:
        if q.info.band_names != first.band_names:
            raise RecipeMismatchError(
                f"{q.info.path}: bands {','.join(q.info.band_names)} differ from "
                f"{','.join(first.band_names)} of {first.path.name}; stack every scene with the same --bands"
            )


def check_scenes_hold(scenes: list[ScenePair], recipe: Sequence[str]) -> None:
    """Every scene's band descriptions must name ``recipe`` in order (what ``--bands`` asked for).

    Scenes without any description are taken to hold ``recipe``, with one
    :class:`GeoglacierWarning` for all of them.

    Raises:
        RecipeMismatchError: a scene describes other bands, another order or only some bands.
    """
    expected = tuple(n.lower() for n in recipe)
    bare: list[str] = []
    for q in scenes:
        found = tuple(d.strip().lower() for d in scene_descriptions(q.image))
        if not any(found):
            bare.append(q.image.name)
        elif found != expected:
            raise RecipeMismatchError(
                f"{q.image}: the scene holds bands {','.join(d or '?' for d in found)} but --bands asks for "
                f"{format_recipe(expected)}; train with --bands {','.join(d or '?' for d in found)} "
                f"or stack the scene with --bands {format_recipe(expected)}"
            )
    if bare:
        warnings.warn(
            f"{len(bare)} scene(s) without band descriptions ({', '.join(bare[:3])}): assuming they hold "
            f"{format_recipe(expected)}, as --bands says (scenes from 'geoglacier stack' carry them)",
            GeoglacierWarning,
            stacklevel=3,
        )


# What training reads from a data folder (classic .npy images, GeoTIFF scenes and masks,
# VRTs) and the sidecars GDAL reads with them.
_DATA_SUFFIXES = (".npy", ".tif", ".tiff", ".vrt", ".aux.xml", ".ovr", ".msk")


def check_outputs_outside_data(
    data_dir: str | os.PathLike[str], outputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Refuse a checkpoint (``outputs[0]``, then the files beside it) that is one of the data folder's files.

    Every file under ``data_dir`` that training could read counts (scenes, masks, .npy
    images, GDAL sidecars), even with ``--overwrite``: training must never replace what it
    reads. A checkpoint kept inside the data folder (``data/model.pth``) is not one of
    them, so ``--resume`` and ``--overwrite`` still work there.

    Raises:
        OutputPathError: naming the output and the data folder.
    """
    root = Path(data_dir)
    files = [f for f in _walk(root) if f.name.lower().endswith(_DATA_SUFFIXES) and f.is_file()]
    named = {("--out" if i == 0 else f"--out's companion {Path(p).name}"): p for i, p in enumerate(outputs)}
    check_distinct_files(named, {f"a file of DATA_DIR {root}": files})


def _walk(root: Path) -> Iterator[Path]:
    """Every file below ``root``, through symlinked folders too (``data/images -> /disk/images``),
    each folder once (a link back up does not loop)."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        yield from (Path(folder) / n for n in names)
