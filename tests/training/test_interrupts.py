"""An interrupt at the end of an epoch never splits the epoch's files, and --resume always continues.

The loop writes the training state first, then the checkpoint, the metrics CSV and the
figure, with Ctrl-C held back while it does. The tests raise ``KeyboardInterrupt``
from inside those writes (what an interrupt could do without the hold), or send a real
SIGINT to this process during them, and check the message, the files on disk, and that
``--resume`` gives the uninterrupted run's result.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import geoglacier.checkpoint
import geoglacier.training.loop
from geoglacier.checkpoint import read_checkpoint
from geoglacier.errors import Interrupted
from geoglacier.io.atomic import TMP_PREFIX, sigterm_as_interrupt
from geoglacier.training.config import TrainPaths
from geoglacier.training.interrupts import held_interrupts
from geoglacier.training.loop import train
from geoglacier.training.state import load_state, read_metrics_csv
from tests.training.test_training import FAST, write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTS = {**FAST, "patches_per_epoch": 8, "lr": 1e-3}


@pytest.fixture(autouse=True)
def python_sigint_handler() -> Any:
    """Python's own SIGINT handler: a background run (nohup, some CI runners) starts with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def separable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("separable") / "data")


@pytest.fixture(scope="module")
def full(separable: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The uninterrupted 3-epoch run every resumed run must equal."""
    out = tmp_path_factory.mktemp("full") / "full.pth"
    return out, train(separable, out, epochs=3, log=lambda _: None, **OPTS)


def _metrics(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _interrupt_on_call(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    call: int,
    action: Callable[[], None] | None = None,
) -> None:
    """Make call number ``call`` of ``owner.name`` raise KeyboardInterrupt (or run ``action`` first)."""
    real = getattr(owner, name)
    calls = [0]

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            if action is None:
                raise KeyboardInterrupt
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, patched)


def _interrupted(run: Callable[[], Any]) -> str:
    """The message of the :class:`Interrupted` that ``run`` ends with (a bare KeyboardInterrupt fails the test)."""
    with pytest.raises(KeyboardInterrupt) as caught:  # not Interrupted: a bare one must fail, not end pytest
        run()
    assert isinstance(caught.value, Interrupted), f"bare {caught.value!r}: the generic message would be shown"
    return str(caught.value)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _same_checkpoint(a: Path, b: Path) -> None:
    meta_a, state_a = read_checkpoint(a)
    meta_b, state_b = read_checkpoint(b)
    assert meta_a.epoch == meta_b.epoch and meta_a.metrics == meta_b.metrics
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


# ---------------------------------------------------------------------------------------
# held_interrupts on its own, with real signals


def test_sigint_inside_the_block_arrives_after_it() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with held_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(True)  # still runs: the signal is held
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_as_interrupt_is_held_too_and_restored() -> None:
    with sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt, match="terminated by signal"):
            with held_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is handler


def test_block_without_signal_or_with_an_error_restores_the_handlers() -> None:
    with held_interrupts():
        pass
    with pytest.raises(RuntimeError, match="boom"):
        with held_interrupts():
            raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------------------
# the training loop


def test_interrupt_while_writing_the_checkpoint_resumes_to_the_uninterrupted_run(
    separable: Path, full: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's Ctrl-C right after 'Model saved': the state keeps epoch 1 and --resume continues."""
    out = tmp_path / "m.pth"
    paths = TrainPaths.for_checkpoint(out)
    _interrupt_on_call(monkeypatch, geoglacier.checkpoint, "save_checkpoint", 1)
    message = _interrupted(lambda: train(separable, out, epochs=3, log=lambda _: None, **OPTS))
    assert f"{paths.state} keeps epoch 1 of 3" in message and "--resume to continue" in message
    assert _files(tmp_path) == ["m.pth.state"]  # the state, never a checkpoint without it
    assert load_state(paths.state)["epoch"] == 1
    monkeypatch.undo()

    lines: list[str] = []
    rest = train(separable, out, epochs=3, resume=True, log=lines.append, **OPTS)

    assert rest.resumed_from == 1 and lines[0].startswith("Resuming from epoch 1 of 3")
    assert _metrics(rest.history) == _metrics(full[1].history)
    assert [r["epoch"] for r in read_metrics_csv(paths.metrics_csv)] == [1, 2, 3]
    _same_checkpoint(out, full[0])
    assert not any(name.startswith(TMP_PREFIX) for name in _files(tmp_path))


def test_interrupt_while_writing_the_first_state_leaves_nothing(
    separable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.pth"
    _interrupt_on_call(monkeypatch, geoglacier.training.loop, "save_state", 1)
    message = _interrupted(lambda: train(separable, out, epochs=1, log=lambda _: None, **OPTS))
    assert "during epoch 1: no epoch was complete, nothing was kept" in message
    assert _files(tmp_path) == []
    monkeypatch.undo()
    # "run the same command again" works.
    assert train(separable, out, epochs=1, log=lambda _: None, **OPTS).epochs == 1


def test_interrupt_while_writing_a_later_state_keeps_the_epoch_before(
    separable: Path, full: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.pth"
    paths = TrainPaths.for_checkpoint(out)
    _interrupt_on_call(monkeypatch, geoglacier.training.loop, "save_state", 2)
    message = _interrupted(lambda: train(separable, out, epochs=3, log=lambda _: None, **OPTS))
    assert re.search(r"during epoch 2; .* keeps epoch 1 of 3", message), message
    assert load_state(paths.state)["epoch"] == 1
    assert read_checkpoint(out)[0].epoch == 1  # epoch 2's files were not written before its state
    assert [r["epoch"] for r in read_metrics_csv(paths.metrics_csv)] == [1]
    monkeypatch.undo()
    rest = train(separable, out, epochs=3, resume=True, log=lambda _: None, **OPTS)
    assert rest.resumed_from == 1 and _metrics(rest.history) == _metrics(full[1].history)
    _same_checkpoint(out, full[0])


def test_sigint_during_the_writes_ends_the_run_after_them(
    separable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Ctrl-C while the state is written: every file of epoch 1 is written, then the run ends."""
    out = tmp_path / "m.pth"
    paths = TrainPaths.for_checkpoint(out)
    _interrupt_on_call(
        monkeypatch, geoglacier.training.loop, "save_state", 1, lambda: os.kill(os.getpid(), signal.SIGINT)
    )
    lines: list[str] = []
    message = _interrupted(lambda: train(separable, out, epochs=3, log=lines.append, **OPTS))
    assert re.search(r"after epoch 1; .* keeps epoch 1 of 3 .*--resume to continue", message), message
    assert any(line.startswith("Model saved") for line in lines)
    assert _files(tmp_path) == ["m.metrics.csv", "m.metrics.png", "m.pth", "m.pth.state"]
    assert load_state(paths.state)["epoch"] == 1 and read_checkpoint(out)[0].epoch == 1
    assert not any(line.startswith("Epoch 2") for line in lines)


def test_resume_restores_the_checkpoint_of_the_last_epoch(
    separable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after the last epoch's state: --resume has no epoch left and writes the checkpoint from it."""
    out = tmp_path / "m.pth"
    reference = tmp_path / "ref" / "m.pth"
    reference.parent.mkdir()
    train(separable, reference, epochs=1, calibrate=False, log=lambda _: None, **OPTS)
    _interrupt_on_call(monkeypatch, geoglacier.checkpoint, "save_checkpoint", 1)
    message = _interrupted(
        lambda: train(separable, out, epochs=1, calibrate=False, log=lambda _: None, **OPTS)
    )
    assert re.search(r"after epoch 1; .* keeps epoch 1 of 1", message), message
    monkeypatch.undo()
    # An earlier run's checkpoint of the same epoch number is not taken for this run's.
    train(separable, tmp_path / "other.pth", epochs=1, seed=5, calibrate=False, log=lambda _: None, **OPTS)
    (tmp_path / "other.pth").replace(out)
    lines: list[str] = []
    again = train(separable, out, epochs=1, calibrate=False, resume=True, log=lines.append, **OPTS)
    assert again.resumed_from == 1 and again.best_epoch == 1
    assert any(line.startswith(f"Restored {out} (epoch 1)") for line in lines)
    _same_checkpoint(out, reference)
    assert [r["epoch"] for r in read_metrics_csv(TrainPaths.for_checkpoint(out).metrics_csv)] == [1]
    assert (tmp_path / "m.metrics.png").exists()


def test_interrupt_while_a_resumed_run_reads_its_data_keeps_the_state(
    separable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "m.pth"
    train(separable, out, epochs=1, calibrate=False, log=lambda _: None, **OPTS)
    before = {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)}
    _interrupt_on_call(monkeypatch, geoglacier.training.loop, "_datasets", 1)
    message = _interrupted(lambda: train(separable, out, epochs=2, resume=True, log=lambda _: None, **OPTS))
    assert re.search(r"during epoch 2; .*m\.pth\.state keeps epoch 1 of 2 .*--resume to continue", message), (
        message
    )
    assert {name: (tmp_path / name).read_bytes() for name in _files(tmp_path)} == before
