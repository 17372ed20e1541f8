"""A calibrated interval for each glacier's true area: the model's own error, per glacier.

The buffer uncertainty of :mod:`geoglacier.glaciers.areas` (half a pixel along the
outline) says how precisely a *correct* map measures a glacier. It says nothing about
the network mislabelling debris, shadow or snow on terrain it has not seen, which on
the Everest cross-validation folds is the larger error by far. An :class:`ErrorModel`
states that error as an interval learned from out-of-fold residuals, by split conformal
prediction:

1. Calibration: for glaciers the network did not train on (held-out folds), the residual
   ``e = A_ref - A_map`` of the reference area and the mapped area inside the outline.
2. A scale ``s(x) = c0 + c1 * x1 + ...`` from features the map itself knows at inference
   time (by default the mapped area and the buffer ``perimeter x pixel / 2``), fitted to
   ``|e|`` by non-negative least squares, so a bigger or more ragged glacier gets a wider
   interval.
3. Normalised residuals ``r = e / s(x)``; the interval at level ``1 - alpha`` is
   ``[A_map + q_lo * s, A_map + q_hi * s]`` (clipped at 0) with ``q_lo`` the
   ``floor((n + 1) * alpha / 2)``-th and ``q_hi`` the ``ceil((n + 1) * (1 - alpha / 2))``-th
   smallest of the ``n`` calibration residuals: the finite-sample conformal quantiles. Two
   tails, because the map errs mostly one way (it misses debris-covered ice far more than
   it invents glacier inside an outline). Two tails need at least 19 calibration glaciers
   at 0.9; with fewer (but at least 9) the interval is symmetric,
   ``A_map +/- q * s`` with ``q`` the ``ceil((n + 1) * level)``-th smallest ``|r|``
   (``tails`` records which).

Exchangeability is the whole guarantee: the interval covers a new glacier's true area with
probability at least the level *if* that glacier and its map are like the calibration
glaciers. A glacier whose features lie outside the calibrated range (bigger than any
calibration glacier, a smaller share of its outline seen, ...) is flagged
``beyond_calibration`` and gets no interval (NaN) rather than an extrapolated one.

The model is a plain dict (:meth:`ErrorModel.to_dict`) so that it travels inside a
checkpoint loaded with ``weights_only=True``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoglacier.errors import ConfigError

DEFAULT_LEVEL: float = 0.9
DEFAULT_FEATURES: tuple[str, ...] = ("mapped_area_km2", "uncertainty_buffer_km2")
"""Table columns the scale is built from: known for every map, with or without probabilities."""

RANGE_COLUMNS: tuple[str, ...] = ("coverage",)
"""Columns whose calibrated range is checked although the scale does not use them."""

MIN_SCALE_KM2: float = 1e-4
"""Floor of the scale, so a glacier mapped as nothing still gets a positive width."""

FORMAT: str = "geoglacier-error-model"
FORMAT_VERSION: int = 1


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile: the ``ceil((n + 1) * level)``-th smallest score.

    For ``n`` exchangeable calibration scores and a new one, the new score is at most this
    value with probability at least ``level`` (and below ``level + 1 / (n + 1)`` for
    continuous scores). ``inf`` when ``n`` is too small for the level.

    Raises:
        ConfigError: ``level`` not in (0, 1), or no scores.
    """
    check_level(level)
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise ConfigError("no calibration residuals: the error model needs at least one glacier")
    k = math.ceil((s.size + 1) * level)
    return math.inf if k > s.size else float(s[k - 1])


