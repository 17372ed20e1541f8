"""The training loop: the seed recipe for U-Net++ glacier segmentation.

Recipe (every value a field of :class:`TrainConfig` and a ``geoglacier train`` option
of the same name): smp U-Net++ / ResNet34 with ImageNet encoder weights, loss
``alpha * BCE + (1 - alpha) * Dice`` on valid pixels only, AdamW, ReduceLROnPlateau
on the validation MCC, the epoch's MCC from its summed confusion counts, the best
epoch by validation MCC kept as the checkpoint.

Files written beside ``out`` (``model.pth`` gives ``model.metrics.csv``,
``model.metrics.png`` and ``model.pth.state``), each atomically after every epoch, so
two runs in one folder never collide and a killed run leaves only complete files. The
state is written first and Ctrl-C (SIGTERM too) is held until the epoch's files are all
written: an interrupt ends the run with a message naming the epoch the state keeps, and
``--resume`` writes anything a harder stop left out after the state:

- the checkpoint (:mod:`geoglacier.checkpoint`), rewritten when validation MCC improves;
- ``<stem>.metrics.csv``: one row per epoch (epoch, loss, val_loss, train_mcc, val_mcc,
  lr, seconds);
- ``<stem>.metrics.png``: the loss and MCC curves;
- ``<out>.state``: the training state (weights, optimizer, scheduler, scaler, RNG
  states, best score, metrics history) that ``resume=True`` continues from. It is
  kept after the last epoch so a finished run can be extended with more epochs.

Reproducibility: every epoch reseeds torch, NumPy, Python's ``random``, the
augmentation and the DataLoader generator (hence the worker seeds) from
``(seed, epoch)``, so on the CPU the same seed on the same data gives the same
metrics, and a resumed run gives the same metrics as an uninterrupted one
(:mod:`geoglacier.training.state`).

Scale-out: started by ``torchrun`` (``WORLD_SIZE`` > 1), each process trains on its
share of the windows (DistributedSampler) inside DistributedDataParallel; loss sums
and confusion counts are all-reduced, so epoch figures are those of the whole data;
only rank 0 prints and writes (:mod:`geoglacier.training.distributed`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from geoglacier.device import cpu_has_bf16
from geoglacier.errors import Interrupted
from geoglacier.io.atomic import sigterm_as_interrupt
from geoglacier.io.layouts import detect_layout
from geoglacier.measure.metrics import confusion_counts, mcc_from_counts
from geoglacier.training.checks import check_outputs_outside_data
from geoglacier.training.config import TrainConfig, TrainPaths, TrainResult, default_num_workers
from geoglacier.training.distributed import (
    Distributed,
    ShardSampler,
    agree,
    all_reduce,
    barrier,
    distributed_from_env,
    process_group,
    sync_buffers,
)
from geoglacier.training.interrupts import held_interrupts
from geoglacier.training.losses import BCEDiceLoss
from geoglacier.training.state import (
    check_outputs,
    check_resume_config,
    check_same_data,
    data_files,
    epoch_seed,
    load_state,
    read_metrics_csv,
    restore_state,
    save_state,
    seed_everything,
    write_metrics_csv,
)

if TYPE_CHECKING:
    from geoglacier.model import ModelConfig

Log = Callable[[str], None]


def _loader(
    dataset: Dataset,
    config: TrainConfig,
    num_workers: int,
    device: torch.device,
    seed: int,
    dist_info: Distributed,
    train: bool,
) -> DataLoader:
    from geoglacier.training.datasets import seed_worker

    generator = torch.Generator().manual_seed(seed)
    sampler: Sampler[int] | None = None
    if dist_info.active:
        if train:
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(
                dataset, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=seed
            )
        else:
            sampler = ShardSampler(len(dataset), dist_info.rank, dist_info.world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=False,
    )


def _progress(loader: DataLoader, desc: str, enabled: bool) -> Any:
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: BCEDiceLoss,
    device: torch.device,
    config: TrainConfig,
    amp_dtype: torch.dtype | None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    progress: bool = False,
    desc: str = "",
    ema: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass; returns ``([loss_sum, n_samples] float64, [tp, fp, tn, fn] int64)`` on ``device``."""
    training = optimizer is not None
    model.train(training)
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    counts = torch.zeros(4, dtype=torch.int64, device=device)
    non_blocking = device.type == "cuda"
    with torch.set_grad_enabled(training):
        for batch in _progress(loader, desc, progress):
            image = batch["image"].to(device, non_blocking=non_blocking)
            target = batch["mask"].to(device, non_blocking=non_blocking)
            valid = batch["valid"].to(device, non_blocking=non_blocking)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(image)
            loss = criterion(logits.float(), target, valid)
            if training:
                assert optimizer is not None and scaler is not None
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(getattr(model, "module", model))
            n = image.shape[0]
            sums[0] += loss.detach().double() * n
            sums[1] += n
            counts += confusion_counts(logits.detach(), target, valid, config.threshold)
    return sums, counts


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 (or fp16 with a scaler) on CUDA, bf16 on a CPU with native bf16.

    On a CPU without native bf16 (AVX2 only), bf16 is emulated and slower than fp32, so
    training stays fp32 there.
    """
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def train(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    log: Log = print,
    progress: bool | None = None,
    stop: Callable[[dict[str, float]], bool] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a glacier segmentation model on ``data_dir`` and write the best epoch to ``out``.

    Args:
        data_dir: a classic or scene layout folder (see :mod:`geoglacier.io.layouts`).
        out: checkpoint path (``.pth``); the metrics CSV/PNG and training state go beside it.
        config: the recipe; ``None`` for the defaults.
        overwrite: replace existing outputs (and forget an earlier run's state).
        resume: continue from ``<out>.state`` after the last completed epoch; a run
            ends after ``config.epochs`` epochs in all, interrupted or not.
        log: receives one line per epoch and per saved checkpoint.
        progress: tqdm bar within epochs (``None``: when stderr is a terminal).
        stop: called with each epoch's metrics row once its files are written;
            returning True ends training there (a wall-clock budget, early stopping).
            The training state stays resumable.
        **overrides: fields of :class:`TrainConfig` to change (``epochs=2``).

    Raises:
        OutputExistsError: ``out`` (or a file beside it) exists, without overwrite/resume.
        ConfigError: bad option values, unknown encoder or device, or resuming with a
            different recipe.
        WeightsUnavailableError: ImageNet weights cannot be fetched (offline).
    """
    config = (config or TrainConfig()).with_overrides(**overrides).validate()
    paths = TrainPaths.for_checkpoint(out)
    check_outputs_outside_data(data_dir, paths.all())
    resuming = check_outputs(paths, overwrite, resume)
    dist_info = distributed_from_env()
    device = _device(config, dist_info)
    model_config = _model_config(config)
    state = _resumed_state(data_dir, paths, config) if resuming else None
    if not dist_info.is_main:
        log = _silent
    if resume and not resuming:  # a mistyped --out must not pass for a resumed run
        log(f"--resume: there is no training state {paths.state}; starting a new run")
    with process_group(dist_info, device, config.dist_timeout), sigterm_as_interrupt():
        return _train(
            data_dir, paths, config, model_config, device, dist_info, state, overwrite, log, progress, stop
        )


