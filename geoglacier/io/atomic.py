"""Write outputs atomically: to a temporary file beside the target, renamed on success.

A crash, an exception or an interrupt never leaves a half-written file under the
user's name. Temporaries carry a recognisable prefix so a later run can remove the
ones a killed process (SIGKILL) left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geoglacier.errors import OutputExistsError, OutputPathError

TMP_PREFIX = ".geoglacier-tmp-"


def check_output_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check that ``path`` can be written, before any work is done.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
        OutputPathError: the parent folder is missing or not writable.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(
            f"{target}: folder {parent} does not exist; create it first or choose another output path"
        )
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"{target}: folder {parent} is not writable; choose another output path")
    if target.is_dir():
        raise OutputPathError(f"{target} is a directory; give a file name for the output")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    return target


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries for ``path`` left by a killed run; return what was removed."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for stale in parent.glob(f"{TMP_PREFIX}{target.name}.*"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary is deleted and the
    target is left as it was.
    """
    target = check_output_path(path, overwrite)
    remove_stale_temporaries(target)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f"{TMP_PREFIX}{target.name}.", suffix=target.suffix, dir=target.parent
        )
    except OSError as exc:  # a folder that passes os.access but refuses files (/proc, some mounts)
        raise OutputPathError(
            f"{target}: cannot create files in folder {target.parent} ({exc.strerror or exc}); "
            "choose another output path"
        ) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    # Writers such as GDAL's GPKG driver refuse an existing file: hand out a free name.
    tmp.unlink()
    try:
        yield tmp
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} appeared while writing; pass --overwrite to replace it")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt inside the block, so cleanup runs; restore afterwards.

    Job schedulers stop jobs with SIGTERM: this lets atomic outputs and training state
    end as cleanly as after Ctrl-C. Only the main thread can install handlers; elsewhere
    (a dask worker thread) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
