"""Calibration on validation data: a temperature for the logits and a decision threshold.

After training, the best epoch's network runs once over the validation windows and the
logits of their valid pixels are counted into a fine histogram, one for glacier and one
for non-glacier pixels (memory does not grow with the data). From the two histograms:

- **temperature** ``T``: probabilities ``sigmoid(logit / T)`` with ``T`` minimising the
  negative log-likelihood of the validation labels (temperature scaling, Guo et al.
  2017). ``T`` rescales confidence only: it never changes which pixels rank above
  which, so it cannot change a mask on its own.
- **threshold**: the probability cut (on the calibrated scale) that maximises the
  validation MCC; recorded always, used instead of the fixed threshold only when asked
  (``tune_threshold``), since on new terrain it did worse than 0.5. The fixed threshold
  is on the calibrated scale too, so away from 0.5 the temperature moves its cut
  (``sigmoid(z / T) > t`` where ``z > T * logit(t)``): its validation MCC is scored
  there, not at the epochs' uncalibrated cut.
- **expected calibration error** (ECE) before and after, over 15 equal-width bins of
  predicted probability: the mean gap between predicted probability and the observed
  share of glacier, weighted by the pixels in each bin.

Logits are binned at 0.01 over [-40, 40]; values outside fall into the end bins. The
threshold and temperature are computed from bin edges and centres, so they are exact
to within one bin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

LIMIT = 40.0
BINS = 8000
ECE_BINS = 15


class LogitHistogram:
    """Counts of valid pixels' logits, split by label, in fixed bins over [-LIMIT, LIMIT]."""

    def __init__(self) -> None:
        self.edges = np.linspace(-LIMIT, LIMIT, BINS + 1)
        self.positive = np.zeros(BINS, dtype=np.int64)
        self.negative = np.zeros(BINS, dtype=np.int64)

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def total(self) -> int:
        return int(self.positive.sum() + self.negative.sum())

    def add(self, logits: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        """Count ``logits`` where ``valid``; ``target`` 1 is glacier."""
        z = np.asarray(logits, dtype=np.float64)[valid]
        t = np.asarray(target)[valid] == 1
        idx = np.clip(((z + LIMIT) * (BINS / (2 * LIMIT))).astype(np.int64), 0, BINS - 1)
        self.positive += np.bincount(idx[t], minlength=BINS)
        self.negative += np.bincount(idx[~t], minlength=BINS)


def mcc_curve(hist: LogitHistogram) -> tuple[np.ndarray, np.ndarray]:
    """``(cuts, mcc)``: MCC when pixels with a logit above each bin's lower edge are glacier."""
    tp = np.cumsum(hist.positive[::-1])[::-1].astype(np.float64)  # positives at or above bin i
    fp = np.cumsum(hist.negative[::-1])[::-1].astype(np.float64)
    fn = hist.positive.sum() - tp
    tn = hist.negative.sum() - fp
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1.0), 0.0)
    return hist.edges[:-1], mcc


def best_logit_cut(hist: LogitHistogram) -> tuple[float, float]:
    """The logit cut with the highest MCC (the one nearest 0 among ties) and that MCC."""
    cuts, mcc = mcc_curve(hist)
    best = mcc.max()
    ties = np.flatnonzero(mcc >= best - 1e-12)
    pick = ties[np.argmin(np.abs(cuts[ties]))]
    return float(cuts[pick]), float(mcc[pick])


def mcc_at(hist: LogitHistogram, logit_cut: float) -> float:
    cuts, mcc = mcc_curve(hist)
    return float(mcc[min(int(np.searchsorted(cuts, logit_cut, side="left")), len(cuts) - 1)])


def _nll(hist: LogitHistogram, temperature: float) -> float:
    z = hist.centres / temperature
    # -log sigmoid(z) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z)
    pos = np.logaddexp(0.0, -z) @ hist.positive
    neg = np.logaddexp(0.0, z) @ hist.negative
    return float((pos + neg) / max(hist.total, 1))


