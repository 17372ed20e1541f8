"""The output grid of ``geoglacier stack``: CRS, pixel size and extent from the bands and the options.

Defaults: the CRS and pixel size of the finest band a recipe needs, over the footprint
every band covers, on that band's own pixel grid. Another CRS or pixel size puts pixel
edges on multiples of the pixel size (as ``gdalwarp -tap``). ``bounds`` and an AOI file
(its features' bounds plus a buffer) crop it. In longitudes, a product across the
antimeridian becomes one raster whose longitudes run past 180.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import calculate_default_transform, transform_bounds

from geoglacier.errors import ConfigError, FootprintError, ProductError, SceneNotFoundError

Bounds = tuple[float, float, float, float]
_EPS = 1e-6  # of a pixel: snapping tolerance for coordinates that are multiples of the pixel size


@dataclass(frozen=True)
class Grid:
    """The output grid."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def resolution(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> Bounds:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)


def _intersect(a: Bounds, b: Bounds) -> Bounds | None:
    out = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return out if out[0] < out[2] and out[1] < out[3] else None


def _unwrap(box: Bounds, crs: CRS) -> Bounds:
    """A longitude box across the antimeridian, which ``transform_bounds`` gives as ``xmin > xmax``
    (e.g. 179.9 .. -179.8), as one continuous range past 180 (179.9 .. 180.2).

    GDAL warps onto longitudes beyond 180 (they mean the same meridians), so a scene
    that straddles the antimeridian stays one raster instead of a box of no width.
    """
    if crs.is_geographic and box[0] > box[2]:
        return (box[0], box[1], box[2] + 360.0, box[3])
    return box


def _crop(footprint: Bounds, box: Bounds, crs: CRS) -> Bounds | None:
    """``footprint`` cut to ``box``; in longitudes, also to ``box`` a turn east or west (the same meridians)."""
    shifts = (0.0, 360.0, -360.0) if crs.is_geographic else (0.0,)
    for shift in shifts:
        cut = _intersect(footprint, (box[0] + shift, box[1], box[2] + shift, box[3]))
        if cut is not None:
            return cut
    return None


def read_aoi_bounds(path: str | os.PathLike[str], crs: CRS, buffer: float = 0.0) -> Bounds:
    """Bounds of every feature in a vector file (GeoPackage, GeoJSON, shapefile) in ``crs``, plus ``buffer``.

    Raises:
        SceneNotFoundError: no such file. ProductError: unreadable, empty, or without CRS.
    """
    import fiona

    p = Path(path)
    if not p.exists():
        raise SceneNotFoundError(f"{p}: AOI file not found; give a .gpkg, .geojson or .shp with the area")
    try:
        with fiona.open(p) as layer:
            if len(layer) == 0:
                raise ProductError(
                    f"{p}: the AOI file has no features; give the outlines of the area to keep"
                )
            src_crs = layer.crs
            b = layer.bounds
    except fiona.errors.FionaError as exc:
        raise ProductError(
            f"{p}: not a readable vector file ({exc}); give a .gpkg, .geojson or .shp"
        ) from exc
    if not src_crs:
        raise ProductError(f"{p}: the AOI file has no CRS; write it with one (e.g. EPSG:4326)")
    src = CRS.from_user_input(src_crs)
    if src.is_geographic and not (-180 <= b[0] <= b[2] <= 360 and -90 <= b[1] <= b[3] <= 90):
        raise ProductError(
            f"{p}: its coordinates {tuple(round(v, 3) for v in b)} are not longitudes and latitudes, "
            f"but the file says {src.to_string()}; assign the CRS they are in (e.g. ogr2ogr -a_srs EPSG:32645)"
        )
    x0, y0, x1, y1 = transform_bounds(src, crs, *b, densify_pts=21)
    return (x0 - buffer, y0 - buffer, x1 + buffer, y1 + buffer)


def _snap(lo: float, hi: float, origin: float, res: float) -> tuple[float, int]:
    """Extend ``[lo, hi]`` to whole pixels of a grid through ``origin``; return start and count."""
    start = origin + math.floor((lo - origin) / res + _EPS) * res
    stop = origin + math.ceil((hi - origin) / res - _EPS) * res
    return start, max(1, round((stop - start) / res))


def native_resolution(ds: Any, dst_crs: CRS) -> float:
    """The pixel size in ``dst_crs`` that keeps about as many pixels as ``ds`` has (GDAL's suggestion).

    Across the antimeridian GDAL's suggestion spans the whole globe (pixels of degrees),
    so there the unwrapped box's diagonal is divided by the band's diagonal in pixels,
    which is the rule GDAL applies otherwise.
    """
    box = transform_bounds(ds.crs, dst_crs, *ds.bounds, densify_pts=21)
    if dst_crs.is_geographic and box[0] > box[2]:
        x0, y0, x1, y1 = _unwrap(box, dst_crs)
        return math.hypot(x1 - x0, y1 - y0) / math.hypot(ds.width, ds.height)
    t, _, _ = calculate_default_transform(ds.crs, dst_crs, ds.width, ds.height, *ds.bounds)
    return abs(float(t.a))


