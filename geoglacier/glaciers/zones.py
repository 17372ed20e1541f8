"""Glacier zones on a raster grid, rasterized window by window.

A *zone raster* labels each pixel of a window with the glacier it belongs to:
``0`` for no glacier, ``i + 1`` for glacier ``i`` of the outline list. Rules:

- A pixel belongs to a glacier when its **centre** lies inside the outline (GDAL's
  default rasterization rule), so touching outlines that share an edge never share a
  pixel, and a glacier's zone area converges to its outline area as pixels shrink.
- Where outlines **overlap** (ice divides drawn twice, sliver overlaps), the pixel
  goes to the glacier listed **first** (lowest index): each pixel is counted once.
- The **ring** of a glacier is the set of pixels within ``ring_pixels`` pixels
  outside its outline (the outline buffered by ``ring_pixels`` pixel sides) that lie
  inside no outline at all; where two rings overlap the first glacier wins again.

Only the outlines that reach a window are burned (an STR-tree answers which), so
memory follows the window size, not the scene size or the number of outlines, and
any grid works: the mask's, or another date's mask of the same region.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import rasterio.features
import rasterio.windows
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from geoglacier.errors import ConfigError

WINDOW: int = 1024
"""Default window edge (pixels) for whole-grid passes."""

ZONE_DTYPE = np.int32


def grid_windows(
    height: int, width: int, block_shape: tuple[int, int] = (1, 1), size: int = WINDOW
) -> Iterator[Window]:
    """Windows of about ``size`` x ``size`` covering the grid once, aligned to the file's blocks."""
    bh, bw = max(1, block_shape[0]), max(1, block_shape[1])
    wh = max(bh, size // bh * bh)
    ww = width if bw >= width else max(bw, size // bw * bw)
    for r in range(0, height, wh):
        for c in range(0, width, ww):
            yield Window(c, r, min(ww, width - c), min(wh, height - r))


def pixel_side(transform: Affine) -> float:
    """Side of a square of the pixel's map area, in CRS units (degrees for geographic grids)."""
    return math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))


class ZoneRasterizer:
    """Burn glacier outlines onto windows of one grid (see the module doc for the rules).

    Args:
        geometries: (Multi)Polygons in the grid's CRS; glacier ``i`` gets zone ``i + 1``.
        transform, height, width: the grid.
        ring_pixels: width of the ring outside each outline, in pixels (0: no rings).

    Example:
        >>> zr = ZoneRasterizer(inventory.geometries, info.transform, info.height, info.width, ring_pixels=3)
        >>> for window in grid_windows(info.height, info.width):
        ...     zones, rings = zr.zones_and_rings(window)
    """

    def __init__(
        self,
        geometries: Sequence[BaseGeometry] | np.ndarray,
        transform: Affine,
        height: int,
        width: int,
        *,
        ring_pixels: int = 0,
    ) -> None:
        if ring_pixels < 0:
            raise ConfigError(f"ring width must be >= 0 pixels, got {ring_pixels}")
        self.geometries = np.asarray(geometries, dtype=object)
        if len(self.geometries) >= np.iinfo(ZONE_DTYPE).max:
            raise ConfigError(f"too many outlines for one zone raster: {len(self.geometries)}")
        self.transform = transform
        self.height, self.width = int(height), int(width)
        self.ring_pixels = int(ring_pixels)
        self._tree = shapely.STRtree(self.geometries)
        self._buffered: np.ndarray | None = None
        self._ring_tree: shapely.STRtree | None = None
        if self.ring_pixels > 0:
            dist = self.ring_pixels * pixel_side(transform)
            self._buffered = shapely.buffer(self.geometries, dist, quad_segs=4)
            self._ring_tree = shapely.STRtree(self._buffered)

    def __len__(self) -> int:
        return len(self.geometries)

    def _box(self, window: Window) -> BaseGeometry:
        t = rasterio.windows.transform(window, self.transform)
        h, w = int(window.height), int(window.width)
        return shapely.Polygon([t * (0, 0), t * (w, 0), t * (w, h), t * (0, h)])

    def _burn(self, geoms: np.ndarray, tree: shapely.STRtree, window: Window) -> np.ndarray:
        shape = (int(window.height), int(window.width))
        idx = np.sort(tree.query(self._box(window), predicate="intersects"))
        if len(idx) == 0:
            return np.zeros(shape, dtype=ZONE_DTYPE)
        # rasterize burns in order and later shapes replace earlier ones: reverse so the
        # lowest index (first in the inventory) wins where outlines overlap
        shapes = [(geoms[i], int(i) + 1) for i in idx[::-1]]
        return rasterio.features.rasterize(
            shapes,
            out_shape=shape,
            transform=rasterio.windows.transform(window, self.transform),
            fill=0,
            dtype=ZONE_DTYPE,
            all_touched=False,
        )

    def zones(self, window: Window | None = None) -> np.ndarray:
        """Zone raster of ``window`` (default the whole grid): int32, 0 none, ``i + 1`` glacier ``i``."""
        window = window or Window(0, 0, self.width, self.height)
        return self._burn(self.geometries, self._tree, window)

    def rings(self, window: Window | None = None, zones: np.ndarray | None = None) -> np.ndarray:
        """Ring raster of ``window``: ``i + 1`` where a pixel is in glacier ``i``'s ring, else 0.

        ``zones`` (the window's zone raster) is computed when not given.
        """
        window = window or Window(0, 0, self.width, self.height)
        if zones is None:
            zones = self.zones(window)
        if self._buffered is None or self._ring_tree is None:
            return np.zeros_like(zones)
        ring = self._burn(self._buffered, self._ring_tree, window)
        ring[zones != 0] = 0
        return ring

    def zones_and_rings(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Both rasters of one window."""
        zones = self.zones(window)
        return zones, self.rings(window, zones)


def rasterize_zones(
    geometries: Sequence[BaseGeometry] | np.ndarray,
    transform: Affine,
    height: int,
    width: int,
    *,
    window: Window | None = None,
    ring_pixels: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Zone and ring rasters of one window of a grid (a one-off :class:`ZoneRasterizer`)."""
    zr = ZoneRasterizer(geometries, transform, height, width, ring_pixels=ring_pixels)
    return zr.zones_and_rings(window)
