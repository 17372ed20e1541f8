"""Tests of the masked BCE + Dice loss against hand computations and torch's own BCE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geoglacier.errors import ConfigError
from geoglacier.training.losses import BCEDiceLoss, masked_bce, masked_soft_dice


def _batch(seed: int = 0, shape: tuple[int, ...] = (3, 16, 16)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    target = (torch.rand(shape, generator=g) > 0.6).float()
    valid = torch.rand(shape, generator=g) > 0.3
    return logits, target, valid


def test_bce_equals_torch_bce_on_the_valid_pixels() -> None:
    logits, target, valid = _batch(1)
    expected = F.binary_cross_entropy_with_logits(logits[valid], target[valid])
    assert masked_bce(logits, target, valid).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_equals_hand_computation_over_the_batch() -> None:
    logits, target, valid = _batch(2)
    p = 1.0 / (1.0 + np.exp(-logits.numpy().astype(np.float64)))
    t, v = target.numpy().astype(np.float64), valid.numpy()
    inter = (p[v] * t[v]).sum()
    expected = 1.0 - (2.0 * inter + 1.0) / (p[v].sum() + t[v].sum() + 1.0)
    assert masked_soft_dice(logits, target, valid).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 1.0])
def test_loss_is_the_alpha_weighted_sum(alpha: float) -> None:
    logits, target, valid = _batch(3)
    bce = masked_bce(logits, target, valid).item()
    dice = masked_soft_dice(logits, target, valid).item()
    got = BCEDiceLoss(alpha)(logits.unsqueeze(1), target, valid).item()  # (N, 1, H, W) logits
    assert got == pytest.approx(alpha * bce + (1 - alpha) * dice, rel=1e-6)


def test_invalid_pixels_change_neither_loss_nor_gradient() -> None:
    logits, target, valid = _batch(4)
    loss_fn = BCEDiceLoss(0.7)
    base = loss_fn(logits, target, valid)
    scrambled_logits = logits.clone()
    scrambled_target = target.clone()
    scrambled_logits[~valid] = torch.randn(int((~valid).sum())) * 50
    scrambled_target[~valid] = 1.0 - scrambled_target[~valid]
    assert loss_fn(scrambled_logits, scrambled_target, valid).item() == pytest.approx(base.item(), rel=1e-6)
    leaf = logits.clone().requires_grad_(True)
    loss_fn(leaf, target, valid).backward()
    assert leaf.grad is not None
    assert torch.all(leaf.grad[~valid] == 0)
    assert torch.any(leaf.grad[valid] != 0)


def test_no_valid_pixel_gives_a_finite_zero_loss() -> None:
    logits, target, _ = _batch(5)
    none = torch.zeros_like(target, dtype=torch.bool)
    loss = BCEDiceLoss(0.7)(logits, target, none)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_perfect_confident_prediction_has_near_zero_loss() -> None:
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    logits = (target * 2 - 1) * 30
    assert BCEDiceLoss(0.7)(logits, target, torch.ones_like(target, dtype=torch.bool)).item() < 1e-4


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_out_of_range_is_refused(alpha: float) -> None:
    with pytest.raises(ConfigError, match="--alpha"):
        BCEDiceLoss(alpha)
