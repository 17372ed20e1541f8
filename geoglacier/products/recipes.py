"""Band recipes: the named, ordered bands of a scene.

A *recipe* is the ordered list of band names a scene holds (and a checkpoint was
trained on), written into the GeoTIFF band descriptions. Names come from one
vocabulary:

Surface reflectance (unitless, about 0..1):

========  =================================  ==============  ==================
name      meaning                            Landsat 8/9     Sentinel-2
========  =================================  ==============  ==================
blue      blue                               SR_B2           B02 (10 m)
green     green                              SR_B3           B03 (10 m)
red       red                                SR_B4           B04 (10 m)
nir       near infrared                      SR_B5           B08 (10 m)
swir1     shortwave infrared, ~1.6 um        SR_B6           B11 (20 m)
swir2     shortwave infrared, ~2.2 um        SR_B7           B12 (20 m)
========  =================================  ==============  ==================

(Landsat 7 ETM+: SR_B1 blue, SR_B2 green, SR_B3 red, SR_B4 nir, SR_B5 swir1, SR_B7 swir2.)

Normalised-difference indices, computed from reflectance after resampling:

* ``ndvi = (nir - red) / (nir + red)`` - vegetation;
* ``ndsi = (green - swir1) / (green + swir1)`` - snow and ice (the classic glacier index);
* ``ndwi = (green - nir) / (green + nir)`` - open water (McFeeters).

Terrain, from a DEM (``geoglacier stack --dem``; see :mod:`geoglacier.products.terrain`):

* ``elevation`` - metres;
* ``slope`` - degrees from horizontal (Horn's method, true ground distances);
* ``northness``, ``eastness`` - cosine and sine of the aspect (0 on flat ground).

Where the two reflectances sum to exactly zero an index is 0 (not nodata): such a
pixel carries no contrast, and making it nodata would punch holes into dark water.

The default recipe, ``red,green,blue,nir,ndvi``, is what the synthetic scenes and
``../shared/data/everest`` hold; the model takes as many channels as the recipe names.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio

from geoglacier.errors import GeoglacierWarning, InvalidRasterError, RecipeError, RecipeMismatchError

REFLECTANCE: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
#: index name -> (a, b) of ``(a - b) / (a + b)``
INDICES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),
    "ndsi": ("green", "swir1"),
    "ndwi": ("green", "nir"),
}
TERRAIN: tuple[str, ...] = ("elevation", "slope", "northness", "eastness")
VOCABULARY: tuple[str, ...] = REFLECTANCE + tuple(INDICES) + TERRAIN
DEFAULT_RECIPE: tuple[str, ...] = ("red", "green", "blue", "nir", "ndvi")

_GENERIC = re.compile(r"^band\d+$")


def parse_recipe(recipe: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"red,green,blue,nir,ndvi"`` (or a list of names) into a checked tuple.

    Names are case-insensitive and may carry spaces around the commas.

    Raises:
        RecipeError: empty, an unknown name, or a name given twice.
    """
    parts = recipe.split(",") if isinstance(recipe, str) else list(recipe)
    names = tuple(str(p).strip().lower() for p in parts)
    if not names or any(not n for n in names):
        raise RecipeError(
            f"band recipe {','.join(names)!r} has an empty name; "
            f"give comma-separated names from {','.join(VOCABULARY)}"
        )
    unknown = [n for n in names if n not in VOCABULARY]
    if unknown:
        raise RecipeError(
            f"unknown band {unknown[0]!r} in recipe {','.join(names)}; known bands: {','.join(VOCABULARY)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RecipeError(
            f"band {repeated[0]!r} appears twice in recipe {','.join(names)}; name each band once"
        )
    return names


def format_recipe(recipe: Sequence[str]) -> str:
    """The comma-separated form used in messages and on the command line."""
    return ",".join(recipe)


def reflectance_needed(recipe: Sequence[str]) -> tuple[str, ...]:
    """The reflectance bands a recipe needs (its own and the indices' inputs), in vocabulary order."""
    needed: set[str] = set()
    for name in recipe:
        needed.update(INDICES.get(name, (name,)))
    return tuple(b for b in REFLECTANCE if b in needed)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` in float32, 0 where ``a + b == 0`` and NaN where an input is NaN."""
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    total = a32 + b32
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a32 - b32) / total
    out[total == 0] = 0.0
    return out


def compute_recipe(recipe: Sequence[str], reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack the recipe's bands from reflectance arrays: ``(len(recipe), h, w)`` float32.

    A band found in ``reflectance`` under its own name is copied (an index a scene
    already holds); an index that is not is computed from its two reflectances.

    Args:
        recipe: a parsed recipe without terrain bands.
        reflectance: name -> ``(h, w)`` array; must hold :func:`reflectance_needed` or the bands themselves.
    """
    first = next(iter(reflectance.values()))
    out = np.empty((len(recipe), *first.shape), dtype=np.float32)
    for i, name in enumerate(recipe):
        if name in reflectance:
            out[i] = reflectance[name]
        elif name in INDICES:
            a, b = INDICES[name]
            out[i] = normalized_difference(reflectance[a], reflectance[b])
        else:
            out[i] = reflectance[name]
    return out


def is_generic(names: Sequence[str]) -> bool:
    """True for placeholder names (``band1``, ``band2`` ...) that say nothing about the bands."""
    return all(_GENERIC.match(n) for n in names)


def scene_descriptions(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The band descriptions of a raster (``""`` for a band without one)."""
    try:
        with rasterio.open(path) as ds:
            return tuple(d or "" for d in ds.descriptions)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidRasterError(f"{path}: not a readable raster; check the file") from exc


def check_scene_recipe(path: str | os.PathLike[str], recipe: Sequence[str], warn: bool = True) -> None:
    """Check that a scene holds the bands a checkpoint was trained on, in the same order.

    The scene's band descriptions are compared with ``recipe`` case-insensitively. A
    scene without any description is accepted with a :class:`GeoglacierWarning` (old
    scenes carry none); so is any scene when ``recipe`` only holds placeholder names
    (``band1`` ...), which say nothing to compare.

    Raises:
        RecipeMismatchError: the descriptions name other bands or another order.
    """
    expected = tuple(n.lower() for n in recipe)
    if is_generic(expected):
        return
    found = tuple(d.strip().lower() for d in scene_descriptions(path))
    if not any(found):
        if not warn:  # the caller has warned already (or will)
            return
        warnings.warn(
            f"{Path(path).name} has no band descriptions: assuming it holds {format_recipe(expected)}, "
            "as the checkpoint expects (scenes from 'geoglacier stack' carry them)",
            GeoglacierWarning,
            stacklevel=3,
        )
        return
    if found != expected:
        shown = ",".join(d or "?" for d in found)
        raise RecipeMismatchError(
            f"{path}: the scene's bands are {shown} but the checkpoint was trained on "
            f"{format_recipe(expected)}; stack the scene with --bands {format_recipe(expected)} "
            "or use a checkpoint trained on these bands"
        )
