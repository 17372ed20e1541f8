"""Calibration: MCC-best threshold, temperature scaling, ECE; stored in the checkpoint and used."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from sklearn.metrics import matthews_corrcoef

from geoglacier.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from geoglacier.errors import CheckpointError
from geoglacier.training.calibrate import (
    LogitHistogram,
    best_logit_cut,
    calibration_from_histogram,
    expected_calibration_error,
    fit_temperature,
    mcc_at,
)
from geoglacier.training.loop import train
from tests.training.test_training import FAST, write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _overconfident(n: int = 200_000, scale: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the model reports ``scale * z`` (too sure of itself)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.3, 2.0, n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.uint8)
    return scale * z, labels


def _hist(logits: np.ndarray, labels: np.ndarray) -> LogitHistogram:
    hist = LogitHistogram()
    hist.add(logits, labels, np.ones(labels.shape, dtype=bool))
    return hist


def test_best_cut_matches_sklearn_mcc() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.random(5000) < 0.4).astype(np.uint8)
    logits = rng.normal(0, 1, 5000) + 1.5 * labels - 0.8
    cut, best = best_logit_cut(_hist(logits, labels))
    assert best == pytest.approx(matthews_corrcoef(labels, logits > cut), abs=0.003)
    # No cut on a fine grid does better (within one histogram bin).
    grid = max(matthews_corrcoef(labels, logits > c) for c in np.linspace(-3, 3, 121))
    assert best >= grid - 0.003
    assert mcc_at(_hist(logits, labels), 0.0) == pytest.approx(
        matthews_corrcoef(labels, logits > 0), abs=0.003
    )


def test_temperature_recovers_known_overconfidence() -> None:
    hist = _hist(*_overconfident(scale=3.0))
    assert fit_temperature(hist) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(_hist(*_overconfident(scale=1.0))) == pytest.approx(1.0, rel=0.05)


def test_ece_falls_after_temperature_scaling() -> None:
    hist = _hist(*_overconfident(scale=3.0))
    before, after = expected_calibration_error(hist, 1.0), expected_calibration_error(hist, 3.0)
    assert before > 0.05 and after < 0.01
    calibration = calibration_from_histogram(hist)
    assert calibration.ece_after < calibration.ece_before
    # The threshold is on the calibrated scale: it selects the same pixels as the logit cut.
    cut, _ = best_logit_cut(hist)
    assert calibration.threshold == pytest.approx(1.0 / (1.0 + math.exp(-cut / calibration.temperature)))


def test_ece_by_hand() -> None:
    hist = LogitHistogram()
    # 100 pixels at logit 0 (p = 0.5), 30 of them glacier: |0.3 - 0.5| = 0.2 over the only bin.
    hist.add(np.zeros(100), (np.arange(100) < 30).astype(np.uint8), np.ones(100, dtype=bool))
    assert expected_calibration_error(hist) == pytest.approx(0.2, abs=2e-3)  # within one bin


@pytest.fixture(scope="module")
def separable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("separable") / "data")


@pytest.fixture(scope="module")
def calibrated(separable: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("calibrated") / "model.pth"
    train(separable, out, epochs=2, lr=2e-3, patches_per_epoch=32, log=lambda _: None, **FAST)
    return out


def test_training_stores_calibration(calibrated: Path) -> None:
    meta, _ = read_checkpoint(calibrated)
    assert meta.temperature > 0 and meta.temperature != 1.0
    assert meta.threshold == 0.5  # the tuned threshold is recorded, not used, by default
    for key in ("val_mcc_tuned", "tuned_threshold", "ece_before", "ece_after"):
        assert key in meta.metrics
    assert 0 < meta.metrics["tuned_threshold"] < 1


def test_tune_threshold_stores_the_mcc_best_threshold(separable: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.pth"
    result = train(
        separable, out, epochs=1, patches_per_epoch=8, tune_threshold=True, log=lambda _: None, **FAST
    )
    meta, _ = read_checkpoint(out)
    assert meta.threshold == pytest.approx(result.calibration.threshold)
    assert meta.metrics["tuned_threshold"] == pytest.approx(meta.threshold)


def test_no_calibrate_keeps_threshold(separable: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    train(
        separable,
        out,
        epochs=1,
        patches_per_epoch=8,
        calibrate=False,
        threshold=0.4,
        log=lambda _: None,
        **FAST,
    )
    meta, _ = read_checkpoint(out)
    assert (meta.threshold, meta.temperature) == (0.4, 1.0)


def test_segment_scene_uses_temperature_and_threshold(
    calibrated: Path, separable: Path, tmp_path: Path
) -> None:
    from geoglacier.inference.segment import segment_scene

    model, meta = load_checkpoint(calibrated)
    plain = tmp_path / "plain.pth"
    save_checkpoint(model, replace(meta, temperature=1.0, threshold=0.5), plain)
    hot = tmp_path / "hot.pth"
    save_checkpoint(model, replace(meta, temperature=2.5, threshold=0.3), hot)
    scene = separable / "images" / "tile.tif"
    probs = {}
    for name, ckpt in (("plain", plain), ("hot", hot)):
        segment_scene(
            scene, ckpt, tmp_path / f"{name}.tif", window=256, overlap=0.0, blend="none",
            probabilities=tmp_path / f"{name}_p.tif", device="cpu", progress=False,
        )  # fmt: skip
        with rasterio.open(tmp_path / f"{name}_p.tif") as ds:
            probs[name] = ds.read(1).astype(np.float64)
    # One window covers the scene: p_hot = sigmoid(logit(p_plain) / 2.5).
    p = np.clip(probs["plain"], 1e-6, 1 - 1e-6)
    want = 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / 2.5))
    ok = (probs["plain"] > 1e-5) & (probs["plain"] < 1 - 1e-5)
    np.testing.assert_allclose(probs["hot"][ok], want[ok], atol=2e-4)
    with rasterio.open(tmp_path / "hot.tif") as ds:
        mask = ds.read(1)
    np.testing.assert_array_equal(mask, (probs["hot"] > 0.3).astype(np.uint8))


def test_checkpoint_with_bad_temperature_is_refused(calibrated: Path, tmp_path: Path) -> None:
    raw = torch.load(calibrated, map_location="cpu", weights_only=True)
    raw["temperature"] = -1.0
    bad = tmp_path / "bad.pth"
    torch.save(raw, bad)
    with pytest.raises(CheckpointError, match="temperature"):
        read_checkpoint(bad)


def test_fixed_threshold_is_scored_on_the_calibrated_scale() -> None:
    logits, labels = _overconfident(scale=3.0, seed=1)
    calibration = calibration_from_histogram(_hist(logits, labels), default_threshold=0.2)
    calibrated = 1.0 / (1.0 + np.exp(-logits / calibration.temperature))
    as_inference = matthews_corrcoef(labels, calibrated > 0.2)
    uncalibrated = matthews_corrcoef(labels, 1.0 / (1.0 + np.exp(-logits)) > 0.2)
    assert abs(as_inference - uncalibrated) > 0.02  # the temperature moves the cut here
    assert calibration.val_mcc_default == pytest.approx(as_inference, abs=0.003)
    assert "at 0.2 of the calibrated probabilities" in calibration.describe(0.2)


def test_checkpoint_records_the_validation_mcc_of_its_own_masks(separable: Path, tmp_path: Path) -> None:
    from geoglacier.training.datasets import make_datasets

    out = tmp_path / "t.pth"
    train(separable, out, epochs=1, threshold=0.2, patches_per_epoch=8, log=lambda _: None, **FAST)
    model, meta = load_checkpoint(out)
    assert meta.threshold == 0.2 and meta.temperature != 1.0
    val = make_datasets(separable, patch_size=64, val_fraction=0.25, augment=False).val
    truth, masks = [], []
    with torch.no_grad():
        for i in range(len(val)):
            sample = val[i]
            prob = torch.sigmoid(model(sample["image"][None])[0, 0] / meta.temperature).numpy()
            valid = sample["valid"].numpy()
            truth.append(sample["mask"].numpy()[valid])
            masks.append(prob[valid] > meta.threshold)
    expected = matthews_corrcoef(np.concatenate(truth), np.concatenate(masks))
    assert meta.metrics["val_mcc_calibrated"] == pytest.approx(expected, abs=0.003)
