"""Tests of geoglacier.checkpoint: round trip, weights_only, refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import geoglacier.checkpoint as checkpoint_module
from geoglacier.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint, save_checkpoint
from geoglacier.errors import CheckpointError
from geoglacier.model import ModelConfig, build_model


def _meta(**kw: object) -> CheckpointMeta:
    base = dict(
        model=ModelConfig(encoder="resnet18"),
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(1.0, 2.0, 3.0, 4.0, 0.1),
        std=(5.0, 6.0, 7.0, 8.0, 0.2),
        patch_size=64,
        threshold=0.4,
        epoch=3,
        metrics={"val_mcc": 0.8, "train_mcc": 0.85},
        train_config={"lr": 1e-4, "alpha": 0.7},
    )
    base.update(kw)
    return CheckpointMeta(**base)  # type: ignore[arg-type]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = build_model(ModelConfig(encoder="resnet18"), encoder_weights=None)
    return save_checkpoint(net, _meta(), tmp_path / "model.pth"), net


def test_round_trip(saved: tuple[Path, torch.nn.Module]) -> None:
    path, net = saved
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "geoglacier-checkpoint"
    assert raw["versions"]["torch"] == str(torch.__version__)
    model, meta = load_checkpoint(path, expected_bands=5)
    assert meta == _meta(versions=meta.versions)
    assert not model.training
    for key, value in net.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net.eval()(x))


def test_other_band_count_is_refused(saved: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(
        CheckpointError, match=r"trained on 5 bands \(red,green,blue,nir,ndvi\) but the data has 4"
    ):
        load_checkpoint(saved[0], expected_bands=4)


def test_other_architecture_is_refused(saved: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(CheckpointError, match="UnetPlusPlus/resnet18, expected Unet/resnet18"):
        load_checkpoint(saved[0], expected_config=ModelConfig(arch="Unet", encoder="resnet18"))


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("pwned",))


def test_pickled_objects_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"format": "geoglacier-checkpoint", "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(text)
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a geoglacier checkpoint"):
        read_checkpoint(other)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        read_checkpoint(plain)


def test_mismatched_weights(tmp_path: Path) -> None:
    net = build_model(ModelConfig(encoder="resnet18", in_channels=4), encoder_weights=None)
    path = save_checkpoint(net, _meta(), tmp_path / "m.pth")  # meta claims 5 bands
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_dropout_is_recorded_but_is_no_other_architecture(
    saved: tuple[Path, torch.nn.Module], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain_path, plain = saved
    assert "dropout" not in torch.load(plain_path, weights_only=True)["model"]  # as earlier versions wrote
    assert read_checkpoint(plain_path)[0].model.dropout == 0.0
    config = ModelConfig(encoder="resnet18", dropout=0.3)
    path = save_checkpoint(build_model(config, None), _meta(model=config), tmp_path / "dropout.pth")
    raw = torch.load(path, weights_only=True)
    assert raw["model"]["dropout"] == 0.3
    # readers from before dropout existed (format 2) say to upgrade instead of "incomplete"
    assert raw["format_version"] == 3 and torch.load(plain_path, weights_only=True)["format_version"] < 3
    with monkeypatch.context() as m:
        m.setattr(checkpoint_module, "FORMAT_VERSION", 2)
        with pytest.raises(CheckpointError, match=r"checkpoint format 3 is newer .*upgrade geoglacier"):
            read_checkpoint(path)
    # dropout has no weights and is the identity in eval mode: architectures that differ
    # only by it are the same network for inference, either way round
    model, meta = load_checkpoint(path, expected_config=ModelConfig(encoder="resnet18"))
    assert meta.model == config and model.segmentation_head.dropout.p == 0.3 and not model.training
    load_checkpoint(plain_path, expected_config=config)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), plain.eval()(x))
