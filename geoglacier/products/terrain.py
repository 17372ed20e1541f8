"""Terrain bands from a digital elevation model: elevation, slope and aspect on the output grid.

``geoglacier stack --dem DEM`` adds the recipe bands

* ``elevation``: metres, the DEM warped bilinearly onto the output grid (with GDAL's
  transform approximated to 1/1000 DEM pixel, not its default 1/8: see :data:`DEM_TOLERANCE`);
* ``slope``: degrees from horizontal, by Horn's 3 x 3 method (what ``gdaldem slope``
  uses) on that warped DEM, with the true ground spacing of the output grid;
* ``northness`` and ``eastness``: the cosine and sine of the aspect (the azimuth of
  steepest descent, clockwise from north), so a north-facing slope has northness 1 and a
  flat pixel has both 0.

The DEM is any raster GDAL reads (GeoTIFF, SRTM ``.hgt``, a ``.vrt`` mosaic) in any CRS
and resolution. It is warped through a :class:`rasterio.vrt.WarpedVRT` onto the output
grid grown by one pixel on every side, and read one tile of the output at a time with
that one-pixel halo, so slope is seamless across tiles and memory does not grow with the
scene. Where the DEM is void (its nodata) or absent, the terrain bands are NaN, and so is
slope next to a void.

Ground spacing: on a projected grid it is the pixel size (in metres: the CRS's linear unit
applied); on a grid in degrees it is computed per row from the row's latitude on the
WGS 84 ellipsoid, so a DEM in degrees is never taken as a DEM in metres.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoglacier.errors import DemError, InvalidRasterError

#: error allowed when GDAL approximates the output -> DEM transform, in DEM pixels. GDAL's
#: default (1/8 pixel) shifts elevations on steep slopes by metres (up to 12 m on Everest
#: with SRTM) and bends slope by tenths of a degree; 1/1000 pixel costs little more.
DEM_TOLERANCE: float = 0.001

_WGS84_A = 6378137.0
_WGS84_E2 = 0.00669437999014


def metres_per_degree(latitude: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Ground length of one degree of longitude and of latitude at ``latitude`` (WGS 84), metres.

    These are the radii of curvature times pi / 180: ``a cos(phi) / sqrt(1 - e^2 sin^2 phi)``
    along a parallel and ``a (1 - e^2) / (1 - e^2 sin^2 phi)^1.5`` along a meridian.
    """
    phi = np.radians(np.asarray(latitude, dtype=np.float64))
    w = 1.0 - _WGS84_E2 * np.sin(phi) ** 2
    per_lon = math.pi / 180.0 * _WGS84_A * np.cos(phi) / np.sqrt(w)
    per_lat = math.pi / 180.0 * _WGS84_A * (1.0 - _WGS84_E2) / w**1.5
    return per_lon, per_lat


def horn_gradient(
    z: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Horn's (1981) gradient of the inner pixels of ``z``: ``(dz/d east, dz/d north)``.

    With the 3 x 3 neighbourhood ``a b c / d e f / g h i`` (row ``a b c`` to the north)::

        dz/dx = ((c + 2f + i) - (a + 2d + g)) / (8 dx)
        dz/dy = ((g + 2h + i) - (a + 2b + c)) / (8 dy)   (towards the south)

    Args:
        z: ``(h + 2, w + 2)`` elevations: the pixels wanted and a one-pixel halo.
        dx: ground distance between columns, metres: a number, or one per inner row (``(h,)``).
        dy: ground distance between rows, metres, likewise.

    Returns:
        Two ``(h, w)`` float64 arrays; NaN wherever the 3 x 3 neighbourhood holds a NaN
        (the centre too, which Horn's weights leave out: a void has no slope).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 3 or z.shape[1] < 3:
        raise ValueError(f"z must be 2-D with a one-pixel halo (at least 3 x 3), got shape {z.shape}")
    dxa = np.asarray(dx, dtype=np.float64).reshape(-1, 1)
    dya = np.asarray(dy, dtype=np.float64).reshape(-1, 1)
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    east = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dxa)
    south = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * dya)
    void = np.isnan(z[1:-1, 1:-1])
    east[void] = np.nan
    south[void] = np.nan
    return east, -south


def slope_degrees(z: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray) -> np.ndarray:
    """Slope (degrees from horizontal) of the inner pixels of ``z`` by Horn's method, as ``gdaldem slope``.

    Args: as :func:`horn_gradient`. Returns an ``(h, w)`` float32 array, NaN next to a NaN.
    """
    east, north = horn_gradient(z, dx, dy)
    return np.degrees(np.arctan(np.hypot(east, north))).astype(np.float32)


