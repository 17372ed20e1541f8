"""Glacier outlines: polygons of a mask's glacier pixels, each with its true area.

Polygons follow pixel edges, which are straight lines in the mask's CRS but curves on
the ellipsoid. Each ring is therefore densified (at most :data:`SEGMENT_M` metres per
segment) before it is moved to geographic coordinates, and its area is the geodesic
area on the CRS's own ellipsoid, so outline areas agree with
:func:`geoglacier.measure.areas.summarize_mask` whatever the projection.

GeoPackage output stays in the mask's CRS; GeoJSON is written in EPSG:4326 with
longitude/latitude order, as RFC 7946 requires.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio.features
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from geoglacier.errors import ConfigError, CRSMissingError
from geoglacier.io.atomic import atomic_output, check_output_path
from geoglacier.io.masks import inspect_mask, read_mask
from geoglacier.measure.areas import to_pyproj_crs

SEGMENT_M: float = 1000.0
"""Longest polygon segment, in metres, before reprojection (straight map lines bend on the globe)."""

DRIVERS: dict[str, str] = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}

LAYER: str = "glaciers"  # fixed: the temporary file name would make an invalid layer name

SCHEMA: dict[str, Any] = {"geometry": "Polygon", "properties": {"id": "int", "area_km2": "float"}}


def _driver(out_path: Path) -> str:
    driver = DRIVERS.get(out_path.suffix.lower())
    if driver is None:
        raise ConfigError(
            f"{out_path}: unknown outline format {out_path.suffix or '(no extension)'!r}; "
            "use a .gpkg (GeoPackage, in the mask's CRS) or .geojson (EPSG:4326) file name"
        )
    return driver


def _check_min_area(min_area_km2: float) -> None:
    if not (min_area_km2 >= 0):
        raise ConfigError(f"--min-area must be >= 0 km2, got {min_area_km2}")


def _segment_length(crs: pyproj.CRS) -> float:
    """:data:`SEGMENT_M` in the CRS's units (degrees: about 0.01)."""
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else None
    if crs.is_geographic:
        return SEGMENT_M / (crs.ellipsoid.semi_major_metre * (factor or np.pi / 180))
    return SEGMENT_M / (factor or 1.0)


def mask_polygons(
    mask_path: str | os.PathLike[str], min_area_km2: float = 0.0
) -> Iterator[tuple[BaseGeometry, BaseGeometry, float]]:
    """Yield ``(polygon in the mask's CRS, densified polygon in lon/lat, area_km2)`` per glacier polygon.

    Polygons smaller than ``min_area_km2`` are dropped. The mask is read once, whole.

    Raises:
        CRSMissingError: the mask has no CRS (geodesic areas need one).
        ConfigError: ``min_area_km2`` is negative.
    """
    _check_min_area(min_area_km2)
    info = inspect_mask(mask_path)
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS; outlines and their areas need a georeferenced mask "
            "(assign the CRS, for example with gdal_edit.py -a_srs EPSG:XXXX)"
        )
    crs = to_pyproj_crs(info.crs)
    geodetic = crs.geodetic_crs
    geod = geodetic.get_geod()
    to_lonlat = pyproj.Transformer.from_crs(crs, geodetic, always_xy=True)
    seg = _segment_length(crs)
    glacier = read_mask(mask_path, info=info) == 1
    if not glacier.any():
        return
    values = glacier.view(np.uint8)
    for geom, _ in rasterio.features.shapes(values, mask=glacier, transform=info.transform, connectivity=4):
        poly = shape(geom)
        dense = shapely.segmentize(poly, seg)
        lonlat = shapely.transform(dense, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
        lonlat = orient(lonlat, sign=1.0)
        area_m2, _ = geod.geometry_area_perimeter(lonlat)
        area_km2 = abs(area_m2) / 1e6
        if area_km2 >= min_area_km2:
            yield poly, lonlat, area_km2


def write_outlines(
    mask_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    min_area_km2: float = 0.0,
    overwrite: bool = False,
) -> int:
    """Write glacier polygons of a 0/1/255 mask with their geodesic ``area_km2``; return how many.

    ``.gpkg`` keeps the mask's CRS; ``.geojson`` is reprojected to EPSG:4326 (RFC 7946).
    The file is written atomically: nothing is left under ``out_path`` on failure.

    Raises:
        ConfigError: unknown output extension or negative ``min_area_km2``.
        OutputExistsError: ``out_path`` exists and ``overwrite`` is False.
        CRSMissingError: the mask has no CRS.
    """
    import fiona

    target = Path(out_path)
    driver = _driver(target)
    _check_min_area(min_area_km2)
    check_output_path(target, overwrite)
    info = inspect_mask(mask_path)
    if info.crs is None:
        raise CRSMissingError(
            f"{info.path} has no CRS; outlines and their areas need a georeferenced mask "
            "(assign the CRS, for example with gdal_edit.py -a_srs EPSG:XXXX)"
        )
    to_wgs84: pyproj.Transformer | None = None
    if driver == "GeoJSON":
        crs_out: Any = "EPSG:4326"
        geodetic = to_pyproj_crs(info.crs).geodetic_crs
        to_wgs84 = pyproj.Transformer.from_crs(geodetic, "EPSG:4326", always_xy=True)
        options: dict[str, Any] = {"RFC7946": "YES"}
    else:
        crs_out = info.crs.to_wkt()
        options = {}
    count = 0
    with atomic_output(target, overwrite) as tmp:
        with fiona.open(tmp, "w", driver=driver, schema=SCHEMA, crs=crs_out, layer=LAYER, **options) as sink:
            for poly, lonlat, area_km2 in mask_polygons(mask_path, min_area_km2):
                if driver == "GeoJSON":
                    assert to_wgs84 is not None
                    geom = shapely.transform(
                        lonlat, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
                    )
                else:
                    geom = poly
                count += 1
                sink.write(
                    fiona.Feature.from_dict(
                        {"geometry": mapping(geom), "properties": {"id": count, "area_km2": area_km2}}
                    )
                )
    return count
