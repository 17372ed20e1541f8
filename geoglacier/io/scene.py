"""Open multi-band GeoTIFF scenes lazily and check them.

:func:`open_scene` returns a dask-backed :class:`xarray.DataArray` (through rioxarray)
with dims ``(band, y, x)``: nothing is read until a window or a reduction asks for it.
:func:`inspect_scene` checks a file with rasterio alone (cheap, no dask graph) and is
what the training and inference code call before they start work.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from geoglacier.errors import (
    BandCountError,
    GeoglacierWarning,
    InvalidRasterError,
    SceneNotFoundError,
)

DEFAULT_BAND_NAMES: tuple[str, ...] = ("red", "green", "blue", "nir", "ndvi")
#: GDAL block-cache cap (MB) for whole-scene passes (statistics, inference, synthesis):
#: without it GDAL keeps up to 5 % of RAM of decoded tiles, which would set peak memory.
GDAL_CACHE_MB: int = 64
#: The same cap in bytes, as ``rasterio.Env(GDAL_CACHEMAX=...)`` wants it: rasterio reads an
#: integer there as bytes, so ``GDAL_CACHEMAX=64`` would mean a 64-byte cache (10x slower reads).
GDAL_CACHE_BYTES: int = GDAL_CACHE_MB * 1024 * 1024
#: How to turn a scene georeferenced by ground control points into one with a grid.
GCP_WARP_HINT: str = "it is georeferenced by GCPs only; gdalwarp -t_srs EPSG:XXXX scene.tif warped.tif"
SUPPORTED_DTYPES: frozenset[str] = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
)


@dataclass(frozen=True)
class SceneInfo:
    """What a scene file holds, read from its header."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: float | None
    band_names: tuple[str, ...]
    block_shape: tuple[int, int]
    #: Ground control points and their CRS, for a scene georeferenced by them alone
    #: (no geotransform, no CRS): outputs carry them on, so they stay georeferenced.
    gcps: tuple[tuple[Any, ...], CRS | None] = ((), None)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise SceneNotFoundError(f"{path}: {what} not found; check the path")
    if path.is_dir():
        raise InvalidRasterError(f"{path} is a directory; give the path of a GeoTIFF {what}")


def _band_count_message(p: Path, expected: int, count: int, names: Sequence[str] | None) -> str:
    if names is None and expected == len(DEFAULT_BAND_NAMES):
        names = DEFAULT_BAND_NAMES
    if names is None or len(names) != expected:
        return f"{p}: expected {expected} bands, found {count}"
    return (
        f"{p}: expected {expected} bands ({', '.join(names)}), found {count}; "
        f"stack the bands into one {expected}-band GeoTIFF"
    )


def inspect_scene(
    path: str | os.PathLike[str],
    expected_bands: int | None = 5,
    *,
    what: str = "scene",
    warn_no_crs: bool = True,
    band_names: Sequence[str] | None = None,
) -> SceneInfo:
    """Check that ``path`` is a readable raster with the expected bands and a supported dtype.

    ``band_names`` (the recipe a model expects) name the bands in the band-count error;
    without them a 5-band request names the default recipe.

    The last block of the first band is read too: a truncated file usually loses its
    tail, and failing here, with the file name, beats failing halfway through a job.

    Raises:
        SceneNotFoundError: the file does not exist.
        InvalidRasterError: not a raster, corrupt, or an unsupported dtype.
        BandCountError: the band count differs from ``expected_bands``.
    """
    p = Path(path)
    _check_exists(p, what)
    try:
        with rasterio.open(p) as ds:
            _check_dtypes(p, ds.dtypes)
            if expected_bands is not None and ds.count != expected_bands:
                raise BandCountError(_band_count_message(p, expected_bands, ds.count, band_names))
            _read_last_block(ds)
            info = SceneInfo(
                path=p,
                width=ds.width,
                height=ds.height,
                count=ds.count,
                dtype=ds.dtypes[0],
                crs=ds.crs,
                transform=ds.transform,
                nodata=ds.nodata,
                band_names=_described_names(ds.descriptions),
                block_shape=ds.block_shapes[0],
                gcps=(tuple(ds.gcps[0]), ds.gcps[1]) if ds.crs is None and ds.gcps[0] else ((), None),
            )
    except RasterioIOError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise InvalidRasterError(
            f"{p}: not a readable GeoTIFF or the file is corrupt ({detail}); check or re-export the file"
        ) from exc
    if info.crs is None and warn_no_crs:
        warnings.warn(
            f"{p} has no CRS: it can be segmented, but areas need --pixel-size"
            + (f" or a warped copy ({GCP_WARP_HINT})" if info.gcps[0] else ""),
            GeoglacierWarning,
            stacklevel=2,
        )
    return info


