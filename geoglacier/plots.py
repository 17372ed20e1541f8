"""Training curves as a PNG (loss and MCC per epoch), drawn with matplotlib's Agg backend."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoglacier.io.atomic import atomic_output


def mcc_limits(history: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """The MCC axis: 0 to 1 with a margin, reaching down to the lowest MCC when one is negative.

    MCC runs from -1 to 1, and early epochs (or a model worse than chance on validation)
    score below 0: a fixed lower limit would leave those points off the figure.
    """
    values = [float(row[k]) for row in history for k in ("train_mcc", "val_mcc")]
    lowest = min((v for v in values if math.isfinite(v)), default=0.0)
    return max(-1.05, min(-0.05, lowest - 0.05)), 1.0


def plot_metrics(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Draw loss / val_loss and train_mcc / val_mcc against epoch into ``path`` (atomically).

    Rewritten after every epoch, so a killed run still leaves a readable image.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [int(row["epoch"]) for row in history]
    fig = Figure(figsize=(9, 3.6), dpi=100)
    ax_loss, ax_mcc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [row["loss"] for row in history], "o-", label="train")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss (BCE + Dice)", title="Loss")
    ax_mcc.plot(epochs, [row["train_mcc"] for row in history], "o-", label="train")
    ax_mcc.plot(epochs, [row["val_mcc"] for row in history], "o-", label="validation")
    ax_mcc.set(xlabel="epoch", ylabel="MCC", title="Matthews correlation", ylim=mcc_limits(history))
    for ax in (ax_loss, ax_mcc):
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
