"""Build the segmentation network (smp U-Net++ and relatives) and its encoder weights.

ImageNet weights come from the Hugging Face hub through smp. Our machines have no
network, and the hub client retries for tens of seconds before giving up, so the
cache is tried first and the network probed with a short timeout: offline use fails
at once with a message that names the way out (``none`` or a local file).
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoglacier.errors import ConfigError, WeightsUnavailableError

ARCHITECTURES = ("UnetPlusPlus", "Unet", "FPN", "DeepLabV3Plus", "Linknet")
HUB_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelConfig:
    """What defines the network; stored in every checkpoint.

    Attributes:
        arch: smp architecture (one of :data:`ARCHITECTURES`).
        encoder: smp encoder name.
        in_channels: number of image bands.
        classes: output channels (logits).
        dropout: probability of channel-wise (spatial) dropout on the decoder's output
            features, in front of the segmentation head, while training (0: none). It has
            no parameters and is the identity in eval mode, so it changes neither the
            weights' names nor inference.
    """

    arch: str = "UnetPlusPlus"
    encoder: str = "resnet34"
    in_channels: int = 5
    classes: int = 1
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint; ``dropout`` only when set.

        Without dropout the dict is the one earlier versions wrote, so a checkpoint of the
        default network stays readable by them (their reader refuses unknown keys); a
        missing ``dropout`` reads back as 0.
        """
        raw = asdict(self)
        if not self.dropout:
            del raw["dropout"]
        return raw


def _smp() -> Any:
    import segmentation_models_pytorch as smp

    return smp


def check_config(config: ModelConfig) -> None:
    """Raise :class:`ConfigError` for an unknown architecture or encoder."""
    smp = _smp()
    if config.arch not in ARCHITECTURES:
        raise ConfigError(
            f"--arch {config.arch!r} is not supported; choose one of {', '.join(ARCHITECTURES)}"
        )
    names = smp.encoders.get_encoder_names()
    if config.encoder not in names and not config.encoder.startswith("tu-"):
        close = [n for n in names if n.startswith(config.encoder[:5])][:5]
        raise ConfigError(
            f"--encoder {config.encoder!r} is not an smp encoder; try resnet34, resnet18"
            + (f" or one of {', '.join(close)}" if close else "")
        )
    if config.in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1, got {config.in_channels}")
    check_dropout(config.dropout)


def check_dropout(p: float) -> float:
    """Return ``p`` if it is a dropout probability in [0, 1), else raise :class:`ConfigError`."""
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {p}")
    return p


def add_head_dropout(model: nn.Module, p: float) -> nn.Module:
    """Put ``nn.Dropout2d(p)`` in front of the segmentation head without renaming any weight.

    smp's ``SegmentationHead`` is an ``nn.Sequential`` of convolution, upsampling and
    activation, children ``0``, ``1``, ``2``: inserting dropout at index 0 would shift
    them and rename ``segmentation_head.0.weight``. A Sequential runs its children in
    insertion order whatever their names, so the head becomes one whose first child is
    named ``dropout`` and whose others keep their names. Dropout has no parameters or
    buffers, so the state dict keeps the same keys and the weights load into a network
    with or without it. In eval mode it is the identity (the ONNX exporter leaves it out).

    Returns:
        ``model``, changed in place (unchanged for ``p == 0``).
    """
    if p:
        head = model.segmentation_head
        children = [("dropout", nn.Dropout2d(p)), *head.named_children()]
        model.segmentation_head = nn.Sequential(OrderedDict(children))
    return model


def _construct(config: ModelConfig, in_channels: int) -> nn.Module:
    smp = _smp()
    cls = getattr(smp, config.arch)
    model = cls(
        encoder_name=config.encoder, encoder_weights=None, in_channels=in_channels, classes=config.classes
    )
    return add_head_dropout(model, config.dropout)


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _imagenet_state_dict(encoder: str) -> dict[str, torch.Tensor]:
    """Fetch smp's ImageNet encoder weights: cache first, then the hub if reachable."""
    smp = _smp()
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet")
    if settings is None:
        raise ConfigError(
            f"--encoder {encoder} has no ImageNet weights in smp; use --encoder-weights none or a local file"
        )
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    repo, rev = settings["repo_id"], settings["revision"]
    try:
        path = hf_hub_download(repo, filename="model.safetensors", revision=rev, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: fall through to the network
        if os.environ.get("HF_HUB_OFFLINE") or not _hub_reachable():
            raise WeightsUnavailableError(
                f"cannot download ImageNet weights for encoder {encoder}: {HUB_HOST} is not reachable "
                "(offline); use --encoder-weights none, or --encoder-weights PATH with a local "
                ".safetensors/.pth encoder state dict"
            ) from None
        try:
            path = hf_hub_download(repo, filename="model.safetensors", revision=rev)
        except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
            raise WeightsUnavailableError(
                f"downloading ImageNet weights for encoder {encoder} failed ({type(exc).__name__}); "
                "use --encoder-weights none or a local file"
            ) from exc
    return load_file(path, device="cpu")


def _file_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(
            f"--encoder-weights {path}: file not found; use none, imagenet or the path of an encoder state dict"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailableError(f"--encoder-weights {path}: not a readable state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"--encoder-weights {path}: expected a state dict of tensors")
    return state


def build_model(config: ModelConfig | None = None, encoder_weights: str | None = "imagenet") -> nn.Module:
    """Build the network; ``encoder_weights`` is ``None``/``"none"``, ``"imagenet"`` or a path.

    Pretrained weights are 3-band; smp's own first-convolution adaptation spreads them
    over ``in_channels`` bands, exactly as ``encoder_weights="imagenet"`` would.
    """
    config = config or ModelConfig()
    check_config(config)
    weights = None if encoder_weights in (None, "none", "None", "") else str(encoder_weights)
    if weights is None:
        return _construct(config, config.in_channels)
    state = _imagenet_state_dict(config.encoder) if weights == "imagenet" else _file_state_dict(Path(weights))
    model = _construct(config, 3)
    try:
        model.encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsUnavailableError(
            f"--encoder-weights {weights}: weights do not fit encoder {config.encoder} "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    model.encoder.set_in_channels(config.in_channels, pretrained=True)
    return model
