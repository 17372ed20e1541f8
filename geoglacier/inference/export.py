"""Export a checkpoint's network to ONNX or OpenVINO IR, carrying the checkpoint's metadata.

An exported model is as self-describing as the ``.pth``: bands, normalisation,
threshold, temperature and patch size travel with it (ONNX ``metadata_props`` under the
key ``geoglacier``; a JSON sidecar ``NAME.json`` beside an OpenVINO ``NAME.xml``), so
``segment-scene --model model.onnx`` needs nothing else.

The ONNX graph is exported with the TorchScript-based exporter (``dynamo=False``): the
``torch.export`` one, torch's default since 2.9, needs the optional ``onnxscript`` package,
and the legacy path gives the same graph for these plain convolutional networks. The batch,
height and width axes are dynamic, so any window size runs.

:func:`cached_export` exports on the fly into ``CHECKPOINT.export/`` beside the checkpoint,
keyed by the SHA-256 of the checkpoint file (and :data:`EXPORT_VERSION`): a retrained or
replaced checkpoint gets a fresh export, and stale ones are removed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from geoglacier.checkpoint import (
    CheckpointMeta,
    checkpoint_dict,
    load_checkpoint,
    meta_from_dict,
    read_checkpoint,
)
from geoglacier.errors import CheckpointError, ConfigError, EngineUnavailableError, GeoglacierWarning
from geoglacier.io.atomic import atomic_output, writable_folder

ExportFormat = Literal["onnx", "openvino"]
FORMATS: tuple[str, ...] = ("onnx", "openvino")

#: Extra to install for each optional engine (``pip install geoglacier[EXTRA]``).
EXTRAS: dict[str, str] = {"onnx": "onnx", "onnxruntime": "onnx", "openvino": "openvino"}

#: Bumped when the export itself changes, so cached exports are redone.
EXPORT_VERSION = 1
OPSET = 17
METADATA_KEY = "geoglacier"
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "openvino": ".xml"}


def require(module: str, engine: str) -> Any:
    """Import an optional engine's module, or raise a one-line error naming the extra.

    Raises:
        EngineUnavailableError: the module is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS[engine]
        raise EngineUnavailableError(
            f"the {engine} engine needs the '{module}' package, which is not installed; "
            f"pip install 'geoglacier[{extra}]' (or pick another --engine)"
        ) from exc


def meta_dict(meta: CheckpointMeta) -> dict[str, Any]:
    """The checkpoint's metadata as plain JSON values (everything but the weights)."""
    raw = checkpoint_dict(nn.Identity(), meta)
    raw.pop("state_dict")
    return raw


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(
    model: nn.Module, meta: CheckpointMeta, path: str | os.PathLike[str], source: str = ""
) -> Path:
    """Write ``model`` as ONNX (dynamic batch, height, width) with ``meta`` in its metadata.

    Args:
        model: the network (moved to CPU, fp32, eval mode for the export).
        meta: the checkpoint's metadata, stored under ``metadata_props["geoglacier"]``.
        path: the ``.onnx`` file to write (atomically; replaced if present).
        source: the checkpoint's SHA-256, recorded for provenance.
    """
    onnx = require("onnx", "onnx")
    model = model.to("cpu", torch.float32).eval()
    size = int(meta.patch_size)
    example = torch.zeros(1, meta.band_count, size, size)
    with atomic_output(path, overwrite=True) as tmp, warnings.catch_warnings():
        # The TorchScript exporter says it is deprecated; it is the one that needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=["bands"],
            output_names=["logits"],
            dynamic_axes={"bands": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
        )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = json.dumps({**meta_dict(meta), "checkpoint_sha256": source})
        proto.producer_name = "geoglacier"
        onnx.save(proto, str(tmp))
    return Path(path)


def export_openvino(onnx_path: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Convert an exported ONNX model to OpenVINO IR (``NAME.xml`` + ``.bin``, fp32 weights) and its sidecar."""
    ov = require("openvino", "openvino")
    meta = read_onnx_metadata(onnx_path)
    xml = Path(path)
    with tempfile.TemporaryDirectory(dir=xml.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / xml.name
        # fp32 weights: save_model would halve them to fp16 by default.
        ov.save_model(ov.convert_model(str(onnx_path)), str(staged), compress_to_fp16=False)
        for suffix in (".bin", ".xml"):  # .xml last: its presence marks a complete export
            os.replace(staged.with_suffix(suffix), xml.with_suffix(suffix))
    with atomic_output(xml.with_suffix(".json"), overwrite=True) as tmp_json:
        tmp_json.write_text(json.dumps(meta, indent=1))
    return xml


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The geoglacier metadata stored in an ONNX file (read without loading the weights)."""
    onnx = require("onnx", "onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common base
        raise CheckpointError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}); check the file"
        ) from exc
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise CheckpointError(
        f"{path}: an ONNX model without geoglacier metadata; export it with 'geoglacier export CHECKPOINT'"
    )


def read_exported_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The :class:`CheckpointMeta` carried by an exported model (``.onnx``, or ``.xml`` + ``.json``).

    Raises:
        CheckpointError: the file or its metadata is missing or incomplete.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: exported model not found")
    if p.suffix == ".onnx":
        raw = read_onnx_metadata(p)
    else:
        sidecar = p.with_suffix(".json")
        if not sidecar.is_file():
            raise CheckpointError(
                f"{p}: no metadata sidecar {sidecar.name}; export with 'geoglacier export CHECKPOINT --format openvino'"
            )
        raw = json.loads(sidecar.read_text())
    return meta_from_dict(raw, p)


