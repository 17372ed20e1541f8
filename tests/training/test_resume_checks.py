"""What ``--resume`` accepts: the recipe it started with and at least the epochs it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoglacier.errors import ConfigError
from geoglacier.training.config import TrainConfig
from geoglacier.training.state import SPLIT_VERSION, check_resume_config


def _state(config: TrainConfig, epoch: int) -> dict:
    return {"epoch": epoch, "config": config.to_dict(), "split_version": SPLIT_VERSION}


def test_fewer_epochs_than_the_state_holds_is_refused() -> None:
    config = TrainConfig(epochs=6)
    with pytest.raises(
        ConfigError, match=r"already holds 6 epochs, more than --epochs 2; resume with --epochs 6"
    ):
        check_resume_config(_state(config, 6), TrainConfig(epochs=2), Path("m.pth.state"), "scenes")


@pytest.mark.parametrize("epochs", [6, 10])
def test_as_many_or_more_epochs_resume(epochs: int) -> None:
    check_resume_config(
        _state(TrainConfig(epochs=6), 6), TrainConfig(epochs=epochs), Path("m.pth.state"), "scenes"
    )


def test_a_changed_recipe_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="--lr 0.0001, not 0.001"):
        check_resume_config(_state(TrainConfig(), 2), TrainConfig(lr=1e-3), Path("m.pth.state"), "classic")
