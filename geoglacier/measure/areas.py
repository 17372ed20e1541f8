"""True (ellipsoidal) areas of mask pixels, on any map projection.

A pixel's nominal area, ``|det(transform)|`` in the CRS's linear unit squared, is its
true area only on an equal-area projection. Elsewhere the projection stretches area
by its *areal scale factor* ``k``, so the ground area is ``nominal / k`` (Web Mercator
at 61 N inflates areas about 4.3 times; UTM by under 0.1 %). ``k`` is measured on the
CRS's own ellipsoid from the Jacobian of the inverse projection (PROJ), not taken from
``Proj.get_factors``, which uses a sphere for Web Mercator and is then 0.4 % off at
62 N. For north-up geographic CRSs the pixel is a latitude/longitude quadrangle whose
area on the ellipsoid has a closed form.

Evaluating ``k`` at every pixel of a 20000 x 20000 scene would dominate the run time,
and ``k`` varies smoothly, so it is evaluated on a coarse grid of pixel centres (every
``step`` pixels, at most ~20 km apart, plus the last row and column) and interpolated
bilinearly; :func:`pixel_area_at` gives the exact per-pixel value to check that (the
tests and ``benchmarks/bench_areas.py`` show the error stays far below 0.01 %).

Mask values follow :mod:`geoglacier.io.masks`: 1 glacier, 0 not glacier, 255 nodata.
:class:`AreaAccumulator` sums areas block by block so that ``segment-scene`` can feed
blocks as it writes them; :func:`summarize_mask` does the same from a file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.windows import Window

from geoglacier.errors import ConfigError, CRSMissingError
from geoglacier.io.atomic import atomic_output, check_distinct_files, check_output_path
from geoglacier.io.masks import IGNORE, inspect_mask, normalize_mask
from geoglacier.io.scene import has_mask_band

DEFAULT_STEP: int = 64
"""Spacing in pixels of the grid on which areal scale factors are evaluated exactly."""

_MAX_NODE_M: float = 20_000.0  # largest node spacing on the ground (interpolation error ~5e-6)
_TILE: int = 1024  # largest tile processed at once inside AreaAccumulator.add (bounds temp memory)

CRSLike = Any  # rasterio.crs.CRS, pyproj.CRS, or anything pyproj.CRS.from_user_input takes


def to_pyproj_crs(crs: CRSLike) -> pyproj.CRS:
    """Return ``crs`` as a horizontal :class:`pyproj.CRS` (compound CRSs lose their vertical part)."""
    if isinstance(crs, pyproj.CRS):
        out = crs
    elif hasattr(crs, "to_wkt"):  # rasterio CRS
        out = pyproj.CRS.from_wkt(crs.to_wkt())
    else:
        out = pyproj.CRS.from_user_input(crs)
    if out.is_compound:
        out = out.sub_crs_list[0]
    return out


def crs_label(crs: CRSLike | None) -> str | None:
    """Short name of a CRS: ``"EPSG:32645"`` when it has a code, else its name."""
    if crs is None:
        return None
    pcrs = to_pyproj_crs(crs)
    code = pcrs.to_authority(min_confidence=90)
    return f"{code[0]}:{code[1]}" if code else pcrs.name


def _ellipsoid(pcrs: pyproj.CRS) -> tuple[float, float, str]:
    """Semi-major axis (m), first eccentricity squared and name of the CRS's ellipsoid."""
    ell = pcrs.ellipsoid
    a = ell.semi_major_metre
    b = ell.semi_minor_metre
    return a, 1.0 - (b / a) ** 2, ell.name


def _q(phi: np.ndarray, e2: float) -> np.ndarray:
    """Authalic function q(phi): the area from the equator to latitude phi is (b^2/2) dlon q."""
    s = np.sin(phi)
    if e2 == 0.0:
        return 2.0 * s
    e = math.sqrt(e2)
    return s / (1.0 - e2 * s * s) + np.log((1.0 + e * s) / (1.0 - e * s)) / (2.0 * e)


def _angular_factor(pcrs: pyproj.CRS) -> float:
    """Radians per angular unit of a geographic CRS (degrees almost always)."""
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else None
    return float(factor) if factor else math.pi / 180.0


def _linear_factor(pcrs: pyproj.CRS) -> float:
    """Metres per linear unit of a projected CRS (0.3048006 for US survey feet)."""
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else None
    return float(factor) if factor else 1.0