def _device(config: TrainConfig, dist_info: Distributed) -> torch.device:
    """The configured device; under torchrun on CUDA, this process's own GPU (``LOCAL_RANK``)."""
    from geoglacier.device import resolve_device

    if dist_info.active and torch.cuda.is_available() and config.device != "cpu":
        return resolve_device(f"cuda:{dist_info.local_rank}")
    return resolve_device(config.device)


def _model_config(config: TrainConfig) -> ModelConfig:
    """The network of the recipe, checked (architecture, encoder) before any data is read."""
    from geoglacier.model import ModelConfig, check_config

    model_config = ModelConfig(
        arch=config.arch, encoder=config.encoder, in_channels=config.band_count, dropout=config.dropout
    )
    check_config(model_config)
    return model_config


def _resumed_state(
    data_dir: str | os.PathLike[str], paths: TrainPaths, config: TrainConfig
) -> dict[str, Any]:
    """The saved training state, checked against this run's recipe and validation split."""
    state = load_state(paths.state)
    check_resume_config(state, config, paths.state, detect_layout(data_dir))
    check_same_data(state, data_dir, paths.state)
    return state


def _silent(_: str) -> None:
    return None


@dataclass
class _Run:
    """Everything one training run carries from epoch to epoch."""

    model: nn.Module
    data: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    criterion: BCEDiceLoss
    amp_dtype: torch.dtype | None
    meta_base: dict[str, Any]
    ema: Any = None
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    start: int = 1
    saved_epoch: int = 0  # the epoch the training state on disk holds (0: none written by this run)
    val_classes: tuple[int, int] = (0, 0)  # glacier and non-glacier pixels validation scores
    data_files: list[list[Any]] | None = None  # the data files, recorded in the state for --resume

    @property
    def module(self) -> nn.Module:
        """The bare network (inside DistributedDataParallel under torchrun)."""
        return getattr(self.model, "module", self.model)

    @property
    def scored(self) -> nn.Module:
        """The network that is validated, saved and calibrated: the weight average with ``ema``."""
        return self.module if self.ema is None else self.ema.module


