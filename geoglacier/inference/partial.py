"""What an interrupted ``segment-scene`` keeps, so that ``--resume`` goes on from there.

A whole scene can take an hour on a CPU. When a run is stopped (Ctrl-C, or SIGTERM
from a job scheduler), the output tiles already written stay in a folder beside the
mask, ``.geoglacier-partial-NAME/``: the staging GeoTIFF of the mask (and of the
probabilities), and ``progress.json`` with the tiles done and a fingerprint of what
they were made from (scene and model files, the options that change the output, which
outputs were asked for). ``--resume`` reopens them when the fingerprint matches and
runs only the windows that touch a tile not yet written; the result equals an
uninterrupted run's (within float rounding of the blend). A successful run removes the
folder; ``--overwrite`` without ``--resume`` starts over.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoglacier.errors import ConfigError, OutputExistsError
from geoglacier.io.atomic import atomic_output

PARTIAL_PREFIX = ".geoglacier-partial-"
PROGRESS = "progress.json"
PARTIAL_VERSION = 1


def partial_folder(out: str | os.PathLike[str]) -> Path:
    """``.geoglacier-partial-NAME/`` beside the mask ``out``."""
    target = Path(out)
    return target.parent / f"{PARTIAL_PREFIX}{target.name}"


@dataclass
class PartialRun:
    """The kept tiles of one mask's run.

    Attributes:
        folder: where the staging files and ``progress.json`` live.
        fingerprint: what the tiles were made from.
        done: ``(tiles_y, tiles_x)`` bool of tiles written by an interrupted run being
            resumed; None for a run that starts empty.
    """

    folder: Path
    fingerprint: dict[str, Any]
    done: np.ndarray | None = None

    @classmethod
    def prepare(
        cls,
        out: str | os.PathLike[str],
        fingerprint: dict[str, Any],
        outputs: tuple[str, ...],
        *,
        resume: bool,
        overwrite: bool,
    ) -> PartialRun:
        """The run's partial state: resumed, or empty (an earlier one discarded when allowed).

        ``outputs`` names the staging files a resumable state holds (``mask``,
        ``probabilities``); a state missing one is as good as none.

        Raises:
            OutputExistsError: an interrupted run's tiles exist and neither ``resume``
                nor ``overwrite`` says what to do with them.
            ConfigError: ``resume`` with a fingerprint that differs from the kept one.
        """
        folder = partial_folder(out)
        body = _read_progress(folder)
        if body is not None and not all((folder / f"{name}.tif").is_file() for name in outputs):
            body = None
        fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back
        if body is not None and resume:
            _check_same(body["fingerprint"], fingerprint, out)
            return cls(folder, fingerprint, np.array(body["done"], dtype=bool))
        if body is not None and not overwrite:
            done = int(np.count_nonzero(body["done"]))
            raise OutputExistsError(
                f"{out}: an interrupted run left {done} of {np.size(body['done'])} tiles in {folder}; "
                "pass --resume to continue it, or --overwrite to start over"
            )
        shutil.rmtree(folder, ignore_errors=True)
        return cls(folder, fingerprint)

    def stage(self, name: str) -> Path:
        """The staging GeoTIFF of output ``name`` (``mask``, ``probabilities``)."""
        self.folder.mkdir(exist_ok=True)
        return self.folder / f"{name}.tif"

    def save(self, written: list[np.ndarray | None]) -> int:
        """Record the tiles every output holds (after an interrupt); return how many."""
        arrays = [w for w in written if w is not None]
        if not arrays:
            return 0
        done = np.logical_and.reduce(arrays)
        body = {"version": PARTIAL_VERSION, "fingerprint": self.fingerprint, "done": done.tolist()}
        self.folder.mkdir(exist_ok=True)
        with atomic_output(self.folder / PROGRESS, overwrite=True) as tmp:
            tmp.write_text(json.dumps(body) + "\n")
        return int(done.sum())

    def forget_progress(self) -> None:
        """Drop ``progress.json`` while the staging files are open for writing again.

        A run killed then (SIGKILL) cannot vouch for them; an interrupt or a failure of
        the resumed run records the progress again (:meth:`save`).
        """
        (self.folder / PROGRESS).unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the folder (the run finished, or failed other than by an interrupt)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_progress(folder: Path) -> dict[str, Any] | None:
    """``progress.json``, or None when missing or unreadable (as good as missing)."""
    try:
        body = json.loads((folder / PROGRESS).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("version") != PARTIAL_VERSION or "done" not in body:
        return None
    return body


def _check_same(kept: dict[str, Any], now: dict[str, Any], out: str | os.PathLike[str]) -> None:
    """Refuse to resume tiles made from other inputs or options, naming what differs."""
    differ = sorted(k for k in set(kept) | set(now) if kept.get(k) != now.get(k))
    if differ:
        named = ", ".join(_NAMES.get(k, f"--{k.replace('_', '-')}") for k in differ)
        raise ConfigError(
            f"{out}: the interrupted run's tiles were made with a different {named}; "
            "run it as it was to --resume, or pass --overwrite without --resume to start over"
        )


#: how the fingerprint's keys read in a message (others: their option, --key)
_NAMES = {"scene": "scene file (or it changed since)", "model": "--model file (or it changed since)"}
