"""Tests of the training loop on a tiny separable task (CPU, U-Net/ResNet18, 64 px patches)."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from geoglacier.checkpoint import load_checkpoint, read_checkpoint
from geoglacier.errors import CheckpointError, ConfigError, OutputExistsError
from geoglacier.training.config import TrainConfig, TrainPaths
from geoglacier.training.loop import train
from geoglacier.training.state import CSV_FIELDS, epoch_seed, read_metrics_csv, rng_state, set_rng_state
from tests.data import write_raster
from tests.scoring import validation_mcc

# Small and fast: U-Net (not ++) with ResNet18, no downloads, no workers unless asked.
FAST = dict(
    arch="Unet",
    encoder="resnet18",
    encoder_weights="none",
    patch_size=64,
    batch_size=4,
    val_fraction=0.25,
    num_workers=0,
    device="cpu",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_separable_scenes(root: Path, size: int = 256, seed: int = 0) -> Path:
    """A scene layout whose glacier is exactly where band 0 is bright (+80 over N(100, 20) noise).

    Glacier covers about 37% of the scene in smooth blobs, so every 64 px window holds
    both classes; a model that learns "band 0 high" reaches MCC close to 1.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    field = (
        np.sin(yy / 9.0 + rng.uniform(0, 6))
        + np.cos(xx / 7.0 + rng.uniform(0, 6))
        + 0.5 * np.sin((xx + yy) / 13.0)
    )
    mask = (field > 0.3).astype(np.uint8)
    image = rng.normal(100, 20, (5, size, size)).astype(np.float32)
    image[0] += 80 * mask
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    write_raster(root / "images" / "tile.tif", image)
    write_raster(root / "masks" / "tile.tif", mask)
    return root


@pytest.fixture(scope="module")
def separable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("separable") / "data")


def _metrics(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _evaluate(
    model: torch.nn.Module, dataset: torch.utils.data.Dataset, batch_size: int = 4, amp: bool = True
) -> float:
    """Validation MCC in the precision training validated in (bf16 where the CPU has it natively)."""
    return validation_mcc(model, dataset, TrainConfig(amp=amp), batch_size)


@pytest.fixture(scope="module")
def learned(separable: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, list[str]]:
    """One 3-epoch run shared by the learning and checkpoint tests."""
    out = tmp_path_factory.mktemp("learned") / "model.pth"
    lines: list[str] = []
    result = train(separable, out, epochs=3, lr=2e-3, patches_per_epoch=64, log=lines.append, **FAST)
    return out, result, lines


def test_learns_a_separable_task(learned: tuple[Path, object, list[str]]) -> None:
    _, result, lines = learned
    assert result.best_val_mcc >= 0.9
    assert result.epochs == 3 and len(result.history) == 3
    epoch_lines = [line for line in lines if line.startswith("Epoch")]
    assert len(epoch_lines) == 3
    pattern = r"Epoch (\d+) \| Loss: \d+\.\d{4} \| Train MCC: -?\d\.\d\d \| Val MCC: -?\d\.\d\d"
    assert [int(re.fullmatch(pattern, line).group(1)) for line in epoch_lines] == [1, 2, 3]
    saved = [line for line in lines if line.startswith("Model saved")]
    assert saved and saved[-1] == f"Model saved (Best Val MCC: {result.best_val_mcc:.2f})"
    # The loss falls as the model learns.
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_metrics_files_beside_the_checkpoint(learned: tuple[Path, object, list[str]]) -> None:
    out, result, _ = learned
    paths = TrainPaths.for_checkpoint(out)
    assert paths.metrics_csv == out.parent / "model.metrics.csv"
    assert paths.metrics_png == out.parent / "model.metrics.png"
    assert paths.state == out.parent / "model.pth.state"
    rows = read_metrics_csv(paths.metrics_csv)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(CSV_FIELDS)
    for row, hist in zip(rows, result.history, strict=True):
        assert row == pytest.approx(hist)
    assert paths.metrics_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.parent.glob(".geoglacier-tmp-*"))  # no temporaries left behind


def test_checkpoint_holds_the_best_epoch(learned: tuple[Path, object, list[str]], separable: Path) -> None:
    from geoglacier.training.datasets import make_datasets

    out, result, _ = learned
    raw = torch.load(out, map_location="cpu", weights_only=True)  # plain data only
    model, meta = load_checkpoint(out, expected_bands=5)
    meta2, state = read_checkpoint(out)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    best = max(result.history, key=lambda r: r["val_mcc"])
    assert meta.epoch == result.best_epoch == best["epoch"]
    epoch_metrics = {k: best[k] for k in ("train_mcc", "val_mcc", "loss", "val_loss")}
    assert {k: meta.metrics[k] for k in epoch_metrics} == pytest.approx(epoch_metrics)
    assert (meta.model.arch, meta.model.encoder, meta.model.in_channels) == ("Unet", "resnet18", 5)
    # Calibration (on by default) fitted the temperature; the threshold stays 0.5.
    assert meta.patch_size == 64 and meta.threshold == 0.5
    assert meta.temperature == pytest.approx(result.calibration.temperature)
    assert meta.metrics["val_mcc_tuned"] >= best["val_mcc"] - 0.01
    assert meta.bands == ("red", "green", "blue", "nir", "ndvi")
    data = make_datasets(separable, patch_size=64, val_fraction=0.25, seed=0, augment=False)
    assert meta.mean == pytest.approx(data.normalization.mean)
    assert meta.std == pytest.approx(data.normalization.std)
    assert raw["train_config"] == TrainConfig(epochs=3, lr=2e-3, patches_per_epoch=64, **FAST).to_dict()
    # The saved weights reproduce the validation MCC recorded for them.
    assert _evaluate(model, data.val) == pytest.approx(meta.metrics["val_mcc"], abs=1e-6)


