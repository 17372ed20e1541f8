"""Compare a predicted glacier mask with a reference mask on the same grid.

Both masks are read block by block (bounded memory) into a confusion matrix; a pixel
that is nodata in either mask is left out. Mask values are read as
:func:`geoglacier.io.masks.read_mask_block` reads them: 0/1 with the file's nodata value
(if any) or GDAL mask band as nodata; a {0, 255} mask without nodata=255 is accepted with a
:class:`~geoglacier.errors.GeoglacierWarning` and 255 read as glacier. Values are
checked per block, so a file mixing {0, 1} blocks with {0, 255} blocks is not detected.

Metrics follow scikit-learn's conventions, degenerate cases included: MCC is 0 when
either mask holds a single class, and precision, recall, F1 and IoU are 0 when their
denominator is 0 (scikit-learn's ``zero_division`` default).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from geoglacier.errors import GridMismatchError
from geoglacier.io.atomic import atomic_output, check_distinct_files, check_output_path
from geoglacier.io.masks import IGNORE, inspect_mask, read_mask_block
from geoglacier.io.scene import SceneInfo
from geoglacier.measure.areas import _TILE, _make_field, _read_windows, crs_label
from geoglacier.measure.metrics import mcc_from_counts

__all__ = [
    "evaluate_masks",
    "format_metrics",
    "mcc_from_counts",
    "metrics_from_counts",
    "run_evaluate",
    "write_metrics_json",
]


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


def metrics_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """MCC, IoU (Jaccard), F1, precision, recall and accuracy from confusion counts."""
    return {
        "mcc": mcc_from_counts(tp, fp, tn, fn),
        "iou": _ratio(tp, tp + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
    }


def _check_grids(pred: SceneInfo, ref: SceneInfo) -> None:
    diffs: list[str] = []
    if pred.shape != ref.shape:
        diffs.append(f"shape {pred.height}x{pred.width} vs {ref.height}x{ref.width}")
    tol = 1e-6 * max(1.0, abs(ref.transform.a))
    if not pred.transform.almost_equals(ref.transform, precision=tol):
        diffs.append(f"transform {tuple(pred.transform)[:6]} vs {tuple(ref.transform)[:6]}")
    if (pred.crs is None) != (ref.crs is None) or (pred.crs is not None and pred.crs != ref.crs):
        diffs.append(f"CRS {crs_label(pred.crs)} vs {crs_label(ref.crs)}")
    if diffs:
        raise GridMismatchError(
            f"{pred.path} and {ref.path} are on different grids: "
            + "; ".join(diffs)
            + "; resample the prediction onto the reference grid (e.g. gdalwarp -r near) and retry"
        )


def evaluate_masks(
    pred_path: str | os.PathLike[str], ref_path: str | os.PathLike[str], pixel_size: float | None = None
) -> dict[str, Any]:
    """Score a predicted mask against a reference mask on the same grid.

    Args:
        pred_path: predicted mask (0/1, 255 nodata), e.g. written by ``segment-scene``.
        ref_path: reference mask, 0/1 with or without a nodata value.
        pixel_size: pixel side in metres for areas when the masks have no CRS.

    Returns:
        A JSON-ready dict with the file names, confusion counts (``tp fp tn fn``), ``excluded_pixels``,
        ``mcc iou f1 precision recall accuracy``, true glacier areas over the jointly
        valid pixels (``pred_area_km2``, ``ref_area_km2``), ``area_error_km2``
        (pred minus ref), ``area_error_relative`` (over ref; None if ref is 0), ``crs``
        and ``area_method``. Areas are None when the masks have no CRS and no pixel size.

    Raises:
        GridMismatchError: shape, transform or CRS differ.
        MaskError: a mask has values other than 0/1 (or 0/255).
    """
    pred = inspect_mask(pred_path)
    ref = inspect_mask(ref_path)
    _check_grids(pred, ref)
    field = None
    if ref.crs is not None or pixel_size is not None:
        field = _make_field(ref.transform, ref.crs, ref.height, ref.width, pixel_size, source=str(ref.path))
    tally = _Tally()
    with rasterio.open(pred.path) as pds, rasterio.open(ref.path) as rds:
        for window in _read_windows(pred.height, pred.width, pred.block_shape):
            p = read_mask_block(pds, window, pred.nodata, pred.path)
            r = read_mask_block(rds, window, ref.nodata, ref.path)
            for r0 in range(0, p.shape[0], _TILE):
                for c0 in range(0, p.shape[1], _TILE):
                    tiles = (p[r0 : r0 + _TILE, c0 : c0 + _TILE], r[r0 : r0 + _TILE, c0 : c0 + _TILE])
                    tally.add(*tiles, field, (int(window.row_off) + r0, int(window.col_off) + c0))
    return _result(pred, ref, tally, field)


@dataclass
class _Tally:
    """Confusion counts and true glacier areas (m²) summed tile by tile."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    pred_m2: float = 0.0
    ref_m2: float = 0.0

    def add(self, pt: np.ndarray, rt: np.ndarray, field: Any, origin: tuple[int, int]) -> None:
        """Count one tile of the two masks; a pixel nodata in either is left out."""
        valid = (pt != IGNORE) & (rt != IGNORE)
        pg = (pt == 1) & valid
        rg = (rt == 1) & valid
        n_valid = int(np.count_nonzero(valid))
        n_p, n_r = int(np.count_nonzero(pg)), int(np.count_nonzero(rg))
        n_tp = int(np.count_nonzero(pg & rg))
        self.tp += n_tp
        self.fp += n_p - n_tp
        self.fn += n_r - n_tp
        self.tn += n_valid - n_p - n_r + n_tp
        if field is not None and (n_p or n_r):
            a_p, a_r = field.weighted_sums([pg, rg], *origin)
            self.pred_m2 += a_p
            self.ref_m2 += a_r