def _train(
    data_dir: str | os.PathLike[str],
    paths: TrainPaths,
    config: TrainConfig,
    model_config: Any,
    device: torch.device,
    dist_info: Distributed,
    state: dict[str, Any] | None,
    overwrite: bool,
    log: Log,
    progress: bool | None,
    stop: Callable[[dict[str, float]], bool] | None = None,
) -> TrainResult:
    saved = 0 if state is None else int(state["epoch"])
    try:
        run = _setup(data_dir, config, model_config, device, state, log)
    except KeyboardInterrupt:  # while reading the data: the outputs on disk are as they were
        raise _interrupted(paths, config, saved + 1, saved) from None
    if dist_info.is_main and state is None and overwrite:
        paths.state.unlink(missing_ok=True)  # a stale state must not be resumed later
    if dist_info.active:
        from torch.nn.parallel import DistributedDataParallel

        run.model = DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None
        )
    num_workers = default_num_workers() if config.num_workers is None else config.num_workers
    show = (sys.stderr.isatty() if progress is None else progress) and dist_info.is_main
    if len(run.data.val) == 0:
        uncalibrated = " and the checkpoint is not calibrated" if config.calibrate else ""
        log(
            f"No validation windows ({run.data.no_validation_reason()}): "
            f"the best epoch is chosen by training MCC{uncalibrated}"
        )
    epoch = run.start
    try:
        if state is not None and dist_info.is_main:
            _complete_outputs(run, paths, log)
        for epoch in range(run.start, config.epochs + 1):
            row = _epoch(run, epoch, config, device, dist_info, num_workers, show)
            log(
                f"Epoch {epoch} | Loss: {row['loss']:.4f} | Train MCC: {row['train_mcc']:.2f} | Val MCC: {row['val_mcc']:.2f}"
            )
            _record(run, row, paths, config, dist_info, log)
            if epoch == run.start and len(run.data.val) > 0 and not all(run.val_classes):
                log(_one_class_validation(run.val_classes))
            if stop is not None and agree(bool(stop(dict(row))), dist_info, device):
                break
        calibration = None
        if config.calibrate and len(run.data.val) > 0 and run.best_epoch > 0:
            calibration = _calibrate(run, paths, config, device, dist_info, log)
    except KeyboardInterrupt:
        raise _interrupted(paths, config, epoch, run.saved_epoch) from None
    return TrainResult(
        paths=paths,
        best_epoch=run.best_epoch,
        best_val_mcc=run.best_score,
        validated=len(run.data.val) > 0,
        epochs=len(run.history),
        history=run.history,
        resumed_from=run.start - 1,
        calibration=calibration,
    )