def _nominal_pixel_side_m(transform: Affine, pcrs: pyproj.CRS) -> float:
    """Rough pixel side in metres (degrees taken at the equator); only to space nodes."""
    side = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    if pcrs.is_geographic:
        return side * _angular_factor(pcrs) * pcrs.ellipsoid.semi_major_metre
    return side * _linear_factor(pcrs)


def _is_north_up(transform: Affine) -> bool:
    return transform.b == 0.0 and transform.d == 0.0


def pixel_area_at(
    transform: Affine, crs: CRSLike, rows: np.ndarray | int, cols: np.ndarray | int
) -> np.ndarray:
    """Exact true area in m^2 of the pixels ``(rows, cols)``, evaluated one by one.

    North-up geographic grids: the closed-form ellipsoidal area of the latitude/longitude
    cell (authalic function). Everything else (projected, rotated): the Jacobian of the
    map from pixel indices to ellipsoidal longitude/latitude, by central differences
    across the pixel through PROJ, times the ellipsoid's area element ``M N cos(lat)``.
    That is ``nominal / k`` with ``k`` the areal scale factor, measured on the CRS's own
    ellipsoid; ``pyproj.Proj.get_factors`` would use a sphere for Web Mercator (0.4 %
    off at 62 N). This is the reference that :func:`pixel_area_grid` is checked against.
    """
    pcrs = to_pyproj_crs(crs)
    rows_a, cols_a = np.broadcast_arrays(np.asarray(rows), np.asarray(cols))
    if pcrs.is_geographic and _is_north_up(transform):
        return _geographic_row_areas(transform, pcrs, rows_a.astype(np.float64)) + 0.0 * cols_a
    return _jacobian_area(transform, pcrs, rows_a.astype(np.float64), cols_a.astype(np.float64))


