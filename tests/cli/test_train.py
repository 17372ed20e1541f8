"""Tests of ``geoglacier train``: options, one-line errors, SIGKILL + --resume, torchrun."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import load_checkpoint
from geoglacier.cli.train import train as train_command
from geoglacier.training.config import TrainConfig, TrainPaths
from geoglacier.training.state import read_metrics_csv
from tests.cli_groups import train_group
from tests.scoring import validation_mcc
from tests.training.test_training import write_separable_scenes

FAST_ARGS = [
    "--arch", "Unet", "--encoder", "resnet18", "--encoder-weights", "none", "--patch-size", "64",
    "--batch-size", "4", "--val-fraction", "0.25", "--device", "cpu",
]  # fmt: skip

# A stand-in for `python -m geoglacier` that works whether or not the lead has
# registered the command yet (add_command is idempotent for the same name).
RUNNER = (
    "from geoglacier.cli.main import cli\n"
    "from geoglacier.cli.train import train\n"
    "cli.add_command(train)\n"
    "cli(prog_name='geoglacier')\n"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("cli") / "data")


@pytest.fixture
def group() -> click.Group:
    """A group like ``geoglacier``'s, which turns library errors into one-line messages."""
    return train_group()


@pytest.fixture
def runner_script(tmp_path: Path) -> Path:
    path = tmp_path / "geoglacier_cli.py"
    path.write_text(RUNNER)
    return path


def _invoke(group: click.Group, *args: str | Path) -> click.testing.Result:
    return CliRunner().invoke(group, ["train", *map(str, args)])


def test_every_config_field_is_an_option_of_the_same_name() -> None:
    options = {p.name for p in train_command.params}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields <= options
    assert options - fields == {
        "data_dir", "out", "resume", "overwrite", "ensemble",
        "inventory", "error_folds", "error_level", "error_gap", "id_column",
    }  # fmt: skip


