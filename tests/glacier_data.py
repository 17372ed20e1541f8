"""Seeded fixtures for the per-glacier tests: masks and outline files with hand-computable areas.

The projected grid sits on the central meridian of UTM 45N at the equator, where the
projection's scale factor is exactly k0 = 0.9996 (it grows by x^2 / 2R^2, 1e-8 at 1 km):
a 30 m map pixel is 30 / k0 m on the ground, so areas and lengths have closed forms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fiona
import numpy as np
from affine import Affine
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from tests.data import write_raster

K0 = 0.9996
PX = 30.0
UTM = "EPSG:32645"
# 64 x 64 grid of 30 m pixels, centred on easting 500000 (the central meridian), just north of the equator
EQ_TRANSFORM = Affine(PX, 0.0, 500000.0 - 32 * PX, 0.0, -PX, 64 * PX + 3000.0)
SIZE = 64


def px_box(r0: int, c0: int, r1: int, c1: int, transform: Affine = EQ_TRANSFORM) -> BaseGeometry:
    """The outline of pixels rows r0..r1-1, cols c0..c1-1 (edges on pixel edges)."""
    x0, y0 = transform * (c0, r0)
    x1, y1 = transform * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def true_px_area() -> float:
    """Ground area of one 30 m UTM pixel on the central meridian, m^2."""
    return (PX / K0) ** 2


def write_mask(path: Path, mask: np.ndarray, crs: str | None = UTM, transform: Affine = EQ_TRANSFORM) -> Path:
    return write_raster(path, mask.astype(np.uint8), crs=crs, transform=transform, nodata=255)


def write_outlines(
    path: Path,
    geoms: list[BaseGeometry | None],
    props: list[dict[str, Any]] | None = None,
    crs: str | None = UTM,
    driver: str | None = None,
) -> Path:
    """Write polygons with properties (default RGIId G1, G2, ...; Name; Area) to a vector file."""
    if props is None:
        props = [{"RGIId": f"G{i + 1}", "Name": f"glacier {i + 1}", "Area": 1.0} for i in range(len(geoms))]
    types = {str: "str", float: "float", int: "int"}
    fields = {k: types[type(v)] for k, v in props[0].items()}
    driver = driver or {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON"}[path.suffix]
    schema = {"geometry": "Unknown", "properties": fields}
    kwargs: dict[str, Any] = {"crs": crs} if crs else {}
    with fiona.open(path, "w", driver=driver, schema=schema, **kwargs) as sink:
        for g, p in zip(geoms, props, strict=True):
            geom = None if g is None else mapping(g)
            sink.write(fiona.Feature.from_dict({"geometry": geom, "properties": p}))
    return path
