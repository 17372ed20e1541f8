"""Training labels from a glacier inventory: its outlines burned onto a scene's grid.

:func:`burn_labels` writes a uint8 mask on the scene's grid (CRS, transform, size), the
kind ``geoglacier train`` reads beside its scene:

- ``1`` (glacier) where a pixel's **centre** lies inside any outline, ``0`` elsewhere:
  the rule of ``geoglacier glaciers`` (:class:`~geoglacier.glaciers.zones.ZoneRasterizer`),
  with outlines in any CRS and GLIMS rock outcrops (``intrnl_rock``) cut out of their
  glaciers (:func:`~geoglacier.glaciers.inventory.read_inventory`).
- ``255`` (nodata, the file's nodata value) where the scene has no data: any band holds
  the scene's nodata value or NaN, or its GDAL mask (or alpha) band says no data.
- ``255`` too, with ``edge_pixels = N > 0``, in the **edge band**: pixels that have a
  pixel of the other class within ``N`` pixels, i.e. whose ``(2N+1) x (2N+1)`` square of
  pixels (centred on them) holds both glacier and non-glacier pixels as burned. That is
  ``N`` pixels on each side of every glacier / non-glacier boundary: outer outlines and
  the rims of holes and rock cut-outs, but not the divide between two touching glaciers
  (glacier on both sides, so no doubt about the label). Outlines are burned beyond the
  scene's edge for this, so the scene's own edge is never taken for an outline.

Work goes window by window (outlines burned with an ``N``-pixel halo, the scene's bands
read for validity only), so memory follows the window, not the scene.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from geoglacier.errors import ConfigError, CRSMissingError, NoOverlapError
from geoglacier.glaciers.dates import DATE_TAG, parse_date
from geoglacier.glaciers.inventory import Inventory, footprint, read_inventory
from geoglacier.glaciers.outline_dates import (
    DEFAULT_TOLERANCE_YEARS,
    OutlineAge,
    outline_age,
    warn_if_outdated,
)
from geoglacier.glaciers.zones import WINDOW, ZoneRasterizer, grid_windows
from geoglacier.io.atomic import (
    RASTER_SUFFIXES,
    check_distinct_files,
    check_extension,
    check_output_path,
    with_companions,
)
from geoglacier.io.cog import CogWriter, RasterSpec, cog_output
from geoglacier.io.masks import IGNORE
from geoglacier.io.scene import (
    GCP_WARP_HINT,
    GDAL_CACHE_BYTES,
    SceneInfo,
    inspect_scene,
    read_window,
    valid_pixels,
)
from geoglacier.measure.areas import crs_label, pixel_area_field

GLACIER: int = 1
NOT_GLACIER: int = 0
NODATA: int = IGNORE
"""The label values: ``1`` glacier, ``0`` not glacier, ``255`` nodata (the file's nodata value)."""


@dataclass(frozen=True)
class LabelResult:
    """What :func:`burn_labels` wrote.

    Attributes:
        path: the label mask written.
        outlines: outlines that reach the scene (burned).
        edge_pixels: width of the edge band on each side of a boundary, in pixels.
        pixels: pixels of the grid.
        glacier_pixels, not_glacier_pixels, nodata_pixels: pixels labelled 1, 0 and 255.
        scene_nodata_pixels: pixels where the scene has no data.
        edge_band_pixels: pixels in the edge band where the scene has data.
        glacier_area_km2: true (ellipsoidal) area of the glacier pixels.
        age: the outlines' dates against the scene's.
    """

    path: Path
    outlines: int
    edge_pixels: int
    pixels: int
    glacier_pixels: int
    not_glacier_pixels: int
    nodata_pixels: int
    scene_nodata_pixels: int
    edge_band_pixels: int
    glacier_area_km2: float
    age: OutlineAge

    def share(self, count: int) -> float:
        """``count`` as a share of all pixels (0 for an empty grid)."""
        return count / self.pixels if self.pixels else 0.0


def edge_band(glacier: np.ndarray, pixels: int) -> np.ndarray:
    """The edge band of a burned glacier raster, ``pixels`` wide on each side of its boundaries.

    Args:
        glacier: boolean ``(h + 2N, w + 2N)`` raster with a halo of ``N = pixels`` on each side.
        pixels: ``N``, the band's width on each side, >= 0.

    Returns:
        Boolean ``(h, w)``: the core of ``glacier`` (halo cut off), True where the
        ``(2N+1) x (2N+1)`` square centred on the pixel holds both classes (a pixel of
        the other class lies within ``N`` pixels, diagonals included).
    """
    if pixels == 0:
        return np.zeros(glacier.shape, dtype=bool)
    g = glacier.astype(np.uint8)
    size = 2 * pixels + 1
    mixed = ndimage.maximum_filter(g, size=size) != ndimage.minimum_filter(g, size=size)
    return mixed[pixels:-pixels, pixels:-pixels]


def burn_labels(
    scene: str | os.PathLike[str],
    inventory: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    edge_pixels: int = 0,
    layer: str | None = None,
    date: str | dt.date | None = None,
    date_tolerance_years: float = DEFAULT_TOLERANCE_YEARS,
    window: int = WINDOW,
    overwrite: bool = False,
    progress: bool = False,
) -> LabelResult:
    """Burn an inventory's outlines onto a scene's grid as a 0/1/255 label mask (a COG).

    See the module doc for the values and the edge band.

    Args:
        scene: the scene (any band count) whose grid and nodata the labels follow; it needs a CRS.
        inventory: glacier outlines (RGI, GLIMS, any polygon layer GDAL reads; any CRS; see
            :func:`~geoglacier.glaciers.inventory.read_inventory`). No id column is needed.
        out: the GeoTIFF to write (``.tif``), uint8, nodata 255.
        edge_pixels: width ``N`` of the edge band marked nodata on each side of every boundary.
        layer: the inventory's layer (or file in its zip).
        date: the scene's acquisition date; default its ``ACQUISITION_DATE`` tag.
        date_tolerance_years: warn when an outline's date is further than this from the scene's.
        window: edge of the windows processed at once, in pixels.
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar of windows.

    Returns:
        A :class:`LabelResult` with pixel counts and the glacier area.

    Raises:
        ConfigError: a bad option value, or ``out`` is not a .tif.
        OutputExistsError, OutputPathError: ``out`` exists (without ``overwrite``), is an input, or
            cannot be written.
        CRSMissingError: the scene has no CRS.
        NoOverlapError: no outline reaches the scene.
        InventoryError, SceneNotFoundError, InvalidRasterError: unreadable inputs.

    Warns:
        OutdatedOutlinesWarning: outlines dated more than ``date_tolerance_years`` from the scene.
    """
    _check_options(edge_pixels, date_tolerance_years, window)
    check_extension(out, RASTER_SUFFIXES, "--out", "GeoTIFF")
    check_distinct_files({"--out": out}, {"SCENE": scene, "--inventory": with_companions(inventory)})
    check_output_path(out, overwrite)
    info = _scene_info(scene)
    inv = _read_outlines(inventory, info, layer)
    age = outline_age(_scene_date(info, date), inv.dates)
    warn_if_outdated(age, str(info.path), date_tolerance_years, stacklevel=3)
    zones = ZoneRasterizer(inv.geometries, info.transform, info.height, info.width)
    spec = _label_spec(info, inventory, edge_pixels, age)
    # GDAL's block cache (5 % of RAM by default) would otherwise fill with the staging file's tiles
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), cog_output(out, spec, overwrite) as writer:
        counts, area_m2 = _write_windows(writer, info, zones, edge_pixels, window, progress)
    return LabelResult(
        path=Path(out),
        outlines=len(inv),
        edge_pixels=edge_pixels,
        pixels=info.height * info.width,
        glacier_pixels=counts["glacier"],
        not_glacier_pixels=counts["not_glacier"],
        nodata_pixels=counts["nodata"],
        scene_nodata_pixels=counts["scene_nodata"],
        edge_band_pixels=counts["edge"],
        glacier_area_km2=area_m2 / 1e6,
        age=age,
    )


