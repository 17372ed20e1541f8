"""Tests of geoglacier.model: the network, encoder weights, offline behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from geoglacier import model as model_module
from geoglacier.errors import ConfigError, WeightsUnavailableError
from geoglacier.model import ModelConfig, build_model


def test_default_network_shape() -> None:
    net = build_model(ModelConfig(), encoder_weights=None)
    assert type(net).__name__ == "UnetPlusPlus"
    assert net.encoder.conv1.in_channels == 5
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, 5, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_unknown_encoder_and_arch() -> None:
    with pytest.raises(ConfigError, match="--encoder 'resnet35'"):
        build_model(ModelConfig(encoder="resnet35"), encoder_weights=None)
    with pytest.raises(ConfigError, match="--arch"):
        build_model(ModelConfig(arch="SegNet"), encoder_weights=None)


def test_imagenet_offline_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(model_module, "_hub_reachable", lambda timeout=3.0: False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="--encoder-weights none") as info:
        build_model(ModelConfig(encoder="resnet18"), encoder_weights="imagenet")
    assert time.monotonic() - start < 10
    assert "\n" not in str(info.value)


def test_local_encoder_weights_are_spread_over_five_bands(tmp_path: Path) -> None:
    donor = build_model(ModelConfig(encoder="resnet18", in_channels=3), encoder_weights=None)
    path = tmp_path / "enc.pth"
    torch.save(donor.encoder.state_dict(), path)
    net = build_model(ModelConfig(encoder="resnet18"), encoder_weights=str(path))
    w3 = donor.encoder.conv1.weight.detach()
    w5 = net.encoder.conv1.weight.detach()
    assert w5.shape[1] == 5
    # smp cycles the RGB kernels over the new bands and rescales by 3/5.
    torch.testing.assert_close(w5[:, 0], w3[:, 0] * 3 / 5)
    torch.testing.assert_close(w5[:, 3], w3[:, 0] * 3 / 5)
    torch.testing.assert_close(net.encoder.layer1[0].conv1.weight, donor.encoder.layer1[0].conv1.weight)


def test_bad_local_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="file not found"):
        build_model(ModelConfig(encoder="resnet18"), encoder_weights=str(tmp_path / "none.pth"))
    wrong = build_model(ModelConfig(encoder="resnet34", in_channels=3), encoder_weights=None)
    path = tmp_path / "r34.pth"
    torch.save(wrong.encoder.state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match="do not fit encoder resnet18"):
        build_model(ModelConfig(encoder="resnet18"), encoder_weights=str(path))