def _check_dtypes(p: Path, dtypes: Sequence[str]) -> None:
    """One supported dtype for all bands, or an error that says how to convert."""
    if len(set(dtypes)) != 1:
        raise InvalidRasterError(
            f"{p}: bands have different dtypes {sorted(set(dtypes))}; "
            "rewrite the scene with one dtype (for example float32)"
        )
    if dtypes[0] not in SUPPORTED_DTYPES:
        raise InvalidRasterError(
            f"{p}: dtype {dtypes[0]} is not supported; convert the scene to "
            "float32 or an integer type (for example with gdal_translate -ot Float32)"
        )


def _read_last_block(ds: Any) -> None:
    """Read the first band's last block: a truncated file usually loses its tail."""
    bh, bw = ds.block_shapes[0]
    col, row = (ds.width - 1) // bw * bw, (ds.height - 1) // bh * bh
    ds.read(1, window=Window(col, row, min(bw, ds.width - col), min(bh, ds.height - row)))


def _described_names(descriptions: Sequence[str | None]) -> tuple[str, ...]:
    """Band names from the descriptions; the default recipe's (or ``bandN``) where one is missing."""
    count = len(descriptions)
    return tuple(
        d if d else (DEFAULT_BAND_NAMES[i] if count == len(DEFAULT_BAND_NAMES) else f"band{i + 1}")
        for i, d in enumerate(descriptions)
    )


def open_scene(
    path: str | os.PathLike[str],
    chunks: int | dict[str, int] | str | None = 512,
    expected_bands: int | None = 5,
) -> Any:
    """Open a multi-band GeoTIFF as a lazy ``(band, y, x)`` float32 DataArray.

    Args:
        path: the GeoTIFF.
        chunks: dask chunk size in pixels for y and x (all bands go in one chunk), a
            dict as rioxarray takes it, or ``"auto"``. ``None`` still gives a lazy array
            but without dask.
        expected_bands: band count to enforce; ``None`` accepts any.

    Returns:
        A DataArray with ``rio.crs``, ``rio.transform()``, the original nodata value in
        ``attrs["nodata"]`` (also ``rio.nodata``), ``attrs["band_names"]`` and
        ``attrs["source_dtype"]``. Values are cast to float32 lazily.
    """
    import rioxarray  # noqa: F401 - registers the .rio accessor

    info = inspect_scene(path, expected_bands)
    if isinstance(chunks, int):
        chunk_arg: Any = {"band": -1, "y": chunks, "x": chunks}
    else:
        chunk_arg = chunks
    # lock=False: reads of different chunks may run in parallel threads (GDAL >= 3.x
    # handles that with one dataset handle per thread in rioxarray's file manager).
    da = rioxarray.open_rasterio(info.path, chunks=chunk_arg, masked=False, lock=False, cache=False)
    if info.dtype != "float32":
        da = da.astype(np.float32)
    if has_mask_band(info.path):  # outside the footprint: NaN, as valid_pixels and the scans expect
        grid = da.chunks[1:] if da.chunks is not None else ((info.height,), (info.width,))
        da = da.where(_lazy_mask_band(info.path, grid))
    da.attrs["nodata"] = info.nodata
    da.attrs["band_names"] = info.band_names
    da.attrs["source_dtype"] = info.dtype
    da.attrs["source_path"] = str(info.path)
    if info.nodata is not None:
        da = da.rio.write_nodata(info.nodata, encoded=False)
    da.name = info.path.stem
    return da