def _check_options(edge_pixels: int, tolerance: float, window: int) -> None:
    if edge_pixels < 0:
        raise ConfigError(f"--edge-pixels must be >= 0, got {edge_pixels}")
    if not tolerance >= 0:
        raise ConfigError(f"--date-tolerance must be >= 0 years, got {tolerance}")
    if window < 1:
        raise ConfigError(f"the window must be >= 1 pixel, got {window}")


def _scene_info(scene: str | os.PathLike[str]) -> SceneInfo:
    """The scene's header; it must have a CRS for outlines to be placed on it."""
    info = inspect_scene(scene, expected_bands=None, warn_no_crs=False)
    if info.crs is None:
        hint = f" ({GCP_WARP_HINT})" if info.gcps[0] else " (e.g. gdal_edit.py -a_srs EPSG:XXXX)"
        raise CRSMissingError(
            f"{info.path} has no CRS, so inventory outlines cannot be placed on it; assign the CRS{hint}"
        )
    return info


def _read_outlines(inventory: str | os.PathLike[str], info: SceneInfo, layer: str | None) -> Inventory:
    """The outlines that reach the scene, on its CRS."""
    region = footprint(info.transform, info.height, info.width)
    try:
        return read_inventory(inventory, info.crs, region=region, layer=layer, ids_required=False)
    except NoOverlapError:
        raise NoOverlapError(
            f"{os.fspath(inventory)}: none of its outlines reaches the scene {info.path} "
            f"({crs_label(info.crs)}); is it the inventory of this region?"
        ) from None