def _result(pred: SceneInfo, ref: SceneInfo, t: _Tally, field: Any) -> dict[str, Any]:
    """The JSON-ready dict :func:`evaluate_masks` returns."""
    valid = t.tp + t.fp + t.tn + t.fn
    out: dict[str, Any] = {
        "pred": str(pred.path),
        "ref": str(ref.path),
        "tp": t.tp,
        "fp": t.fp,
        "tn": t.tn,
        "fn": t.fn,
        "valid_pixels": valid,
        "excluded_pixels": pred.height * pred.width - valid,
    }
    out.update(metrics_from_counts(t.tp, t.fp, t.tn, t.fn))
    has_area = field is not None
    out.update(
        {
            "pred_area_km2": t.pred_m2 / 1e6 if has_area else None,
            "ref_area_km2": t.ref_m2 / 1e6 if has_area else None,
            "area_error_km2": (t.pred_m2 - t.ref_m2) / 1e6 if has_area else None,
            "area_error_relative": (t.pred_m2 - t.ref_m2) / t.ref_m2 if has_area and t.ref_m2 > 0 else None,
            "crs": crs_label(ref.crs),
            "area_method": field.method if has_area else None,
        }
    )
    return out


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human-readable table of :func:`evaluate_masks`' result."""

    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    rows = [
        ("prediction", metrics["pred"]),
        ("reference", metrics["ref"]),
        ("pixels compared", f"{metrics['valid_pixels']:,} ({metrics['excluded_pixels']:,} nodata excluded)"),
        (
            "tp / fp / tn / fn",
            f"{metrics['tp']:,} / {metrics['fp']:,} / {metrics['tn']:,} / {metrics['fn']:,}",
        ),
        ("mcc", num(metrics["mcc"], ".4f")),
        ("iou", num(metrics["iou"], ".4f")),
        ("f1", num(metrics["f1"], ".4f")),
        ("precision", num(metrics["precision"], ".4f")),
        ("recall", num(metrics["recall"], ".4f")),
        ("glacier area pred", num(metrics["pred_area_km2"], ",.4f") + " km2"),
        ("glacier area ref", num(metrics["ref_area_km2"], ",.4f") + " km2"),
        (
            "area error",
            num(metrics["area_error_km2"], "+,.4f")
            + " km2 ("
            + num(
                None if metrics["area_error_relative"] is None else 100 * metrics["area_error_relative"],
                "+.2f",
            )
            + " %)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_metrics_json(
    metrics: dict[str, Any], path: str | os.PathLike[str], overwrite: bool = False
) -> Path:
    """Write the metrics dict as JSON, atomically; return the path written."""
    target = check_output_path(path, overwrite)
    with atomic_output(target, overwrite) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return target


def run_evaluate(
    pred_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    pixel_size: float | None = None,
    json_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate_masks`, then the metrics as JSON to ``json_path`` (``geoglacier evaluate``).

    The JSON path is checked before the masks are read: it may be neither mask, even
    with ``overwrite``.

    Raises:
        OutputPathError: ``json_path`` is one of the masks, or its folder is missing or read-only.
        OutputExistsError: ``json_path`` exists and ``overwrite`` is False.
        GridMismatchError, MaskError, ConfigError: see :func:`evaluate_masks`.
    """
    if json_path is not None:
        check_distinct_files({"--json": json_path}, {"PRED": pred_path, "REF": ref_path})
        check_output_path(json_path, overwrite)
    metrics = evaluate_masks(pred_path, ref_path, pixel_size)
    if json_path is not None:
        write_metrics_json(metrics, json_path, overwrite)
    return metrics