def has_mask_band(path_or_dataset: str | os.PathLike[str] | rasterio.io.DatasetReader) -> bool:
    """Whether the raster's no-data area is a GDAL mask band or an alpha band rather than a value.

    GDAL writes such masks for ``gdalwarp -dstalpha``, ``gdal_translate -mask`` and many
    COGs (an internal ``.msk``-style mask, or an external ``.msk`` file): the pixels
    outside the footprint then hold an ordinary value (often 0) and only the mask says
    they are not data. A mask that GDAL derives from the nodata value is not one.
    """
    if isinstance(path_or_dataset, rasterio.io.DatasetReader):
        flags = path_or_dataset.mask_flag_enums
    else:
        with rasterio.open(path_or_dataset) as ds:
            flags = ds.mask_flag_enums
    return any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags)


def _read_mask_band(
    path: str | os.PathLike[str], row_off: int, col_off: int, height: int, width: int
) -> np.ndarray:
    """The mask band of a window as booleans, True where the raster has data."""
    with rasterio.open(path) as ds:
        return ds.dataset_mask(window=Window(col_off, row_off, width, height)) != 0


def _lazy_mask_band(path: Path, chunks: tuple[tuple[int, ...], tuple[int, ...]]) -> Any:
    """A lazy ``(y, x)`` boolean DataArray of the raster's mask band, in ``chunks``."""
    import dask.array as dsa
    import xarray as xr

    def block(_: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return _read_mask_band(path, r0, c0, r1 - r0, c1 - c0)

    shape = (sum(chunks[0]), sum(chunks[1]))
    data = dsa.map_blocks(block, dsa.empty(shape, chunks=chunks, dtype=bool), dtype=bool)
    return xr.DataArray(data, dims=("y", "x"))


def valid_pixels(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Per-pixel validity of a ``(bands, h, w)`` block.

    A pixel is valid when every band is finite and none equals ``nodata``: one bad
    band is enough to make a pixel unusable for the model.
    """
    ok = np.isfinite(block).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        with np.errstate(
            over="ignore"
        ):  # a float64 nodata past float32's range reads as +-inf, as the data do
            value = np.asarray(nodata, dtype=block.dtype)
        ok &= (block != value).all(axis=0)
    return ok


def nodata_mask(da: Any) -> Any:
    """Lazy boolean ``(y, x)`` DataArray, True where any band is nodata or NaN."""
    nodata = da.attrs.get("nodata")
    bad = ~np.isfinite(da)
    if nodata is not None and np.isfinite(nodata):
        bad = bad | (da == np.float32(nodata))
    return bad.any(dim="band")


def read_window(
    path_or_dataset: str | os.PathLike[str] | rasterio.io.DatasetReader,
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    fill: float = np.nan,
) -> np.ndarray:
    """Read a ``(bands, height, width)`` float32 window with rasterio.

    Parts of the window outside the scene are filled with ``fill`` (``boundless``
    reads), so edge windows come back at full size. Pixels that a GDAL mask band or
    alpha band marks as no data (:func:`has_mask_band`) come back as NaN, so
    :func:`valid_pixels` leaves them out as it does nodata values.
    """
    if isinstance(path_or_dataset, rasterio.io.DatasetReader):
        return _read(path_or_dataset, row_off, col_off, height, width, fill)
    with rasterio.open(path_or_dataset) as ds:
        return _read(ds, row_off, col_off, height, width, fill)


def _read(
    ds: rasterio.io.DatasetReader, row_off: int, col_off: int, height: int, width: int, fill: float
) -> np.ndarray:
    inside = row_off >= 0 and col_off >= 0 and row_off + height <= ds.height and col_off + width <= ds.width
    if inside:
        return _read_masked(ds, Window(col_off, row_off, width, height))
    out = np.full((ds.count, height, width), fill, dtype=np.float32)
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1, c1 = min(row_off + height, ds.height), min(col_off + width, ds.width)
    if r1 > r0 and c1 > c0:
        out[:, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = _read_masked(
            ds, Window(c0, r0, c1 - c0, r1 - r0)
        )
    return out


def _read_masked(ds: rasterio.io.DatasetReader, window: Window) -> np.ndarray:
    """Read a window inside the raster as float32, NaN where its mask band says no data."""
    out = ds.read(window=window, out_dtype=np.float32)
    if has_mask_band(ds):
        out[:, ds.dataset_mask(window=window) == 0] = np.nan
    return out
