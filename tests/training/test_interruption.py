"""Interrupting the real ``geoglacier`` process never leaves a half-written output.

SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill) during ``segment-scene`` must remove
every temporary and leave no output. SIGKILL cannot be caught, so it leaves
temporaries (``.geoglacier-tmp-*``) behind, but never a file under the user's name;
the next run on the same output succeeds and clears them. A SIGKILL while ``train``
writes its files never leaves a checkpoint that does not load.

Each test waits until the process is really working (its first temporary exists)
before it sends the signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoglacier.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.io.atomic import TMP_PREFIX
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene

ROOT = Path(__file__).resolve().parents[2]
GEOGLACIER = [sys.executable, "-m", "geoglacier"]
SCENE_SIZE = 512
START_TIMEOUT = 180.0  # imports, checkpoint loading and a busy machine
# Once the first temporary exists, let the remaining outputs open (milliseconds) so the
# signal lands while windows run, not between two lines of a temporary's creation.
SETTLE = 0.5


def _require(command: str) -> None:
    if command not in cli.commands:
        pytest.skip(f"'geoglacier {command}' is not registered yet (cli/commands.py)")


def _default_sigint() -> None:
    # A child of a non-interactive shell may inherit SIGINT as ignored; Python then
    # never raises KeyboardInterrupt. Restore the default so Ctrl-C is what we test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with log.open("wb") as fh:
        return subprocess.Popen(
            [*GEOGLACIER, *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
            preexec_fn=_default_sigint,
            start_new_session=True,  # a Ctrl-C on the pytest terminal does not reach it
        )


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TMP_PREFIX}*"))


def _wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], log: Path, timeout: float) -> None:
    """Poll ``ready`` until it holds; fail if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"the process ended (exit {proc.returncode}) before it started writing:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no temporary output appeared within {timeout:.0f} s:\n{log.read_text()}")
        time.sleep(0.005)


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path, timeout: float = 120.0) -> int:
    assert proc.poll() is None, f"finished before the signal:\n{log.read_text()}"
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running {timeout:.0f} s after {sig.name}:\n{log.read_text()}")


