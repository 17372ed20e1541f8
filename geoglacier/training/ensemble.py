"""Ensembles: several training runs of one recipe that differ only by seed.

Each member is a full :func:`~geoglacier.training.loop.train` run with its own files;
``segment-scene --model`` given every member averages their probabilities.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geoglacier.errors import ConfigError
from geoglacier.training.checks import check_outputs_outside_data
from geoglacier.training.config import TrainConfig, TrainPaths, TrainResult
from geoglacier.training.loop import Log, train
from geoglacier.training.state import check_outputs


def ensemble_paths(out: str | os.PathLike[str], members: int) -> list[Path]:
    """``model.pth`` -> ``model.m1.pth``, ``model.m2.pth``, ... (one checkpoint per member)."""
    p = Path(out)
    return [p.with_name(f"{p.stem}.m{k}{p.suffix}") for k in range(1, members + 1)]


def train_ensemble(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    members: int,
    config: TrainConfig | None = None,
    **kwargs: Any,
) -> list[TrainResult]:
    """Train ``members`` networks that differ only by seed (``seed``, ``seed + 1``, ...).

    Each member is a full :func:`train` run with its own checkpoint, metrics and state
    (:func:`ensemble_paths`), so ``resume`` continues whichever member was interrupted.
    ``segment-scene --model`` given every member averages their probabilities.

    Every member's files are checked before the first member trains, so a file in the
    way of member 3 (without ``overwrite``) fails at once, not after hours of training.
    """
    if members < 2:
        raise ConfigError(f"--ensemble needs at least 2 members, got {members}")
    config = (config or TrainConfig()).with_overrides(
        **{k: kwargs.pop(k) for k in list(kwargs) if k in TrainConfig.__dataclass_fields__}
    )
    log: Log = kwargs.get("log", print)
    paths = ensemble_paths(out, members)
    for path in paths:
        member = TrainPaths.for_checkpoint(path)
        check_outputs_outside_data(data_dir, member.all())
        check_outputs(member, bool(kwargs.get("overwrite", False)), bool(kwargs.get("resume", False)))
    results = []
    for k, path in enumerate(paths):
        log(f"Ensemble member {k + 1} of {members}: {path}")
        results.append(train(data_dir, path, config.with_overrides(seed=config.seed + k), **kwargs))
    return results
