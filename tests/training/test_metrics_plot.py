"""The metrics figure shows every epoch's MCC, negative ones too."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from geoglacier.plots import plot_metrics


def _row(epoch: int, train_mcc: float, val_mcc: float) -> dict[str, float]:
    return dict(
        epoch=epoch, loss=0.7, val_loss=0.7, train_mcc=train_mcc, val_mcc=val_mcc, lr=1e-4, seconds=1.0
    )


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures plot_metrics saves, kept for their axes."""
    kept: list[Figure] = []
    savefig = Figure.savefig

    def keep(self: Figure, *args: object, **kwargs: object) -> None:
        kept.append(self)
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return kept


@pytest.mark.parametrize(
    ("history", "low"),
    [
        ([_row(1, 0.06, 0.07), _row(2, 0.16, -0.06), _row(3, 0.24, -0.09)], -0.09),
        ([_row(1, -0.8, float("nan"))], -0.8),  # no validation: val_mcc is NaN
        ([_row(1, -1.0, -1.0)], -1.0),
    ],
)
def test_negative_mcc_stays_on_the_figure(
    history: list[dict[str, float]], low: float, tmp_path: Path, figures: list[Figure]
) -> None:
    plot_metrics(history, tmp_path / "m.png")
    bottom, top = figures[0].axes[1].get_ylim()
    assert bottom < low <= 0.0 < 1.0 <= top
    assert bottom >= -1.1
    assert (tmp_path / "m.png").stat().st_size > 0


def test_positive_mcc_keeps_the_zero_to_one_axis(tmp_path: Path, figures: list[Figure]) -> None:
    plot_metrics([_row(1, 0.3, 0.5), _row(2, 0.6, 0.7)], tmp_path / "m.png")
    assert figures[0].axes[1].get_ylim() == pytest.approx((-0.05, 1.0))