def test_same_seed_same_metrics_with_workers(separable: Path, tmp_path: Path) -> None:
    opts = {**FAST, "num_workers": 2, "epochs": 1, "patches_per_epoch": 8, "lr": 1e-3}
    a = train(separable, tmp_path / "a.pth", log=lambda _: None, **opts)
    b = train(separable, tmp_path / "b.pth", log=lambda _: None, **opts)
    c = train(separable, tmp_path / "c.pth", log=lambda _: None, **{**opts, "seed": 1})
    assert _metrics(a.history) == _metrics(b.history)
    assert _metrics(a.history) != _metrics(c.history)
    _, sa = read_checkpoint(tmp_path / "a.pth")
    _, sb = read_checkpoint(tmp_path / "b.pth")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resumed_run_equals_uninterrupted_run(separable: Path, tmp_path: Path) -> None:
    opts = {**FAST, "patches_per_epoch": 8, "lr": 1e-3}
    log: list[str] = []
    full = train(separable, tmp_path / "full.pth", epochs=3, log=log.append, **opts)
    assert log[0].startswith("Validation: ") and "8 training windows" in log[0]  # a new run says its split
    part = tmp_path / "part.pth"
    first = train(separable, part, epochs=1, log=lambda _: None, **opts)
    assert first.epochs == 1
    lines: list[str] = []
    rest = train(separable, part, epochs=3, resume=True, log=lines.append, **opts)
    assert rest.resumed_from == 1
    assert lines[0].startswith("Resuming from epoch 1 of 3")
    assert _metrics(rest.history) == _metrics(full.history)
    assert [r["epoch"] for r in read_metrics_csv(TrainPaths.for_checkpoint(part).metrics_csv)] == [1, 2, 3]
    meta_full, state_full = read_checkpoint(tmp_path / "full.pth")
    meta_part, state_part = read_checkpoint(part)
    assert meta_full.epoch == meta_part.epoch and meta_full.metrics == meta_part.metrics
    assert all(torch.equal(state_full[k], state_part[k]) for k in state_full)
    # Resuming a finished run does nothing more.
    again = train(separable, part, epochs=3, resume=True, log=lambda _: None, **opts)
    assert again.resumed_from == 3 and _metrics(again.history) == _metrics(full.history)


def test_classic_layout_trains(tmp_path: Path) -> None:
    from geoglacier.synthetic import write_classic_layout

    write_classic_layout(tmp_path / "classic", n=4, size=64, seed=0)
    result = train(tmp_path / "classic", tmp_path / "m.pth", epochs=1, log=lambda _: None, **FAST)
    model, meta = load_checkpoint(tmp_path / "m.pth")
    assert meta.epoch == 1 and result.epochs == 1
    assert math.isfinite(meta.metrics["loss"]) and math.isfinite(meta.metrics["val_mcc"])


def test_existing_output_is_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "model.pth"
    out.write_bytes(b"keep me")
    # The data folder does not exist: an output check that came later would fail differently.
    with pytest.raises(OutputExistsError, match="model.pth already exists"):
        train(tmp_path / "missing", out, **FAST)
    assert out.read_bytes() == b"keep me"
    csv_only = tmp_path / "other.pth"
    (tmp_path / "other.metrics.csv").write_text("epoch\n")
    with pytest.raises(OutputExistsError, match="other.metrics.csv"):
        train(tmp_path / "missing", csv_only, **FAST)