def _jacobian_area(transform: Affine, pcrs: pyproj.CRS, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Ground area of pixels from the Jacobian of (col, row) -> (lon, lat) at their centres."""
    geodetic = pcrs.geodetic_crs
    to_geo = pyproj.Transformer.from_crs(pcrs, geodetic, always_xy=True)
    k = _angular_factor(geodetic)
    r = np.ravel(rows) + 0.5
    c = np.ravel(cols) + 0.5
    # centre, then east/west and south/north neighbours half a pixel away
    dc = np.array([0.0, 0.5, -0.5, 0.0, 0.0])
    dr = np.array([0.0, 0.0, 0.0, 0.5, -0.5])
    cc = (c[None, :] + dc[:, None]).ravel()
    rr = (r[None, :] + dr[:, None]).ravel()
    x = transform.a * cc + transform.b * rr + transform.c
    y = transform.d * cc + transform.e * rr + transform.f
    lon, lat = to_geo.transform(x, y, errcheck=False)
    lon = np.asarray(lon, dtype=np.float64).reshape(5, -1) * k
    lat = np.asarray(lat, dtype=np.float64).reshape(5, -1) * k
    # wrap longitude differences across the antimeridian
    dlon_dc = np.remainder(lon[1] - lon[2] + math.pi, 2 * math.pi) - math.pi
    dlon_dr = np.remainder(lon[3] - lon[4] + math.pi, 2 * math.pi) - math.pi
    jac = np.abs(dlon_dc * (lat[3] - lat[4]) - dlon_dr * (lat[1] - lat[2]))
    a, e2, _ = _ellipsoid(pcrs)
    phi = lat[0]
    w = 1.0 - e2 * np.sin(phi) ** 2
    area = jac * a * a * (1.0 - e2) / w**2 * np.cos(phi)  # |J| * M * N * cos(phi)
    if not np.all(np.isfinite(area)):
        bad = int(np.count_nonzero(~np.isfinite(area)))
        raise CRSMissingError(
            f"pixel areas in {crs_label(pcrs)} could not be computed at {bad} pixel(s) (outside the "
            "projection's domain?); reproject the mask or pass --pixel-size METRES"
        )
    return area.reshape(np.shape(rows))


def _geographic_row_areas(transform: Affine, pcrs: pyproj.CRS, rows: np.ndarray) -> np.ndarray:
    """Exact area of the cells of rows ``rows`` of a north-up geographic grid (all equal in a row)."""
    a, e2, _ = _ellipsoid(pcrs)
    k = _angular_factor(pcrs)
    lat1 = np.clip((transform.f + transform.e * rows) * k, -math.pi / 2, math.pi / 2)
    lat2 = np.clip((transform.f + transform.e * (rows + 1.0)) * k, -math.pi / 2, math.pi / 2)
    b2 = a * a * (1.0 - e2)
    return 0.5 * b2 * abs(transform.a) * k * np.abs(_q(lat2, e2) - _q(lat1, e2))


class _AreaField:
    """True area per pixel over a whole grid, reducible over any block without materialising it."""

    method: str
    nominal_pixel_area: float | None  # m^2; None where a nominal area means nothing (degrees)

    def block_area(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    def weighted_sums(self, masks: list[np.ndarray], row_off: int, col_off: int) -> list[float]:
        """Sum of pixel areas (m^2) under each boolean mask of one block."""
        h, w = masks[0].shape
        area = np.broadcast_to(self.block_area(row_off, col_off, h, w), (h, w))
        return [float(np.sum(area, where=m)) for m in masks]


class _ConstantField(_AreaField):
    def __init__(self, pixel_area: float, method: str) -> None:
        self.pixel_area = pixel_area
        self.nominal_pixel_area = pixel_area
        self.method = method

    def block_area(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return np.full((height, width), self.pixel_area)

    def weighted_sums(self, masks: list[np.ndarray], row_off: int, col_off: int) -> list[float]:
        return [float(np.count_nonzero(m)) * self.pixel_area for m in masks]


class _RowField(_AreaField):
    """North-up geographic grid: every cell of a row has the same area."""

    def __init__(self, row_areas: np.ndarray, method: str) -> None:
        self.row_areas = row_areas
        self.nominal_pixel_area = None
        self.method = method

    def block_area(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        return np.repeat(self.row_areas[row_off : row_off + height, None], width, axis=1)

    def weighted_sums(self, masks: list[np.ndarray], row_off: int, col_off: int) -> list[float]:
        rows = self.row_areas[row_off : row_off + masks[0].shape[0]]
        return [float(rows @ np.count_nonzero(m, axis=1)) for m in masks]


def _nodes(n: int, step: int) -> np.ndarray:
    nodes = np.arange(0, n, step, dtype=np.int64)
    if nodes[-1] != n - 1:
        nodes = np.append(nodes, n - 1)
    return nodes


def _weights(nodes: np.ndarray, start: int, stop: int) -> tuple[int, np.ndarray]:
    """Bilinear weights of pixel indices ``start..stop-1`` on ``nodes``: (first node, (n, k) matrix)."""
    idx = np.arange(start, stop)
    if len(nodes) == 1:
        return 0, np.ones((len(idx), 1))
    seg = np.clip(np.searchsorted(nodes, idx, side="right") - 1, 0, len(nodes) - 2)
    t = (idx - nodes[seg]) / (nodes[seg + 1] - nodes[seg])
    first = int(seg[0])
    k = int(seg[-1]) + 2 - first
    w = np.zeros((len(idx), k))
    w[np.arange(len(idx)), seg - first] = 1.0 - t
    w[np.arange(len(idx)), seg - first + 1] = t
    return first, w


class _GridField(_AreaField):
    """Pixel areas evaluated exactly on a coarse node grid and interpolated bilinearly."""

    def __init__(
        self, transform: Affine, pcrs: pyproj.CRS, height: int, width: int, step: int, method: str
    ) -> None:
        # Cap node spacing at ~_MAX_NODE_M on the ground: interpolation error grows as spacing^2.
        size_m = _nominal_pixel_side_m(transform, pcrs)
        step = max(1, min(step, int(_MAX_NODE_M // size_m) if size_m > 0 else step))
        self.row_nodes = _nodes(height, step)
        self.col_nodes = _nodes(width, step)
        self.values = pixel_area_at(transform, pcrs, self.row_nodes[:, None], self.col_nodes[None, :])
        self.method = method
        self.nominal_pixel_area = None

    def block_area(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        r0, wr = _weights(self.row_nodes, row_off, row_off + height)
        c0, wc = _weights(self.col_nodes, col_off, col_off + width)
        g = self.values[r0 : r0 + wr.shape[1], c0 : c0 + wc.shape[1]]
        return (wr @ g) @ wc.T

    def weighted_sums(self, masks: list[np.ndarray], row_off: int, col_off: int) -> list[float]:
        # sum(mask * Wr G Wc^T) == sum(G * (Wr^T mask Wc)): project the mask onto the node grid
        # with segment sums (np.add.reduceat) rather than materialise the (h, w) area block or
        # call BLAS, whose threads fight with the model's for the same cores.
        out = []
        for m in masks:
            c0, mc = _project(m.view(np.uint8), self.col_nodes, col_off, axis=1)
            r0, s = _project(mc, self.row_nodes, row_off, axis=0)
            g = self.values[r0 : r0 + s.shape[0], c0 : c0 + s.shape[1]]
            out.append(float(np.vdot(g, s)))
        return out


def _project(x: np.ndarray, nodes: np.ndarray, start: int, axis: int) -> tuple[int, np.ndarray]:
    """``W^T x`` along ``axis`` for the bilinear weights ``W`` of indices ``start..`` on ``nodes``.

    Returns the first node touched and the projected array (``axis`` now runs over nodes).
    Within one node interval the weights are ``1 - t`` and ``t`` with ``t`` linear in the
    index, so two segment sums (of ``x`` and of ``x * t``) give the result exactly.
    """
    n = x.shape[axis]
    if len(nodes) == 1:
        return 0, np.sum(x, axis=axis, keepdims=True, dtype=np.float64)
    idx = np.arange(start, start + n)
    seg = np.clip(np.searchsorted(nodes, idx, side="right") - 1, 0, len(nodes) - 2)
    t = (idx - nodes[seg]) / (nodes[seg + 1] - nodes[seg])
    cuts = np.flatnonzero(np.diff(seg, prepend=-1))
    shape = [1, 1]
    shape[axis] = n
    count = np.add.reduceat(x, cuts, axis=axis, dtype=np.float64)
    moment = np.add.reduceat(np.multiply(x, t.reshape(shape), dtype=np.float64), cuts, axis=axis)
    first = int(seg[0])
    k = seg[cuts] - first
    out_shape = list(x.shape)
    out_shape[axis] = int(seg[-1]) + 2 - first
    out = np.zeros(out_shape)
    if axis == 1:
        out[:, k] += count - moment
        out[:, k + 1] += moment
    else:
        out[k, :] += count - moment
        out[k + 1, :] += moment
    return first, out


NOMINAL_METHOD: str = "nominal: --pixel-size"
"""The ``method`` of areas from ``--pixel-size`` (a raster without CRS): pixel count x size squared."""


def check_pixel_size(pixel_size: float | None, crs: CRSLike | None, source: Any = "the raster") -> None:
    """Check ``--pixel-size``: a positive number of metres, and only for a raster without a CRS.

    A CRS gives true areas; a pixel size on top could only replace them with a nominal
    figure at a size the user guessed, so it is refused rather than silently preferred.
    A CRS that is neither projected nor geographic (a local site grid) gives no areas, so
    there ``--pixel-size`` is accepted, as for a raster without a CRS.

    Raises:
        ConfigError: a non-positive or non-finite size, or a raster that has a CRS.
    """
    if pixel_size is None:
        return
    if not (pixel_size > 0 and math.isfinite(pixel_size)):
        raise ConfigError(f"--pixel-size must be a positive number of metres, got {pixel_size}")
    if crs is not None and gives_true_areas(crs):
        raise ConfigError(
            f"{source} has a CRS ({crs_label(crs)}), which gives true areas; --pixel-size is only for "
            "rasters without a CRS: drop --pixel-size"
        )


def gives_true_areas(crs: CRSLike) -> bool:
    """A projected or geographic CRS: true areas come from it (a local engineering CRS does not)."""
    try:
        pcrs = to_pyproj_crs(crs)
    except Exception:  # noqa: BLE001 - a CRS pyproj cannot read gives no areas either
        return False
    return bool(pcrs.is_projected or pcrs.is_geographic)


def _make_field(
    transform: Affine,
    crs: CRSLike | None,
    height: int,
    width: int,
    pixel_size: float | None = None,
    step: int = DEFAULT_STEP,
    source: str = "the mask",
) -> _AreaField:
    if pixel_size is not None:
        check_pixel_size(pixel_size, crs, source)
        return _ConstantField(float(pixel_size) ** 2, NOMINAL_METHOD)
    if crs is None:
        raise CRSMissingError(f"{source} has no CRS; pass --pixel-size METRES to compute areas")
    if step < 1:
        raise ConfigError(f"step must be >= 1 pixel, got {step}")
    pcrs = to_pyproj_crs(crs)
    if pcrs.is_geographic:
        _, _, ell = _ellipsoid(pcrs)
        method = f"geographic: geodesic cell area on {ell}"
        if _is_north_up(transform):
            rows = np.arange(height, dtype=np.float64)
            return _RowField(_geographic_row_areas(transform, pcrs, rows), method)
        return _GridField(transform, pcrs, height, width, step, method)
    if not pcrs.is_projected:
        raise CRSMissingError(
            f"{source}: CRS {crs_label(pcrs)} is neither projected nor geographic; "
            "pass --pixel-size METRES to compute areas"
        )
    det = abs(transform.a * transform.e - transform.b * transform.d)
    field = _GridField(
        transform,
        pcrs,
        height,
        width,
        step,
        f"projected: areal scale factor on {_ellipsoid(pcrs)[2]} (pyproj)",
    )
    field.nominal_pixel_area = det * _linear_factor(pcrs) ** 2
    return field


def pixel_area_field(
    transform: Affine,
    crs: CRSLike | None,
    height: int,
    width: int,
    pixel_size: float | None = None,
    *,
    step: int = DEFAULT_STEP,
    source: str = "the mask",
) -> _AreaField:
    """True pixel areas of a grid, to be asked block by block (bounded memory).

    The returned object's ``block_area(row_off, col_off, height, width)`` gives the
    (broadcastable) m^2 areas of one block and ``weighted_sums(masks, row_off, col_off)``
    the area under boolean masks of a block; ``method`` says how areas are computed.

    Raises:
        CRSMissingError: ``crs`` is None and no ``pixel_size`` was given.
    """
    return _make_field(transform, crs, height, width, pixel_size, step, source)


def pixel_area_grid(
    transform: Affine,
    crs: CRSLike | None,
    height: int,
    width: int,
    *,
    window: Window | None = None,
    pixel_size: float | None = None,
    step: int = DEFAULT_STEP,
) -> np.ndarray:
    """True area in m^2 of every pixel of a grid (or of ``window`` of it).

    Args:
        transform: the grid's affine transform (rotated or sheared is fine: ``|det|``).
        crs: projected or geographic CRS (rasterio, pyproj or a string such as "EPSG:3413").
        height, width: grid shape in pixels.
        window: only this part of the grid; a 20000 x 20000 grid of float64 is 3.2 GB.
        pixel_size: side in metres of square pixels; overrides the CRS (nominal areas).
        step: node spacing in pixels of the exactly evaluated scale-factor grid; 1 is exact.

    Raises:
        CRSMissingError: ``crs`` is None and no ``pixel_size`` was given.
    """
    field = _make_field(transform, crs, height, width, pixel_size, step)
    if window is None:
        window = Window(0, 0, width, height)
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    if r0 < 0 or c0 < 0 or r0 + h > height or c0 + w > width:
        raise ConfigError(f"window {window} is outside the {height}x{width} grid")
    return np.ascontiguousarray(np.broadcast_to(field.block_area(r0, c0, h, w), (h, w)), dtype=np.float64)


@dataclass(frozen=True)
class AreaSummary:
    """Pixel counts and areas of a glacier mask.

    True areas are ellipsoidal ground areas; nominal ones are pixel count times the
    pixel's map area (``None`` for geographic CRSs, whose pixels have no fixed area).
    ``glacier_fraction`` is the glacier share of the valid (true) area.
    """

    glacier_pixels: int
    valid_pixels: int
    nodata_pixels: int
    glacier_area_km2: float
    valid_area_km2: float
    nominal_glacier_area_km2: float | None
    nominal_valid_area_km2: float | None
    glacier_fraction: float | None
    crs: str | None
    method: str
    pixel_size: float | None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AreaAccumulator:
    """Sum glacier and valid areas of a mask fed block by block (bounded memory).

    ``segment-scene`` calls :meth:`add` with each finished block of the mask it writes
    (uint8: 1 glacier, 0 not glacier, 255 nodata; any other value counts as nodata)
    and :meth:`result` at the end. Every pixel must be added exactly once; overlapping
    blocks would be counted twice.

    Raises:
        CRSMissingError: ``crs`` is None and no ``pixel_size`` was given.
        ConfigError: ``pixel_size`` is not positive.
    """

    def __init__(
        self,
        transform: Affine,
        crs: CRSLike | None,
        height: int,
        width: int,
        pixel_size: float | None = None,
        *,
        step: int = DEFAULT_STEP,
        source: str | os.PathLike[str] | None = None,
    ) -> None:
        self.height, self.width = int(height), int(width)
        self.crs = None if crs is None else crs_label(crs)
        self.pixel_size = None if pixel_size is None else float(pixel_size)
        self.source = None if source is None else str(source)
        self._field = _make_field(transform, crs, height, width, pixel_size, step, self.source or "the mask")
        self._glacier_px = 0
        self._valid_px = 0
        self._nodata_px = 0
        self._glacier_m2 = 0.0
        self._valid_m2 = 0.0

    def add(self, block: np.ndarray, row_off: int, col_off: int) -> None:
        """Count one ``(h, w)`` block whose top-left pixel is ``(row_off, col_off)``."""
        block = np.asarray(block)
        if block.ndim == 3 and block.shape[0] == 1:
            block = block[0]
        if block.ndim != 2:
            raise ValueError(f"a mask block must be 2-D (h, w), got shape {block.shape}")
        h, w = block.shape
        if row_off < 0 or col_off < 0 or row_off + h > self.height or col_off + w > self.width:
            raise ValueError(
                f"block of {h}x{w} at row {row_off}, col {col_off} is outside the "
                f"{self.height}x{self.width} mask"
            )
        for r in range(0, h, _TILE):
            for c in range(0, w, _TILE):
                self._add_tile(block[r : r + _TILE, c : c + _TILE], row_off + r, col_off + c)

    def _add_tile(self, tile: np.ndarray, row_off: int, col_off: int) -> None:
        glacier = tile == 1
        valid = glacier | (tile == 0)
        n_glacier = int(np.count_nonzero(glacier))
        n_valid = int(np.count_nonzero(valid))
        self._glacier_px += n_glacier
        self._valid_px += n_valid
        self._nodata_px += tile.size - n_valid
        if n_valid == 0:
            return
        if n_glacier == 0:
            self._valid_m2 += self._field.weighted_sums([valid], row_off, col_off)[0]
        else:
            g, v = self._field.weighted_sums([glacier, valid], row_off, col_off)
            self._glacier_m2 += g
            self._valid_m2 += v

    def result(self) -> AreaSummary:
        """The summary of everything added so far."""
        nominal = self._field.nominal_pixel_area
        return AreaSummary(
            glacier_pixels=self._glacier_px,
            valid_pixels=self._valid_px,
            nodata_pixels=self._nodata_px,
            glacier_area_km2=self._glacier_m2 / 1e6,
            valid_area_km2=self._valid_m2 / 1e6,
            nominal_glacier_area_km2=None if nominal is None else self._glacier_px * nominal / 1e6,
            nominal_valid_area_km2=None if nominal is None else self._valid_px * nominal / 1e6,
            glacier_fraction=self._glacier_m2 / self._valid_m2 if self._valid_m2 > 0 else None,
            crs=self.crs,
            method=self._field.method,
            pixel_size=self.pixel_size,
            source=self.source,
        )


def _read_windows(height: int, width: int, block_shape: tuple[int, int]) -> list[Window]:
    """Windows of about 1024 x 1024 aligned to the file's blocks (whole strips for striped files)."""
    bh, bw = block_shape
    wh = max(bh, _TILE // max(bh, 1) * bh)
    ww = width if bw >= width else max(bw, _TILE // max(bw, 1) * bw)
    return [
        Window(c, r, min(ww, width - c), min(wh, height - r))
        for r in range(0, height, wh)
        for c in range(0, width, ww)
    ]


def summarize_mask(
    path: str | os.PathLike[str], pixel_size: float | None = None, *, step: int = DEFAULT_STEP
) -> AreaSummary:
    """Area summary of a mask file, read block by block (bounded memory).

    Values are read as :func:`geoglacier.io.masks.read_mask_block` reads them (a GDAL mask
    band marks nodata too; 0/255 masks warn and 255 becomes glacier unless 255 is the
    nodata value).

    Raises:
        CRSMissingError: the mask has no CRS and no ``pixel_size`` was given.
    """
    info = inspect_mask(path)
    acc = AreaAccumulator(
        info.transform, info.crs, info.height, info.width, pixel_size, step=step, source=info.path
    )
    with rasterio.open(info.path) as ds:
        masked = has_mask_band(ds)  # a GDAL mask band marks nodata too
        for window in _read_windows(info.height, info.width, info.block_shape):
            raw = ds.read(1, window=window)
            if (
                raw.dtype == np.uint8
                and not masked
                and info.nodata in (None, float(IGNORE))
                and _is_normal(raw, info.nodata)
            ):
                block = raw  # already 0/1/255: skip the copy
            else:
                valid = ds.dataset_mask(window=window) != 0 if masked else None
                block = normalize_mask(raw, info.nodata, info.path, valid)
            acc.add(block, int(window.row_off), int(window.col_off))
    return acc.result()


def _is_normal(raw: np.ndarray, nodata: float | None) -> bool:
    """True when a uint8 block is already 0/1/255 with 255 declared nodata (the usual case)."""
    if nodata is None:
        return bool(raw.max(initial=0) <= 1)
    return bool(np.count_nonzero(raw > 1) == np.count_nonzero(raw == IGNORE))


def area_summary(
    mask: np.ndarray | str | os.PathLike[str],
    transform: Affine | None = None,
    crs: CRSLike | None = None,
    pixel_size: float | None = None,
    *,
    step: int = DEFAULT_STEP,
) -> AreaSummary:
    """Area summary of a mask array (0/1/255 with its grid) or of a mask file (see :func:`summarize_mask`)."""
    if isinstance(mask, str | os.PathLike):
        return summarize_mask(mask, pixel_size, step=step)
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (h, w), got shape {arr.shape}")
    acc = AreaAccumulator(
        transform or Affine.identity(), crs, arr.shape[0], arr.shape[1], pixel_size, step=step
    )
    acc.add(arr, 0, 0)
    return acc.result()


def format_summary(summary: AreaSummary) -> str:
    """A short human-readable table of a summary."""

    def km2(v: float | None) -> str:
        return "n/a" if v is None else f"{v:,.4f} km2"

    frac = "n/a" if summary.glacier_fraction is None else f"{100 * summary.glacier_fraction:.2f} %"
    rows = [
        ("source", summary.source or "-"),
        ("crs", summary.crs or "none"),
        ("method", summary.method),
        ("glacier pixels", f"{summary.glacier_pixels:,}"),
        ("valid pixels", f"{summary.valid_pixels:,}"),
        ("nodata pixels", f"{summary.nodata_pixels:,}"),
    ]
    if summary.method == NOMINAL_METHOD:  # no CRS: only the nominal figure exists
        size = f"{summary.pixel_size:g} m" if summary.pixel_size is not None else "--pixel-size"
        rows += [
            ("glacier area (true)", "n/a (no CRS)"),
            ("valid area (true)", "n/a (no CRS)"),
            (f"glacier area (nominal, {size} pixels)", km2(summary.nominal_glacier_area_km2)),
            (f"valid area (nominal, {size} pixels)", km2(summary.nominal_valid_area_km2)),
        ]
    else:
        rows += [
            ("glacier area (true)", km2(summary.glacier_area_km2)),
            ("valid area (true)", km2(summary.valid_area_km2)),
            ("glacier area (nominal)", km2(summary.nominal_glacier_area_km2)),
            ("valid area (nominal)", km2(summary.nominal_valid_area_km2)),
        ]
    rows.append(("glacier fraction", frac))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_summary_json(
    summary: AreaSummary,
    path: str | os.PathLike[str],
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``summary.to_dict()`` (plus ``extra`` fields, e.g. the acquisition date) as JSON, atomically."""
    target = check_output_path(path, overwrite)
    with atomic_output(target, overwrite) as tmp:
        payload = {**summary.to_dict(), **(extra or {})}
        tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return target


def run_summarize(
    mask: str | os.PathLike[str],
    pixel_size: float | None = None,
    json_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> AreaSummary:
    """:func:`summarize_mask`, then the summary as JSON to ``json_path`` (``geoglacier summarize``).

    The JSON path is checked before the mask is read: it may not be the mask itself,
    even with ``overwrite``.

    Raises:
        OutputPathError: ``json_path`` is the mask, or its folder is missing or read-only.
        OutputExistsError: ``json_path`` exists and ``overwrite`` is False.
        CRSMissingError, ConfigError: see :func:`summarize_mask`.
    """
    if json_path is not None:
        check_distinct_files({"--json": json_path}, {"MASK": mask})
        check_output_path(json_path, overwrite)
    summary = summarize_mask(mask, pixel_size)
    if json_path is not None:
        write_summary_json(summary, json_path, overwrite)
    return summary
