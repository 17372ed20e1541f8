"""An existing scene GeoTIFF as a stack source (``geoglacier stack SCENE.tif --kind scene``).

A scene is one multi-band GeoTIFF whose bands are recipe bands, e.g. one written by an
earlier ``geoglacier stack`` or the shared Everest ``west_scene.tif``. Its band names
come from its band descriptions (``red``, ``green`` ... as ``stack`` writes them) or,
for a scene without them, from ``--scene-bands red,green,blue,nir,ndvi``.

Stacking a scene copies the recipe's bands it holds and computes the others it can (an
index from reflectance bands present; ``elevation`` and ``slope`` from ``--dem``). Its
values are taken as they are (scale 1, no offset); its nodata value, and NaN, become
nodata. There is no quality layer: the scene is taken as already masked. Its tags
``ACQUISITION_DATE``, ``SENSOR`` and ``SOURCE_PRODUCT`` are kept. The default output grid
is the scene's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from geoglacier.errors import ConfigError, InvalidRasterError, MissingBandError, ProductError, RecipeError
from geoglacier.products.metadata import DATE_TAG, PRODUCT_TAG, SENSOR_TAG
from geoglacier.products.product import BandFile, Product
from geoglacier.products.recipes import INDICES, format_recipe, parse_recipe

SCENE_KIND = "scene"
SUFFIXES: tuple[str, ...] = (".tif", ".tiff")


def is_scene_file(path: Path) -> bool:
    """A single GeoTIFF file (``.tif`` / ``.tiff``): taken as a scene."""
    return path.is_file() and path.suffix.lower() in SUFFIXES


def _names(
    path: Path, descriptions: Sequence[str | None], scene_bands: str | Sequence[str] | None
) -> tuple[str, ...]:
    """The scene's band names: ``scene_bands`` when given, else its descriptions."""
    count = len(descriptions)
    if scene_bands is not None:
        names = parse_recipe(scene_bands)
        if len(names) != count:
            raise ConfigError(
                f"--scene-bands names {len(names)} bands ({format_recipe(names)}) but {path.name} has {count}; "
                f"name each of its {count} bands in order"
            )
        return names
    found = [(d or "").strip() for d in descriptions]
    if not any(found):
        raise ProductError(
            f"{path}: the scene has no band descriptions; name its {count} band(s) in order with "
            "--scene-bands, e.g. --scene-bands red,green,blue,nir,ndvi (for one band file of a product, "
            "give the product's folder)"
        )
    try:
        return parse_recipe(found)
    except RecipeError as exc:
        raise ProductError(
            f"{path}: its band descriptions {','.join(d or '?' for d in found)} are not recipe bands ({exc}); "
            "name its bands in order with --scene-bands"
        ) from exc


def read_scene(source: str | os.PathLike[str], scene_bands: str | Sequence[str] | None = None) -> Product:
    """Describe a scene GeoTIFF as a :class:`~geoglacier.products.product.Product` of kind ``scene``.

    Args:
        source: the GeoTIFF.
        scene_bands: its band names in order (overrides its descriptions).

    Raises:
        InvalidRasterError: not a readable raster.
        ProductError: no CRS, no usable band names and no ``scene_bands``.
        ConfigError: ``scene_bands`` does not name as many bands as the scene has.
    """
    path = Path(source)
    try:
        with rasterio.open(path) as ds:
            descriptions, tags, crs, nodata = ds.descriptions, ds.tags(), ds.crs, ds.nodata
    except RasterioIOError as exc:
        raise InvalidRasterError(f"{path}: not a readable raster; give a scene GeoTIFF") from exc
    if crs is None:
        raise ProductError(f"{path}: the scene has no CRS; assign one (gdal_edit.py -a_srs EPSG:...)")
    names = _names(path, descriptions, scene_bands)
    bands = {n: BandFile(str(path), 1.0, 0.0, nodata=nodata, index=i + 1) for i, n in enumerate(names)}
    return Product(
        kind=SCENE_KIND,
        source=str(path),
        bands=bands,
        acquisition_date=tags.get(DATE_TAG) or None,
        sensor=tags.get(SENSOR_TAG) or None,
        product_id=tags.get(PRODUCT_TAG) or None,
    )


def scene_needs(product: Product, recipe: Sequence[str]) -> list[str]:
    """The scene's bands to read for ``recipe`` (its non-terrain bands): copied, or an index's inputs.

    Raises:
        MissingBandError: a band neither in the scene nor computable from it.
    """
    needed: list[str] = []
    for name in recipe:
        inputs = (name,) if name in product.bands else INDICES.get(name, ())
        if not inputs or any(b not in product.bands for b in inputs):
            how = f" (nor {' and '.join(INDICES[name])} to compute it)" if name in INDICES else ""
            raise MissingBandError(
                f"{product.source}: the scene holds {format_recipe(tuple(product.bands))}, not {name}{how}; "
                "stack the original product for it, or choose --bands among the scene's"
            )
        needed += [b for b in inputs if b not in needed]
    return needed
