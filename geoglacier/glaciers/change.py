"""Glacier change between two dates: a change map and change areas (and rates, with dates).

:func:`glacier_change` is the library function behind ``geoglacier change``. It reads
two glacier masks (0/1, 255 nodata), brings the second onto the first one's grid
window by window (:mod:`geoglacier.glaciers.align`: nearest resampling, never
interpolated class values), writes a change map (classes in
:mod:`geoglacier.glaciers.changemap`) as a Cloud-Optimized GeoTIFF with a colour table,
and sums the true area (:mod:`geoglacier.measure.areas`) of every class. Only pixels
valid at *both* dates count: a cloud at one date is nodata in the change map, never
ice lost or gained.

With dates (the masks' ``ACQUISITION_DATE`` tags or explicit ones), change is also
given per year: ``rate = change / years`` with years = days / 365.25. Without them,
rates are ``None`` and the result says why.

Memory is bounded by one strip of the first mask's width (the COG's tile height) and
one warp window, whatever the scenes' size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoglacier.errors import ConfigError
from geoglacier.glaciers.align import (
    MaskPair,
    PairReader,
    ResamplingName,
    ground_pixel_side_m,
    pair_masks,
    strip_windows,
)
from geoglacier.glaciers.areas import check_table_path
from geoglacier.glaciers.change_table import (
    DEFAULT_MIN_COVERAGE,
    DEFAULT_MIN_SNR,
    GlacierChangeAccumulator,
    UncertaintyInputs,
    change_table,
    change_totals,
    check_change_error_models,
    check_thresholds,
    mean_pixel_side_m,
    write_table,
)
from geoglacier.glaciers.changemap import (
    CLASS_NAMES,
    COLORMAP,
    ICE_GAINED,
    ICE_LOST,
    NODATA,
    STABLE_ICE,
    STABLE_NON_ICE,
    classify,
    render_change_quicklook,
)
from geoglacier.glaciers.dates import parse_date, read_date, years_between
from geoglacier.glaciers.error_model import ErrorModel, as_error_model
from geoglacier.io.atomic import (
    PNG_SUFFIXES,
    RASTER_SUFFIXES,
    atomic_output,
    check_distinct_files,
    check_extension,
    check_output_path,
    with_companions,
)
from geoglacier.io.cog import RasterSpec, cog_output
from geoglacier.measure.areas import _TILE, crs_label, pixel_area_field

NO_DATES_NOTE = (
    "no acquisition date for {which} (no ACQUISITION_DATE tag and no --t0-date/--t1-date): "
    "areas and change only, no rates"
)


@dataclass(frozen=True)
class ChangeAreas:
    """True areas (km^2) of the change classes over pixels valid at both dates.

    ``ice_t0_km2 = stable_ice + ice_lost`` and ``ice_t1_km2 = stable_ice + ice_gained``
    are the glacier areas at each date over the *same* pixels, so their difference,
    ``net_change_km2 = ice_gained - ice_lost``, is change and not a difference in cover.
    """

    stable_non_ice_km2: float
    stable_ice_km2: float
    ice_lost_km2: float
    ice_gained_km2: float
    valid_km2: float
    valid_pixels: int
    nodata_pixels: int
    ice_t0_km2: float
    ice_t1_km2: float
    net_change_km2: float
    relative_change: float | None
    net_rate_km2_per_year: float | None


class ChangeAccumulator:
    """Sum the true area of each change class over blocks of a change map (bounded memory).

    Args:
        pair: the masks; areas are measured on t0's grid.
    """

    def __init__(self, pair: MaskPair) -> None:
        t0 = pair.t0
        self.field = pixel_area_field(t0.transform, t0.crs, t0.height, t0.width, source=str(t0.path))
        self._m2 = dict.fromkeys((STABLE_NON_ICE, STABLE_ICE, ICE_LOST, ICE_GAINED), 0.0)
        self._valid_px = 0
        self._nodata_px = 0

    @property
    def method(self) -> str:
        """How pixel areas are computed (from :mod:`geoglacier.measure.areas`)."""
        return self.field.method

    def add(self, classes: np.ndarray, row_off: int, col_off: int) -> None:
        """Count a ``(h, w)`` block of change classes whose top-left pixel is ``(row_off, col_off)``."""
        for r in range(0, classes.shape[0], _TILE):
            for c in range(0, classes.shape[1], _TILE):
                tile = classes[r : r + _TILE, c : c + _TILE]
                keys = list(self._m2)
                masks = [tile == k for k in keys]
                sums = self.field.weighted_sums(masks, row_off + r, col_off + c)
                for k, s in zip(keys, sums, strict=True):
                    self._m2[k] += s
                n_nodata = int(np.count_nonzero(tile == NODATA))
                self._nodata_px += n_nodata
                self._valid_px += tile.size - n_nodata

    def result(self, years: float | None) -> ChangeAreas:
        """The areas of everything added so far; rates when ``years`` is known."""
        km2 = {k: v / 1e6 for k, v in self._m2.items()}
        ice0 = km2[STABLE_ICE] + km2[ICE_LOST]
        ice1 = km2[STABLE_ICE] + km2[ICE_GAINED]
        net = km2[ICE_GAINED] - km2[ICE_LOST]
        return ChangeAreas(
            stable_non_ice_km2=km2[STABLE_NON_ICE],
            stable_ice_km2=km2[STABLE_ICE],
            ice_lost_km2=km2[ICE_LOST],
            ice_gained_km2=km2[ICE_GAINED],
            valid_km2=sum(km2.values()),
            valid_pixels=self._valid_px,
            nodata_pixels=self._nodata_px,
            ice_t0_km2=ice0,
            ice_t1_km2=ice1,
            net_change_km2=net,
            relative_change=net / ice0 if ice0 > 0 else None,
            net_rate_km2_per_year=None if years is None else net / years,
        )


@dataclass(frozen=True)
class ChangeResult:
    """What :func:`glacier_change` measured and wrote.

    Attributes:
        mask_t0, mask_t1: the input masks.
        t0_date, t1_date: acquisition dates (``None`` when unknown).
        years: time between them in years (days / 365.25), ``None`` without both dates.
        note: why there are no rates, or ``None``.
        crs: CRS of the change map (t0's).
        area_method: how pixel areas are computed.
        resampling: how t1 was put on t0's grid (``"none"`` when both share a grid).
        pixel_size_t0_m, pixel_size_t1_m: ground pixel sides (for the buffer uncertainty).
        areas: change areas over the whole map.
        glaciers: per-glacier change table (a DataFrame), with an inventory.
        glacier_totals: totals over the glaciers that pass the flags, with an inventory.
        outputs: the files written, by kind (``change_map``, ``glaciers``, ``summary``, ``quicklook``).
    """

    mask_t0: Path
    mask_t1: Path
    t0_date: dt.date | None
    t1_date: dt.date | None
    years: float | None
    note: str | None
    crs: str | None
    area_method: str
    resampling: str
    pixel_size_t0_m: float
    pixel_size_t1_m: float
    areas: ChangeAreas
    glaciers: pd.DataFrame | None = None
    glacier_totals: dict[str, Any] | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO strings; the per-glacier table is left out)."""
        return {
            "mask_t0": str(self.mask_t0),
            "mask_t1": str(self.mask_t1),
            "t0_date": None if self.t0_date is None else self.t0_date.isoformat(),
            "t1_date": None if self.t1_date is None else self.t1_date.isoformat(),
            "years": self.years,
            "note": self.note,
            "crs": self.crs,
            "area_method": self.area_method,
            "resampling": self.resampling,
            "pixel_size_t0_m": self.pixel_size_t0_m,
            "pixel_size_t1_m": self.pixel_size_t1_m,
            "classes": {str(k): v for k, v in CLASS_NAMES.items()},
            "areas": asdict(self.areas),
            "glacier_totals": self.glacier_totals,
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }


def resolve_dates(
    pair: MaskPair, t0_date: str | dt.date | None, t1_date: str | dt.date | None
) -> tuple[dt.date | None, dt.date | None, float | None]:
    """Dates from the arguments, else from the masks' tags; and the years between them.

    Raises:
        ConfigError: a date is not ISO 8601, or t1 is not after t0.
    """
    d0 = parse_date(t0_date, "--t0-date") if t0_date is not None else read_date(pair.t0.path)
    d1 = parse_date(t1_date, "--t1-date") if t1_date is not None else read_date(pair.t1.path)
    years = years_between(d0, d1) if d0 is not None and d1 is not None else None
    return d0, d1, years


def _change_spec(pair: MaskPair, d0: dt.date | None, d1: dt.date | None) -> RasterSpec:
    t0 = pair.t0
    tags = {f"CLASS_{k}": v.upper().replace(" ", "_") for k, v in CLASS_NAMES.items()}
    tags["MASK_T0"] = t0.path.name
    tags["MASK_T1"] = pair.t1.path.name
    if d0 is not None:
        tags["T0_DATE"] = d0.isoformat()
    if d1 is not None:
        tags["T1_DATE"] = d1.isoformat()
    return RasterSpec(
        height=t0.height,
        width=t0.width,
        crs=t0.crs,
        transform=t0.transform,
        dtype="uint8",
        nodata=NODATA,
        resampling="NEAREST",
        description="glacier change: 0 stable non-ice, 1 stable ice, 2 ice lost, 3 ice gained, 255 nodata",
        tags=tags,
        colormap=COLORMAP,
    )


def glacier_change(
    mask_t0: str | os.PathLike[str],
    mask_t1: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    inventory: str | os.PathLike[str] | None = None,
    glaciers: str | os.PathLike[str] | None = None,
    summary: str | os.PathLike[str] | None = None,
    quicklook: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    layer: str | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    min_snr: float = DEFAULT_MIN_SNR,
    t0_date: str | dt.date | None = None,
    t1_date: str | dt.date | None = None,
    resampling: ResamplingName = "nearest",
    overwrite: bool = False,
    progress: bool = False,
    error_model: ErrorModel | dict[str, Any] | None = None,
    error_model_t1: ErrorModel | dict[str, Any] | None = None,
    model_error_correlation: float = 0.0,
) -> ChangeResult:
    """Map glacier change from ``mask_t0`` to ``mask_t1`` and measure it.

    Args:
        mask_t0: the earlier mask (0/1, nodata 255 or its declared nodata); its grid is the
            grid of the change map.
        mask_t1: the later mask, on any grid and CRS that overlaps ``mask_t0``.
        out: the change map (a COG, classes in :mod:`geoglacier.glaciers.changemap`).
        inventory: glacier outlines (any vector file GDAL reads, any CRS) for the
            per-glacier table (:mod:`geoglacier.glaciers.change_table`).
        glaciers: write the per-glacier table here (``.gpkg`` with outlines, or ``.csv``);
            needs ``inventory``.
        summary: also write :meth:`ChangeResult.to_dict` as JSON here.
        quicklook: also write a PNG of the change map here.
        id_column: the inventory's id column (found automatically for RGI and GLIMS).
        layer: the inventory's layer (or the file inside its zip) to read.
        min_coverage: glaciers valid at both dates over less of their outline are flagged
            and left out of the totals.
        min_snr: glaciers whose ``|change| / sigma_change`` is below this are flagged as
            within uncertainty and left out of the totals.
        t0_date, t1_date: acquisition dates (ISO 8601); override the masks' tags.
        resampling: ``"nearest"`` (default) or ``"mode"`` (majority), for t1 onto t0's grid.
        overwrite: replace existing outputs.
        progress: show a progress bar over strips.
        error_model: the error model of the network that made the masks (a checkpoint's
            ``error_model``): each date's model error enters ``sigma_change_km2``, ``snr``
            and ``within_uncertainty`` (:mod:`geoglacier.glaciers.change_table`).
        error_model_t1: another error model for ``mask_t1`` (default: ``error_model``).
        model_error_correlation: correlation in [0, 1] of the two maps' model errors
            (default 0, independent: the conservative choice).

    Returns:
        A :class:`ChangeResult`. Every output appears only when all of them succeeded.

    Raises:
        SceneNotFoundError, InvalidRasterError, MaskError: a mask is missing, not a raster,
            has several bands or values other than 0/1 (and nodata).
        NoOverlapError: the masks do not overlap.
        CRSMissingError: a mask has no CRS.
        ConfigError: a date is not ISO 8601, t1 is not after t0, a threshold is out of
            range, ``glaciers`` is given without ``inventory`` or is not .gpkg/.csv.
        InventoryError: the inventory is unreadable, lacks a unique id column or misses the mask.
        OutputExistsError, OutputPathError: an output exists (without ``overwrite``) or
            cannot be written.
    """
    outputs = _check_outputs(
        out, inventory, glaciers, summary, quicklook, min_coverage, min_snr, overwrite,
        inputs={"MASK_T0": mask_t0, "MASK_T1": mask_t1, "--inventory": with_companions(inventory)},
    )  # fmt: skip
    models = (as_error_model(error_model), as_error_model(error_model_t1 or error_model))
    check_change_error_models(models, model_error_correlation)
    pair = pair_masks(mask_t0, mask_t1, resampling)
    d0, d1, years = resolve_dates(pair, t0_date, t1_date)
    acc = ChangeAccumulator(pair)
    spec = _change_spec(pair, d0, d1)
    per_glacier = _glacier_accumulator(inventory, pair, acc, id_column, layer)
    px0, px1 = ground_pixel_side_m(pair.t0), ground_pixel_side_m(pair.t1)

    with contextlib.ExitStack() as stack:
        # Every output goes to a temporary first; all are renamed when the block ends cleanly.
        writer = stack.enter_context(cog_output(outputs["change_map"], spec, overwrite))
        tmps = {
            k: stack.enter_context(atomic_output(p, overwrite))
            for k, p in outputs.items()
            if k != "change_map"
        }
        _run_strips(pair, spec, writer, acc, per_glacier, progress)
        areas = acc.result(years)
        table, totals = _glacier_tables(
            per_glacier, px0, px1, years, min_coverage, min_snr, (models, model_error_correlation)
        )
        result = _change_result(pair, (d0, d1, years), acc.method, (px0, px1), areas, table, totals, outputs)
        _write_outputs(writer, tmps, outputs, result, table, per_glacier, (pair, d0, d1))
    return result


def _check_outputs(
    out: str | os.PathLike[str],
    inventory: str | os.PathLike[str] | None,
    glaciers: str | os.PathLike[str] | None,
    summary: str | os.PathLike[str] | None,
    quicklook: str | os.PathLike[str] | None,
    min_coverage: float,
    min_snr: float,
    overwrite: bool,
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
) -> dict[str, Path]:
    """Check options and output paths before any work; the outputs by kind.

    No output may be one of the ``inputs`` (the masks, the inventory) or another output.
    """
    if glaciers is not None and inventory is None:
        raise ConfigError("--glaciers needs --inventory OUTLINES: the glaciers come from an inventory")
    check_extension(out, RASTER_SUFFIXES, "--out", "change map GeoTIFF")
    if quicklook is not None:
        check_extension(quicklook, PNG_SUFFIXES, "--quicklook", "PNG picture")
    if glaciers is not None:
        check_table_path(glaciers, overwrite)
    check_thresholds(min_coverage, min_snr)
    targets = {"change_map": out, "glaciers": glaciers, "summary": summary, "quicklook": quicklook}
    options = {
        "change_map": "--out",
        "glaciers": "--glaciers",
        "summary": "--summary",
        "quicklook": "--quicklook",
    }
    check_distinct_files({options[k]: v for k, v in targets.items()}, inputs)
    outputs = {k: Path(v) for k, v in targets.items() if v is not None}
    for p in outputs.values():
        check_output_path(p, overwrite)  # fail before any work
    return outputs


def _glacier_accumulator(
    inventory: str | os.PathLike[str] | None,
    pair: MaskPair,
    acc: ChangeAccumulator,
    id_column: str | None,
    layer: str | None,
) -> GlacierChangeAccumulator | None:
    """The per-glacier accumulator on t0's grid, or None without an inventory."""
    if inventory is None:
        return None
    from geoglacier.glaciers.inventory import read_inventory_for_mask

    inv = read_inventory_for_mask(inventory, pair.t0.path, id_column=id_column, layer=layer)
    t0 = pair.t0
    return GlacierChangeAccumulator(inv, acc.field, t0.transform, t0.height, t0.width)


def _change_result(
    pair: MaskPair,
    dates: tuple[dt.date | None, dt.date | None, float | None],
    area_method: str,
    pixel_sizes: tuple[float, float],
    areas: ChangeAreas,
    table: pd.DataFrame | None,
    totals: dict[str, Any] | None,
    outputs: dict[str, Path],
) -> ChangeResult:
    """Assemble the :class:`ChangeResult` of a run."""
    d0, d1, years = dates
    px0, px1 = pixel_sizes
    return ChangeResult(
        mask_t0=pair.t0.path,
        mask_t1=pair.t1.path,
        t0_date=d0,
        t1_date=d1,
        years=years,
        note=None if years is not None else _no_dates_note(d0, d1),
        crs=crs_label(pair.t0.crs),
        area_method=area_method,
        resampling="none (same grid)" if pair.same_grid else pair.resampling,
        pixel_size_t0_m=px0,
        pixel_size_t1_m=px1,
        areas=areas,
        glaciers=table,
        glacier_totals=totals,
        outputs=outputs,
    )


def _glacier_tables(
    per_glacier: GlacierChangeAccumulator | None,
    px0: float,
    px1: float,
    years: float | None,
    min_coverage: float,
    min_snr: float,
    errors: tuple[tuple[ErrorModel | None, ErrorModel | None], float] = ((None, None), 0.0),
) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """The per-glacier change table and its totals, or ``(None, None)`` without an inventory.

    ``errors``: each date's error model and the correlation of their errors.
    """
    if per_glacier is None:
        return None, None
    px0_glacier = mean_pixel_side_m(per_glacier.m2, per_glacier.pixels, px0)
    u = UncertaintyInputs(px0_glacier, px1, years, min_coverage, min_snr, errors[0], errors[1])
    table = change_table(per_glacier.inventory, per_glacier.m2, u, per_glacier.outside_km2)
    totals = change_totals(table, per_glacier.m2, u)
    return table, totals


def _write_outputs(
    writer: Any,
    tmps: dict[str, Path],
    outputs: dict[str, Path],
    result: ChangeResult,
    table: pd.DataFrame | None,
    per_glacier: GlacierChangeAccumulator | None,
    title_of: tuple[MaskPair, dt.date | None, dt.date | None],
) -> None:
    """Finish the change map and write the optional outputs to their temporaries."""
    cog_tmp = writer.finish()
    if "quicklook" in tmps:
        render_change_quicklook(cog_tmp, tmps["quicklook"], title=_title(*title_of))
    if "glaciers" in tmps and per_glacier is not None:
        fmt = outputs["glaciers"].suffix.lower().lstrip(".")
        write_table(table, per_glacier.inventory, tmps["glaciers"], fmt)
    if "summary" in tmps:
        tmps["summary"].write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")


def _no_dates_note(d0: dt.date | None, d1: dt.date | None) -> str:
    which = " and ".join(name for name, d in (("t0", d0), ("t1", d1)) if d is None)
    return NO_DATES_NOTE.format(which=which)


def _title(pair: MaskPair, d0: dt.date | None, d1: dt.date | None) -> str:
    left = pair.t0.path.name + (f" ({d0.isoformat()})" if d0 else "")
    right = pair.t1.path.name + (f" ({d1.isoformat()})" if d1 else "")
    return f"glacier change: {left} -> {right}"


def _run_strips(
    pair: MaskPair,
    spec: RasterSpec,
    writer: Any,
    acc: ChangeAccumulator,
    per_glacier: GlacierChangeAccumulator | None,
    progress: bool,
) -> None:
    """Classify t0's grid strip by strip; write each strip and count its areas."""
    from tqdm.auto import tqdm

    t0 = pair.t0
    strip = spec.block
    n_strips = math.ceil(t0.height / strip)
    with PairReader(pair) as reader:
        for row_off, windows in tqdm(
            strip_windows(t0.height, t0.width, strip), total=n_strips, disable=not progress, desc="change"
        ):
            rows = np.empty((windows[0].height, t0.width), dtype=np.uint8)
            for window in windows:
                m0, m1 = reader.read(window)
                c0 = int(window.col_off)
                classes = classify(m0, m1)
                rows[:, c0 : c0 + int(window.width)] = classes
                if per_glacier is not None:
                    per_glacier.add(classes, window)
            writer.write(rows, row_off)
            acc.add(rows, row_off, 0)


def format_change(result: ChangeResult) -> str:
    """A short human-readable table of a result's areas (and rates, or why there are none)."""
    a = result.areas

    def km2(v: float) -> str:
        return f"{v:,.4f} km2"

    rows = [
        ("t0", f"{result.mask_t0} ({result.t0_date.isoformat() if result.t0_date else 'no date'})"),
        ("t1", f"{result.mask_t1} ({result.t1_date.isoformat() if result.t1_date else 'no date'})"),
        ("resampling", result.resampling),
        ("valid at both dates", km2(a.valid_km2)),
        ("ice at t0", km2(a.ice_t0_km2)),
        ("ice at t1", km2(a.ice_t1_km2)),
        ("stable ice", km2(a.stable_ice_km2)),
        ("ice lost", km2(a.ice_lost_km2)),
        ("ice gained", km2(a.ice_gained_km2)),
        ("net change", km2(a.net_change_km2)),
        ("relative change", "n/a" if a.relative_change is None else f"{100 * a.relative_change:+.2f} %"),
    ]
    if result.years is not None:
        rows.append(("years", f"{result.years:.2f}"))
        rows.append(("net rate", f"{a.net_rate_km2_per_year:,.4f} km2/yr"))
    else:
        rows.append(("rates", result.note or "n/a"))
    t = result.glacier_totals
    if t is not None:
        g = t["in_totals"]
        rows.append(("glaciers", f"{t['glaciers_in_inventory']} in the inventory over the map"))
        rows.append(
            (
                "flagged",
                f"{t['flagged_low_coverage']} low coverage, "
                f"{t['flagged_within_uncertainty']} within uncertainty"
                + (
                    f", {t['flagged_beyond_calibration']} beyond calibration"
                    if "flagged_beyond_calibration" in t
                    else ""
                ),
            )
        )
        rows.append(("model error", t["model_error"]))
        rows.append(
            (
                f"change of {g['glaciers']} glaciers",
                f"{g['change_km2']:,.4f} +/- {g['sigma_change_km2']:,.4f} km2",
            )
        )
        if g["rate_km2_per_year"] is not None:
            rows.append(
                (
                    "their rate",
                    f"{g['rate_km2_per_year']:,.4f} +/- {g['sigma_rate_km2_per_year']:,.4f} km2/yr",
                )
            )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