def _scene_date(info: SceneInfo, date: str | dt.date | None) -> dt.date | None:
    """``date``, else the scene's ``ACQUISITION_DATE`` tag, else ``None``."""
    if date is not None:
        return parse_date(date, "--date")
    with rasterio.open(info.path) as ds:
        value = ds.tags().get(DATE_TAG)
    if value is None or not str(value).strip():
        return None
    return parse_date(value, f"{info.path} tag {DATE_TAG} (override it with --date)")


def _label_spec(
    info: SceneInfo, inventory: str | os.PathLike[str], edge_pixels: int, age: OutlineAge
) -> RasterSpec:
    tags = {
        "MASK_VALUES": "0=not glacier, 1=glacier, 255=nodata",
        "GEOGLACIER_SCENE": info.path.name,
        "GEOGLACIER_INVENTORY": Path(os.fspath(inventory)).name,
        "GEOGLACIER_EDGE_PIXELS": str(edge_pixels),
    }
    if age.first is not None and age.last is not None:
        tags["OUTLINE_DATES"] = f"{age.first.isoformat()}/{age.last.isoformat()}"
    return RasterSpec(
        info.height,
        info.width,
        info.crs,
        info.transform,
        "uint8",
        NODATA,
        resampling="NEAREST",
        description="glacier",
        tags=tags,
    )


def label_window(
    ds: rasterio.io.DatasetReader, zones: ZoneRasterizer, window: Window, edge_pixels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of one window of the scene ``ds``: ``(labels, scene_valid, edge_band)``.

    ``labels`` is uint8 0/1/255 (see the module doc); ``scene_valid`` and ``edge_band``
    are the boolean layers that made the 255s.
    """
    n = edge_pixels
    h, w = int(window.height), int(window.width)
    halo = Window(window.col_off - n, window.row_off - n, w + 2 * n, h + 2 * n)
    burned = zones.zones(halo) != 0
    glacier = burned[n : n + h, n : n + w]
    band = edge_band(burned, n)
    block = read_window(ds, int(window.row_off), int(window.col_off), h, w)
    valid = valid_pixels(block, ds.nodata)
    labels = np.where(glacier, GLACIER, NOT_GLACIER).astype(np.uint8)
    labels[band | ~valid] = NODATA
    return labels, valid, band


def _write_windows(
    writer: CogWriter, info: SceneInfo, zones: ZoneRasterizer, edge_pixels: int, window: int, progress: bool
) -> tuple[dict[str, int], float]:
    """Label every window and write it tile by tile; return pixel counts and glacier area (m2)."""
    from tqdm.auto import tqdm

    tile = writer.spec.block
    windows = list(grid_windows(info.height, info.width, (tile, tile), size=max(window, tile)))
    field = pixel_area_field(info.transform, info.crs, info.height, info.width, source=str(info.path))
    counts = dict.fromkeys(("glacier", "not_glacier", "nodata", "scene_nodata", "edge"), 0)
    area = 0.0
    bar = tqdm(total=len(windows), desc="labels", unit="win", disable=None if progress else True, leave=False)
    try:
        for _, row in itertools.groupby(windows, key=lambda win: win.row_off):
            # a fresh handle per row of windows keeps GDAL's block cache from filling with the scene
            with rasterio.open(info.path) as ds:
                for win in row:
                    labels, valid, band = label_window(ds, zones, win, edge_pixels)
                    _write_tiles(writer, labels, int(win.row_off), int(win.col_off), tile)
                    glacier = labels == GLACIER
                    counts["glacier"] += int(np.count_nonzero(glacier))
                    counts["not_glacier"] += int(np.count_nonzero(labels == NOT_GLACIER))
                    counts["nodata"] += int(np.count_nonzero(labels == NODATA))
                    counts["scene_nodata"] += int(np.count_nonzero(~valid))
                    counts["edge"] += int(np.count_nonzero(band & valid))
                    area += field.weighted_sums([glacier], int(win.row_off), int(win.col_off))[0]
                    bar.update()
    finally:
        bar.close()
    return counts, area


def _write_tiles(writer: CogWriter, labels: np.ndarray, row_off: int, col_off: int, tile: int) -> None:
    """Hand a window aligned to the output tiles to ``writer`` one tile at a time."""
    for r in range(0, labels.shape[0], tile):
        for c in range(0, labels.shape[1], tile):
            writer.write_tile(labels[r : r + tile, c : c + tile], row_off + r, col_off + c)


def format_labels(result: LabelResult) -> str:
    """One line: glacier pixels and share, nodata share, glacier area, the dates compared."""
    edge = f" (edge band {100 * result.share(result.edge_band_pixels):.1f} %)" if result.edge_pixels else ""
    return (
        f"{result.path}: {result.glacier_pixels:,} glacier pixels "
        f"({100 * result.share(result.glacier_pixels):.1f} %), "
        f"nodata {100 * result.share(result.nodata_pixels):.1f} %{edge}, "
        f"glacier {result.glacier_area_km2:.2f} km2 from {result.outlines} outlines; {result.age.describe()}"
    )