def lower_conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The lower-tail counterpart: the ``floor((n + 1) * (1 - level))``-th smallest (``-inf`` if 0).

    A new score is at least this value with probability at least ``level``.
    """
    return -conformal_quantile(-np.asarray(scores, dtype=np.float64), level)


def min_glaciers(level: float, tails: str = "two") -> int:
    """The fewest calibration glaciers that give finite intervals at ``level``.

    ``tails="two"`` (a quantile for each side at ``(1 + level) / 2``) needs about twice
    as many as ``"symmetric"`` (one quantile of ``|r|`` at ``level``): 19 against 9 at 0.9.
    """
    check_level(level)
    q = level if tails == "symmetric" else 1.0 - (1.0 - level) / 2.0
    n = 1
    while math.ceil((n + 1) * q) > n:
        n += 1
    return n


def check_level(level: float) -> None:
    if not (0.0 < level < 1.0):
        raise ConfigError(f"--error-level must be between 0 and 1 (e.g. 0.9), got {level}")


@dataclass(frozen=True)
class ErrorModel:
    """A calibrated per-glacier interval of the true area (see the module doc).

    Attributes:
        level: the stated coverage, e.g. 0.9.
        features: table columns of the scale, in the order of ``coef[1:]``.
        coef: ``c0, c1, ...`` of ``s = c0 + sum(ci * feature_i)`` (km2 per unit).
        q_low, q_high: the conformal quantiles of the normalised residuals.
        ranges: ``column -> (min, max)`` seen in calibration; outside it: beyond calibration.
        n: number of calibration glaciers.
        source: where the residuals came from, for the record.
        tails: ``"two"`` (a quantile per side) or ``"symmetric"`` (one quantile of ``|r|``).
    """

    level: float
    features: tuple[str, ...]
    coef: tuple[float, ...]
    q_low: float
    q_high: float
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    n: int = 0
    source: str = ""
    tails: str = "two"

    def scale(self, table: pd.DataFrame) -> np.ndarray:
        """The scale ``s(x)`` (km2) of each row of a glacier table."""
        x = _feature_matrix(table, self.features)
        return np.maximum(x @ np.asarray(self.coef, dtype=np.float64), MIN_SCALE_KM2)

    def beyond(self, table: pd.DataFrame) -> np.ndarray:
        """Rows beyond the calibration: a feature above its calibrated maximum, a coverage
        below its calibrated minimum, or a missing value.

        Only the upper end of a size feature is a limit: extrapolating the scale to a bigger
        glacier than any seen is the risk, while a glacier mapped smaller than any calibration
        glacier is often one the network missed, the very error the interval must cover.
        """
        out = np.zeros(len(table), dtype=bool)
        for column, (lo, hi) in self.ranges.items():
            if column not in table:
                raise ConfigError(
                    f"the error model needs the table column {column!r}, which this table lacks"
                )
            v = table[column].to_numpy(dtype=np.float64)
            inside = v >= lo if column in RANGE_COLUMNS else v <= hi
            out |= ~inside
        return out

    def interval(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(area_low_km2, area_high_km2, beyond_calibration)`` for each row of a glacier table.

        Bounds are clipped to what the row can hold: at least 0 and, when the table has
        ``valid_area_km2``, at most the outline's valid area (the table measures glacier
        inside the outline only, so no true area there exceeds it). Rows beyond
        calibration get NaN bounds.
        """
        mapped = table["mapped_area_km2"].to_numpy(dtype=np.float64)
        s = self.scale(table)
        beyond = self.beyond(table)
        low = np.maximum(mapped + self.q_low * s, 0.0)
        high = mapped + self.q_high * s
        if "valid_area_km2" in table:
            # the table measures glacier inside the outline's valid pixels: never more than they hold
            valid = table["valid_area_km2"].to_numpy(dtype=np.float64)
            high = np.minimum(high, np.maximum(valid, mapped))
            low = np.minimum(low, high)
        low[beyond] = np.nan
        high[beyond] = np.nan
        return low, high, beyond

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (floats, ints, strings, lists), for a ``weights_only`` checkpoint."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "level": float(self.level),
            "features": list(self.features),
            "coef": [float(c) for c in self.coef],
            "q_low": float(self.q_low),
            "q_high": float(self.q_high),
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
            "n": int(self.n),
            "source": str(self.source),
            "tails": str(self.tails),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ErrorModel:
        """The inverse of :meth:`to_dict`.

        Raises:
            ConfigError: not an error model, a newer format, or a malformed entry.
        """
        if raw.get("format") != FORMAT:
            raise ConfigError(f"not a geoglacier error model (format {raw.get('format')!r})")
        if int(raw.get("format_version", 0)) > FORMAT_VERSION:
            raise ConfigError(
                "the error model's format is newer than this geoglacier reads; upgrade geoglacier"
            )
        try:
            return cls(
                level=float(raw["level"]),
                features=tuple(str(f) for f in raw["features"]),
                coef=tuple(float(c) for c in raw["coef"]),
                q_low=float(raw["q_low"]),
                q_high=float(raw["q_high"]),
                ranges={str(k): (float(v[0]), float(v[1])) for k, v in raw.get("ranges", {}).items()},
                n=int(raw.get("n", 0)),
                source=str(raw.get("source", "")),
                tails=str(raw.get("tails", "two")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"malformed error model ({exc!r})") from exc

    def describe(self) -> str:
        """One line for summaries: level, calibration size and scale."""
        terms = " + ".join(f"{c:.3g}*{f}" for c, f in zip(self.coef[1:], self.features, strict=True))
        return (
            f"{self.level:.0%} conformal interval from {self.n} out-of-fold glaciers; "
            f"scale {self.coef[0]:.3g} + {terms}; residual/scale in [{self.q_low:.3g}, {self.q_high:.3g}]"
        )


def _feature_matrix(table: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    missing = [f for f in features if f not in table]
    if missing:
        raise ConfigError(
            f"the error model needs the table column(s) {', '.join(missing)}; "
            "give the probability raster (--probabilities) the model was calibrated with"
        )
    cols = [np.ones(len(table))] + [table[f].to_numpy(dtype=np.float64) for f in features]
    return np.nan_to_num(np.column_stack(cols), nan=0.0)


def fit_scale(x: np.ndarray, abs_residual: np.ndarray) -> np.ndarray:
    """Non-negative least squares coefficients of ``|e| ~ c0 + c1 x1 + ...`` (``x`` with its 1 column).

    Non-negative so that the scale grows with every feature and never goes below 0.
    """
    from scipy.optimize import nnls

    # Columns are brought to unit RMS before solving so that km2 and tiny features weigh alike.
    norm = np.sqrt((x**2).mean(axis=0))
    norm[norm == 0] = 1.0
    coef, _ = nnls(x / norm, abs_residual)
    coef = coef / norm
    if not np.any(coef > 0):
        coef[0] = max(float(np.median(abs_residual)), MIN_SCALE_KM2)
    return coef


def fit_error_model(
    table: pd.DataFrame,
    reference_km2: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    features: Sequence[str] = DEFAULT_FEATURES,
    source: str = "",
    tails: str = "auto",
    groups: Sequence[Any] | np.ndarray | None = None,
) -> ErrorModel:
    """Fit an :class:`ErrorModel` on calibration glaciers (out-of-fold maps) and their reference areas.

    Args:
        table: per-glacier rows of :func:`~geoglacier.glaciers.areas.glacier_areas` for
            maps of terrain the network did not train on; only the rows to calibrate on
            (filter low coverage and tiny glaciers beforehand).
        reference_km2: the true (reference) area of each row inside its outline.
        level: the coverage the interval states, in (0, 1).
        features: the table columns the scale is built from.
        source: a note on where the residuals come from, kept in the model.
        tails: ``"two"``, ``"symmetric"``, or ``"auto"``: two when there are enough
            glaciers for them (:func:`min_glaciers`), else symmetric.
        groups: a label per row (e.g. the fold that mapped it). When given, each row's
            normalised residual uses a scale fitted on the *other* groups only
            (cross-fitting), so the quantiles are not flattered by a scale fitted to the
            very residuals they rank; the stored scale is fitted on all rows.

    Raises:
        ConfigError: a bad level or ``tails``, a missing column, a length mismatch, or
            fewer glaciers than the level needs (:func:`min_glaciers`).
    """
    check_level(level)
    ref = np.asarray(reference_km2, dtype=np.float64)
    if ref.shape != (len(table),):
        raise ConfigError(f"{len(table)} glaciers but {ref.size} reference areas")
    if tails not in ("auto", "two", "symmetric"):
        raise ConfigError(f"tails must be 'auto', 'two' or 'symmetric', got {tails!r}")
    if tails == "auto":
        tails = "two" if len(table) >= min_glaciers(level, "two") else "symmetric"
    need = min_glaciers(level, tails)
    if len(table) < need:
        raise ConfigError(
            f"{len(table)} calibration glaciers are too few for a {level:.0%} interval (need {need}); "
            "use more folds, a larger training area or a lower --error-level"
        )
    x = _feature_matrix(table, features)
    e = ref - table["mapped_area_km2"].to_numpy(dtype=np.float64)
    coef = fit_scale(x, np.abs(e))
    r = e / _cross_fitted_scale(x, e, coef, groups)
    if tails == "symmetric":
        q = conformal_quantile(np.abs(r), level)
        q_low, q_high = -q, q
    else:
        tail = 1.0 - (1.0 - level) / 2.0
        q_low, q_high = lower_conformal_quantile(r, tail), conformal_quantile(r, tail)
    ranges = {
        c: (float(np.nanmin(table[c])), float(np.nanmax(table[c])))
        for c in (*features, *RANGE_COLUMNS)
        if c in table
    }
    return ErrorModel(
        level=float(level),
        features=tuple(features),
        coef=tuple(float(c) for c in coef),
        q_low=q_low,
        q_high=q_high,
        ranges=ranges,
        n=len(table),
        source=source,
        tails=tails,
    )


def _cross_fitted_scale(
    x: np.ndarray, e: np.ndarray, coef: np.ndarray, groups: Sequence[Any] | np.ndarray | None
) -> np.ndarray:
    """Each row's scale: from ``coef`` (all rows), or with ``groups`` from the other groups' fit."""
    s = np.maximum(x @ coef, MIN_SCALE_KM2)
    if groups is None:
        return s
    labels = np.asarray(groups)
    if labels.shape != e.shape:
        raise ConfigError(f"{labels.size} group labels for {e.size} glaciers")
    if np.unique(labels).size < 2:
        return s
    for g in np.unique(labels):
        own = labels == g
        s[own] = np.maximum(x[own] @ fit_scale(x[~own], np.abs(e[~own])), MIN_SCALE_KM2)
    return s


def add_interval_columns(table: pd.DataFrame, model: ErrorModel) -> pd.DataFrame:
    """A copy of a glacier table with ``area_low_km2``, ``area_high_km2`` and ``beyond_calibration``."""
    low, high, beyond = model.interval(table)
    out = table.copy()
    at = out.columns.get_loc("mapped_area_km2") + 1
    out.insert(at, "area_low_km2", low)
    out.insert(at + 1, "area_high_km2", high)
    out["beyond_calibration"] = beyond
    return out


TOTALS_ASSUMPTION: str = (
    "fully correlated: the bounds of the glaciers with an interval are summed "
    "(one network's error on one scene leans the same way for all its glaciers)"
)


def total_interval(table: pd.DataFrame) -> dict[str, Any]:
    """The interval of the summed mapped area of a table's rows that have an interval.

    Sums the per-glacier bounds, i.e. assumes the glaciers' errors fully correlated:
    the out-of-fold residuals of one map share a sign (see ``docs/reference/error-model.md`` and
    ``benchmarks/results/error_model.md``), and the sum of bounds is the conservative
    choice. Rows beyond calibration are left out and counted.
    """
    has = ~table["beyond_calibration"].to_numpy(dtype=bool)
    rows = table[has]
    return {
        "glaciers_with_interval": int(has.sum()),
        "glaciers_beyond_calibration": int((~has).sum()),
        "interval_mapped_area_km2": float(rows["mapped_area_km2"].sum()),
        "area_low_km2": float(rows["area_low_km2"].sum()),
        "area_high_km2": float(rows["area_high_km2"].sum()),
        "interval_assumption": TOTALS_ASSUMPTION,
    }


def read_error_model(checkpoint: str | os.PathLike[str]) -> ErrorModel | None:
    """The error model stored in a checkpoint written by ``geoglacier train``; ``None`` without one.

    Raises:
        CheckpointError: not a readable checkpoint (see :func:`~geoglacier.checkpoint.read_checkpoint`).
        ConfigError: a malformed error model entry.
    """
    from geoglacier.checkpoint import read_checkpoint

    meta, _ = read_checkpoint(checkpoint)
    return ErrorModel.from_dict(meta.error_model) if meta.error_model else None


def store_error_model(checkpoint: str | os.PathLike[str], model: ErrorModel) -> Path:
    """Rewrite ``checkpoint`` (atomically) with ``model`` in its metadata, weights untouched."""
    import torch

    from geoglacier.checkpoint import read_checkpoint
    from geoglacier.io.atomic import atomic_output

    read_checkpoint(checkpoint)  # the same checks as any reader, before it is rewritten
    raw = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    raw["error_model"] = model.to_dict()
    with atomic_output(checkpoint, overwrite=True) as tmp:
        torch.save(raw, tmp)
    return Path(checkpoint)


NO_ERROR_MODEL_NOTE: str = (
    "model error not included: the checkpoint holds no error model (train with --inventory and "
    "--error-folds K to add one); area uncertainties are the outline buffer only"
)


def as_error_model(raw: ErrorModel | dict[str, Any] | None) -> ErrorModel | None:
    """An :class:`ErrorModel` from itself, its dict (a checkpoint's entry) or nothing (``None``/empty)."""
    if raw is None or isinstance(raw, ErrorModel):
        return raw
    return ErrorModel.from_dict(raw) if raw else None


_RASTER_OF = {
    "uncertainty_probability_km2": ("probabilities", "--probabilities"),
    "uncertainty_ensemble_km2": ("spread", "--uncertainty"),
}


def check_error_model_inputs(
    raw: ErrorModel | dict[str, Any] | None, *, probabilities: Any = None, spread: Any = None
) -> ErrorModel | None:
    """The error model, checked before any work: every raster its features need is given.

    Raises:
        ConfigError: a malformed model, or a feature whose raster is missing.
    """
    model = as_error_model(raw)
    if model is None:
        return None
    given = {"probabilities": probabilities, "spread": spread}
    for feature in model.features:
        if feature in _RASTER_OF and given[_RASTER_OF[feature][0]] is None:
            option = _RASTER_OF[feature][1]
            raise ConfigError(
                f"the error model is calibrated on {feature}, which needs {option}; "
                f"give the {_RASTER_OF[feature][0]} raster of the same run"
            )
    return model
