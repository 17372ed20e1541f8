"""The training recipe and what a run is made of: its config, its files, its result.

:class:`TrainConfig` holds every option of ``geoglacier train`` and checks their ranges;
:class:`TrainPaths` names the files of one run; :class:`TrainResult` is what it returns.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoglacier.checkpoint import NORMALIZATION_MODES
from geoglacier.errors import ConfigError, RecipeError
from geoglacier.model import check_dropout
from geoglacier.products.recipes import format_recipe, parse_recipe
from geoglacier.training.sampling import check_sampling_mode

# Fields that define the run: resuming with a different value would mix two recipes.
RESUME_LOCKED = (
    "arch",
    "encoder",
    "bands",
    "batch_size",
    "lr",
    "weight_decay",
    "alpha",
    "patch_size",
    "patches_per_epoch",
    "val_fraction",
    "seed",
    "augment",
    "augment_radiometric",
    "ema",
    "dropout",
    "lr_factor",
    "lr_patience",
    "threshold",
    "normalization",
    "sampling",
)
# What a run started before a locked field existed did: a state without the field is
# compared with this value (fields not listed were there from the start).
RESUME_LEGACY = {
    "augment_radiometric": False,
    "ema": 0.0,
    "dropout": 0.0,
    "normalization": "training",
    "sampling": "uniform",
}


def default_num_workers() -> int:
    """DataLoader workers when none are asked for: 0 up to 2 cores, else ``min(4, cores - 2)``.

    From ``benchmarks/bench_loader.py`` on 2 cores. There, workers delivered patches at
    about half the in-process rate for about twice the CPU: every epoch's new workers
    decompress their tiles again into empty GDAL caches (in-process loading keeps its
    handles and cache from epoch to epoch), and each batch is copied into shared
    memory. CPU training epochs ran at 0.66x with 1 worker and 0.38x with 2, as the
    workers took cores from the model's threads. Workers pay with cores to spare
    beside the main process, which keeps two. Cores are those this process may run
    on (``sched_getaffinity``), not all the machine's.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores - 2)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; field names are the ``geoglacier train`` option names.

    Attributes:
        arch: smp architecture (UnetPlusPlus, Unet, FPN, DeepLabV3Plus, Linknet).
        encoder: smp encoder name (resnet34; tests use resnet18).
        encoder_weights: ``imagenet``, ``none`` or the path of an encoder state dict.
        bands: the image bands: a count (``5``), or a band recipe as ``geoglacier stack
            --bands`` takes it (``"red,green,blue,nir,swir1"``), whose length is the count.
            With a recipe, scenes' band descriptions must name it in order, and classic
            pairs (which carry no names) are taken to hold it: the checkpoint stores it.
        epochs: total number of epochs (a resumed run ends at the same count).
        batch_size: patches per optimiser step (per process under torchrun).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        alpha: weight of BCE against Dice in the loss.
        patch_size: training window side in pixels (multiple of 32).
        patches_per_epoch: training windows per epoch for scenes (None: tile the training area).
        val_fraction: share of pairs (classic) or scene blocks (scenes) held out for validation.
        seed: seeds the split, the windows, augmentation, weights init and batch order.
        num_workers: DataLoader worker processes (None: :func:`default_num_workers`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision: on CUDA bf16 where supported, else fp16 with a GradScaler; on a
            CPU bf16 only where it is native (AVX512-BF16 or AMX), else fp32.
        augment: flips, rotations, affine and gain/offset on training patches.
        augment_radiometric: also per-band gain/offset, saturation and gamma
            (:func:`geoglacier.training.augment.build_augment`).
        ema: decay of an exponential moving average of the weights, updated after every
            optimiser step (0: off). With it, validation, the best checkpoint and
            calibration use the averaged weights.
        dropout: probability of channel-wise dropout (``nn.Dropout2d``) on the decoder's
            output features in front of the segmentation head, in training only (0: off);
            stored in the checkpoint's model description (:class:`geoglacier.model.ModelConfig`).
        lr_factor: ReduceLROnPlateau factor.
        lr_patience: ReduceLROnPlateau patience in epochs.
        threshold: probability above which a pixel counts as glacier in the epoch metrics
            (and in the checkpoint without ``calibrate``).
        calibrate: after training, fit a temperature on validation so probabilities
            mean what they say (:mod:`geoglacier.training.calibrate`); it goes into the
            checkpoint and, at threshold 0.5, changes no mask.
        tune_threshold: with ``calibrate``, replace ``threshold`` by the one that
            maximises validation MCC (off: it did not transfer to new valleys in
            cross-validation).
        dist_timeout: seconds a torchrun process waits for the others in a collective
            before it ends with an error (a stalled or dead peer never hangs the job).
        normalization: ``training`` (the training blocks' per-band mean and std, applied
            to every scene) or ``scene`` (every scene standardised by the mean and std of
            its own valid pixels, in training and at inference: a scene much snowier
            than the training data keeps its contrast). Stored in the checkpoint.
        sampling: ``uniform`` (training windows anywhere in the training blocks) or
            ``balanced`` (half of them centred on glacier ground, half on non-glacier
            ground; classic crops each with probability one half:
            :mod:`geoglacier.training.sampling`).
    """

    arch: str = "UnetPlusPlus"
    encoder: str = "resnet34"
    encoder_weights: str = "imagenet"
    bands: int | str = 5
    epochs: int = 150
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-2
    alpha: float = 0.7
    patch_size: int = 256
    patches_per_epoch: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    num_workers: int | None = None
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    augment_radiometric: bool = False
    ema: float = 0.0
    dropout: float = 0.0
    lr_factor: float = 0.1
    lr_patience: int = 10
    threshold: float = 0.5
    calibrate: bool = True
    tune_threshold: bool = False
    dist_timeout: float = 1800.0
    normalization: str = "scene"
    sampling: str = "uniform"

    @property
    def recipe(self) -> tuple[str, ...] | None:
        """The band names ``bands`` gives, or None for a bare count."""
        return None if isinstance(self.bands, int) else parse_recipe(self.bands)

    @property
    def band_count(self) -> int:
        """The number of image bands (the recipe's length when ``bands`` names them)."""
        recipe = self.recipe
        return int(self.bands) if recipe is None else len(recipe)

    def _parsed_bands(self) -> TrainConfig:
        """A copy whose ``bands`` is an int or a canonical recipe (``"5"`` -> 5, ``"Red, green"`` -> ``"red,green"``).

        Raises:
            RecipeError: a name outside the recipe vocabulary, a repeated or an empty one.
        """
        if not isinstance(self.bands, str):
            return self
        text = self.bands.strip()
        try:
            return dataclasses.replace(self, bands=int(text))
        except ValueError:
            pass
        try:
            recipe = parse_recipe(text)
        except RecipeError as exc:
            raise RecipeError(f"--bands: {exc} (or give a band count)") from None
        return dataclasses.replace(self, bands=format_recipe(recipe))

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the option for values out of range.

        Returns:
            The config with ``bands`` canonical (see :meth:`_parsed_bands`), as stored
            in checkpoints and compared on resume.
        """
        config = self._parsed_bands()
        config._check_ranges()
        return config

    def _check_ranges(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0.0 <= self.alpha <= 1.0, f"--alpha must be between 0 and 1, got {self.alpha}"),
            (0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (
                self.patches_per_epoch is None or self.patches_per_epoch >= 1,
                f"--patches-per-epoch must be at least 1, got {self.patches_per_epoch}",
            ),
            (
                self.num_workers is None or self.num_workers >= 0,
                f"--num-workers must be >= 0, got {self.num_workers}",
            ),
            (0.0 <= self.ema < 1.0, f"--ema must be in [0, 1), got {self.ema}"),
            (0.0 < self.lr_factor < 1.0, f"--lr-factor must be in (0, 1), got {self.lr_factor}"),
            (self.lr_patience >= 0, f"--lr-patience must be >= 0, got {self.lr_patience}"),
            (0.0 < self.threshold < 1.0, f"--threshold must be in (0, 1), got {self.threshold}"),
            (
                self.calibrate or not self.tune_threshold,
                "--tune-threshold tunes the threshold during calibration; drop --no-calibrate",
            ),
            (self.band_count >= 1, f"--bands must be at least 1, got {self.bands}"),
            (self.dist_timeout > 0, f"--dist-timeout must be positive, got {self.dist_timeout}"),
            (
                self.normalization in NORMALIZATION_MODES,
                f"--normalization must be one of {', '.join(NORMALIZATION_MODES)}, got {self.normalization!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_dropout(self.dropout)
        check_sampling_mode(self.sampling)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as stored in checkpoints and the training state."""
        return dataclasses.asdict(self)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with some fields replaced; unknown names raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **overrides)


@dataclass(frozen=True)
class TrainPaths:
    """The files of one training run, named from the checkpoint path."""

    checkpoint: Path
    metrics_csv: Path
    metrics_png: Path
    state: Path

    @classmethod
    def for_checkpoint(cls, out: str | os.PathLike[str]) -> TrainPaths:
        p = Path(out)
        stem = p.parent / p.stem
        return cls(
            checkpoint=p,
            metrics_csv=Path(f"{stem}.metrics.csv"),
            metrics_png=Path(f"{stem}.metrics.png"),
            state=Path(f"{p}.state"),
        )

    def all(self) -> tuple[Path, ...]:
        return (self.checkpoint, self.metrics_csv, self.metrics_png, self.state)


@dataclass
class TrainResult:
    """What a training run produced.

    ``best_val_mcc`` is the score that chose the checkpoint: validation MCC, or
    training MCC when there is no validation data (``validated`` False; see
    :attr:`score_name`).
    """

    paths: TrainPaths
    best_epoch: int
    best_val_mcc: float
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    calibration: Any = None
    validated: bool = True

    @property
    def score_name(self) -> str:
        """What ``best_val_mcc`` is: ``"Val MCC"``, or ``"Train MCC"`` without validation data."""
        return "Val MCC" if self.validated else "Train MCC"

    @property
    def final(self) -> dict[str, float]:
        """The metrics row of the last epoch."""
        return self.history[-1] if self.history else {}