def test_train_writes_checkpoint_and_resume_extends_a_run(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.pth"
    common = [data, "--out", out, *FAST_ARGS, "--patches-per-epoch", "8", "--num-workers", "0"]
    result = _invoke(group, *common, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "Epoch 1 | Loss: " in result.output
    assert "Model saved (Best Val MCC: " in result.output
    assert "Best epoch 1 of 1" in result.output
    _, meta = load_checkpoint(out)
    assert meta.epoch == 1 and meta.train_config["epochs"] == 1
    before = out.read_bytes()
    again = _invoke(group, *common, "--epochs", "1")
    assert again.exit_code != 0
    assert "already exists" in again.output and "--overwrite" in again.output
    assert "--resume" in again.output
    assert out.read_bytes() == before
    both = _invoke(group, *common, "--epochs", "2", "--resume", "--overwrite")
    assert both.exit_code != 0 and "conflict" in both.output
    assert out.read_bytes() == before
    more = _invoke(group, *common, "--epochs", "2", "--resume")
    assert more.exit_code == 0, more.output
    assert "Resuming from epoch 1 of 2" in more.output and "Epoch 2 | " in more.output
    assert [r["epoch"] for r in read_metrics_csv(tmp_path / "model.metrics.csv")] == [1, 2]


def test_resume_without_a_state_says_it_starts_a_new_run(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mistyped.pth"
    args = [data, "--out", out, *FAST_ARGS, "--patches-per-epoch", "4", "--num-workers", "0"]
    result = _invoke(group, *args, "--epochs", "1", "--resume", "--no-calibrate")
    assert result.exit_code == 0, result.output
    assert f"--resume: there is no training state {out}.state; starting a new run" in result.output
    assert "Resuming" not in result.output and "Epoch 1 | " in result.output
    again = _invoke(group, *args, "--epochs", "2", "--resume", "--no-calibrate")
    assert again.exit_code == 0, again.output
    assert "no training state" not in again.output and "Resuming from epoch 1 of 2" in again.output


def test_resume_on_other_data_is_refused_but_a_moved_folder_resumes(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    import shutil

    moved = shutil.copytree(data, tmp_path / "moved")
    out = tmp_path / "m.pth"
    args = ["--out", out, *FAST_ARGS, "--patches-per-epoch", "4", "--num-workers", "0", "--no-calibrate"]
    assert _invoke(group, data, *args, "--epochs", "1").exit_code == 0
    changed = next(p for p in sorted(moved.rglob("*.tif")))
    grown = changed.read_bytes() + b"\0"  # another file under the same name
    changed.write_bytes(grown)
    other = _invoke(group, moved, *args, "--epochs", "2", "--resume")
    assert other.exit_code != 0 and "started on other data" in other.output
    assert changed.relative_to(moved).as_posix() in other.output and "Traceback" not in other.output
    changed.write_bytes(grown[:-1])
    same = _invoke(group, moved, *args, "--epochs", "2", "--resume")  # same files, another place
    assert same.exit_code == 0, same.output
    assert "Resuming from epoch 1 of 2" in same.output


def test_existing_output_fails_before_any_work(group: click.Group, tmp_path: Path) -> None:
    out = tmp_path / "model.pth"
    out.write_bytes(b"precious")
    result = _invoke(group, tmp_path / "no-such-data", "--out", out, *FAST_ARGS)
    assert result.exit_code != 0
    assert "model.pth already exists; pass --overwrite" in result.output
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encoder", "resnet0"], "--encoder 'resnet0' is not an smp encoder"),
        (["--device", "tpu"], "--device 'tpu' is not a device"),
        (["--patch-size", "50"], "--patch-size must be a positive multiple of 32"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
        (["--no-calibrate", "--tune-threshold"], "--tune-threshold tunes the threshold during calibration"),
    ],
)
def test_bad_options_give_one_line_errors(
    group: click.Group, data: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = _invoke(group, data, "--out", tmp_path / "m.pth", *FAST_ARGS, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert not (tmp_path / "m.pth").exists()


def test_imagenet_weights_offline_is_a_one_line_error(
    data: Path, tmp_path: Path, runner_script: Path
) -> None:
    # An empty Hugging Face cache and offline mode: the weights cannot come from anywhere.
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    args = [str(data), "--out", str(tmp_path / "m.pth"), "--encoder", "resnet18", "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, str(runner_script), "train", *args, "--encoder-weights", "imagenet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot download ImageNet weights for encoder resnet18" in lines[0]
    assert "--encoder-weights none" in lines[0]
    assert not (tmp_path / "m.pth").exists()


def test_resume_after_sigkill_completes_the_run(
    group: click.Group, data: Path, tmp_path: Path, runner_script: Path
) -> None:
    out = tmp_path / "model.pth"
    paths = TrainPaths.for_checkpoint(out)
    epochs = 3
    args = [str(data), "--out", str(out), *FAST_ARGS, "--epochs", str(epochs), "--patches-per-epoch", "8"]
    args += ["--num-workers", "0"]
    proc = subprocess.Popen(
        [sys.executable, str(runner_script), "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 300
        while not paths.state.exists():  # written atomically: complete once it exists
            if proc.poll() is not None:
                pytest.fail(f"training ended before its first epoch: {proc.stdout.read().decode()}")
            assert time.monotonic() < deadline, "no training state after 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed_at = torch.load(paths.state, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= killed_at < epochs
    result = _invoke(group, *args, "--resume")
    assert result.exit_code == 0, result.output
    assert f"Resuming from epoch {killed_at} of {epochs}" in result.output
    rows = read_metrics_csv(paths.metrics_csv)
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    model, meta = load_checkpoint(out)
    best = max(rows, key=lambda r: r["val_mcc"])
    assert meta.epoch == best["epoch"]
    assert meta.metrics["val_mcc"] == pytest.approx(best["val_mcc"])
    assert torch.load(paths.state, map_location="cpu", weights_only=True)["epoch"] == epochs


def test_torchrun_two_processes_on_cpu(data: Path, tmp_path: Path, runner_script: Path) -> None:
    from geoglacier.training.datasets import make_datasets

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path / "ddp.pth"
    args = [str(data), "--out", str(out), *FAST_ARGS, "--epochs", "1", "--patches-per-epoch", "16"]
    args += ["--num-workers", "0"]
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(runner_script), "train", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Epoch 1 | ") == 1  # only rank 0 prints
    assert proc.stdout.count("Best epoch") == 1  # the closing line too: rank 1 wrote nothing
    model, meta = load_checkpoint(out)
    assert meta.epoch == 1
    # Validation counts were all-reduced over both ranks: one process over all of the
    # validation windows finds the same MCC with the saved weights.
    val = make_datasets(data, patch_size=64, val_fraction=0.25, seed=0, augment=False).val
    # In the precision it validated in (bf16 where this CPU has native bf16).
    assert validation_mcc(model, val, TrainConfig(**meta.train_config)) == pytest.approx(
        meta.metrics["val_mcc"], abs=1e-3
    )
    # ... and the checkpoint segments a scene.
    from geoglacier.inference.segment import segment_scene

    scene = sorted((data / "images").glob("*.tif"))[0]
    segmented = segment_scene(scene, out, tmp_path / "ddp_mask.tif", device="cpu", progress=False)
    assert segmented.windows_run > 0
    with rasterio.open(scene) as src, rasterio.open(segmented.mask) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)


def test_dropout_is_recorded_locked_on_resume_and_inference_is_deterministic(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    from geoglacier.cli.segment_scene import segment_scene

    out = tmp_path / "model.pth"
    common = [data, "--out", out, *FAST_ARGS, "--patches-per-epoch", "8", "--num-workers", "0"]
    result = _invoke(group, *common, "--epochs", "1", "--dropout", "0.3")
    assert result.exit_code == 0, result.output
    model, meta = load_checkpoint(out)
    assert meta.model.dropout == 0.3 and meta.train_config["dropout"] == 0.3
    assert model.segmentation_head.dropout.p == 0.3 and not model.training
    other = _invoke(group, *common, "--epochs", "2", "--resume", "--dropout", "0.5")
    assert other.exit_code != 0 and "started with --dropout 0.3, not 0.5" in other.output
    assert "Traceback" not in other.output and other.output.strip().count("\n") == 0

    scene = sorted((data / "images").glob("*.tif"))[0]
    probabilities = []
    for name in ("a", "b"):
        args = [scene, "--model", out, "--out", tmp_path / f"{name}.tif", "--probabilities"]
        args += [tmp_path / f"{name}_p.tif", "--window", "64", "--device", "cpu", "--no-progress"]
        run = CliRunner().invoke(segment_scene, list(map(str, args)))
        assert run.exit_code == 0, run.output
        with rasterio.open(tmp_path / f"{name}_p.tif") as ds:
            probabilities.append(ds.read(1))
    assert (probabilities[0] == probabilities[1]).all()
    assert probabilities[0].std() > 0  # a real prediction, not a constant


def test_patch_larger_than_the_scene_is_a_one_line_error(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    result = _invoke(
        group, data, "--out", tmp_path / "m.pth", *FAST_ARGS, "--patch-size", "512", "--epochs", "1",
        "--patches-per-epoch", "1", "--num-workers", "0", "--no-calibrate",
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert "--patch-size 512 is larger than scene" in result.output and "(256x256)" in result.output
    assert "use --patch-size 256 or less" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_without_validation_the_training_mcc_is_never_called_val_mcc(
    group: click.Group, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.pth"
    args = [data, "--out", out, *FAST_ARGS, "--patches-per-epoch", "4", "--num-workers", "0", "--epochs", "1"]
    result = _invoke(group, *args, "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    assert (
        "No validation windows (--val-fraction 0): the best epoch is chosen by training MCC" in result.output
    )
    assert "the checkpoint is not calibrated" in result.output
    assert "Model saved (Best Train MCC: " in result.output
    assert "Best epoch 1 of 1 (Train MCC: " in result.output
    assert "Best Val MCC" not in result.output and "(Val MCC" not in result.output
