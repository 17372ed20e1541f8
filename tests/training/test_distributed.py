"""torchrun on uneven shares, stalled ranks, and SIGTERM during training.

Validation shares differ between ranks whenever the number of validation samples is not
a multiple of the number of processes (one rank may hold none): these runs must end, and
their all-reduced validation MCC must equal a single-process re-score of the checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import load_checkpoint
from geoglacier.io.atomic import TMP_PREFIX
from geoglacier.training.config import TrainConfig, TrainPaths
from geoglacier.training.datasets import make_datasets
from geoglacier.training.state import read_metrics_csv
from tests.cli_groups import train_group
from tests.data import glacier_mask, scene_array, write_raster
from tests.scoring import validation_mcc
from tests.training.test_training import write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--arch", "Unet", "--encoder", "resnet18", "--encoder-weights", "none", "--device", "cpu"]
FAST += ["--patch-size", "64", "--batch-size", "4", "--num-workers", "0"]
RUNNER = "from geoglacier.cli.main import main\nmain()\n"
# Rank 1 stalls before validation: rank 0 must give up after --dist-timeout, not hang.
STALL = (
    "import os, time\n"
    "import geoglacier.training.loop as loop\n"
    "if os.environ.get('RANK') == '1':\n"
    "    loop._validate = lambda *a, **k: time.sleep(600)\n"
    "from geoglacier.cli.main import main\n"
    "main()\n"
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _classic(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for k in range(n):
        data = scene_array(64, 64, seed=40 + k)
        np.save(root / f"masked_t{k}.npy", np.ascontiguousarray(data.transpose(1, 2, 0)))
        write_raster(root / f"t{k}.tif", glacier_mask(data), crs=None, tiled=False)
    return root


def _torchrun(script: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), "train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def _rescore(out: Path, data: Path, val_fraction: float) -> tuple[float, int]:
    """Validation MCC of the checkpoint in one process, and the number of samples scored.

    In the precision training validated in (bf16 autocast where this CPU has native bf16).
    """
    model, meta = load_checkpoint(out)
    val = make_datasets(data, patch_size=64, val_fraction=val_fraction, seed=0, augment=False).val
    return validation_mcc(model, val, TrainConfig(**meta.train_config)), len(val)


@pytest.mark.parametrize(("val_fraction", "n_val"), [(0.2, 1), (0.4, 2), (0.6, 3)])
def test_torchrun_classic_layout_with_uneven_validation(
    tmp_path: Path, val_fraction: float, n_val: int
) -> None:
    data = _classic(tmp_path / "classic", 5)
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    out = tmp_path / "ddp.pth"
    args = [str(data), "--out", str(out), *FAST, "--epochs", "1", "--val-fraction", str(val_fraction)]
    started = time.monotonic()
    proc = _torchrun(script, *args, "--dist-timeout", "60")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert time.monotonic() - started < 240
    assert proc.stdout.count("Epoch 1 | ") == 1
    _, meta = load_checkpoint(out)
    mcc, scored = _rescore(out, data, val_fraction)
    assert scored == n_val
    assert np.isfinite(meta.metrics["val_mcc"])
    assert mcc == pytest.approx(meta.metrics["val_mcc"], abs=1e-3)


def test_torchrun_scene_layout_matches_single_process_rescore(tmp_path: Path) -> None:
    data = write_separable_scenes(tmp_path / "scenes", size=192)
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    out = tmp_path / "ddp.pth"
    args = [str(data), "--out", str(out), *FAST, "--epochs", "1", "--patches-per-epoch", "6"]
    proc = _torchrun(script, *args, "--val-fraction", "0.25", "--dist-timeout", "60")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    _, meta = load_checkpoint(out)
    mcc, scored = _rescore(out, data, 0.25)
    assert scored >= 1
    assert mcc == pytest.approx(meta.metrics["val_mcc"], abs=1e-3)


def test_a_stalled_rank_ends_the_job_after_the_timeout(tmp_path: Path) -> None:
    data = _classic(tmp_path / "classic", 5)
    script = tmp_path / "stall.py"
    script.write_text(STALL)
    out = tmp_path / "ddp.pth"
    started = time.monotonic()
    proc = _torchrun(script, str(data), "--out", str(out), *FAST, "--epochs", "1", "--dist-timeout", "5")
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 200, f"took {elapsed:.0f} s"
    text = proc.stdout + proc.stderr
    assert "--dist-timeout" in text, text[-3000:]
    assert not out.exists()


# ------------------------------------------------------------------------------ SIGTERM


_group = train_group


def test_sigterm_keeps_the_last_epoch_and_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = write_separable_scenes(tmp_path / "data", size=192)
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    common = [*FAST, "--epochs", "3", "--patches-per-epoch", "24", "--val-fraction", "0.25"]
    out = tmp_path / "run" / "model.pth"
    out.parent.mkdir()
    paths = TrainPaths.for_checkpoint(out)
    proc = subprocess.Popen(
        [sys.executable, str(script), "train", str(data), "--out", str(out), *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 300
        while not paths.state.exists():  # written atomically: epoch 1 is complete, epoch 2 runs
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no training state after 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    kept = torch.load(paths.state, map_location="cpu", weights_only=True)["epoch"]
    assert proc.returncode == 130, stdout + stderr
    assert 1 <= kept < 3
    assert f"keeps epoch {kept} of 3" in stderr and "--resume" in stderr
    assert "segment" not in stderr.lower()
    assert not list(out.parent.glob(f"{TMP_PREFIX}*")), "a temporary was left behind"
    assert len(read_metrics_csv(paths.metrics_csv)) == kept

    resumed = CliRunner().invoke(_group(), ["train", str(data), "--out", str(out), *common, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    straight_out = tmp_path / "straight" / "model.pth"
    straight_out.parent.mkdir()
    straight = CliRunner().invoke(_group(), ["train", str(data), "--out", str(straight_out), *common])
    assert straight.exit_code == 0, straight.output

    def rows(p: Path) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics_csv(p)]

    got, want = rows(paths.metrics_csv), rows(TrainPaths.for_checkpoint(straight_out).metrics_csv)
    assert [r["epoch"] for r in got] == [1, 2, 3]
    for a, b in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
