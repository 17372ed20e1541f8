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
from collections.abc import Iterator, Sequence
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
from geoglacier.io.scene import GDAL_CACHE_BYTES, has_mask_band
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

    Polygons smaller than ``min_area_km2`` are dropped. A 0/1/255 mask is traced from
    the file's band by GDAL (memory follows the polygons, not the scene).

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
    for poly in _glacier_shapes(info):
        dense = shapely.segmentize(poly, seg)
        lonlat = shapely.transform(dense, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1])))
        lonlat = orient(lonlat, sign=1.0)
        area_m2, _ = geod.geometry_area_perimeter(lonlat)
        area_km2 = abs(area_m2) / 1e6
        if area_km2 >= min_area_km2:
            yield poly, lonlat, area_km2


def _is_plain(ds: Any, nodata: float | None) -> bool:
    """True when a uint8 mask holds only 0, 1 and (as its declared nodata) 255, scanned block by block."""
    if ds.dtypes[0] != "uint8" or nodata not in (None, 255.0) or has_mask_band(ds):
        return False
    for _, window in ds.block_windows(1):
        block = ds.read(1, window=window)
        top = int(block.max(initial=0))
        if top > 1 and (nodata is None or np.count_nonzero(block > 1) != np.count_nonzero(block == 255)):
            return False
    return True


def _glacier_shapes(info: Any) -> Iterator[BaseGeometry]:
    """Polygons of the glacier (value 1) pixels of a mask, 4-connected.

    A plain 0/1/255 uint8 mask (what ``segment-scene`` writes) is traced by GDAL's
    polygonizer straight from the file's band, with the band as its own mask (0 is left
    out), so the mask is never held in memory whole; anything else (0/255 exports, other
    dtypes) is normalised in memory first.
    """
    # Peak memory is then the polygons being built plus GDAL's block cache, capped here
    # (its default, 5 % of RAM, would fill up with the scene). rasterio.Env takes an
    # integer GDAL_CACHEMAX in bytes: 64 would mean 64 bytes and a ten times slower trace.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(info.path) as ds:
        if _is_plain(ds, info.nodata):
            band = rasterio.band(ds, 1)
            for geom, value in rasterio.features.shapes(
                band, mask=band, transform=info.transform, connectivity=4
            ):
                if value == 1:
                    yield shape(geom)
            return
    glacier = read_mask(info.path, info=info) == 1
    if not glacier.any():
        return
    values = glacier.view(np.uint8)
    for geom, _ in rasterio.features.shapes(values, mask=glacier, transform=info.transform, connectivity=4):
        yield shape(geom)


class _ZoneLabeller:
    """Id of the zone a polygon overlaps most (by map area), ``""`` where none."""

    def __init__(self, zones: tuple[Sequence[BaseGeometry], Sequence[str]]) -> None:
        self.geoms = np.asarray(zones[0], dtype=object)
        self.ids = [str(i) for i in zones[1]]
        if len(self.geoms) != len(self.ids):
            raise ConfigError(f"zones: {len(self.geoms)} outlines but {len(self.ids)} ids")
        self.tree = shapely.STRtree(self.geoms)

    def __call__(self, poly: BaseGeometry) -> str:
        hits = self.tree.query(poly, predicate="intersects")
        if len(hits) == 0:
            return ""
        overlap = shapely.area(shapely.intersection(self.geoms[hits], poly))
        return self.ids[int(hits[int(np.argmax(overlap))])] if overlap.max() > 0 else ""


def write_outlines(
    mask_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    min_area_km2: float = 0.0,
    overwrite: bool = False,
    *,
    zones: tuple[Sequence[BaseGeometry], Sequence[str]] | None = None,
) -> int:
    """Write glacier polygons of a 0/1/255 mask with their geodesic ``area_km2``; return how many.

    With ``zones`` (inventory outlines in the mask's CRS and their ids) every polygon also
    carries ``glacier_id``: the id of the outline it overlaps most (empty where none).

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
    schema = SCHEMA
    label = None if zones is None else _ZoneLabeller(zones)
    if label is not None:
        schema = {"geometry": "Polygon", "properties": {**SCHEMA["properties"], "glacier_id": "str"}}
    count = 0
    with atomic_output(target, overwrite) as tmp:
        with fiona.open(tmp, "w", driver=driver, schema=schema, crs=crs_out, layer=LAYER, **options) as sink:
            for poly, lonlat, area_km2 in mask_polygons(mask_path, min_area_km2):
                if driver == "GeoJSON":
                    assert to_wgs84 is not None
                    geom = shapely.transform(
                        lonlat, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
                    )
                else:
                    geom = poly
                count += 1
                props: dict[str, Any] = {"id": count, "area_km2": area_km2}
                if label is not None:
                    props["glacier_id"] = label(poly)
                sink.write(fiona.Feature.from_dict({"geometry": mapping(geom), "properties": props}))
    return count
