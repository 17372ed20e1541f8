"""What made a batch scene's outputs: a small JSON record kept beside them.

``segment-scenes`` skips a scene whose outputs are complete, but only when they were
made from the same scene file, by the same model(s), with the same options that change
the result; otherwise a rerun would list another model's areas as its own. Each scene
gets ``NAME_run.json``: written first (``complete: false``) when the scene starts, and
again, last, once every output of the scene is written. A file is identified by its
resolved path, size and modification time (hashing large scenes would cost as much as
reading them).

Left out on purpose: ``device``, ``engine`` and ``batch_size`` change where and how fast
the windows run, not the map (beyond rounding in the last digits of probabilities).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from geoglacier.io.atomic import atomic_output

RECORD_SUFFIX = "_run.json"
RECORD_VERSION = 1

#: Options that change a scene's outputs, with their defaults and command-line names.
OUTPUT_OPTIONS: dict[str, str] = {
    "window": "--window",
    "overlap": "--overlap",
    "overlap_px": "--overlap-px",
    "blend": "--blend",
    "precision": "--precision",
    "tta": "--tta",
    "min_area": "--min-area",
    "pixel_size": "--pixel-size",
}


def _defaults() -> dict[str, Any]:
    from geoglacier.inference.config import InferenceConfig

    config = {f.name: f.default for f in fields(InferenceConfig) if f.name in OUTPUT_OPTIONS}
    return {**config, "min_area": 0.0, "pixel_size": None}


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A file's resolved path, size and modification time (ns).

    A GDAL virtual path (``/vsizip/rgi.zip/rgi.shp``, ``zip://rgi.zip!rgi.shp``) is known
    by its archive's size and time, with the path as given; one with no local archive
    (``/vsicurl/...``) by its path alone.
    """
    text = os.fspath(path)
    if not text.startswith(("/vsi", "zip://", "zip+")):
        p = Path(text).resolve()
        stat = p.stat()
        return {"path": str(p), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    archive = _archive(text)
    if archive is None or not archive.is_file():
        return {"path": text, "size": None, "mtime_ns": None}
    stat = archive.stat()
    return {"path": text, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _archive(text: str) -> Path | None:
    """The local archive inside a GDAL or fiona virtual path (``/vsizip/``, ``/vsitar/``,
    ``/vsigzip/`` ..., ``zip://``), or None (a network path, or no such file here)."""
    if text.startswith(_NETWORK):
        return None
    if text.startswith("/vsi"):
        inner = text[text.index("/", 1) + 1 :]  # the path as given after /vsiHANDLER/
    else:
        inner = text.split("://", 1)[1].split("!", 1)[0]  # zip://a.zip!member, zip+file://...
    parts = Path(inner).parts
    for i in range(1, len(parts) + 1):
        candidate = Path(*parts[:i])
        if candidate.is_file():
            return candidate
    return None


# GDAL's network file systems: their files are known by path alone.
_NETWORK = (
    "/vsicurl",
    "/vsis3",
    "/vsigs",
    "/vsiaz",
    "/vsiadls",
    "/vsioss",
    "/vsiswift",
    "/vsihdfs",
    "/vsiwebhdfs",
)


def run_fingerprint(
    scene: str | os.PathLike[str],
    models: Sequence[str | os.PathLike[str]],
    options: dict[str, Any],
    inventory: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
) -> dict[str, Any]:
    """What a scene's outputs depend on: scene and model files, output options, inventory.

    Options left out of ``options`` count as their defaults, so a library call without
    them and a command line that spells the defaults out record the same fingerprint.
    """
    defaults = _defaults()
    chosen = {k: options.get(k, defaults[k]) for k in OUTPUT_OPTIONS}
    if chosen["overlap_px"] is not None:  # --overlap-px overrides --overlap: the latter changes nothing
        chosen["overlap"] = None
    return {
        "scene": file_identity(scene),
        "models": [file_identity(m) for m in models],
        "options": json.loads(json.dumps(chosen)),  # as it reads back (tuples -> lists)
        "inventory": None if inventory is None else file_identity(inventory),
        "id_column": id_column,
    }


def record_path(mask: Path, stem: str) -> Path:
    """``NAME_run.json`` beside ``NAME_mask.tif``."""
    return mask.parent / f"{stem}{RECORD_SUFFIX}"


def write_record(path: Path, fingerprint: dict[str, Any], complete: bool) -> None:
    """Write the record atomically (replacing an earlier one)."""
    body = {"version": RECORD_VERSION, "complete": complete, "fingerprint": fingerprint}
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(body, indent=1) + "\n")


def read_record(path: Path) -> dict[str, Any] | None:
    """The record, or None when it is missing or unreadable (as good as missing)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("fingerprint"), dict):
        return None
    return body


def _name(identity: dict[str, Any] | None) -> str:
    return Path(identity["path"]).name if identity else "none"


def _file_change(how: str, what: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> str | None:
    """How a recorded file differs from the one given now, or None when it is the same."""
    if old == new:
        return None
    if old is None or new is None or old.get("path") != new.get("path"):
        return f"{how} {what} {_name(old)}"
    return f"{how} an earlier version of {what} {_name(old)} (the file has changed since)"


def _option_change(flag: str, old: Any, new: Any) -> str:
    """``with --window 64 (now 96)``, ``with the default --window (now 96)``, ``without --tta``."""
    if isinstance(old, bool) or isinstance(new, bool):
        return f"with {flag}" if old else f"without {flag}"
    if old is None:
        return f"with the default {flag} (now {new})"
    return f"with {flag} {old} (now {'the default' if new is None else new})"


def difference(old: dict[str, Any], new: dict[str, Any], *, scene: bool = True) -> str | None:
    """How the recorded outputs were made that differs now ("with model m1.pth"), or None.

    With ``scene=False`` the scene file is left out: only the model(s) and the options
    are compared (another scene of the same run).
    """
    if scene:
        change = _file_change("from", "scene", old.get("scene"), new.get("scene"))
        if change:
            return change
    old_models, new_models = old.get("models") or [], new["models"]
    if len(old_models) != len(new_models) or {m["path"] for m in old_models} != {
        m["path"] for m in new_models
    }:
        word = "model" if len(old_models) == 1 else "models"
        return f"with {word} {', '.join(_name(m) for m in old_models) or 'unknown'}"
    by_path = {m["path"]: m for m in old_models}
    for model in new_models:
        change = _file_change("with", "model", by_path[model["path"]], model)
        if change:
            return change
    old_options = old.get("options") or {}
    for key, flag in OUTPUT_OPTIONS.items():
        if old_options.get(key) != new["options"].get(key):
            return _option_change(flag, old_options.get(key), new["options"].get(key))
    if (old.get("inventory") is None) != (new.get("inventory") is None):
        return (
            "without --inventory"
            if old.get("inventory") is None
            else f"with --inventory {_name(old['inventory'])}"
        )
    change = _file_change("with", "inventory", old.get("inventory"), new.get("inventory"))
    if change:
        return change
    if old.get("id_column") != new.get("id_column"):
        return _option_change("--id-column", old.get("id_column"), new.get("id_column"))
    return None


SceneState = Literal["new", "done", "redo"]


def scene_state(
    outputs: Sequence[Path], record: Path, fingerprint: dict[str, Any]
) -> tuple[SceneState, str | None]:
    """Whether a scene is new, done or to redo (left partly written by the same run), and any conflict.

    Returns ``(state, conflict)``; ``conflict`` says, for outputs that exist but were made
    otherwise (or cannot be told apart: no record, as left by geoglacier before records
    were kept), what they were made with. Such outputs are replaced only with
    ``overwrite``.
    """
    existing = [p for p in outputs if p.is_file()]
    body = read_record(record)
    if not existing:
        return "new", None
    first = existing[0]
    if body is None:
        return "redo", (
            f"{first} has no record of the model and options that made it ({record.name} is "
            "missing: written by an older geoglacier or by hand)"
        )
    change = difference(body["fingerprint"], fingerprint)
    if change is not None:
        return "redo", f"{first} was made {change}"
    if body.get("complete") is True and len(existing) == len(outputs):
        return "done", None
    return "redo", None