def aspect_components(
    z: np.ndarray, dx: float | np.ndarray, dy: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(northness, eastness)``: cosine and sine of the aspect (downslope azimuth from north).

    A flat pixel (no gradient) has both 0: it faces nowhere. Args: as :func:`horn_gradient`.
    """
    east, north = horn_gradient(z, dx, dy)
    norm = np.hypot(east, north)
    with np.errstate(divide="ignore", invalid="ignore"):
        northness = np.where(norm > 0, -north / norm, 0.0)
        eastness = np.where(norm > 0, -east / norm, 0.0)
    void = np.isnan(norm)
    northness[void] = np.nan
    eastness[void] = np.nan
    return northness.astype(np.float32), eastness.astype(np.float32)


def ground_spacing(grid: Any, row0: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground distance (metres) between columns and between rows, for output rows ``row0 .. row0 + rows``.

    Projected grids: the pixel size in metres. Grids in degrees: per row, from the
    latitude of the row's centre.
    """
    res_x, res_y = abs(grid.transform.a), abs(grid.transform.e)
    if grid.crs.is_geographic:
        centres = np.arange(row0, row0 + rows) + 0.5
        lat = grid.transform.f + grid.transform.e * centres
        per_lon, per_lat = metres_per_degree(lat)
        return res_x * per_lon, res_y * per_lat
    unit = float(grid.crs.linear_units_factor[1])
    return np.full(rows, res_x * unit), np.full(rows, res_y * unit)


def terrain_bands(
    names: tuple[str, ...], z: np.ndarray, dx: np.ndarray, dy: np.ndarray
) -> dict[str, np.ndarray]:
    """The terrain bands ``names`` of the inner pixels of ``z`` (a tile with its halo)."""
    out: dict[str, np.ndarray] = {}
    if "elevation" in names:
        out["elevation"] = z[1:-1, 1:-1].astype(np.float32)
    if "slope" in names:
        out["slope"] = slope_degrees(z, dx, dy)
    if "northness" in names or "eastness" in names:
        out["northness"], out["eastness"] = aspect_components(z, dx, dy)
    return {n: out[n] for n in names}


@dataclass
class Dem:
    """A DEM warped onto an output grid grown by one pixel on every side (the halo).

    Use :func:`open_dem`; read tiles of the output grid with :meth:`read`.
    """

    path: str
    vrt: Any
    grid: Any

    def elevation(self, window: Window) -> np.ndarray:
        """Elevations of an output ``window`` with its one-pixel halo: ``(h + 2, w + 2)`` float32, NaN where void."""
        halo = Window(window.col_off, window.row_off, window.width + 2, window.height + 2)
        try:
            return self.vrt.read(1, window=halo)
        except Exception as exc:  # rasterio raises RasterioIOError, GDAL sometimes CPLE_* errors
            detail = str(exc).splitlines()[0] if str(exc) else "read error"
            raise InvalidRasterError(
                f"{self.path}: the DEM could not be read ({detail}); check the file"
            ) from exc

    def read(self, names: tuple[str, ...], window: Window) -> dict[str, np.ndarray]:
        """The terrain bands ``names`` over an output ``window``: name -> ``(h, w)`` float32."""
        dx, dy = ground_spacing(self.grid, int(window.row_off), int(window.height))
        return terrain_bands(names, self.elevation(window), dx, dy)


def open_dem(path: str | os.PathLike[str], grid: Any, files: Any) -> Dem:
    """Open ``path`` and warp it (bilinear) onto ``grid`` plus a one-pixel halo.

    Args:
        path: any raster GDAL opens, with a CRS.
        grid: the output :class:`~geoglacier.products.grid.Grid`.
        files: an :class:`contextlib.ExitStack` that closes the DEM with the stack.

    Raises:
        DemError: missing, unreadable, without CRS, or not overlapping ``grid``.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    name = os.fspath(path)
    if "://" not in name and not name.startswith("/vsi") and not os.path.exists(name):
        raise DemError(f"{name}: DEM not found; give a GeoTIFF, SRTM .hgt or .vrt of the scene's area")
    try:
        ds = files.enter_context(rasterio.open(name))
    except RasterioIOError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise DemError(f"{name}: the DEM is not a readable raster ({detail}); check the file") from exc
    if ds.crs is None:
        raise DemError(f"{name}: the DEM has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4326 {name})")
    _check_overlap(name, ds, grid)
    t = grid.transform
    halo = Affine(t.a, t.b, t.c - t.a - t.b, t.d, t.e, t.f - t.d - t.e)
    vrt = WarpedVRT(
        ds,
        crs=grid.crs,
        transform=halo,
        width=grid.width + 2,
        height=grid.height + 2,
        resampling=Resampling.bilinear,
        tolerance=DEM_TOLERANCE,
        src_nodata=ds.nodata,
        nodata=float("nan"),
        dtype="float32",
    )
    return Dem(name, files.enter_context(vrt), grid)


def _check_overlap(name: str, ds: Any, grid: Any) -> None:
    g = grid.bounds
    try:
        box = transform_bounds(ds.crs, grid.crs, *ds.bounds, densify_pts=21)
    except Exception:  # far outside the output CRS's area of use: no overlap
        box = (math.inf, math.inf, -math.inf, -math.inf)
    if (
        all(math.isfinite(v) for v in box)
        and box[0] < g[2]
        and box[2] > g[0]
        and box[1] < g[3]
        and box[3] > g[1]
    ):
        return
    raise DemError(
        f"{name}: the DEM {tuple(round(v, 3) for v in ds.bounds)} in {ds.crs.to_string()} does not overlap "
        f"the output grid {tuple(round(v, 1) for v in g)} in {grid.crs.to_string()}; give the DEM tile of this area"
    )
