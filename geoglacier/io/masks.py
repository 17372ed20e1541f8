"""Read glacier masks and check them against their scenes.

Masks are single-band rasters. In memory a mask is uint8 with 0 (not glacier),
1 (glacier) and :data:`IGNORE` (nodata: counted in neither loss nor metrics).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geoglacier.errors import GeoglacierWarning, GridMismatchError, MaskError
from geoglacier.io.scene import SceneInfo, has_mask_band, inspect_scene

IGNORE: int = 255


def inspect_mask(path: str | os.PathLike[str]) -> SceneInfo:
    """Check that ``path`` is a readable single-band raster; return its header.

    A nodata value of 0 (``gdal_rasterize -a_nodata 0`` writes one) collides with "not
    glacier": it is honoured, as the file says, but with a warning, since such a mask
    reads as all glacier where it has any valid pixel.
    """
    info = inspect_scene(path, expected_bands=None, what="mask", warn_no_crs=False)
    if info.count != 1:
        raise MaskError(
            f"{info.path}: a mask must have 1 band, found {info.count}; write the glacier mask as a "
            "single-band 0/1 GeoTIFF"
        )
    if info.nodata == 0:
        warnings.warn(
            f"{info.path}: nodata is 0, the value of 'not glacier', so every 0 pixel is read as nodata; "
            "unset it (gdal_edit.py -unsetnodata) or use 255 for nodata",
            GeoglacierWarning,
            stacklevel=2,
        )
    return info


def normalize_mask(
    values: np.ndarray, nodata: float | None, source: str | Path, valid: np.ndarray | None = None
) -> np.ndarray:
    """Map raw mask values to uint8 0/1 with :data:`IGNORE` for nodata.

    {0, 1} is the norm; {0, 255} (a common export) is accepted with a warning and
    255 becomes 1, unless 255 is the declared nodata value. Anything else is an error
    that lists what was found. Pixels where ``valid`` (a GDAL mask band, see
    :func:`read_mask_block`) is False are nodata, whatever value they hold.
    """
    arr = np.asarray(values)
    ignore = np.zeros(arr.shape, dtype=bool) if valid is None else ~np.asarray(valid, dtype=bool)
    if arr.dtype.kind == "f":
        ignore |= ~np.isfinite(arr)
    if nodata is not None and np.isfinite(nodata):
        ignore |= arr == nodata
    found = np.unique(arr[~ignore]) if (~ignore).any() else np.array([], dtype=arr.dtype)
    found_set = {float(v) for v in found}
    out = np.zeros(arr.shape, dtype=np.uint8)
    if found_set <= {0.0, 1.0}:
        out[arr == 1] = 1
    elif found_set <= {0.0, 255.0}:
        warnings.warn(
            f"{source}: mask values are 0/255; reading 255 as glacier (1). Write 0/1 masks to silence this",
            GeoglacierWarning,
            stacklevel=2,
        )
        out[arr == 255] = 1
    else:
        shown = ", ".join(f"{v:g}" for v in sorted(found_set)[:10])
        more = " ..." if len(found_set) > 10 else ""
        raise MaskError(
            f"{source}: mask values must be 0 (not glacier) and 1 (glacier), found {{{shown}{more}}}; "
            "reclassify the mask to 0/1 (nodata may be set as the file's nodata value)"
        )
    out[ignore] = IGNORE
    return out


def read_mask_block(
    ds: rasterio.io.DatasetReader, window: Window | None, nodata: float | None, source: str | Path
) -> np.ndarray:
    """Read a window of an open mask as :func:`normalize_mask` gives it.

    A GDAL mask band (an internal or ``.msk`` mask, as ``gdal_translate -mask`` or a
    cutline leaves) marks nodata as much as a nodata value does: pixels outside it
    are :data:`IGNORE`.
    """
    valid = ds.dataset_mask(window=window) != 0 if has_mask_band(ds) else None
    return normalize_mask(ds.read(1, window=window), nodata, source, valid)


def read_mask(
    path: str | os.PathLike[str],
    window: Window | None = None,
    info: SceneInfo | None = None,
) -> np.ndarray:
    """Read a mask (or a window of it) as uint8 0/1 with :data:`IGNORE` for nodata."""
    info = info or inspect_mask(path)
    with rasterio.open(info.path) as ds:
        return read_mask_block(ds, window, info.nodata, info.path)


def check_mask_values(path: str | os.PathLike[str], info: SceneInfo | None = None) -> tuple[int, int]:
    """Scan a whole mask block by block and raise :class:`MaskError` on bad values.

    Bounded memory: one block at a time, so a 20000 x 20000 mask is fine.

    Returns:
        The numbers of glacier and of non-glacier pixels (nodata in neither).
    """
    info = info or inspect_mask(path)
    glacier = other = 0
    with rasterio.open(info.path) as ds:
        for _, window in ds.block_windows(1):
            values = read_mask_block(ds, window, info.nodata, info.path)
            glacier += int(np.count_nonzero(values == 1))
            other += int(np.count_nonzero(values == 0))
    return glacier, other


def warn_one_class(where: str | os.PathLike[str], glacier: int, other: int) -> None:
    """Warn when training masks hold a single class (or none): nothing can be learnt from them.

    All-0 or all-1 masks, or a nodata value equal to one of the classes, leave the
    loss one class to fit and every epoch's MCC at 0.
    """
    if glacier and other:
        return
    missing = (
        "no valid pixel"
        if not (glacier or other)
        else "no glacier pixel (1)"
        if not glacier
        else "no non-glacier pixel (0)"
    )
    warnings.warn(
        f"{where}: the masks hold {missing}, so a model cannot learn to tell glacier apart and every "
        "MCC will be 0; check the mask values and their nodata value (gdalinfo -stats)",
        GeoglacierWarning,
        stacklevel=3,
    )


def check_same_grid(
    scene: SceneInfo,
    mask: SceneInfo,
    fix: str = "resample the mask onto the scene's grid (e.g. gdalwarp -r near with the scene's extent)",
) -> None:
    """Raise :class:`GridMismatchError` saying how the mask's grid differs from the scene's.

    ``fix`` ends the message: what the user should do (the default suits a label mask
    given with a scene; a raster that should have come out of the same run says so).
    """
    diffs: list[str] = []
    if (scene.height, scene.width) != (mask.height, mask.width):
        diffs.append(f"shape {mask.height}x{mask.width} vs scene {scene.height}x{scene.width}")
    if not mask.transform.almost_equals(scene.transform, precision=1e-6 * max(1.0, abs(scene.transform.a))):
        diffs.append(f"transform {tuple(mask.transform)[:6]} vs scene {tuple(scene.transform)[:6]}")
    if (scene.crs is None) != (mask.crs is None) or (scene.crs is not None and scene.crs != mask.crs):
        diffs.append(
            f"CRS {mask.crs.to_string() if mask.crs else None} vs scene "
            f"{scene.crs.to_string() if scene.crs else None}"
        )
    if diffs:
        raise GridMismatchError(
            f"{mask.path} is not on the grid of {scene.path}: " + "; ".join(diffs) + f"; {fix}"
        )
