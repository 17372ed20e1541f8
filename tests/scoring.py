"""Re-scoring a trained network the way training validated it (shared by the training tests)."""

from __future__ import annotations

import torch

from geoglacier.measure.metrics import confusion_counts, mcc_from_counts
from geoglacier.training.config import TrainConfig
from geoglacier.training.loop import _amp_dtype


def validation_mcc(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, config: TrainConfig, batch_size: int = 1
) -> float:
    """MCC of ``model`` over ``dataset`` in the precision ``config`` trained in.

    bf16 autocast where this CPU has native bf16 (and ``config.amp``), fp32 elsewhere,
    so a re-scored checkpoint matches the validation MCC it recorded.
    """
    dtype = _amp_dtype(config, torch.device("cpu"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    counts = torch.zeros(4, dtype=torch.int64)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for batch in loader:
            logits = model(batch["image"]).float()
            counts += confusion_counts(logits, batch["mask"], batch["valid"])
    return mcc_from_counts(*counts.tolist())