@pytest.fixture(scope="module")
def scene_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 512 x 512 scene (121 windows of 64 px) and an untrained U-Net++/ResNet18 checkpoint."""
    d = tmp_path_factory.mktemp("interrupt-inputs")
    scene = write_scene(d / "scene.tif", SCENE_SIZE, SCENE_SIZE, seed=5)
    torch.manual_seed(0)
    config = ModelConfig(encoder="resnet18")
    meta = CheckpointMeta(
        model=config,
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(127.0,) * 5,
        std=(60.0,) * 5,
        patch_size=64,
    )
    return scene, save_checkpoint(build_model(config, None), meta, d / "model.pth")


def _segment_args(scene: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "segment-scene",
        str(scene),
        "--model",
        str(model),
        "--out",
        str(out / "mask.tif"),
        "--probabilities",
        str(out / "probability.tif"),
        "--summary",
        str(out / "areas.json"),
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--batch-size",
        "2",
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_segment_scene_keeps_only_its_tiles_and_resumes(
    sig: signal.Signals, scene_and_model: tuple[Path, Path], tmp_path: Path
) -> None:
    _require("segment-scene")
    scene, model = scene_and_model
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "log.txt"
    args = _segment_args(scene, model, out, "--window", "64")
    proc = _start(args, log)
    staging = out / ".geoglacier-partial-mask.tif" / "mask.tif"
    _wait_for(proc, staging.exists, log, START_TIMEOUT)
    time.sleep(SETTLE)

    code = _signal(proc, sig, log)

    text = log.read_text()
    assert code == 130, f"exit {code} after {sig.name}:\n{text}"
    assert "Interrupted" in text and "Traceback" not in text, text
    # no output and no temporary: only the folder of kept tiles, or nothing when no tile was done
    left = sorted(p.name for p in out.iterdir())
    if "--resume" in text:
        assert left == [".geoglacier-partial-mask.tif"], text
    else:
        assert "no output was left behind" in text and left == [], text
    again = _start([*args, "--resume"], log)
    assert again.wait(timeout=START_TIMEOUT) == 0, log.read_text()
    assert sorted(p.name for p in out.iterdir()) == ["areas.json", "mask.tif", "probability.tif"]


def test_segment_scene_after_sigkill_succeeds_and_clears_temporaries(
    scene_and_model: tuple[Path, Path], tmp_path: Path
) -> None:
    _require("segment-scene")
    scene, model = scene_and_model
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "killed.txt"
    proc = _start(_segment_args(scene, model, out, "--window", "64"), log)
    partial = out / ".geoglacier-partial-mask.tif"
    _wait_for(proc, (partial / "mask.tif").exists, log, START_TIMEOUT)
    time.sleep(SETTLE)

    code = _signal(proc, signal.SIGKILL, log)

    assert code == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    # only temporaries and the staging folder (without the progress that an interrupt writes)
    assert left and all(n.startswith(TMP_PREFIX) or n == partial.name for n in left), left
    assert not (partial / "progress.json").exists()
    # The next run on the same outputs (one big window, to be quick) succeeds without --overwrite.
    log = tmp_path / "rerun.txt"
    rerun = _start(_segment_args(scene, model, out, "--window", "512", "--overlap", "0"), log)
    assert rerun.wait(timeout=300) == 0, log.read_text()
    assert _temporaries(out) == [], "stale temporaries were not cleared"
    assert sorted(p.name for p in out.iterdir()) == ["areas.json", "mask.tif", "probability.tif"]
    with rasterio.open(out / "mask.tif") as ds:
        mask = ds.read(1)
    assert mask.shape == (SCENE_SIZE, SCENE_SIZE)
    assert set(np.unique(mask).tolist()) <= {0, 1}


@pytest.mark.slow
def test_sigkill_during_train_never_leaves_a_broken_checkpoint(tmp_path: Path) -> None:
    """Kill ``train`` while it writes a checkpoint; what is on disk under the name still loads."""
    _require("train")
    from geoglacier.synthetic import write_classic_layout

    data = tmp_path / "data"
    write_classic_layout(data, n=2, size=64, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    checkpoint = out / "model.pth"
    log = tmp_path / "train.txt"
    args = [
        "train",
        str(data),
        "--out",
        str(checkpoint),
        "--encoder",
        "resnet18",
        "--encoder-weights",
        "none",
        "--epochs",
        "50",
        "--patch-size",
        "64",
        "--batch-size",
        "1",
        "--val-fraction",
        "0.5",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-augment",
    ]
    proc = _start(args, log)

    def writing_checkpoint() -> bool:
        # A checkpoint temporary is '.geoglacier-tmp-model.pth.XXXX.pth' (the state's ends in .state).
        return any(p.suffix == ".pth" for p in _temporaries(out))

    _wait_for(proc, checkpoint.exists, log, START_TIMEOUT)  # one complete checkpoint first
    deadline = time.monotonic() + 60.0
    while not writing_checkpoint() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)  # kill during a later checkpoint write, or at the latest after 60 s

    during = [p.name for p in _temporaries(out)]
    code = _signal(proc, signal.SIGKILL, log)

    assert code == -signal.SIGKILL, log.read_text()
    assert checkpoint.exists(), f"the first checkpoint vanished (killed while writing {during})"
    model, meta = load_checkpoint(checkpoint, expected_bands=5)  # never half-written
    assert meta.epoch >= 1 and meta.patch_size == 64
    assert not any(torch.isnan(p).any() for p in model.parameters())
    state = checkpoint.with_name("model.pth.state")
    if state.exists():
        assert isinstance(torch.load(state, map_location="cpu", weights_only=True), dict)
