"""The band statistics that normalise a scene's blocks for the model, and their application to a block.

Either the checkpoint's training statistics or, for a checkpoint trained with
``normalization="scene"``, the scene's own, from one pass over it that is remembered
for the last few scenes (so an ensemble's members scan a scene once).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geoglacier.errors import InvalidRasterError
from geoglacier.inference.windows import pad_reflect
from geoglacier.io.scene import SceneInfo, has_mask_band, valid_pixels
from geoglacier.training.normalization import STD_FLOOR, scene_scan


def normalise_block(
    raw: np.ndarray, nodata: float | None, mean: np.ndarray, std: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised bands of a block read from the scene, nodata set to 0, padded up to one window.

    Returns:
        ``(bands, h, w)`` float32 and the ``(h, w)`` validity (False on padding), where
        ``h, w`` are the block's sides, or ``window`` for a side of a scene smaller than one.
    """
    valid = valid_pixels(raw, nodata)
    # A nodata value such as float32's lowest (GDAL's usual one) overflows to -inf here;
    # those pixels are zeroed just below, so numpy's warning would only alarm the user.
    with np.errstate(over="ignore", invalid="ignore"):
        raw -= mean  # in place: the block is the largest array held, keep one copy
        raw /= std
    raw[:, ~valid] = 0.0
    x = pad_reflect(raw, window)
    if valid.shape != x.shape[1:]:
        padded = np.zeros(x.shape[1:], dtype=bool)
        padded[: valid.shape[0], : valid.shape[1]] = valid
        valid = padded
    return x, valid


def block_statistics(
    mean: tuple[float, ...] | np.ndarray, std: tuple[float, ...] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std as float32 ``(bands, 1, 1)`` arrays for :func:`normalise_block`.

    The std gets the same floor as training's ``Normalization.apply``, for constant bands.
    """
    mean32 = np.asarray(mean, dtype=np.float32)[:, None, None]
    std32 = np.maximum(np.asarray(std, dtype=np.float32), STD_FLOOR)[:, None, None]
    return mean32, std32


def all_nodata_error(info: SceneInfo) -> InvalidRasterError:
    """The error for a scene whose every pixel is nodata, naming it and its nodata value."""
    nodata = "NaN" if info.nodata is None else f"{info.nodata:g} or NaN"
    if has_mask_band(info.path):
        nodata += ", or outside its GDAL mask band"
    return InvalidRasterError(
        f"{info.path}: every pixel is nodata ({nodata} in some band); nothing to segment - "
        "check the scene and its nodata value"
    )


#: Scenes whose statistics :func:`scene_normalization` keeps (a few: an ensemble's members
#: share one scene; segment-scenes runs a few scenes at once per worker).
SCENE_STATS_CACHE_SIZE: int = 4

_scene_stats: OrderedDict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_scene_stats_lock = threading.Lock()


def scene_normalization(info: SceneInfo, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The scene's own per-band mean and std over its valid pixels, as :func:`block_statistics`.

    One lazy pass over the scene, chunk by chunk in bounded memory
    (:func:`geoglacier.training.normalization.scene_scan`, the pass that training with
    ``normalization="scene"`` makes over each of its scenes, so a scene gets the same
    statistics in both), on dask's threaded scheduler so that it also runs inside a
    dask.distributed task (segment-scenes).

    The result is remembered for the last :data:`SCENE_STATS_CACHE_SIZE` scenes, keyed on
    the file's identity and modification (:func:`scene_stats_key`) and its nodata value,
    so the K members of an ensemble scan the scene once, and a rewritten file is scanned
    again. The arrays returned are read-only (they are shared between callers). Two
    threads asking for one new scene at the same moment may both scan it.

    Raises:
        InvalidRasterError: the scene has no valid pixel.
    """
    key = scene_stats_key(info)
    with _scene_stats_lock:
        cached = _scene_stats.get(key) if key is not None else None
        if cached is not None:
            _scene_stats.move_to_end(key)
            return cached
    stats = _scan_normalization(info, progress)  # outside the lock: other scenes go on meanwhile
    if key is not None:
        with _scene_stats_lock:
            _scene_stats[key] = stats
            _scene_stats.move_to_end(key)
            while len(_scene_stats) > SCENE_STATS_CACHE_SIZE:
                _scene_stats.popitem(last=False)
    return stats


def scene_stats_key(info: SceneInfo) -> tuple[Any, ...] | None:
    """What identifies a scene's statistics: each of its files' identity and times, and nodata.

    The files are those GDAL reads for the scene (``rasterio``'s ``files``): the file
    itself and its sidecars, and for a ``.vrt`` the rasters it points to, so rewriting a
    VRT's source is seen too. ``None`` (do not cache) when a file cannot be stat'ed (a
    GDAL virtual path). The inode and ctime catch a file replaced by a rename even
    within the mtime's resolution.
    """
    if not info.path.is_file():  # a GDAL virtual path (/vsicurl/...): not even opened for a key
        return None
    nodata = None if info.nodata is None else float(info.nodata).hex()  # NaN != NaN: key its text
    try:
        return (*(_file_identity(Path(f)) for f in _scene_files(info.path)), nodata)
    except OSError:
        return None


def _scene_files(path: Path) -> list[str]:
    """The files GDAL opens for ``path``, the path itself first."""
    try:
        with rasterio.open(path) as src:
            files = list(src.files)
    except rasterio.errors.RasterioError as exc:
        raise OSError(str(exc)) from exc
    return [str(path), *(f for f in files if Path(f).resolve() != path.resolve())]


def _file_identity(path: Path) -> tuple[Any, ...]:
    resolved = path.resolve()
    st = resolved.stat()
    return (str(resolved), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def clear_scene_stats() -> None:
    """Forget every remembered scene statistic (:func:`scene_normalization`)."""
    with _scene_stats_lock:
        _scene_stats.clear()


def _scan_normalization(info: SceneInfo, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """One scan of the scene into read-only :func:`block_statistics` arrays."""
    scan = scene_scan(info.path, nodata=info.nodata, scheduler="threads", progress=progress)
    if (scan.moments.count == 0).any():
        raise all_nodata_error(info)
    norm = scan.moments.normalization(str(info.path))
    mean, std = block_statistics(norm.mean, norm.std)
    mean.flags.writeable = False
    std.flags.writeable = False
    return mean, std
