"""The checkpoint format: one file that holds everything needed to use a model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(..., weights_only=True)`` and a file holding arbitrary
pickled objects is refused. Keys::

    format          "geoglacier-checkpoint"
    format_version  the oldest reader that understands the file: 1, 2 for per-scene
                    normalisation (a reader of version 1 would apply the stored training
                    statistics to every scene; it refuses a version 2 file instead), 3 for
                    a network trained with dropout (its model entry has a ``dropout`` key
                    that readers of version 2 do not know)
    model           ModelConfig as a dict (arch, encoder, in_channels, classes; dropout only
                    when the network was trained with it: absent means 0)
    state_dict      the network's weights (of the best epoch)
    bands           band names, in order
    normalization   {"mean": [...], "std": [...], "mode": ...}: per band statistics of the
                    training blocks, applied as (x - mean) / std to every scene when mode
                    is "training" (also when "mode" is absent, as in older files); with
                    "scene" each scene is standardised by its own statistics instead
                    (:data:`NORMALIZATION_MODES`), and mean/std are kept for reference
    patch_size      training patch size in pixels (segment-scene's default window)
    threshold       probability above which a pixel is glacier (on the calibrated scale)
    temperature     logits are divided by it before the sigmoid (1 = uncalibrated)
    epoch           the epoch these weights come from (1-based)
    metrics         {"val_mcc": ..., "train_mcc": ..., "loss": ...} of that epoch
    versions        {"geoglacier": ..., "torch": ..., "segmentation_models_pytorch": ...}
    train_config    the options training ran with (plain values)
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoglacier.errors import CheckpointError
from geoglacier.io.atomic import atomic_output
from geoglacier.model import ModelConfig, build_model

FORMAT = "geoglacier-checkpoint"
FORMAT_VERSION = 3

#: How scenes are normalised: ``training`` applies the training blocks' per-band mean and
#: std (stored in the checkpoint) to every scene; ``scene`` standardises every scene by
#: the mean and std of its own valid pixels, in training and at inference.
NORMALIZATION_MODES: tuple[str, ...] = ("training", "scene")


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything in a checkpoint except the weights."""

    model: ModelConfig
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    patch_size: int
    threshold: float = 0.5
    temperature: float = 1.0
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    normalization: str = "training"
    error_model: dict[str, Any] = field(default_factory=dict)
    """The per-glacier error model (:meth:`geoglacier.glaciers.error_model.ErrorModel.to_dict`), or empty."""

    def __post_init__(self) -> None:
        if not (0.0 < self.threshold < 1.0 and self.temperature > 0.0):
            raise ValueError(
                f"threshold {self.threshold} must be in (0, 1) and temperature {self.temperature} positive"
            )
        if self.normalization not in NORMALIZATION_MODES:
            raise ValueError(
                f"normalization {self.normalization!r} is not one of {', '.join(NORMALIZATION_MODES)}"
            )

    @property
    def band_count(self) -> int:
        return self.model.in_channels


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a checkpoint, recorded for provenance."""
    import segmentation_models_pytorch as smp

    from geoglacier._version import __version__

    return {
        "geoglacier": str(__version__),
        "torch": str(torch.__version__),
        "segmentation_models_pytorch": str(smp.__version__),
    }


def format_version(meta: CheckpointMeta) -> int:
    """The oldest reader version that understands a file of ``meta`` (see the module docstring)."""
    if meta.model.dropout:
        return 3
    return 1 if meta.normalization == "training" else 2


def checkpoint_dict(model: nn.Module, meta: CheckpointMeta) -> dict[str, Any]:
    """The plain dict that :func:`save_checkpoint` writes."""
    inner = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().to("cpu").clone() for k, v in inner.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": format_version(meta),
        "model": meta.model.to_dict(),
        "state_dict": state,
        "bands": list(meta.bands),
        "normalization": {
            "mean": [float(v) for v in meta.mean],
            "std": [float(v) for v in meta.std],
            "mode": meta.normalization,
        },
        "patch_size": int(meta.patch_size),
        "threshold": float(meta.threshold),
        "temperature": float(meta.temperature),
        "epoch": int(meta.epoch),
        "metrics": {k: float(v) for k, v in meta.metrics.items()},
        "versions": {k: str(v) for k, v in (meta.versions or package_versions()).items()},
        "train_config": dict(meta.train_config),
        **({"error_model": dict(meta.error_model)} if meta.error_model else {}),
    }


def save_checkpoint(model: nn.Module, meta: CheckpointMeta, path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint atomically (a kill never leaves a half-written file)."""
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(checkpoint_dict(model, meta), tmp)
    return Path(path)


