"""Ensembles: every member's files are checked before the first member trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoglacier.errors import OutputExistsError
from geoglacier.training.ensemble import ensemble_paths, train_ensemble
from tests.training.test_training import FAST, write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("ensemble") / "data", size=128)


@pytest.mark.parametrize("existing", ["model.m2.pth", "model.m3.metrics.csv", "model.m2.pth.state"])
def test_a_later_members_file_fails_before_any_member_trains(
    data: Path, tmp_path: Path, existing: str
) -> None:
    (tmp_path / existing).write_bytes(b"an earlier run")
    with pytest.raises(OutputExistsError, match=existing.replace(".", r"\.")):
        train_ensemble(data, tmp_path / "model.pth", 3, epochs=1, log=lambda _: None, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # member 1 never trained


def test_resume_refuses_a_lone_member_checkpoint_before_training(data: Path, tmp_path: Path) -> None:
    first, second = ensemble_paths(tmp_path / "model.pth", 2)
    second.write_bytes(b"a checkpoint without its training state")
    with pytest.raises(OutputExistsError, match="no training state"):
        train_ensemble(data, tmp_path / "model.pth", 2, epochs=1, resume=True, log=lambda _: None, **FAST)
    assert not first.exists()
