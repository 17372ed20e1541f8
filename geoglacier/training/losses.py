"""The training loss: weighted BCE plus soft Dice, both restricted to valid pixels.

BCE alone is dominated by the majority class on scenes that are mostly rock or
mostly ice; Dice measures overlap of the glacier class directly and balances it.
Pixels that are nodata, padding or ignored in the mask carry no label, so they are
left out of both terms (a weight of 0), never treated as "not glacier".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geoglacier.errors import ConfigError


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (on logits) over the valid pixels of the batch; 0 when none is valid."""
    weight = valid.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def masked_soft_dice(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - soft Dice`` of the glacier class on sigmoid probabilities, over the whole batch.

    The sums run over every valid pixel of the batch rather than per patch, so a patch
    without glacier does not get a Dice of 0 that would dominate the mean. ``smooth``
    keeps the ratio defined (and the loss 0) when no valid pixel is glacier or predicted.
    """
    weight = valid.to(torch.float32)
    probs = torch.sigmoid(logits.float()) * weight
    truth = target.float() * weight
    intersection = (probs * truth).sum()
    total = probs.sum() + truth.sum()
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


class BCEDiceLoss(nn.Module):
    """``alpha * BCE + (1 - alpha) * Dice``, both masked by ``valid``.

    Args:
        alpha: weight of the BCE term in [0, 1] (0.7 by default: BCE gives the steady
            per-pixel gradient, Dice keeps the glacier class from being swamped).
        smooth: Dice smoothing constant.

    Call with ``logits`` of shape ``(N, 1, H, W)`` or ``(N, H, W)``, ``target`` float 0/1
    and ``valid`` bool, both ``(N, H, W)``.
    """

    def __init__(self, alpha: float = 0.7, smooth: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"--alpha must be between 0 and 1 (weight of BCE against Dice), got {alpha}")
        self.alpha = float(alpha)
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if logits.dim() == target.dim() + 1:
            logits = logits.squeeze(1)
        bce = masked_bce(logits.float(), target, valid)
        dice = masked_soft_dice(logits, target, valid, self.smooth)
        return self.alpha * bce + (1.0 - self.alpha) * dice