def _calibrate(
    run: _Run, paths: TrainPaths, config: TrainConfig, device: torch.device, dist_info: Distributed, log: Log
) -> Any:
    """Fit temperature and threshold on validation with the best epoch's weights; rewrite its checkpoint.

    Rank 0 alone scores the whole validation set (no collectives inside); the others wait.
    """
    from geoglacier.checkpoint import read_checkpoint, save_checkpoint
    from geoglacier.training.calibrate import calibrate_checkpoint

    calibration = None
    if dist_info.is_main:
        meta, state = read_checkpoint(paths.checkpoint)
        run.module.load_state_dict(state)
        calibration, meta = calibrate_checkpoint(
            run.module, meta, run.data.val, device, config.threshold, config.tune_threshold
        )
        save_checkpoint(run.module, meta, paths.checkpoint)
        log(calibration.describe(config.threshold, config.tune_threshold))
    barrier(dist_info)
    return calibration


def _setup(
    data_dir: str | os.PathLike[str],
    config: TrainConfig,
    model_config: Any,
    device: torch.device,
    state: dict[str, Any] | None,
    log: Log,
) -> _Run:
    """Data, network, optimiser and scheduler, restored from ``state`` when resuming."""
    from geoglacier.model import build_model

    seed_everything(config.seed)
    data = _datasets(data_dir, config)
    if state is None:
        log(data.describe())
    # The data is checked first: a bad folder fails in seconds, before weights are fetched.
    seed_everything(config.seed)  # the network starts from the seed alone, whatever the data drew
    weights = None if state is not None else config.encoder_weights
    model = build_model(model_config, encoder_weights=weights)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience
    )
    amp_dtype = _amp_dtype(config, device)
    meta_base = _meta_base(model_config, data, config)
    run = _Run(
        model=model,
        data=data,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        criterion=BCEDiceLoss(config.alpha),
        amp_dtype=amp_dtype,
        meta_base=meta_base,
        ema=_make_ema(model, config.ema),
        data_files=data_files(data_dir),
    )
    if state is not None:
        restore_state(run, state)
        run.saved_epoch = run.start - 1
        log(
            f"Resuming from epoch {run.start - 1} of {config.epochs} "
            f"(best {_score_name(run)} so far: {run.best_score:.2f})"
        )
    log(_precision_line(device, amp_dtype))
    return run


def _datasets(data_dir: str | os.PathLike[str], config: TrainConfig) -> Any:
    """The training and validation datasets of the recipe (:func:`~geoglacier.training.datasets.make_datasets`)."""
    from geoglacier.training.datasets import make_datasets

    return make_datasets(
        data_dir,
        patch_size=config.patch_size,
        val_fraction=config.val_fraction,
        seed=config.seed,
        patches_per_epoch=config.patches_per_epoch,
        bands=config.band_count,
        recipe=config.recipe,
        augment=config.augment,
        radiometric=config.augment_radiometric,
        normalization=config.normalization,
        sampling=config.sampling,
    )