def normalization_mode(norm: Any, path: Path) -> str:
    """The normalisation mode of a checkpoint's ``normalization`` entry (``training`` when absent).

    Raises:
        CheckpointError: a mode this geoglacier does not know.
    """
    mode = norm.get("mode", "training") if isinstance(norm, dict) else "training"
    if mode not in NORMALIZATION_MODES:
        raise CheckpointError(
            f"{path}: unknown normalisation mode {mode!r} (known: {', '.join(NORMALIZATION_MODES)}); "
            "upgrade geoglacier or use another checkpoint"
        )
    return str(mode)


def meta_from_dict(raw: dict[str, Any], path: Path) -> CheckpointMeta:
    """Metadata from a checkpoint's (or an exported model's) plain dict; ``path`` names it in errors.

    Raises:
        CheckpointError: a format newer than this reader, a missing or malformed entry, or
            an unknown normalisation mode.
    """
    try:
        version = int(raw.get("format_version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{path}: format_version {raw.get('format_version')!r} is not a whole number"
        ) from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is newer than this geoglacier reads "
            f"({FORMAT_VERSION}); upgrade geoglacier"
        )
    mode = normalization_mode(raw.get("normalization"), path)
    try:
        model = ModelConfig(**raw["model"])
        norm = raw["normalization"]
        return CheckpointMeta(
            model=model,
            bands=tuple(raw["bands"]),
            mean=tuple(float(v) for v in norm["mean"]),
            std=tuple(float(v) for v in norm["std"]),
            patch_size=int(raw["patch_size"]),
            threshold=float(raw.get("threshold", 0.5)),
            temperature=float(raw.get("temperature", 1.0)),
            epoch=int(raw.get("epoch", 0)),
            metrics=dict(raw.get("metrics", {})),
            versions=dict(raw.get("versions", {})),
            train_config=dict(raw.get("train_config", {})),
            normalization=mode,
            error_model=dict(raw.get("error_model") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint is incomplete ({exc!r}); retrain or re-export it") from exc


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read and check a checkpoint file without building the network."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory; give the .pth file written by 'geoglacier train'")
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found; give the .pth file written by 'geoglacier train'")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # no class or function refused: garbage or another format
            raise CheckpointError(
                f"{p}: not a readable checkpoint (not a PyTorch file, or corrupt); check the file, or give "
                "the .pth file written by 'geoglacier train'"
            ) from exc
        raise CheckpointError(
            f"{p}: refused to load: the file holds arbitrary Python objects, not a geoglacier checkpoint "
            "(only weights-only checkpoints are loaded, for safety)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - zip errors, EOF, bad magic ...
        raise CheckpointError(
            f"{p}: not a readable checkpoint ({type(exc).__name__}); check the file"
        ) from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: not a geoglacier checkpoint (no '{FORMAT}' marker); use a file written by 'geoglacier train'"
        )
    meta = meta_from_dict(raw, p)
    state = raw.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: checkpoint has no weights")
    return meta, state


def band_count_error(path: Path, meta: CheckpointMeta, data_bands: int) -> CheckpointError:
    """The error for data whose band count is not the model's; it names the model's bands."""
    recipe = ",".join(meta.bands)
    named = not all(re.fullmatch(r"band\d+", b) for b in meta.bands)  # band1, band2 ... name no recipe
    how = f"geoglacier stack --bands {recipe}" if named else "geoglacier stack --bands"
    return CheckpointError(
        f"{path}: the model was trained on {meta.band_count} bands ({recipe}) "
        f"but the data has {data_bands}; use a model trained on the same bands or stack "
        f"the scene with that band recipe ({how})"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_bands: int | None = None,
    expected_config: ModelConfig | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, CheckpointMeta]:
    """Build the network a checkpoint describes and load its weights (eval mode).

    ``expected_config`` is matched on architecture and encoder only: the band count is
    ``expected_bands``' job, and training-time dropout has no weights and does nothing in
    eval mode, so a checkpoint trained with it serves wherever one without it would.

    Raises:
        CheckpointError: unreadable file, unsafe pickle, or a checkpoint whose band
            count or architecture differs from what the caller expects.
    """
    p = Path(path)
    meta, state = read_checkpoint(p)
    if expected_bands is not None and meta.band_count != expected_bands:
        raise band_count_error(p, meta, expected_bands)
    if expected_config is not None and (meta.model.arch, meta.model.encoder) != (
        expected_config.arch,
        expected_config.encoder,
    ):
        raise CheckpointError(
            f"{p}: checkpoint is a {meta.model.arch}/{meta.model.encoder}, expected "
            f"{expected_config.arch}/{expected_config.encoder}; pick matching --arch/--encoder or another file"
        )
    model = build_model(meta.model, encoder_weights=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{p}: weights do not fit a {meta.model.arch}/{meta.model.encoder} with "
            f"{meta.band_count} bands, as the file says it holds; the checkpoint is damaged or was edited: "
            "retrain, or use another checkpoint"
        ) from exc
    model.eval()
    model.to(device)
    return model, meta
