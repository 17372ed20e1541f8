"""What makes a run reproducible and resumable: seeds, RNG state, the training state file.

Every epoch reseeds from ``(seed, epoch)``; after every epoch the run writes its
resumable state (``<out>.state``) and its metrics CSV; a resumed run is first checked
against the recipe and the validation split it was started with.
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from geoglacier.errors import CheckpointError, ConfigError, OutputExistsError
from geoglacier.io.atomic import atomic_output, check_output_path
from geoglacier.training.config import RESUME_LEGACY, RESUME_LOCKED, TrainConfig, TrainPaths

STATE_FORMAT = "geoglacier-train-state"
CSV_FIELDS = ("epoch", "loss", "val_loss", "train_mcc", "val_mcc", "lr", "seconds")
# How validation blocks are chosen in the scene layout
# (:func:`geoglacier.training.split.spatial_split`): 2 = blocks holding about
# --val-fraction of each scene's pixels. A scene-layout state of another version would
# resume on other training windows, so it is refused (the classic split is unchanged).
SPLIT_VERSION = 2


#: the files a training folder feeds to training (scenes, masks, classic arrays)
DATA_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".npy")


class Resumable(Protocol):
    """What the training state holds of a run (the loop's run satisfies it)."""

    model: nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    history: list[dict[str, float]]
    best_score: float
    best_epoch: int
    start: int

    @property
    def module(self) -> nn.Module:
        """The bare network (inside DistributedDataParallel under torchrun)."""
        ...


# ---------------------------------------------------------------------------------------
# seeding and RNG state


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed derived from ``(seed, epoch)`` (independent streams per epoch)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """torch, CUDA, NumPy and Python RNG states as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    nps = state["numpy"]
    np.random.set_state(
        (nps["kind"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"], nps["cached"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------
# the metrics CSV


def write_metrics_csv(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Write all epochs' rows (atomically; the whole file each time)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (int(row[k]) if k == "epoch" else repr(float(row[k]))) for k in CSV_FIELDS})
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue())
    return Path(path)


def read_metrics_csv(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a metrics CSV as dicts of floats (``epoch`` as int)."""
    with open(path, newline="") as fh:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)
        ]


# ---------------------------------------------------------------------------------------
# the training state


def check_outputs(paths: TrainPaths, overwrite: bool, resume: bool) -> bool:
    """Check the outputs before any work; return True when a run is to be resumed."""
    if resume and overwrite:
        raise ConfigError(
            "--resume and --overwrite conflict: --resume continues a run, --overwrite starts again"
        )
    if resume and paths.state.is_file():
        check_output_path(paths.checkpoint, overwrite=True)
        return True
    if not resume and not overwrite and paths.state.is_file():
        raise OutputExistsError(
            f"{paths.state} already exists (a previous run's state); pass --resume to continue that run "
            "or --overwrite to start again"
        )
    if resume and paths.checkpoint.exists() and not overwrite:
        raise OutputExistsError(
            f"{paths.checkpoint} exists but there is no training state {paths.state} to resume from; "
            "pass --overwrite to start again"
        )
    for p in paths.all():
        check_output_path(p, overwrite)
    return False


def check_resume_config(state: dict[str, Any], config: TrainConfig, state_path: Path, layout: str) -> None:
    """Refuse to resume a run split into other validation blocks, with another recipe, or with fewer epochs than it holds."""
    if layout == "scenes" and state.get("split_version", 1) != SPLIT_VERSION:
        raise ConfigError(
            f"{state_path}: the run was started by an earlier geoglacier that chose other validation "
            "blocks; it cannot be resumed on the same split: start again with --overwrite"
        )
    done = int(state["epoch"])
    if config.epochs < done:
        raise ConfigError(
            f"{state_path} already holds {done} epochs, more than --epochs {config.epochs}; resume with "
            f"--epochs {done} or more, or start again with --overwrite"
        )
    saved = state["config"]
    for name in RESUME_LOCKED:
        if name not in saved and name not in RESUME_LEGACY:
            continue
        was = saved.get(name, RESUME_LEGACY.get(name))
        if was != getattr(config, name):
            raise ConfigError(
                f"{state_path}: the run was started with --{name.replace('_', '-')} {was}, "
                f"not {getattr(config, name)}; resume with the same value or start again with --overwrite"
            )


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` (tensors only: ``weights_only``).

    Raises:
        CheckpointError: the file is unreadable, or not a geoglacier training state.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or unsafe file: same advice
        raise CheckpointError(
            f"{path}: unreadable training state ({type(exc).__name__}); start again with --overwrite"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a geoglacier training state; start again with --overwrite")
    return state


def data_files(data_dir: str | os.PathLike[str]) -> list[list[Any]]:
    """``[relative path, size]`` of every raster and array file under ``data_dir``, sorted.

    What a resumed run must find again: the same training data, wherever the folder
    now lies (hidden files, such as temporaries, are left out).
    """
    root = Path(data_dir)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(DATA_SUFFIXES):
                p = Path(folder) / name
                found.append([p.relative_to(root).as_posix(), p.stat().st_size])
    return sorted(found)


def check_same_data(state: dict[str, Any], data_dir: str | os.PathLike[str], state_path: Path) -> None:
    """Refuse to resume on other training data than the run started on (states that recorded it)."""
    kept = state.get("data_files")
    if kept is None:
        return
    now = data_files(data_dir)
    if [list(f) for f in kept] != now:
        before, after = {f[0]: f[1] for f in kept}, {f[0]: f[1] for f in now}
        differ = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
        raise ConfigError(
            f"{state_path}: the run was started on other data than {data_dir} ({len(differ)} file(s) "
            f"differ, e.g. {differ[0]}); resume on the same data or start again with --overwrite"
        )


def save_state(
    path: Path, run: Resumable, config: TrainConfig, epoch: int, data: list[list[Any]] | None = None
) -> None:
    """Write the state after ``epoch`` atomically (weights, optimiser, RNG, history, recipe, data files)."""
    state = {
        "format": STATE_FORMAT,
        "epoch": int(epoch),
        "model": run.module.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        **({} if run.ema is None else {"ema": run.ema.state_dict()}),
        "rng": rng_state(),
        "best_score": float(run.best_score),
        "best_epoch": int(run.best_epoch),
        "history": [dict(row) for row in run.history],
        "config": config.to_dict(),
        "split_version": SPLIT_VERSION,
        **({} if data is None else {"data_files": data}),
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def restore_state(run: Resumable, state: dict[str, Any]) -> None:
    """Put what :func:`load_state` read back into ``run``, which then starts after the saved epoch."""
    run.model.load_state_dict(state["model"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run.history = [dict(row) for row in state["history"]]
    run.best_score, run.best_epoch = float(state["best_score"]), int(state["best_epoch"])
    run.start = int(state["epoch"]) + 1
