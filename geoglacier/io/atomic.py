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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from geoglacier.errors import ConfigError, OutputExistsError, OutputPathError

TMP_PREFIX = ".geoglacier-tmp-"

PathArg = str | os.PathLike[str]
RASTER_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
"""Extensions of the GeoTIFF (COG) outputs: masks, probabilities, change maps, scenes."""
PNG_SUFFIXES: tuple[str, ...] = (".png",)
"""Extension of the quicklook pictures."""


def writable_folder(folder: Path) -> bool:
    """Whether outputs may be created in the existing ``folder``.

    The OS must allow it, and the folder's permissions must let someone write: root
    passes ``os.access`` everywhere, yet a folder marked read-only for all (a shared
    data folder, an unpacked archive) is meant to stay as it is.
    """
    return os.access(folder, os.W_OK) and folder.stat().st_mode & 0o222 != 0


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
    if not writable_folder(parent):
        raise OutputPathError(f"{target}: folder {parent} is not writable; choose another output path")
    if target.is_dir():
        raise OutputPathError(f"{target} is a directory; give a file name for the output")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass --overwrite to replace it")
    return target


def check_extension(path: PathArg, suffixes: tuple[str, ...], option: str, what: str) -> Path:
    """Raise unless ``path`` ends in one of ``suffixes`` (case-insensitive), before any work.

    The writers choose the format themselves (a COG, a PNG), so a name with another
    extension would hold data that the extension misnames.

    Args:
        path: the output path.
        suffixes: accepted extensions with their dot (``(".tif", ".tiff")``).
        option: the option that names the output, for the message (``--out``).
        what: what is written there, for the message (``GeoTIFF``).

    Raises:
        ConfigError: naming the option, the file and the expected extension.
    """
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        expected = " or ".join(suffixes)
        raise ConfigError(
            f"{option} {target}: writes a {what}, so the name must end in {expected} "
            f"(got {target.suffix or 'no extension'!r}); rename it, e.g. {target.with_suffix(suffixes[0]).name}"
        )
    return target


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    """The resolved path, and the file's (device, inode) when it exists (symlinks followed)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        resolved = path.absolute()
    try:
        st = path.stat()
    except OSError:
        return resolved, None
    return resolved, (st.st_dev, st.st_ino)


def same_file(a: PathArg, b: PathArg) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal resolved paths (``./x`` and ``x``,
    symlinked folders), or, where both exist, one file (symlinks, hard links)."""
    ra, ia = _identity(Path(a))
    rb, ib = _identity(Path(b))
    return ra == rb or (ia is not None and ia == ib)


_COMPANIONS: dict[str, tuple[str, ...]] = {
    ".shp": (".shx", ".dbf", ".prj", ".cpg"),  # a shapefile is read with its sidecars
    ".xml": (".bin", ".json"),  # an OpenVINO IR model: weights and geoglacier metadata
}


def with_companions(path: PathArg | None) -> list[Path]:
    """``path`` and the files read along with it (a shapefile's .dbf ..., an OpenVINO .xml's .bin);
    empty for ``None``. Pass the result as an input of :func:`check_distinct_files`."""
    if path is None:
        return []
    p = Path(path)
    return [p, *(p.with_suffix(s) for s in _COMPANIONS.get(p.suffix.lower(), ()))]


def check_distinct_files(
    outputs: Mapping[str, PathArg | None],
    inputs: Mapping[str, PathArg | Iterable[PathArg] | None] | None = None,
) -> None:
    """Refuse, before any work, an output that is the same file as an input or as another output.

    ``--overwrite`` lets an output replace an earlier *result*; it must never let a run
    replace the data it reads (its scene, a mask, the checkpoint), nor write two of its
    outputs to one file. Paths are compared as :func:`same_file` does.

    Args:
        outputs: each output by the name the user knows it by (``--out``, ``--summary``);
            ``None`` entries are skipped.
        inputs: each input by name (``MASK``, ``--model``); a value may be several files
            (the scenes and masks of a training folder). Folders are skipped: an output
            inside one is fine.

    Raises:
        OutputPathError: naming the file and both of its uses.
    """
    by_path: dict[Path, tuple[str, str]] = {}  # dicts, not pairwise: thousands of scenes stay fast
    by_ident: dict[tuple[int, int], tuple[str, str]] = {}

    def remember(kind: str, name: str, resolved: Path, ident: tuple[int, int] | None) -> None:
        by_path.setdefault(resolved, (kind, name))
        if ident is not None:
            by_ident.setdefault(ident, (kind, name))

    for name, value in (inputs or {}).items():
        paths = [] if value is None else [value] if isinstance(value, str | os.PathLike) else list(value)
        for p in paths:
            if not Path(p).is_dir():
                remember("input", name, *_identity(Path(p)))
    for name, value in outputs.items():
        if value is None:
            continue
        resolved, ident = _identity(Path(value))
        clash = by_path.get(resolved) or (by_ident.get(ident) if ident is not None else None)
        if clash is not None:
            kind, other = clash
            if kind == "input":
                raise OutputPathError(
                    f"{value}: {name} is the same file as the input {other}; an output never replaces "
                    "an input, even with --overwrite: give another file name"
                )
            raise OutputPathError(f"{value}: used for both {other} and {name}; give distinct files")
        remember("output", name, resolved, ident)


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