def _check_resolution(res: float, footprint: Bounds, crs: CRS) -> None:
    """Refuse a pixel larger than the whole product: a size in the wrong units (metres for a CRS in degrees)."""
    width, height = footprint[2] - footprint[0], footprint[3] - footprint[1]
    if res > max(width, height):
        unit = crs.units_factor[0] if crs.is_geographic else crs.linear_units
        raise ConfigError(
            f"--resolution {res:g} is larger than the whole product ({width:.4g} x {height:.4g} {unit} "
            f"in {crs.to_string()}); give the pixel size in the output CRS's unit ({unit})"
        )


def bounds_in(bounds: Bounds, bounds_crs: str | None, dst_crs: CRS) -> Bounds:
    """``bounds`` (given in ``bounds_crs``; None: already in ``dst_crs``) as a box in ``dst_crs``.

    Raises:
        ConfigError: ``xmin >= xmax`` or ``ymin >= ymax``, or an unknown ``bounds_crs``.
    """
    box = tuple(float(v) for v in bounds)
    if not (box[0] < box[2] and box[1] < box[3]):
        raise ConfigError(f"--bounds {box}: give xmin ymin xmax ymax with xmin < xmax and ymin < ymax")
    if not bounds_crs:
        return box  # type: ignore[return-value]
    try:
        src = CRS.from_user_input(bounds_crs)
    except CRSError as exc:
        raise ConfigError(
            f"--bounds-crs {bounds_crs!r} is not a CRS GDAL knows; give e.g. EPSG:4326"
        ) from exc
    return _unwrap(transform_bounds(src, dst_crs, *box, densify_pts=21), dst_crs)


def _crop_or_fail(footprint: Bounds, box: Bounds, crs: CRS, what: str, fix: str) -> Bounds:
    """``footprint`` cut to ``box``, or a FootprintError naming ``what`` and ``fix``."""
    cropped = _crop(footprint, box, crs)
    if cropped is None:
        raise FootprintError(
            f"{what} does not overlap the product's footprint {tuple(round(v, 3) for v in footprint)} "
            f"in {crs.to_string()}; {fix}"
        )
    return cropped


def plan_grid(
    datasets: dict[str, Any],
    *,
    resolution: float | None = None,
    crs: str | None = None,
    bounds: Bounds | None = None,
    clip: str | os.PathLike[str] | None = None,
    clip_buffer: float = 0.0,
    bounds_crs: str | None = None,
) -> Grid:
    """The output grid for open band datasets (name -> dataset).

    Defaults: the CRS and pixel size of the finest band; the footprint every band
    covers, on the finest band's own pixel grid. With another CRS or pixel size, pixel
    edges fall on multiples of the pixel size (as ``gdalwarp -tap``). ``bounds`` are in
    ``bounds_crs`` (default: the output CRS; as ``gdalwarp -te_srs``); the AOI (``clip``,
    grown by ``clip_buffer``) in the output CRS's units.

    Raises:
        FootprintError: the bands, or the bands and the bounds/AOI, do not overlap.
        ConfigError: an unknown CRS, or a ``resolution`` larger than the product.
    """
    finest_name = min(datasets, key=lambda n: abs(datasets[n].res[0]))
    finest = datasets[finest_name]
    try:
        dst_crs = CRS.from_user_input(crs) if crs else finest.crs
    except CRSError as exc:
        raise ConfigError(f"--crs {crs!r} is not a CRS GDAL knows; give e.g. EPSG:32645") from exc
    if resolution is not None:
        res = float(resolution)
    elif dst_crs == finest.crs:
        res = abs(float(finest.res[0]))
    else:
        res = native_resolution(finest, dst_crs)
    footprint: Bounds | None = None
    first = ""
    for name, ds in datasets.items():
        fb = _unwrap(transform_bounds(ds.crs, dst_crs, *ds.bounds, densify_pts=21), dst_crs)
        footprint = fb if footprint is None else _crop(footprint, fb, dst_crs)
        if footprint is None:
            raise FootprintError(
                f"{ds.name}: band {name} does not overlap band {first} ({datasets[first].name}); "
                "the files are from different products - use the bands of one product"
            )
        first = first or name
    assert footprint is not None
    if resolution is not None:
        _check_resolution(res, footprint, dst_crs)
    if bounds is not None:
        box = bounds_in(bounds, bounds_crs, dst_crs)
        fix = (
            f"they are {tuple(round(v, 3) for v in box)} there; check --bounds-crs"
            if bounds_crs
            else "give bounds in the output CRS, or name their CRS with --bounds-crs"
        )
        footprint = _crop_or_fail(footprint, box, dst_crs, f"--bounds {tuple(bounds)}", fix)
    if clip is not None:
        box = read_aoi_bounds(clip, dst_crs, clip_buffer)
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ConfigError(
                f"--clip {clip}: its outlines give no valid box in {dst_crs.to_string()} (got {tuple(box)}); "
                "check that the file's CRS is the one its coordinates are in"
            )
        fix = (
            f"the AOI's bounds there are {tuple(round(v, 3) for v in box)}: "
            "use an AOI inside this product, or the product that covers the AOI"
        )
        footprint = _crop_or_fail(footprint, box, dst_crs, f"--clip {clip}", fix)
    same = dst_crs == finest.crs and math.isclose(res, abs(finest.res[0]), rel_tol=1e-9)
    ox, oy = (finest.transform.c, finest.transform.f) if same else (0.0, 0.0)
    left, width = _snap(footprint[0], footprint[2], ox, res)
    bottom, height = _snap(footprint[1], footprint[3], oy, res)
    return Grid(dst_crs, Affine(res, 0.0, left, 0.0, -res, bottom + height * res), width, height)
