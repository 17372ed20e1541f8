"""What a segmentation run writes: its output paths and options checked up front, the COGs' specs,
the atomic outputs open during the run, and the per-glacier products written from the finished mask.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from geoglacier.errors import ConfigError, CRSMissingError, GeoglacierWarning
from geoglacier.glaciers.areas import check_table_format, run_glaciers
from geoglacier.inference.blend import FinishedTile
from geoglacier.inference.partial import PartialRun
from geoglacier.inference.results import SegmentResult
from geoglacier.io.atomic import (
    RASTER_SUFFIXES,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
)
from geoglacier.io.cog import CogWriter, RasterSpec, cog_output
from geoglacier.io.masks import IGNORE
from geoglacier.io.scene import GCP_WARP_HINT, SceneInfo
from geoglacier.measure.areas import (
    AreaAccumulator,
    AreaSummary,
    check_pixel_size,
    crs_label,
    gives_true_areas,
    write_summary_json,
)

# ------------------------------------------------------------------------------ checks


def check_outputs(
    out: str | os.PathLike[str],
    probabilities: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    overwrite: bool,
    scene: str | os.PathLike[str] | None = None,
    uncertainty: str | os.PathLike[str] | None = None,
    *,
    glaciers: str | os.PathLike[str] | None = None,
    inputs: Mapping[str, str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None] | None = None,
) -> dict[str, Path]:
    """Check every requested output path before work; return them by role.

    ``uncertainty`` is an ensemble's spread raster (checked like the others). No output
    may be the ``scene``, one of the other ``inputs`` (``--model``, ``--inventory`` ...)
    or another output, ``glaciers`` (the per-glacier table, whose own checks are
    :func:`~geoglacier.glaciers.glacier_tables.prepare_glacier_table`'s) included.

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False.
        OutputPathError: a folder is missing or read-only, an output is an input, or two
            outputs share a path.
        ConfigError: a raster output not named .tif/.tiff, a table not .gpkg/.csv, or an
            outlines file with an unsupported extension.
    """
    requested = {
        "mask": out, "probabilities": probabilities, "uncertainty": uncertainty, "summary": summary,
        "outlines": outlines,
    }  # fmt: skip
    for role in ("mask", "probabilities", "uncertainty"):
        if requested[role] is not None:
            check_extension(requested[role], RASTER_SUFFIXES, _OPTIONS[role], "GeoTIFF (COG)")
    if glaciers is not None:
        check_table_format(glaciers)
    if outlines is not None:
        from geoglacier.measure.outlines import DRIVERS

        suffix = Path(outlines).suffix
        if suffix.lower() not in DRIVERS:
            raise ConfigError(
                f"{outlines}: unknown outline format {suffix or '(no extension)'!r}; "
                "use a .gpkg (GeoPackage, in the mask's CRS) or .geojson (EPSG:4326) file name"
            )
    check_distinct_files(
        {**{_OPTIONS[role]: path for role, path in requested.items()}, "--glaciers": glaciers},
        {"SCENE": scene, **(inputs or {})},
    )
    return {role: check_output_path(path, overwrite) for role, path in requested.items() if path is not None}


_OPTIONS = {
    "mask": "--out", "probabilities": "--probabilities", "uncertainty": "--uncertainty",
    "summary": "--summary", "outlines": "--outlines",
}  # fmt: skip


def check_min_area(min_area: float) -> None:
    """Check ``min_area``, the smallest outline polygon kept, in km2.

    Raises:
        ConfigError: a negative or non-finite ``min_area``.
    """
    if not (min_area >= 0 and math.isfinite(min_area)):
        raise ConfigError(f"--min-area must be >= 0 km2 (got {min_area})")


def check_areas(
    info: SceneInfo,
    pixel_size: float | None,
    *,
    needed: bool,
    outlines: bool = False,
    inventory: bool = False,
) -> bool:
    """Whether areas can be computed for ``info``; raise if they are needed and cannot be.

    See :func:`check_crs_areas`, which this applies to the scene's path and CRS.
    """
    return check_crs_areas(
        info.path, info.crs, pixel_size, needed=needed, outlines=outlines, inventory=inventory,
        gcps=bool(info.gcps[0]),
    )  # fmt: skip


def check_crs_areas(
    path: str | os.PathLike[str],
    crs: Any,
    pixel_size: float | None,
    *,
    needed: bool,
    outlines: bool = False,
    inventory: bool = False,
    gcps: bool = False,
) -> bool:
    """Whether areas can be computed for a raster with ``crs``; raise if they are needed and cannot be.

    ``gcps``: the raster is georeferenced by ground control points alone, so the fix to
    suggest is a warped copy, not a CRS.

    Raises:
        CRSMissingError: no CRS that gives true areas, and a summary, outlines or an
            inventory were asked for (outlines and inventories always need one; a summary
            can do with ``pixel_size``).
        ConfigError: a non-positive ``pixel_size``, or one given for a scene with a CRS
            (which gives true areas).
    """
    check_pixel_size(pixel_size, crs, path)
    true_areas = crs is not None and gives_true_areas(crs)
    what = "no CRS" if crs is None else f"a CRS ({crs_label(crs)}) that is neither projected nor geographic"
    fix = (
        f"warp it onto a grid first ({GCP_WARP_HINT})"
        if gcps
        else "assign a CRS (for example with gdal_edit.py -a_srs EPSG:XXXX)"
    )
    if not true_areas and pixel_size is None and needed:
        raise CRSMissingError(
            f"{path} has {what}, so areas cannot be computed; pass --pixel-size METRES or {fix}"
        )
    wanting = [w for w, asked in (("outlines", outlines), ("--inventory", inventory)) if asked]
    if wanting and not true_areas:
        raise CRSMissingError(f"{path} has {what}; {' and '.join(wanting)} need a georeferenced scene: {fix}")
    return true_areas or pixel_size is not None


def make_accumulator(
    info: SceneInfo, pixel_size: float | None, *, needed: bool, source: str | os.PathLike[str] | None = None
) -> AreaAccumulator | None:
    """An area accumulator for the scene's grid, or ``None`` when areas cannot be computed.

    Raises:
        CRSMissingError: no CRS, no ``pixel_size``, and a summary or outlines were asked for.
        ConfigError: a non-positive ``pixel_size``.
    """
    if not check_areas(info, pixel_size, needed=needed):
        gcps = " (it keeps the scene's GCPs)" if info.gcps[0] else ""
        warnings.warn(
            f"{info.path} has no CRS: the mask is written without one{gcps} and no areas are computed "
            "(pass --pixel-size METRES for areas)",
            GeoglacierWarning,
            stacklevel=3,
        )
        return None
    return AreaAccumulator(info.transform, info.crs, info.height, info.width, pixel_size, source=source)


# ----------------------------------------------------------------------------- outputs


def output_specs(
    info: SceneInfo, window: int, product: dict[str, str] | None = None
) -> tuple[RasterSpec, RasterSpec]:
    """Grid, encoding and tags of the mask COG and the probability COG of ``info``.

    ``product`` tags (acquisition date, sensor, source product) are copied onto both.
    """
    tags = {"GEOGLACIER_SCENE": info.path.name, "GEOGLACIER_WINDOW": str(window), **(product or {})}
    mask_spec = RasterSpec(
        info.height,
        info.width,
        info.crs,
        info.transform,
        "uint8",
        IGNORE,
        resampling="NEAREST",
        description="glacier",
        tags={**tags, "MASK_VALUES": "0=not glacier, 1=glacier, 255=nodata"},
        gcps=info.gcps,
    )
    prob_spec = replace(
        mask_spec,
        dtype="float32",
        nodata=float("nan"),
        resampling="AVERAGE",
        description="glacier probability",
        tags=tags,
    )
    return mask_spec, prob_spec


@dataclass
class RunOutputs:
    """The outputs of one run, open under temporary names until the run succeeds.

    Attributes:
        mask, probabilities: COG writers (``probabilities`` only when asked for).
        summary, outlines: temporary paths of the optional summary JSON and outline file.
        accumulator: counts areas from the mask blocks as they are written (``None``
            when areas cannot be computed).
    """

    mask: CogWriter
    probabilities: CogWriter | None
    summary: Path | None
    outlines: Path | None
    accumulator: AreaAccumulator | None

    @classmethod
    def open(
        cls,
        stack: ExitStack,
        targets: dict[str, Path],
        mask_spec: RasterSpec,
        prob_spec: RasterSpec,
        overwrite: bool,
        accumulator: AreaAccumulator | None,
        partial: PartialRun | None = None,
    ) -> RunOutputs:
        """Enter every requested output's atomic context on ``stack``.

        With ``partial`` the rasters are staged in its folder (kept after an interrupt)
        and reopened with the tiles it holds; the accumulator is fed those tiles first.
        """

        def resumable(name: str) -> tuple[Path, Any] | None:
            return None if partial is None else (partial.stage(name), partial.done)

        on_block = None if accumulator is None else accumulator.add
        mask = stack.enter_context(
            cog_output(targets["mask"], mask_spec, overwrite, on_block, resumable=resumable("mask"))
        )
        probabilities = (
            stack.enter_context(
                cog_output(
                    targets["probabilities"], prob_spec, overwrite, resumable=resumable("probabilities")
                )
            )
            if "probabilities" in targets
            else None
        )
        if partial is not None:
            partial.forget_progress()  # the staging files are open for writing
        summary = (
            stack.enter_context(atomic_output(targets["summary"], overwrite))
            if "summary" in targets
            else None
        )
        outlines = (
            stack.enter_context(atomic_output(targets["outlines"], overwrite))
            if "outlines" in targets
            else None
        )
        return cls(mask, probabilities, summary, outlines, accumulator)

    @property
    def tiles_written(self) -> list[Any]:
        """The tiles each raster holds (for :meth:`PartialRun.save`)."""
        writers = [self.mask, self.probabilities]
        return [w.tiles_written for w in writers if w is not None]

    def write(self, tile: FinishedTile, threshold: float) -> None:
        """Threshold a finished tile into the mask (255 where nodata) and store its probabilities."""
        p = tile.probabilities
        mask = np.where(np.isnan(p), np.uint8(IGNORE), (p > threshold).astype(np.uint8))
        self.mask.write_tile(mask, tile.row_off, tile.col_off)
        if self.probabilities is not None:
            self.probabilities.write_tile(p, tile.row_off, tile.col_off)

    def finish(
        self, min_area: float, extra: dict[str, Any] | None = None
    ) -> tuple[AreaSummary | None, int | None]:
        """Build the COGs, then the summary (with ``extra`` fields) and outlines; return areas and polygon count."""
        mask_tmp = self.mask.finish()
        if self.probabilities is not None:
            self.probabilities.finish()
        area = self.accumulator.result() if self.accumulator is not None else None
        if self.summary is not None:
            assert area is not None
            write_summary_json(area, self.summary, overwrite=True, extra=extra)
        outline_count: int | None = None
        if self.outlines is not None:
            from geoglacier.measure.outlines import write_outlines

            outline_count = write_outlines(mask_tmp, self.outlines, min_area_km2=min_area, overwrite=True)
        return area, outline_count


def glacier_products(
    result: SegmentResult,
    inv: Any,
    glaciers: str | os.PathLike[str] | None,
    outlines: str | os.PathLike[str] | None,
    min_area: float,
    overwrite: bool,
    error_model: dict[str, Any] | None = None,
) -> SegmentResult:
    """Write the per-glacier table and the outlines with inventory ids from the finished mask.

    ``error_model`` is the checkpoint's (``meta.error_model``): the table gets its intervals.
    """
    if glaciers is not None:
        table = run_glaciers(
            result.mask, inv, glaciers, overwrite=overwrite, probabilities=result.probabilities,
            error_model=error_model,
        )  # fmt: skip
        extra = {**result.extra, "glaciers": Path(glaciers), "glacier_totals": table.totals}
        result = replace(result, extra=extra)
    if outlines is not None:
        from geoglacier.measure.outlines import write_outlines

        count = write_outlines(result.mask, outlines, min_area, overwrite, zones=(inv.geometries, inv.ids))
        result = replace(result, outlines=Path(outlines), outline_count=count)
    return result