def _meta_base(model_config: Any, data: Any, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint fields every epoch shares: network, bands, normalisation, recipe."""
    return dict(
        model=model_config,
        bands=tuple(data.band_names),
        mean=tuple(data.normalization.mean),
        std=tuple(data.normalization.std),
        patch_size=config.patch_size,
        threshold=config.threshold,
        train_config=config.to_dict(),
        normalization=config.normalization,
    )


def _precision_line(device: torch.device, amp_dtype: torch.dtype | None) -> str:
    """The log line naming the device and the precision training runs in."""
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")  # type: ignore[arg-type]
    return (
        f"Training on {device} in {precision} mixed precision"
        if amp_dtype
        else f"Training on {device} in fp32"
    )


def _make_ema(model: nn.Module, decay: float) -> Any:
    """An exponential moving average of ``model``'s weights and BatchNorm buffers (None at decay 0)."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _epoch(
    run: _Run,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    dist_info: Distributed,
    num_workers: int,
    show: bool,
) -> dict[str, float]:
    """Train one epoch, validate, and return its metrics row (figures of all ranks together)."""
    t0 = time.perf_counter()
    seed = epoch_seed(config.seed, epoch)
    seed_everything(seed)
    run.data.resample(epoch)
    augment = getattr(run.data.train, "augment", None)
    if augment is not None and hasattr(augment, "reseed"):
        augment.reseed(seed)  # for num_workers=0; workers reseed from the loader's generator
    train_loader = _loader(run.data.train, config, num_workers, device, seed, dist_info, train=True)
    if isinstance(train_loader.sampler, torch.utils.data.distributed.DistributedSampler):
        train_loader.sampler.set_epoch(epoch)
    lr = float(run.optimizer.param_groups[0]["lr"])
    # DistributedSampler pads every rank to the same number of batches: DDP's collectives match.
    sums, counts = _run_epoch(
        run.model, train_loader, run.criterion, device, config, run.amp_dtype,
        run.optimizer, run.scaler, show, f"epoch {epoch}", run.ema,
    )  # fmt: skip
    val_sums, val_counts = _validate(run, config, device, dist_info, num_workers, seed, show)
    totals = all_reduce(torch.cat([sums, val_sums]), dist_info).tolist()
    confusion = all_reduce(torch.cat([counts, val_counts]), dist_info).tolist()
    has_val = len(run.data.val) > 0
    tp, fp, tn, fn = confusion[4:]
    run.val_classes = (int(tp + fn), int(tn + fp))
    return {
        "epoch": epoch,
        "loss": totals[0] / max(totals[1], 1.0),
        "val_loss": totals[2] / totals[3] if totals[3] > 0 else float("nan"),
        "train_mcc": mcc_from_counts(*confusion[:4]),
        "val_mcc": mcc_from_counts(*confusion[4:]) if has_val else float("nan"),
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }


def _validate(
    run: _Run,
    config: TrainConfig,
    device: torch.device,
    dist_info: Distributed,
    num_workers: int,
    seed: int,
    show: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's validation sums and counts.

    Ranks may hold different numbers of validation samples (none at all, when there are
    fewer samples than ranks), so the pass runs the bare module: DistributedDataParallel's
    forward would broadcast buffers, a collective that a rank with fewer batches never
    joins. Rank 0's BatchNorm statistics (those saved in the checkpoint) are broadcast
    first, by every rank, so each scores with the weights the checkpoint will hold.
    """
    if len(run.data.val) == 0:
        return torch.zeros(2, dtype=torch.float64, device=device), torch.zeros(
            4, dtype=torch.int64, device=device
        )
    sync_buffers(run.scored, dist_info)
    loader = _loader(run.data.val, config, num_workers, device, seed, dist_info, train=False)
    return _run_epoch(
        run.scored, loader, run.criterion, device, config, run.amp_dtype, progress=show, desc="validation"
    )


def _one_class_validation(classes: tuple[int, int]) -> str:
    """The warning for validation windows that hold one class only: their MCC is 0 for any model."""
    missing = "glacier" if classes[0] == 0 else "non-glacier"
    return (
        f"warning: the validation windows hold no {missing} pixel, so the validation MCC is 0 whatever "
        "the model and the first epoch stays the best; use another --seed or a larger --val-fraction "
        "(or add data with both classes)"
    )


def _score_name(run: _Run) -> str:
    """What chooses the best epoch: validation MCC, or training MCC without validation data."""
    return "Val MCC" if len(run.data.val) > 0 else "Train MCC"


def _record(
    run: _Run, row: dict[str, float], paths: TrainPaths, config: TrainConfig, dist_info: Distributed, log: Log
) -> None:
    """Step the scheduler, keep the best epoch, and (rank 0) write the epoch's files.

    The files are written with interrupts held (:func:`held_interrupts`), so a Ctrl-C
    lands before or after all of them. The state goes first: a checkpoint is never on
    disk without the state that resumes its run, and a resumed run completes what an
    interrupt (or a crash) left unwritten after the state (:func:`_complete_outputs`).
    """
    score = row["val_mcc"] if len(run.data.val) > 0 else row["train_mcc"]
    run.scheduler.step(score)
    run.history.append(row)
    improved = score > run.best_score
    if improved:
        run.best_score, run.best_epoch = score, int(row["epoch"])
    if dist_info.is_main:
        with held_interrupts():
            save_state(paths.state, run, config, int(row["epoch"]), run.data_files)
            run.saved_epoch = int(row["epoch"])
            if improved:
                _save_best(run, row, paths)
                log(f"Model saved (Best {_score_name(run)}: {run.best_score:.2f})")
            write_metrics_csv(run.history, paths.metrics_csv)
            _plot(run.history, paths.metrics_png, log)
    barrier(dist_info)
    run.saved_epoch = int(row["epoch"])


def _save_best(run: _Run, row: dict[str, float], paths: TrainPaths) -> None:
    """Write the network being scored as the checkpoint of the epoch of ``row``."""
    from geoglacier.checkpoint import CheckpointMeta, save_checkpoint

    metrics = {k: row[k] for k in ("train_mcc", "val_mcc", "loss", "val_loss")}
    meta = CheckpointMeta(epoch=int(row["epoch"]), metrics=metrics, **run.meta_base)
    save_checkpoint(run.scored, meta, paths.checkpoint)


def _complete_outputs(run: _Run, paths: TrainPaths, log: Log) -> None:
    """On resuming, write what an interrupt after the state's last write left out.

    The checkpoint is rewritten from the state when the state's last epoch is the best
    one and the checkpoint does not hold it; the metrics CSV and figure when they lack
    epochs of the state's history.
    """
    from geoglacier.checkpoint import read_checkpoint
    from geoglacier.errors import CheckpointError

    if not run.history:
        return
    last = run.history[-1]
    if run.best_epoch == int(last["epoch"]):
        try:
            meta = read_checkpoint(paths.checkpoint)[0] if paths.checkpoint.exists() else None
        except CheckpointError:
            meta = None
        # The epoch number alone could be that of an earlier run's checkpoint (--overwrite).
        holds = meta is not None and meta.epoch == run.best_epoch and meta.metrics.get("loss") == last["loss"]
        if not holds:
            with held_interrupts():
                _save_best(run, last, paths)
            log(f"Restored {paths.checkpoint} (epoch {run.best_epoch}) from {paths.state}")
    try:
        written = [int(r["epoch"]) for r in read_metrics_csv(paths.metrics_csv)]
    except (OSError, ValueError, KeyError):
        written = []
    if written != [int(r["epoch"]) for r in run.history] or not paths.metrics_png.exists():
        with held_interrupts():
            write_metrics_csv(run.history, paths.metrics_csv)
            _plot(run.history, paths.metrics_png, log)


def _interrupted(paths: TrainPaths, config: TrainConfig, epoch: int, done: int) -> Interrupted:
    """The message of an interrupt during (or right after) ``epoch``, the state on disk keeping epoch ``done``."""
    if done < 1:
        return Interrupted(
            f"Training interrupted during epoch {epoch}: no epoch was complete, nothing was kept; "
            "run the same command again to start over"
        )
    when = f"during epoch {epoch}" if done < min(epoch, config.epochs) else f"after epoch {done}"
    return Interrupted(
        f"Training interrupted {when}; {paths.state} keeps epoch {done} of {config.epochs} "
        f"(best {paths.checkpoint}): run the same command with --resume to continue"
    )


def _plot(history: list[dict[str, float]], path: Path, log: Log) -> None:
    from geoglacier.plots import plot_metrics

    try:
        plot_metrics(history, path)
    except Exception as exc:  # noqa: BLE001 - a failed figure must not end a long training run
        log(f"warning: could not draw {path} ({type(exc).__name__}: {exc})")