def test_resume_refuses_a_different_recipe(separable: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    train(separable, out, epochs=1, patches_per_epoch=8, log=lambda _: None, **FAST)
    with pytest.raises(ConfigError, match="--batch-size"):
        train(separable, out, epochs=2, resume=True, patches_per_epoch=8, **{**FAST, "batch_size": 2})


def _as_older_state(path: Path) -> None:
    """Rewrite a training state as a geoglacier before dropout, sampling and the new split wrote it."""
    state = torch.load(path, weights_only=False)
    del state["config"]["dropout"], state["config"]["sampling"], state["split_version"]
    torch.save(state, path)


def test_resume_of_an_older_state(separable: Path, tmp_path: Path) -> None:
    from geoglacier.synthetic import write_classic_layout

    # classic layout (split unchanged): missing options compare with what runs did before them
    classic = tmp_path / "classic"
    write_classic_layout(classic, n=4, size=64, seed=0)
    out = tmp_path / "c.pth"
    train(classic, out, epochs=1, log=lambda _: None, **FAST)
    _as_older_state(tmp_path / "c.pth.state")
    with pytest.raises(ConfigError, match="started with --dropout 0.0, not 0.3"):
        train(classic, out, epochs=2, resume=True, dropout=0.3, **FAST)
    with pytest.raises(ConfigError, match="started with --sampling uniform, not balanced"):
        train(classic, out, epochs=2, resume=True, sampling="balanced", **FAST)
    assert train(classic, out, epochs=2, resume=True, log=lambda _: None, **FAST).resumed_from == 1
    # scene layout: its validation blocks changed, so the older state is refused first
    out = tmp_path / "s.pth"
    train(separable, out, epochs=1, patches_per_epoch=8, log=lambda _: None, **FAST)
    _as_older_state(tmp_path / "s.pth.state")
    with pytest.raises(ConfigError, match="other validation blocks.*--overwrite"):
        train(separable, out, epochs=2, resume=True, patches_per_epoch=8, dropout=0.3, **FAST)


def test_resume_from_a_damaged_state_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    (tmp_path / "m.pth.state").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="m.pth.state: unreadable training state"):
        train(tmp_path / "missing", out, resume=True, **FAST)


def test_resume_without_state_but_existing_checkpoint_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "m.pth"
    out.write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="no training state"):
        train(tmp_path / "missing", out, resume=True, **FAST)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"lr": -1.0}, "--lr"),
        ({"alpha": 2.0}, "--alpha"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"num_workers": -1}, "--num-workers"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_raise_config_error(tmp_path: Path, override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train(tmp_path, tmp_path / "m.pth", **{**FAST, **override})


def test_unknown_encoder_and_bad_device_fail_before_reading_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--encoder"):
        train(tmp_path / "missing", tmp_path / "m.pth", **{**FAST, "encoder": "resnet0"})
    with pytest.raises(ConfigError, match="--device"):
        train(tmp_path / "missing", tmp_path / "m.pth", **{**FAST, "device": "tpu"})
    assert not (tmp_path / "m.pth").exists()


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_epoch_seeds_differ_by_epoch_and_seed() -> None:
    seeds = {epoch_seed(s, e) for s in range(3) for e in range(1, 50)}
    assert len(seeds) == 3 * 49
    assert epoch_seed(0, 1) == epoch_seed(0, 1)


@pytest.mark.parametrize(
    ("native", "amp", "expected"), [(True, True, "bf16"), (False, True, None), (True, False, None)]
)
def test_cpu_training_uses_bf16_only_where_the_cpu_has_it(monkeypatch, native, amp, expected):
    from geoglacier.training import loop

    monkeypatch.setattr(loop, "cpu_has_bf16", lambda: native)
    dtype = loop._amp_dtype(TrainConfig(amp=amp), torch.device("cpu"))
    assert dtype == (torch.bfloat16 if expected == "bf16" else None)


def test_ema_checkpoint_is_the_moving_average_of_the_steps(
    separable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decay, name = 0.6, "encoder.conv1.weight"
    steps: list[torch.Tensor] = []
    step = torch.optim.AdamW.step

    def recording_step(self: torch.optim.Optimizer, *args: object, **kwargs: object) -> object:
        out = step(self, *args, **kwargs)
        steps.append(self.param_groups[0]["params"][0].detach().clone())  # the first conv's weight
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    out = tmp_path / "ema.pth"
    opts = {**FAST, "patches_per_epoch": 12, "lr": 1e-2, "amp": False, "calibrate": False}
    result = train(separable, out, epochs=1, ema=decay, log=lambda _: None, **opts)
    assert len(steps) == 3
    expected = steps[0]  # the average starts at the weights after the first step
    for w in steps[1:]:
        expected = decay * expected + (1 - decay) * w
    meta, state = read_checkpoint(out)
    assert torch.allclose(state[name], expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(state[name], steps[-1])  # not the raw weights
    # The recorded validation MCC is that of the averaged weights the checkpoint holds.
    model, _ = load_checkpoint(out)
    from geoglacier.training.datasets import make_datasets

    val = make_datasets(separable, patch_size=64, val_fraction=0.25, seed=0, augment=False).val
    assert _evaluate(model.eval(), val, amp=False) == pytest.approx(result.best_val_mcc, abs=1e-6)


def test_ema_run_resumes_to_the_uninterrupted_result(separable: Path, tmp_path: Path) -> None:
    opts = {**FAST, "patches_per_epoch": 8, "lr": 1e-3, "ema": 0.9, "calibrate": False}
    full = train(separable, tmp_path / "full.pth", epochs=2, log=lambda _: None, **opts)
    train(separable, tmp_path / "part.pth", epochs=1, log=lambda _: None, **opts)
    rest = train(separable, tmp_path / "part.pth", epochs=2, resume=True, log=lambda _: None, **opts)
    assert _metrics(rest.history) == _metrics(full.history)
    a, b = read_checkpoint(tmp_path / "full.pth")[1], read_checkpoint(tmp_path / "part.pth")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="--ema"):
        train(separable, tmp_path / "bad.pth", epochs=1, log=lambda _: None, **{**opts, "ema": 1.0})
