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


def _seeded(config: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config, encoder_weights=None)


def test_no_dropout_is_smps_network_unchanged() -> None:
    import segmentation_models_pytorch as smp

    net = _seeded(ModelConfig(arch="Unet", encoder="resnet18", dropout=0.0))
    torch.manual_seed(0)
    reference = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=5, classes=1)
    assert type(net.segmentation_head) is type(reference.segmentation_head)
    assert list(net.state_dict()) == list(reference.state_dict())
    for key, value in reference.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key
    x = torch.randn(2, 5, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(net.eval()(x), reference.eval()(x))
    # the checkpoint's model entry is the one earlier versions wrote (their reader refuses unknown keys)
    assert ModelConfig().to_dict() == {
        "arch": "UnetPlusPlus",
        "encoder": "resnet34",
        "in_channels": 5,
        "classes": 1,
    }
    assert ModelConfig(dropout=0.25).to_dict()["dropout"] == 0.25


@pytest.mark.parametrize("arch", ["UnetPlusPlus", "Unet", "FPN", "DeepLabV3Plus", "Linknet"])
def test_dropout_keeps_every_weight_name(arch: str) -> None:
    plain = _seeded(ModelConfig(arch=arch, encoder="resnet18"))
    dropped = _seeded(ModelConfig(arch=arch, encoder="resnet18", dropout=0.5))
    assert list(dropped.state_dict()) == list(plain.state_dict())
    assert "segmentation_head.0.weight" in dropped.state_dict()
    assert isinstance(dropped.segmentation_head.dropout, torch.nn.Dropout2d)
    assert list(dropped.segmentation_head.children())[0] is dropped.segmentation_head.dropout  # runs first
    plain.load_state_dict(dropped.state_dict())  # strict, both ways
    dropped.load_state_dict(plain.state_dict())


def test_dropout_zeroes_whole_decoder_channels_in_training() -> None:
    net = _seeded(ModelConfig(arch="Unet", encoder="resnet18", dropout=0.5)).train()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    net.segmentation_head.dropout.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    x = torch.randn(4, 5, 64, 64, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    with torch.no_grad():
        first, second = net(x), net(x)
    features, dropped = seen[0]
    assert features.shape == (4, 16, 64, 64)  # the decoder's output, before the head's convolution
    zeroed = (dropped == 0).flatten(2).all(dim=2)  # per sample and channel
    kept = ~zeroed
    # a channel is either all zero or the features scaled by 1 / (1 - p)
    torch.testing.assert_close(dropped[kept], 2 * features[kept])
    assert (features[zeroed] != 0).any()  # those were zeroed by dropout, not by ReLU
    assert 16 <= int(zeroed.sum()) <= 48  # about half of 64 channels (binomial, p = 0.5)
    assert not torch.equal(first, second)


def test_dropout_is_the_identity_in_eval_mode() -> None:
    plain = _seeded(ModelConfig(arch="Unet", encoder="resnet18")).eval()
    dropped = _seeded(ModelConfig(arch="Unet", encoder="resnet18", dropout=0.5))
    dropped.train()
    x = torch.randn(2, 5, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dropped(x)  # a training pass moves the BatchNorm statistics: copy the weights after it
        plain.load_state_dict(dropped.state_dict())
        dropped.eval()
        first, second = dropped(x), dropped(x)
        assert torch.equal(first, second)
        assert torch.equal(first, plain(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range(p: float) -> None:
    with pytest.raises(ConfigError, match=r"--dropout must be in \[0, 1\)"):
        build_model(ModelConfig(encoder="resnet18", dropout=p), encoder_weights=None)
