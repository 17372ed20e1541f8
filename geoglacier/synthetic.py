"""Seeded synthetic glacier scenes: 5-band GeoTIFF plus a 0/1 glacier mask, at any size.

Every field (terrain, snow, debris, lakes, clouds, the nodata footprint) is a pure
function of the *global* pixel coordinates and the seed: value noise on a hashed
integer lattice, summed over octaves. A block therefore renders the same whether it
is drawn alone or as part of a whole scene, and :func:`generate_scene` writes a
20000 x 20000 scene block by block in the memory a 1000 x 1000 one needs (no
whole-scene arrays, no global FFT).

The scene is meant to be learnable but not trivial, like real Landsat imagery of
the Himalaya without a shortwave-infrared band:

- glaciers lie above a snowline (ELA) on gentle slopes, and reach further down along
  valley floors as tongues;
- the lower parts of the tongues are debris covered and spectrally look like rock;
- seasonal snow off the glaciers looks like ice, but lies on steep faces, in patches,
  or below the snowline, and has a higher near-infrared than glacier firn and ice;
- bare glacier ice has a characteristic high blue / near-infrared ratio (the simple
  cue a tiny model finds first);
- terrain shading from slope and aspect darkens everything, lakes are dark in the
  near-infrared, clouds (optional) are bright in every band and cast offset shadows;
- an optional nodata border mimics a Landsat footprint: a rotated valid rectangle
  with nodata outside it.

The terrain is designed for ~30 m pixels and is drawn in pixel units; the CRS and
pixel size only change the georeferencing, so the same seed gives the same pixels in
UTM and in EPSG:4326.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.windows import Window

from geoglacier.errors import ConfigError
from geoglacier.io.atomic import atomic_output, check_output_path
from geoglacier.io.scene import GDAL_CACHE_BYTES

BAND_NAMES: tuple[str, ...] = ("red", "green", "blue", "nir", "ndvi")
NODATA: float = -9999.0
MASK_NODATA: int = 255
DEFAULT_PROJECTED_CRS = "EPSG:32645"  # UTM 45N, the Everest region
#: Where scenes are placed (top-left corner): the Khumbu, near Everest.
ANCHOR_LON_LAT: tuple[float, float] = (86.8, 28.1)
#: Ground size the terrain is designed for, used for slopes whatever the CRS.
NOMINAL_PIXEL_M: float = 30.0
#: Default pixel size of geographic scenes: one arc second, ~30 m at 28 N.
DEFAULT_PIXEL_DEG: float = 1.0 / 3600.0

# Surface spectra (red, green, blue, nir) in DN before illumination; chosen to
# resemble stretched Landsat 7 digital numbers over the Himalaya.
_ROCK = (104.0, 95.0, 92.0, 90.0)
_DEBRIS = (101.0, 93.0, 90.0, 88.0)
_ICE = (186.0, 204.0, 232.0, 96.0)
_FIRN = (236.0, 246.0, 255.0, 150.0)
_SNOW = (245.0, 250.0, 255.0, 228.0)
_VEG = (58.0, 72.0, 66.0, 138.0)
_LAKE = (42.0, 68.0, 84.0, 16.0)
_CLOUD = (236.0, 238.0, 246.0, 232.0)
_PATH = (16.0, 13.0, 24.0, 5.0)  # path radiance, which is why shadows are bluish

# Terrain and cover parameters (metres, pixels).
_ELA = 5350.0
_SUN_AZIMUTH_DEG = 145.0
_SUN_ELEVATION_DEG = 42.0
_DIFFUSE = 0.22
_MAX_GLACIER_SLOPE = 0.75  # tan(~37 deg): steeper faces shed snow and ice
_MASS_EFFECT = 0.8  # snowline rise per metre of massif height
_U32 = np.uint32
_CLOUD_OCTAVES = (181.0, 89.0, 41.0, 17.0, 7.0)


@dataclass(frozen=True)
class SyntheticScene:
    """What :func:`generate_scene` wrote."""

    scene_path: Path
    mask_path: Path
    height: int
    width: int
    crs: CRS
    transform: Affine
    seed: int
    glacier_fraction: float
    nodata: float | None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


# ----------------------------------------------------------------------------- noise


def _mix(h: np.ndarray) -> np.ndarray:
    """Murmur3's 32-bit finaliser: avalanche the bits of a uint32 array in place."""
    h ^= h >> _U32(16)
    h *= _U32(0x85EBCA6B)
    h ^= h >> _U32(13)
    h *= _U32(0xC2B2AE35)
    h ^= h >> _U32(16)
    return h


