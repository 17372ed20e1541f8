"""Tests of confusion counts and MCC against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, matthews_corrcoef

from geoglacier.measure.metrics import Confusion, confusion_counts, mcc_from_counts


def _counts(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tn, fp, fn, tp = confusion_matrix(truth, pred, labels=[0, 1]).ravel()
    return int(tp), int(fp), int(tn), int(fn)


@pytest.mark.parametrize("seed", range(6))
def test_mcc_matches_sklearn_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.random(500) < rng.uniform(0.05, 0.95)
    pred = np.where(rng.random(500) < 0.7, truth, rng.random(500) < 0.5)
    assert mcc_from_counts(*_counts(truth, pred)) == pytest.approx(matthews_corrcoef(truth, pred), abs=1e-12)


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize(
    ("truth", "pred"),
    [
        ([1, 1, 1, 1], [1, 1, 1, 1]),  # all glacier, all right
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # no glacier anywhere
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # truth one class
        ([0, 1, 0, 1], [1, 1, 1, 1]),  # prediction one class
        ([0, 1, 0, 1], [1, 0, 1, 0]),  # all wrong: -1
        ([0, 1, 1, 0], [0, 1, 1, 0]),  # all right: 1
    ],
)
def test_mcc_degenerate_cases_match_sklearn(truth: list[int], pred: list[int]) -> None:
    t, p = np.array(truth), np.array(pred)
    assert mcc_from_counts(*_counts(t, p)) == pytest.approx(matthews_corrcoef(t, p), abs=1e-12)


def test_mcc_of_no_pixels_is_zero_and_negative_counts_are_refused() -> None:
    assert mcc_from_counts(0, 0, 0, 0) == 0.0
    with pytest.raises(ValueError, match="counts"):
        mcc_from_counts(1, -1, 0, 0)


def test_mcc_is_exact_for_huge_counts() -> None:
    # Products of four ~1e10 counts overflow int64/float precision if done naively.
    tp, fp, tn, fn = 9_000_000_000, 1_000_000_000, 8_000_000_000, 2_000_000_000
    num = tp * tn - fp * fn
    den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    expected = float(Decimal(num) / Decimal(den).sqrt())
    assert mcc_from_counts(tp, fp, tn, fn) == pytest.approx(expected, rel=1e-15)


def test_confusion_counts_match_sklearn_on_valid_pixels_only() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 32, 32, generator=g)
    target = (torch.rand(4, 32, 32, generator=g) > 0.5).float()
    valid = torch.rand(4, 32, 32, generator=g) > 0.25
    counts = confusion_counts(logits, target, valid, threshold=0.5).tolist()
    probs = torch.sigmoid(logits[:, 0])
    v = valid.numpy()
    expected = _counts(target.numpy()[v].astype(int), (probs.numpy()[v] > 0.5).astype(int))
    assert tuple(counts) == expected
    assert sum(counts) == int(v.sum())
    # What lies under invalid pixels does not matter.
    logits2, target2 = logits.clone(), target.clone()
    logits2[:, 0][~valid] = 100.0
    target2[~valid] = 0.0
    assert confusion_counts(logits2, target2, valid).tolist() == counts


def test_threshold_is_applied_to_probabilities() -> None:
    probs = torch.tensor([[0.2, 0.45, 0.55, 0.9]])
    logits = torch.log(probs / (1 - probs))
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    valid = torch.ones_like(target, dtype=torch.bool)
    assert confusion_counts(logits, target, valid, 0.5).tolist() == [2, 0, 1, 1]
    assert confusion_counts(logits, target, valid, 0.4).tolist() == [3, 0, 1, 0]


def test_epoch_mcc_comes_from_summed_counts_not_batch_average() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(1000) < 0.3
    pred = np.where(rng.random(1000) < 0.8, truth, ~truth)
    total = Confusion()
    batch_scores = []
    for t, p in zip(np.array_split(truth, 7), np.array_split(pred, 7), strict=True):
        total.add(list(_counts(t, p)))
        batch_scores.append(matthews_corrcoef(t, p))
    assert total.as_list() == list(_counts(truth, pred))
    assert total.mcc == pytest.approx(matthews_corrcoef(truth, pred), abs=1e-12)
    assert total.mcc != pytest.approx(float(np.mean(batch_scores)), abs=1e-6)
