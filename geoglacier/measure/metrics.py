"""Confusion counts and the Matthews correlation coefficient for training epochs.

An epoch's MCC comes from the confusion counts summed over all its batches (and,
under torchrun, over all processes), not from an average of per-batch scores: the
MCC of a batch that holds no glacier is 0 by convention, and averaging those would
depend on how the data happened to be batched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def mcc_from_counts(tp: int, fp: int, tn: int, fn: int) -> float:
    """Matthews correlation coefficient from binary confusion counts.

    Matches :func:`sklearn.metrics.matthews_corrcoef`, including its convention of
    0.0 when the truth or the prediction holds a single class (a zero marginal makes
    the denominator 0). Python integers keep the products exact for any pixel count.
    """
    tp, fp, tn, fn = (int(v) for v in (tp, fp, tn, fn))
    if min(tp, fp, tn, fn) < 0:
        raise ValueError(f"confusion counts must be >= 0, got tp={tp} fp={fp} tn={tn} fn={fn}")
    denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    if denominator == 0:
        return 0.0
    return float((tp * tn - fp * fn) / math.sqrt(denominator))


def confusion_counts(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """``[tp, fp, tn, fn]`` (int64, on the logits' device) over the valid pixels.

    A pixel is predicted glacier when ``sigmoid(logit) > threshold``. ``logits`` may
    carry a channel axis of size 1.
    """
    if logits.dim() == target.dim() + 1:
        logits = logits.squeeze(1)
    pred = torch.sigmoid(logits.float()) > threshold
    truth = target > 0.5
    valid = valid.bool()
    tp = (pred & truth & valid).sum()
    fp = (pred & ~truth & valid).sum()
    tn = (~pred & ~truth & valid).sum()
    fn = (~pred & truth & valid).sum()
    return torch.stack([tp, fp, tn, fn]).to(torch.int64)


@dataclass
class Confusion:
    """Running confusion counts of an epoch."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, counts: torch.Tensor | list[int] | tuple[int, ...]) -> None:
        """Add ``[tp, fp, tn, fn]``."""
        values = counts.tolist() if isinstance(counts, torch.Tensor) else list(counts)
        self.tp += int(values[0])
        self.fp += int(values[1])
        self.tn += int(values[2])
        self.fn += int(values[3])

    def as_list(self) -> list[int]:
        return [self.tp, self.fp, self.tn, self.fn]

    @property
    def mcc(self) -> float:
        return mcc_from_counts(self.tp, self.fp, self.tn, self.fn)