def _hash2(iy: np.ndarray, ix: np.ndarray, key: int) -> np.ndarray:
    """uint32 hash of integer lattice coordinates (broadcast) under a 32-bit key."""
    hy = (iy.astype(np.int64) & 0xFFFFFFFF).astype(_U32) * _U32(0x9E3779B1)
    hx = (ix.astype(np.int64) & 0xFFFFFFFF).astype(_U32) * _U32(0x85EBCA77)
    h = _mix(hy ^ _U32(key))
    h = _mix(h ^ hx)
    return h


def _key(seed: int, channel: int) -> int:
    """A 32-bit key per (seed, field) so every field is an independent noise."""
    h = np.array([seed & 0xFFFFFFFF], dtype=_U32)
    h = _mix(h ^ _U32((channel * 0x27D4EB2F) & 0xFFFFFFFF))
    h = _mix(h ^ _U32((seed >> 32) & 0xFFFFFFFF))
    return int(h[0])


def _axis(coords: np.ndarray, spacing: float, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lattice cell index (relative to the first), lattice indices and smoothstep weight per coordinate."""
    f = (coords.astype(np.float64) + shift) / spacing
    cell = np.floor(f)
    t = f - cell
    w = (t * t * t * (t * (t * 6.0 - 15.0) + 10.0)).astype(np.float32)  # quintic fade
    cell = cell.astype(np.int64)
    lattice = np.arange(cell.min(), cell.max() + 2, dtype=np.int64)
    return cell - cell[0], lattice, w


def _value_noise(rows: np.ndarray, cols: np.ndarray, spacing: float, key: int) -> np.ndarray:
    """Value noise in [-1, 1] at global pixel ``rows`` x ``cols`` (float32, (h, w)).

    Interpolation is separable: along x on the few lattice rows the block touches,
    then along y, so the cost per pixel is a handful of operations whatever the spacing.
    The per-key sub-cell shift keeps octaves' lattice lines from lining up.
    """
    shift_y = (key & 0xFFFF) / 65536.0 * spacing
    shift_x = ((key >> 16) & 0xFFFF) / 65536.0 * spacing
    jy, ly, wy = _axis(rows, spacing, shift_y)
    jx, lx, wx = _axis(cols, spacing, shift_x)
    lat = _hash2(ly[:, None], lx[None, :], key)
    v = (lat >> _U32(8)).astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1.0)
    a = v[:, jx]
    rx = a + (v[:, jx + 1] - a) * wx[None, :]
    top = rx[jy]
    return top + (rx[jy + 1] - top) * wy[:, None]


def _fbm(
    rows: np.ndarray,
    cols: np.ndarray,
    seed: int,
    channel: int,
    spacings: tuple[float, ...],
    gain: float = 0.5,
) -> np.ndarray:
    """Sum of value-noise octaves, amplitude ``gain**k``, normalised to about [-1, 1]."""
    out = np.zeros((rows.size, cols.size), dtype=np.float32)
    amp, total = 1.0, 0.0
    for k, spacing in enumerate(spacings):
        out += np.float32(amp) * _value_noise(rows, cols, spacing, _key(seed, channel * 64 + k))
        total += amp
        amp *= gain
    out *= np.float32(1.0 / total)
    return out


def _smooth01(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, smooth in between (float32)."""
    t = np.clip((x - np.float32(lo)) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


# --------------------------------------------------------------------------- fields


def _elevation(rows: np.ndarray, cols: np.ndarray, seed: int) -> tuple[np.ndarray, ...]:
    """Elevation, its macro form without fine detail, valley depth and massif level (m).

    Ridged mid octaves give sharp crests and valleys a few km apart, so any ~8 km
    scene holds both; a very low octave varies the massif's height across big scenes.
    The depth below the massif's smooth surface marks valley floors, where glacier
    tongues flow. Glacier outlines follow the macro form, so they are smooth like
    real ones; shading uses the detailed surface.
    """
    regional = _value_noise(rows, cols, 2300.0, _key(seed, 1))
    broad = _fbm(rows, cols, seed, 2, (331.0, 173.0))
    level = np.float32(300.0) * regional + np.float32(800.0) * broad
    macro = level + np.float32(_ELA - 110.0)
    carve = np.abs(_fbm(rows, cols, seed, 3, (157.0, 79.0)))  # 0 on crests, large in valleys
    carve -= np.float32(0.22)
    carve *= np.float32(2000.0)
    macro -= carve
    valley = np.maximum(carve, np.float32(0.0), out=carve)
    elev = macro + np.float32(320.0) * _fbm(rows, cols, seed, 4, (47.0, 23.0, 11.0, 5.0, 2.5))
    return elev, macro, valley, level


def _gradient(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dz/d(east), dz/d(north) at the inner pixels of a haloed block, by central differences."""
    inv = np.float32(1.0 / (2.0 * NOMINAL_PIXEL_M))
    gx = z[1:-1, 2:] - z[1:-1, :-2]
    gx *= inv
    gy = z[:-2, 1:-1] - z[2:, 1:-1]  # rows grow southwards
    gy *= inv
    return gx, gy


def _footprint(rows: np.ndarray, cols: np.ndarray, scene_shape: tuple[int, int], seed: int) -> np.ndarray:
    """Boolean valid-data footprint: a rotated rectangle touching the scene's edges.

    Landsat products put a swath tilted by ~10-14 degrees into a north-up grid; the
    corners outside the swath are nodata. A small inset leaves a nodata rim on every side.
    """
    height, width = scene_shape
    angle = math.radians(9.0 + 5.0 * (_key(seed, 90) / 4294967296.0))
    c, s = math.cos(angle), math.sin(angle)
    inset = 0.97
    # Rectangle a x b rotated by angle whose bounding box is (width, height).
    den = c * c - s * s
    a = max((width * c - height * s) / den, 0.3 * width) * inset
    b = max((height * c - width * s) / den, 0.3 * height) * inset
    dy = (rows.astype(np.float64) + 0.5 - height / 2.0)[:, None]
    dx = (cols.astype(np.float64) + 0.5 - width / 2.0)[None, :]
    u = dx * c + dy * s
    v = dy * c - dx * s
    return (np.abs(u) <= a / 2.0) & (np.abs(v) <= b / 2.0)


@dataclass(frozen=True)
class _Terrain:
    """Elevation-derived fields of one block (float32, the block's shape)."""

    rows: np.ndarray
    cols: np.ndarray
    elev: np.ndarray
    valley: np.ndarray
    level: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    slope2: np.ndarray  # tan(slope)^2 of the detailed surface
    macro_slope2: np.ndarray  # the same for the smooth massif surface


def _terrain(row_off: int, col_off: int, height: int, width: int, seed: int) -> _Terrain:
    """Elevation, valleys, massif level and slopes of a block."""
    # One pixel of halo so slopes come from central differences of global elevations.
    rows_h = np.arange(row_off - 1, row_off + height + 1, dtype=np.int64)
    cols_h = np.arange(col_off - 1, col_off + width + 1, dtype=np.int64)
    elev_h, macro_h, valley_h, level_h = _elevation(rows_h, cols_h, seed)
    gx, gy = _gradient(elev_h)
    mx, my = _gradient(macro_h)
    return _Terrain(
        rows=rows_h[1:-1],
        cols=cols_h[1:-1],
        elev=elev_h[1:-1, 1:-1],
        valley=valley_h[1:-1, 1:-1],
        level=level_h[1:-1, 1:-1],
        gx=gx,
        gy=gy,
        slope2=gx * gx + gy * gy,
        macro_slope2=mx * mx + my * my,
    )


def _illumination(t: _Terrain) -> np.ndarray:
    """Lambertian shading plus diffuse light; the sun sits in the south-east, as for a Landsat morning pass."""
    az, el = math.radians(_SUN_AZIMUTH_DEG), math.radians(_SUN_ELEVATION_DEG)
    sx, sy, sz = math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)
    cos_i = (np.float32(sz) - t.gx * np.float32(sx) - t.gy * np.float32(sy)) / np.sqrt(
        t.slope2 + np.float32(1.0)
    )
    illum = np.maximum(cos_i, np.float32(0.0), out=cos_i)
    illum *= np.float32((1.0 - _DIFFUSE) / sz)
    illum += np.float32(_DIFFUSE)
    np.minimum(illum, np.float32(1.7), out=illum)
    return illum


def _north_facing(t: _Terrain) -> np.ndarray:
    """+1 on slopes facing north, -1 facing south, near 0 on flats (north faces keep snow longer)."""
    north = -t.gy / np.maximum(np.sqrt(t.slope2), np.float32(1e-3))
    north *= _smooth01(t.slope2, 0.01, 0.09)
    return north


@dataclass(frozen=True)
class _IceClasses:
    """Where the glaciers are and which surface they show."""

    below: np.ndarray  # metres below the local snowline (negative above it)
    glacier: np.ndarray
    debris: np.ndarray
    ice: np.ndarray
    firn: np.ndarray


def _glacier_classes(t: _Terrain, seed: int) -> _IceClasses:
    """Glaciers: above the snowline on gentle slopes, further down along valley floors.

    Higher massifs have higher snowlines (the mass-elevation effect): it also keeps the
    glacier fraction of small scenes in a plausible range wherever they fall.
    """
    rows, cols = t.rows, t.cols
    ela = np.float32(_ELA) + np.float32(120.0) * _fbm(rows, cols, seed, 10, (97.0, 41.0))
    ela += np.float32(_MASS_EFFECT) * t.level
    below = ela - t.elev
    reach = np.minimum(np.float32(1.2) * t.valley, np.float32(550.0))
    reach -= below
    glacier = (reach > 0) & (t.macro_slope2 < np.float32(_MAX_GLACIER_SLOPE**2))
    debris_noise = _fbm(rows, cols, seed, 11, (29.0, 13.0, 6.0))
    debris = glacier & (below + np.float32(160.0) * debris_noise > np.float32(140.0))
    ice = glacier & ~debris & (below > np.float32(-60.0))
    firn = glacier & ~debris & ~ice
    return _IceClasses(below, glacier, debris, ice, firn)


def _snow_fraction(
    rows: np.ndarray, cols: np.ndarray, seed: int, below: np.ndarray, north: np.ndarray
) -> np.ndarray:
    """Seasonal snow off the glaciers: patchy, likelier high up, on north faces and steep faces."""
    snow = _fbm(rows, cols, seed, 12, (37.0, 17.0, 7.0, 3.0))
    snow *= np.float32(0.9)
    snow -= below * np.float32(1.0 / 700.0)
    snow += np.float32(0.35) * north
    return _smooth01(snow, -0.35, 0.25)


@dataclass(frozen=True)
class _Cover:
    """Surface classes and the per-pixel factors the spectra are mixed from."""

    cls: np.ndarray  # uint8 index into the spectra: rock, debris, ice, firn, lake
    mult: np.ndarray  # brightness texture per class
    veg_tex: np.ndarray
    veg_frac: np.ndarray
    snow_frac: np.ndarray
    grain: np.ndarray  # per-pixel hash for sensor noise


def _land_cover(t: _Terrain, g: _IceClasses, snow_frac: np.ndarray, seed: int) -> _Cover:
    """Lakes, vegetation, rock brightness and the class map of a block."""
    rows, cols, below = t.rows, t.cols, g.below
    # Lakes: rare dark blobs on valley floors below the snowline, never on glaciers.
    lake = _fbm(rows, cols, seed, 13, (31.0, 13.0), gain=0.4) > np.float32(0.6)
    lake &= (t.valley > np.float32(60.0)) & (below > 0) & ~g.glacier & (t.slope2 < np.float32(0.5**2))
    # Vegetation in the lowest valleys; lithology varies rock brightness regionally.
    veg_frac = _smooth01(below, 1300.0, 1900.0)
    veg_frac *= _smooth01(_fbm(rows, cols, seed, 14, (53.0, 19.0)), -0.2, 0.3)
    texture = np.float32(0.05) * _value_noise(rows, cols, 2.0, _key(seed, 16))
    mult = np.float32(0.22) * _fbm(rows, cols, seed, 15, (149.0, 61.0, 17.0, 4.0))
    mult += np.float32(1.0)
    mult += texture
    cls = np.zeros(below.shape, dtype=np.uint8)
    cls[g.debris] = 1
    cls[g.ice] = 2
    cls[g.firn] = 3
    cls[lake] = 4
    np.copyto(mult, mult + np.float32(1.5) * texture, where=g.debris)
    np.copyto(mult, np.float32(1.0) + np.float32(0.6) * texture, where=g.ice)
    np.copyto(mult, np.float32(1.0), where=g.firn | lake)
    veg_tex = np.float32(1.0) + texture
    snow_frac[g.glacier | lake] = 0.0
    veg_frac[lake] = 0.0
    grain = _hash2(rows[:, None], cols[None, :], _key(seed, 17))
    return _Cover(cls, mult, veg_tex, veg_frac, snow_frac, grain)


def _clouds(rows: np.ndarray, cols: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cloud cover in [0, 1] and the brightness factor of their shadows (offset to the south-west)."""
    cloud = _smooth01(_fbm(rows, cols, seed, 20, _CLOUD_OCTAVES), 0.08, 0.45)
    cloud_shadow = _smooth01(_fbm(rows - 37, cols + 53, seed, 20, _CLOUD_OCTAVES), 0.08, 0.45)
    cloud_shadow *= np.float32(-0.55)
    cloud_shadow += np.float32(1.0)
    return cloud, cloud_shadow


def _spectra(cover: _Cover, illum: np.ndarray, haze: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Red, green, blue and nir DN (bands 0-3 of a 5-band float32 array; band 4 is left for NDVI)."""
    height, width = cover.cls.shape
    bands = np.empty((5, height, width), dtype=np.float32)
    for b in range(4):
        lut = np.array([_ROCK[b], _DEBRIS[b], _ICE[b], _FIRN[b], _LAKE[b]], dtype=np.float32)
        dn = lut[cover.cls]
        dn *= cover.mult
        dn += (np.float32(_VEG[b]) * cover.veg_tex - dn) * cover.veg_frac
        dn += (np.float32(_SNOW[b]) - dn) * cover.snow_frac
        dn *= illum
        dn += np.float32(_PATH[b])
        if haze is not None:
            cloud, cloud_shadow = haze
            dn *= cloud_shadow
            dn += (np.float32(_CLOUD[b]) - dn) * cloud
        # Sensor noise: one 8-bit slice of the per-pixel hash per band, +-3 DN.
        noise = ((cover.grain >> _U32(8 * b)) & _U32(0xFF)).astype(np.float32)
        noise *= np.float32(6.0 / 255.0)
        dn += noise
        dn -= np.float32(3.0)
        np.clip(dn, 0.0, 255.0, out=dn)
        np.rint(dn, out=bands[b])
    return bands


def _add_ndvi(bands: np.ndarray) -> None:
    """Fill band 4 with (nir - red) / (nir + red), 0 where both are 0."""
    red, nir = bands[0], bands[3]
    total = nir + red
    bands[4] = np.where(total > 0, (nir - red) / np.where(total > 0, total, np.float32(1.0)), np.float32(0.0))


def _apply_footprint(
    bands: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    scene_shape: tuple[int, int],
    seed: int,
    nodata: float,
) -> None:
    """Set bands to ``nodata`` and the mask to 255 outside the scene's footprint, in place."""
    corner_rows, corner_cols = rows[[0, -1]], cols[[0, -1]]
    # The footprint is convex: a block whose corners are inside lies wholly inside.
    if not _footprint(corner_rows, corner_cols, scene_shape, seed).all():
        outside = ~_footprint(rows, cols, scene_shape, seed)
        bands[:, outside] = np.float32(nodata)
        mask[outside] = MASK_NODATA


def render_block(
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    seed: int = 0,
    *,
    scene_shape: tuple[int, int] | None = None,
    nodata_border: bool = False,
    clouds: bool = False,
    nodata: float = NODATA,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one block of the synthetic scene from global pixel coordinates alone.

    Args:
        row_off, col_off: global pixel offset of the block's top-left corner.
        height, width: block size in pixels.
        seed: scene seed; the same seed and coordinates always give the same pixels.
        scene_shape: (height, width) of the whole scene; needed only for the nodata border.
        nodata_border: put a rotated Landsat-like footprint in the scene, nodata outside.
        clouds: add clouds and their shadows (the mask still shows the ground truth).
        nodata: value written into every band outside the footprint.

    Returns:
        ``bands`` float32 (5, height, width): red, green, blue, nir as DN 0..255
        (integers, saturating over snow) and ndvi = (nir - red) / (nir + red);
        ``mask`` uint8 (height, width): 1 glacier, 0 not, 255 outside the footprint.

    Raises:
        ConfigError: a non-positive block size, or ``nodata_border`` without ``scene_shape``.
    """
    if height <= 0 or width <= 0:
        raise ConfigError(f"block size must be positive, got {height} x {width}")
    if nodata_border and scene_shape is None:
        raise ConfigError("nodata_border=True needs scene_shape=(height, width) of the whole scene")
    seed = int(seed)
    terrain = _terrain(row_off, col_off, height, width, seed)
    rows, cols = terrain.rows, terrain.cols
    illum = _illumination(terrain)
    north = _north_facing(terrain)
    ice_classes = _glacier_classes(terrain, seed)
    snow_frac = _snow_fraction(rows, cols, seed, ice_classes.below, north)
    del north
    cover = _land_cover(terrain, ice_classes, snow_frac, seed)
    haze = _clouds(rows, cols, seed) if clouds else None
    bands = _spectra(cover, illum, haze)
    _add_ndvi(bands)
    mask = ice_classes.glacier.astype(np.uint8)
    if nodata_border:
        assert scene_shape is not None
        _apply_footprint(bands, mask, rows, cols, scene_shape, seed, nodata)
    return bands, mask


# ------------------------------------------------------------------------ georeference


def resolve_grid(crs: str = "utm", pixel_size: float | None = None) -> tuple[CRS, float]:
    """Turn the ``crs`` option into a CRS and a pixel size in its units.

    ``"utm"`` means EPSG:32645 (UTM 45N); any string rasterio understands is accepted.
    The default pixel size is 30 m for projected CRSs (converted to the CRS's linear
    unit) and one arc second (~30 m at 28 N) for geographic ones.

    Raises:
        ConfigError: an unknown CRS or a non-positive pixel size.
    """
    text = DEFAULT_PROJECTED_CRS if str(crs).strip().lower() == "utm" else str(crs)
    try:
        out = CRS.from_user_input(text)
    except CRSError as exc:
        raise ConfigError(
            f"crs={crs!r} is not a CRS rasterio understands; use 'utm', 'EPSG:4326' or 'EPSG:xxxx'"
        ) from exc
    if pixel_size is None:
        if out.is_geographic:
            pixel_size = DEFAULT_PIXEL_DEG
        else:
            factor = out.linear_units_factor[1] if out.linear_units_factor else 1.0
            pixel_size = NOMINAL_PIXEL_M / factor
    if not (pixel_size > 0 and math.isfinite(pixel_size)):
        raise ConfigError(f"pixel_size must be a positive number, got {pixel_size}")
    return out, float(pixel_size)


def scene_transform(crs: CRS, pixel_size: float) -> Affine:
    """North-up transform with the top-left corner near Everest (or the CRS's area of use)."""
    lon, lat = ANCHOR_LON_LAT
    if crs.is_geographic:
        return Affine(pixel_size, 0.0, lon, 0.0, -pixel_size, lat)
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    epsg = crs.to_epsg()  # an EPSG code carries the area of use that rasterio's WKT drops
    proj_crs = ProjCRS.from_epsg(epsg) if epsg else ProjCRS.from_wkt(crs.to_wkt())
    area = proj_crs.area_of_use
    if area is not None and not (area.west <= lon <= area.east and area.south <= lat <= area.north):
        lon, lat = (area.west + area.east) / 2.0, (area.south + area.north) / 2.0
    x, y = Transformer.from_crs("EPSG:4326", proj_crs, always_xy=True).transform(lon, lat)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"cannot place a scene in {crs.to_string()}; choose a CRS that covers 28N 87E")
    x0 = math.floor(x / pixel_size) * pixel_size
    y0 = math.ceil(y / pixel_size) * pixel_size
    return Affine(pixel_size, 0.0, x0, 0.0, -pixel_size, y0)


# ------------------------------------------------------------------------------ write


def _block_windows(height: int, width: int, tile: int, block: int) -> Iterator[Window]:
    """Blocks in tile order, so every GeoTIFF tile is finished before the next starts."""
    outer = max(tile, block)
    for r0 in range(0, height, outer):
        for c0 in range(0, width, outer):
            for r in range(r0, min(r0 + outer, height), block):
                for c in range(c0, min(c0 + outer, width), block):
                    yield Window(c, r, min(block, width - c), min(block, height - r))


def _checked_paths(
    scene_path: str | os.PathLike[str],
    mask_path: str | os.PathLike[str],
    height: int,
    width: int,
    block_size: int,
    overwrite: bool,
) -> tuple[Path, Path]:
    """Validate sizes and output paths of :func:`generate_scene`; return both paths."""
    for name, value in (("height", height), ("width", width), ("block_size", block_size)):
        if int(value) != value or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if block_size < 16:
        raise ConfigError(f"block_size must be at least 16 pixels, got {block_size}")
    scene_path, mask_path = Path(scene_path), Path(mask_path)
    if scene_path.resolve() == mask_path.resolve():
        raise ConfigError(f"scene and mask must be different files, both are {scene_path}")
    check_output_path(scene_path, overwrite)
    check_output_path(mask_path, overwrite)
    return scene_path, mask_path


def _scene_profiles(
    height: int, width: int, grid_crs: CRS, transform: Affine, tile: int, nodata_border: bool
) -> tuple[dict, dict]:
    """Rasterio profiles of the scene (5 x float32) and the mask (uint8), tiled and compressed."""
    common = dict(
        driver="GTiff",
        height=height,
        width=width,
        crs=grid_crs,
        transform=transform,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        compress="deflate",
        zlevel=1,
        bigtiff="if_safer",
    )
    scene_profile = dict(common, count=5, dtype="float32", interleave="pixel", predictor=2)
    if nodata_border:
        scene_profile["nodata"] = NODATA
    mask_profile = dict(common, count=1, dtype="uint8", nodata=MASK_NODATA if nodata_border else None)
    return scene_profile, mask_profile


def _describe_outputs(
    dst: rasterio.io.DatasetWriter, mdst: rasterio.io.DatasetWriter, seed: int, nodata_border: bool
) -> None:
    """Band descriptions and tags of the open scene and mask datasets."""
    tags = {"GEOGLACIER_SYNTHETIC_SEED": str(seed), "GEOGLACIER_SYNTHETIC": "1"}
    dst.descriptions = BAND_NAMES
    dst.update_tags(**tags)
    mdst.descriptions = ("glacier",)
    mdst.update_tags(
        **tags,
        MASK_VALUES="0=not glacier, 1=glacier"
        + (", 255=nodata (outside footprint)" if nodata_border else ""),
    )


def _write_blocks(
    dst: rasterio.io.DatasetWriter,
    mdst: rasterio.io.DatasetWriter,
    windows: list[Window],
    seed: int,
    scene_shape: tuple[int, int],
    nodata_border: bool,
    clouds: bool,
    bar,
) -> tuple[int, int]:
    """Render and write every block; return the glacier and valid pixel counts."""
    glacier = valid = 0
    for win in windows:
        bands, mask = render_block(
            int(win.row_off),
            int(win.col_off),
            int(win.height),
            int(win.width),
            seed,
            scene_shape=scene_shape,
            nodata_border=nodata_border,
            clouds=clouds,
        )
        dst.write(bands, window=win)
        mdst.write(mask, 1, window=win)
        glacier += int(np.count_nonzero(mask == 1))
        valid += int(np.count_nonzero(mask != MASK_NODATA))
        if bar is not None:
            bar.update(int(win.height * win.width))
    return glacier, valid


def generate_scene(
    scene_path: str | os.PathLike[str],
    mask_path: str | os.PathLike[str],
    *,
    height: int = 512,
    width: int = 512,
    seed: int = 0,
    crs: str = "utm",
    pixel_size: float | None = None,
    nodata_border: bool = False,
    clouds: bool = False,
    block_size: int = 512,
    overwrite: bool = False,
    progress: bool = False,
) -> SyntheticScene:
    """Write a synthetic 5-band scene and its glacier mask, block by block.

    Memory does not grow with the scene: each block is rendered from global pixel
    coordinates and written at once, and GDAL's block cache is capped. Both files
    appear atomically (a failure leaves neither half-written).

    Args:
        scene_path: output GeoTIFF, float32, bands red, green, blue, nir, ndvi.
        mask_path: output GeoTIFF, uint8 0/1 (255 = nodata outside the footprint).
        height, width: scene size in pixels.
        seed: any integer; the same seed gives byte-identical pixels.
        crs: ``"utm"`` (EPSG:32645), ``"EPSG:4326"`` or any CRS string.
        pixel_size: in CRS units; default 30 m, or one arc second in degrees.
        nodata_border: rotated Landsat-like footprint with nodata (-9999) outside.
        clouds: add clouds and cloud shadows.
        block_size: rendering block edge in pixels; peak memory is about 50 float32 blocks.
        overwrite: replace existing outputs.
        progress: show a progress bar on stderr.

    Raises:
        ConfigError: bad sizes, CRS or pixel size, or the same path for scene and mask.
        OutputExistsError: an output exists and ``overwrite`` is False.
        OutputPathError: an output folder is missing or not writable.
    """
    scene_path, mask_path = _checked_paths(scene_path, mask_path, height, width, block_size, overwrite)
    grid_crs, px = resolve_grid(crs, pixel_size)
    transform = scene_transform(grid_crs, px)
    tile = 512 if block_size % 512 == 0 and min(height, width) >= 512 else 256
    scene_profile, mask_profile = _scene_profiles(height, width, grid_crs, transform, tile, nodata_border)
    windows = list(_block_windows(height, width, tile, block_size))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=height * width, unit="px", unit_scale=True, file=sys.stderr, desc="synthetic scene")
    try:
        with (
            rasterio.Env(
                GDAL_CACHEMAX=GDAL_CACHE_BYTES
            ),  # the cache, not the scene size, bounds GDAL's memory
            atomic_output(scene_path, overwrite) as tmp_scene,
            atomic_output(mask_path, overwrite) as tmp_mask,
            rasterio.open(tmp_scene, "w", **scene_profile) as dst,
            rasterio.open(tmp_mask, "w", **mask_profile) as mdst,
        ):
            _describe_outputs(dst, mdst, seed, nodata_border)
            glacier, valid = _write_blocks(
                dst, mdst, windows, seed, (height, width), nodata_border, clouds, bar
            )
    finally:
        if bar is not None:
            bar.close()
    return SyntheticScene(
        scene_path=scene_path,
        mask_path=mask_path,
        height=height,
        width=width,
        crs=grid_crs,
        transform=transform,
        seed=seed,
        glacier_fraction=glacier / valid if valid else 0.0,
        nodata=NODATA if nodata_border else None,
    )


def write_classic_layout(
    out_dir: str | os.PathLike[str],
    *,
    n: int = 4,
    size: int = 128,
    seed: int = 0,
    prefix: str = "synth",
    clouds: bool = False,
    overwrite: bool = False,
) -> list[tuple[Path, Path]]:
    """Write ``n`` classic-layout pairs: ``masked_NAME.npy`` (size, size, 5) float32 + ``NAME.tif``.

    The samples are far-apart tiles of one synthetic scene (so they differ but share
    its statistics); each mask is a georeferenced uint8 0/1 GeoTIFF in UTM 45N at
    30 m, placed where its tile lies. ``out_dir`` is created if needed.

    Returns:
        ``(image, mask)`` paths, in order ``NAME = f"{prefix}_{i:03d}"``.
    """
    if n <= 0 or size <= 0:
        raise ConfigError(f"n and size must be positive, got n={n}, size={size}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}_{i:03d}" for i in range(n)]
    for name in names:
        check_output_path(root / f"masked_{name}.npy", overwrite)
        check_output_path(root / f"{name}.tif", overwrite)
    grid_crs, px = resolve_grid("utm")
    base = scene_transform(grid_crs, px)
    out: list[tuple[Path, Path]] = []
    for i, name in enumerate(names):
        # A diagonal walk with gaps: neighbouring samples never overlap.
        row_off, col_off = (i % 7) * size * 2, i * size * 3
        bands, mask = render_block(row_off, col_off, size, size, seed, clouds=clouds)
        image_path, mask_path = root / f"masked_{name}.npy", root / f"{name}.tif"
        with atomic_output(image_path, overwrite) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(bands.transpose(1, 2, 0)))
        profile = dict(
            driver="GTiff",
            height=size,
            width=size,
            count=1,
            dtype="uint8",
            crs=grid_crs,
            transform=base * Affine.translation(col_off, row_off),
        )
        with atomic_output(mask_path, overwrite) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(mask, 1)
            dst.descriptions = ("glacier",)
        out.append((image_path, mask_path))
    return out