def read_model_meta(path: str | os.PathLike[str]) -> CheckpointMeta:
    """The metadata of any model ``segment-scene`` takes: a ``.pth`` checkpoint or an export.

    Raises:
        CheckpointError: the file is missing, unreadable or not a geoglacier model.
    """
    if Path(path).suffix in (".onnx", ".xml"):
        return read_exported_meta(path)
    return read_checkpoint(path)[0]


def export_model(
    checkpoint: str | os.PathLike[str],
    fmt: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint for the onnxruntime or OpenVINO engine (``geoglacier export``).

    Args:
        checkpoint: the ``.pth`` written by ``geoglacier train``.
        fmt: ``onnx`` or ``openvino``.
        out: the file to write; default the checkpoint's name with ``.onnx`` / ``.xml``.
        overwrite: replace an existing export.

    Returns:
        The written ``.onnx`` or ``.xml`` file.

    Raises:
        ConfigError: an unknown format, or ``out`` with the wrong suffix.
        OutputPathError: ``out`` (or an OpenVINO sidecar of it) is the checkpoint itself.
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        CheckpointError: an unreadable checkpoint.
        EngineUnavailableError: onnx (or openvino) is not installed.
    """
    from geoglacier.io.atomic import check_distinct_files, check_output_path

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    src = Path(checkpoint)
    target = Path(out) if out is not None else src.with_suffix(SUFFIXES[fmt])
    if target.suffix != SUFFIXES[fmt]:
        raise ConfigError(
            f"{target}: --format {fmt} writes a {SUFFIXES[fmt]} file; give --out NAME{SUFFIXES[fmt]}"
        )
    outputs = {"--out": target}
    if fmt == "openvino":  # the IR's weights and metadata sidecar land beside the .xml
        outputs.update({"its .bin": target.with_suffix(".bin"), "its .json": target.with_suffix(".json")})
    check_distinct_files(outputs, {"CHECKPOINT": src})
    for path in outputs.values():  # an existing .bin or .json of another model is a user's file too
        check_output_path(path, overwrite)
    require("onnx", "onnx")
    if fmt == "openvino":
        require("openvino", "openvino")
    model, meta = load_checkpoint(src)
    sha = file_sha256(src)
    if fmt == "onnx":
        return export_onnx(model, meta, target, source=sha)
    with tempfile.TemporaryDirectory(prefix="geoglacier-export-") as tmp:
        onnx_path = export_onnx(model, meta, Path(tmp) / "model.onnx", source=sha)
        return export_openvino(onnx_path, target)


def cache_dir(checkpoint: str | os.PathLike[str]) -> Path:
    """Where on-the-fly exports of ``checkpoint`` live: ``CHECKPOINT.export/`` beside it."""
    p = Path(checkpoint)
    return p.with_name(p.name + ".export")


_throwaway: Path | None = None
_throwaway_lock = threading.Lock()


def _throwaway_folder() -> Path:
    """This process's folder for exports that cannot be cached, removed when it exits.

    Made once, so each checkpoint is exported once per run (an ensemble asks for the onnx
    export of each member twice on OpenVINO), and nothing is left in the temporary folder.
    """
    global _throwaway
    with _throwaway_lock:
        if _throwaway is None:
            _throwaway = Path(tempfile.mkdtemp(prefix="geoglacier-export-"))
            atexit.register(shutil.rmtree, _throwaway, ignore_errors=True)
        return _throwaway


def _can_cache(folder: Path) -> bool:
    """Whether the export cache ``folder`` exists or can be made, and may be written.

    Uses :func:`~geoglacier.io.atomic.writable_folder`'s rule, so a folder read-only for
    all (a shared models folder) gets no cache even when root could write there.
    """
    try:
        if not writable_folder(folder if folder.is_dir() else folder.parent):
            return False
        folder.mkdir(exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
    except OSError:
        return False
    return True


def cached_export(
    checkpoint: str | os.PathLike[str], fmt: str, loaded: tuple[nn.Module, CheckpointMeta] | None = None
) -> Path:
    """The export of ``checkpoint`` in ``fmt``, made now unless a current one is cached.

    The cache key is the checkpoint file's SHA-256 and :data:`EXPORT_VERSION`; exports
    with other keys (an older checkpoint at the same path) are removed. A folder that
    cannot be written (or is read-only for all) gets a warning and a throw-away export in
    a temporary folder that this process reuses and removes when it exits.

    Args:
        checkpoint: the ``.pth`` file.
        fmt: ``onnx`` or ``openvino``.
        loaded: the checkpoint's network and metadata if already loaded (saves loading it again).
    """
    src = Path(checkpoint)
    sha = file_sha256(src)
    key = f"v{EXPORT_VERSION}-{sha[:16]}"
    folder = cache_dir(src)
    target = folder / f"{key}{SUFFIXES[fmt]}"
    if target.is_file():
        return target
    require("onnx", "onnx")
    if not _can_cache(folder):
        folder = _throwaway_folder() / key  # one per checkpoint: its stale sweep spares the others
        target = folder / target.name
        if target.is_file():
            return target
        try:  # warn once per checkpoint, not again for its OpenVINO IR (nor from another thread)
            folder.mkdir()
        except FileExistsError:
            pass
        else:
            warnings.warn(
                f"cannot write the export cache beside {src}; exporting into {folder} for this run only",
                GeoglacierWarning,
                stacklevel=2,
            )
    for stale in folder.glob("v*-*.*"):
        if not stale.name.startswith(key):
            stale.unlink(missing_ok=True)
    onnx_path = folder / f"{key}.onnx"
    if not onnx_path.is_file():
        model, meta = loaded if loaded is not None else load_checkpoint(src)
        export_onnx(model, meta, onnx_path, source=sha)
    if fmt == "openvino":
        export_openvino(onnx_path, target)
    return target
