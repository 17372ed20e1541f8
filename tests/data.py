"""Seeded generators of tiny georeferenced fixtures, shared by the tests.

Everything is written into a folder the test owns (``tmp_path``); nothing is
committed. The values are smooth random fields so windows differ from each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

UTM = "EPSG:32645"
UTM_TRANSFORM = Affine(30.0, 0.0, 478000.0, 0.0, -30.0, 3108140.0)
GEO_TRANSFORM = Affine(0.0003, 0.0, 86.8, 0.0, -0.0003, 28.1)
EVEREST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "everest"


def scene_array(height: int, width: int, bands: int = 5, seed: int = 0) -> np.ndarray:
    """A (bands, height, width) float32 field in 0..255, smooth enough to look like terrain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((bands, height, width), dtype=np.float32)
    for b in range(bands):
        fy, fx, phase = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, 6.28)
        noise = rng.normal(0, 5, (height, width)).astype(np.float32)
        out[b] = 127 + 100 * np.sin(fy * yy + phase) * np.cos(fx * xx) + noise
    return out


def write_raster(
    path: Path,
    data: np.ndarray,
    crs: str | None = UTM,
    transform: Affine = UTM_TRANSFORM,
    nodata: float | None = None,
    descriptions: tuple[str, ...] | None = None,
    tiled: bool = True,
    block: int = 32,
) -> Path:
    """Write a (bands, h, w) or (h, w) array as a GeoTIFF."""
    arr = data[None] if data.ndim == 2 else data
    profile = {
        "driver": "GTiff",
        "height": arr.shape[1],
        "width": arr.shape[2],
        "count": arr.shape[0],
        "dtype": arr.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if tiled and arr.shape[1] >= block and arr.shape[2] >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    return path


def write_scene(path: Path, height: int = 64, width: int = 64, seed: int = 0, **kwargs) -> Path:
    """A 5-band float32 scene (or ``bands=N``, ``dtype=...``) with a real CRS."""
    bands = kwargs.pop("bands", 5)
    dtype = kwargs.pop("dtype", "float32")
    data = scene_array(height, width, bands, seed).astype(dtype)
    return write_raster(path, data, **kwargs)


def glacier_mask(scene: np.ndarray) -> np.ndarray:
    """A mask that a model can learn from the scene: band 0 above its median."""
    return (scene[0] > np.median(scene[0])).astype(np.uint8)