def fit_temperature(hist: LogitHistogram, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature minimising the validation NLL (golden-section search on log T)."""
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(hist, math.exp(c)), _nll(hist, math.exp(d))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(hist, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(hist, math.exp(d))
    return math.exp(0.5 * (a + b))


def expected_calibration_error(hist: LogitHistogram, temperature: float = 1.0) -> float:
    """ECE of ``sigmoid(logit / temperature)`` over :data:`ECE_BINS` equal-width bins."""
    prob = 1.0 / (1.0 + np.exp(-hist.centres / temperature))
    which = np.minimum((prob * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    count = np.bincount(which, hist.positive + hist.negative, ECE_BINS)
    positives = np.bincount(which, hist.positive, ECE_BINS)
    confidence = np.bincount(which, prob * (hist.positive + hist.negative), ECE_BINS)
    filled = count > 0
    gap = np.abs(positives[filled] - confidence[filled])  # both are sums over the bin's pixels
    return float(gap.sum() / max(count.sum(), 1))


@dataclass(frozen=True)
class Calibration:
    """What calibration found; ``threshold`` is on the calibrated probability scale.

    ``val_mcc`` is the validation MCC at ``threshold``, ``val_mcc_default`` at the fixed
    threshold, both applied to ``sigmoid(logit / temperature)`` as inference applies them.
    """

    temperature: float
    threshold: float
    val_mcc: float
    val_mcc_default: float
    ece_before: float
    ece_after: float
    pixels: int

    def describe(self, default_threshold: float, tuned: bool = False) -> str:
        use = "used" if tuned else "not used; --tune-threshold uses it"
        scale = "" if default_threshold == 0.5 else " of the calibrated probabilities"
        return (
            f"Calibrated on {self.pixels} validation pixels: temperature {self.temperature:.2f}, "
            f"ECE {self.ece_before:.3f} -> {self.ece_after:.3f}; MCC-best threshold {self.threshold:.3f} "
            f"(val MCC {self.val_mcc_default:.3f} at {default_threshold:g}{scale} -> {self.val_mcc:.3f}; {use})"
        )


def calibration_from_histogram(hist: LogitHistogram, default_threshold: float = 0.5) -> Calibration:
    """Temperature, threshold and ECE from a filled histogram."""
    temperature = fit_temperature(hist)
    cut, mcc = best_logit_cut(hist)
    # The fixed threshold applies to calibrated probabilities: its logit cut scales with T.
    default_cut = temperature * math.log(default_threshold / (1.0 - default_threshold))
    return Calibration(
        temperature=temperature,
        threshold=1.0 / (1.0 + math.exp(-cut / temperature)),
        val_mcc=mcc,
        val_mcc_default=mcc_at(hist, default_cut),
        ece_before=expected_calibration_error(hist, 1.0),
        ece_after=expected_calibration_error(hist, temperature),
        pixels=hist.total,
    )


@torch.no_grad()
def collect_logits(
    model: nn.Module, dataset: torch.utils.data.Dataset, device: torch.device
) -> LogitHistogram:
    """Run ``model`` (eval mode) over every sample of ``dataset`` and histogram its logits."""
    model.eval()
    hist = LogitHistogram()
    for i in range(len(dataset)):  # type: ignore[arg-type]
        sample = dataset[i]
        logits = model(sample["image"][None].to(device))[0, 0].float().cpu().numpy()
        hist.add(
            logits,
            sample["mask"].numpy().reshape(logits.shape),
            sample["valid"].numpy().reshape(logits.shape),
        )
    return hist


def calibrate_checkpoint(
    model: nn.Module,
    meta: Any,
    dataset: torch.utils.data.Dataset,
    device: torch.device,
    default_threshold: float,
    tune_threshold: bool = False,
) -> tuple[Calibration, Any]:
    """Calibrate ``model`` on ``dataset``; return the calibration and ``meta`` carrying it.

    The temperature always goes into ``meta``. The MCC-best threshold replaces
    ``default_threshold`` only with ``tune_threshold``: in spatial cross-validation on
    the Everest scene a threshold tuned on validation blocks beside the training area
    did not transfer to new valleys (``benchmarks/results/cv_everest.md``). With
    threshold 0.5 the temperature leaves every mask as it was (``sigmoid(z / T) > 0.5``
    exactly where ``z > 0``) and only makes the probabilities honest; at another threshold
    the masks move, and ``metrics["val_mcc_calibrated"]`` is the validation MCC of the
    masks the checkpoint now gives (its threshold on its calibrated probabilities).
    """
    calibration = calibration_from_histogram(collect_logits(model, dataset, device), default_threshold)
    metrics = dict(meta.metrics)
    metrics.update(
        val_mcc_calibrated=calibration.val_mcc if tune_threshold else calibration.val_mcc_default,
        val_mcc_tuned=calibration.val_mcc,
        tuned_threshold=calibration.threshold,
        ece_before=calibration.ece_before,
        ece_after=calibration.ece_after,
    )
    threshold = calibration.threshold if tune_threshold else default_threshold
    return calibration, replace(
        meta, threshold=threshold, temperature=calibration.temperature, metrics=metrics
    )
