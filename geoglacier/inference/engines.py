"""Inference engines: what turns a batch of normalised windows into logits.

The :class:`~geoglacier.inference.segment.Segmenter` cuts, normalises and blends; an
engine only runs the network. Three engines, one interface (:class:`Engine`):

* ``torch``: the checkpoint's ``nn.Module`` (channels-last, optional autocast); CPU or CUDA.
* ``onnxruntime``: the network exported to ONNX (``pip install geoglacier[onnx]``); CPU, fp32.
* ``openvino``: the same ONNX graph compiled by OpenVINO (``geoglacier[openvino]``); CPU,
  fp32 or bf16 (``INFERENCE_PRECISION_HINT``).

``auto`` picks the engine from what is installed and what the CPU offers: on x86 CPUs
whose vector extensions torch reports (``torch.backends.cpu.get_cpu_capability()``: AVX2,
AVX512) the order measured in ``benchmarks/results/inference.md`` (OpenVINO, then
onnxruntime, then torch); on any other CPU one warm batch through each installed engine
decides. CUDA always uses torch.

``auto`` precision on a CPU is bf16 for OpenVINO where the CPU has native bf16
(AVX512-BF16 or AMX), fp32 everywhere else: on a trained U-Net++/ResNet34 OpenVINO bf16
kept 99.57-99.63 % of mask pixels and the hold-out MCC (+0.0001) at about half the
time of fp32, inside the bounds set for a default (>= 99.5 %, MCC within 0.005), while
torch's bf16 autocast came to 99.54 % and onnxruntime has no bf16 CPU kernels
(``benchmarks/results/inference.md``). Without native bf16, bf16 is emulated and slower,
so ``auto`` never picks it there and asking for it warns.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from geoglacier.checkpoint import CheckpointMeta, band_count_error, load_checkpoint, read_checkpoint
from geoglacier.device import cpu_capability, cpu_has_bf16, resolve_device
from geoglacier.errors import ConfigError, GeoglacierWarning
from geoglacier.inference.export import cached_export, read_exported_meta, require

ENGINES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

#: Engine modules to import, by engine name.
MODULES: dict[str, str] = {"onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino"}

#: CPU engines fastest first, as measured on x86 CPUs: OpenVINO and onnxruntime at
#: 0.52x MONAI's time and torch channels-last at 0.71x on an AVX2 machine (issue 15);
#: OpenVINO about 10 % ahead of onnxruntime, both near 0.4x, torch 0.7-0.9x on an
#: AVX512 one (benchmarks/results/inference.md).
CPU_ORDER: tuple[str, ...] = ("openvino", "onnxruntime", "torch")

#: CPU capabilities (torch.backends.cpu.get_cpu_capability()) where CPU_ORDER was measured.
MEASURED_CAPABILITIES: tuple[str, ...] = ("AVX2", "AVX512")

#: How much slower bf16 autocast ran than fp32 on a CPU without native bf16 (AVX2 only):
#: 9.91 s against 2.05 s a batch (issue 15's measurement).
EMULATED_BF16_SLOWDOWN = 4.8


class Engine(Protocol):
    """Runs the network: ``(N, bands, h, w)`` float32 normalised windows to ``(N, 1, h, w)`` logits."""

    name: str
    precision: str
    device: str

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------ precision


def warn_if_emulated_bf16(precision: str) -> None:
    """Warn that bf16 on a CPU without native bf16 is slower than fp32, and by how much."""
    if precision == "bf16" and not cpu_has_bf16():
        warnings.warn(
            f"--precision bf16: this CPU ({cpu_capability()}) has no native bf16, so bf16 is emulated and "
            f"slower than fp32 (about {EMULATED_BF16_SLOWDOWN:g}x slower in benchmarks/results/inference.md); "
            "use --precision fp32",
            GeoglacierWarning,
            stacklevel=3,
        )


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The torch compute dtype for ``precision`` on ``device`` (``torch.float32`` means no autocast).

    Raises:
        ConfigError: an unknown precision, or fp16/bf16 where the device cannot run it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "fp32":
        return torch.float32
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return torch.bfloat16 if bf16_ok else torch.float16
        if precision == "bf16" and not bf16_ok:
            raise ConfigError(f"--precision bf16: {device} does not support bfloat16; use fp16 or fp32")
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type != "cpu":
        return torch.float32
    if precision == "auto":
        # fp32 on a CPU, even one with native bf16: see the decision in the README
        # (benchmarks/results/inference.md); ask for --precision bf16 explicitly.
        return torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


# -------------------------------------------------------------------------------- engines


class TorchEngine:
    """The ``nn.Module`` itself: channels-last, ``inference_mode``, autocast unless fp32."""

    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.torch_device = device
        self.dtype = dtype
        self.device = str(device)
        self.precision = precision_name(dtype)
        self.model = model.to(device).eval()
        if device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            contextlib.nullcontext()
            if self.dtype == torch.float32
            else torch.autocast(device_type=self.torch_device.type, dtype=self.dtype)
        )
        with torch.inference_mode(), autocast:
            out = self.model(x)
        return out.to("cpu", torch.float32).numpy()


def _threads() -> int:
    return max(1, torch.get_num_threads())


class OnnxRuntimeEngine:
    """An exported ``.onnx`` model on onnxruntime's CPU provider (fp32)."""

    name = "onnxruntime"
    device = "cpu"
    precision = "fp32"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.session.run(None, {self.input: x})[0], dtype=np.float32)


class OpenVinoEngine:
    """An exported model (``.xml`` IR or ``.onnx``) compiled by OpenVINO for the CPU.

    The model is compiled for the shape of the first batch; a shorter batch (the last
    one) is padded up to it rather than compiled again.
    """

    name = "openvino"
    device = "cpu"

    def __init__(
        self, path: str | os.PathLike[str], precision: str = "fp32", threads: int | None = None
    ) -> None:
        ov = require("openvino", "openvino")
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"--engine openvino runs fp32 or bf16 on a CPU (got --precision {precision})")
        self.precision = precision
        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        # fp32 must be asked for: on a CPU with native bf16, OpenVINO computes in bf16 by default.
        self.config = {
            "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or _threads(),
        }
        self.shape: tuple[int, ...] | None = None
        self.request: Any = None

    def _compile(self, shape: tuple[int, ...]) -> None:
        self.model.reshape({self.model.inputs[0].get_any_name(): list(shape)})
        self.request = self.core.compile_model(self.model, "CPU", self.config).create_infer_request()
        self.shape = shape

    def logits(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self.shape is not None and n < self.shape[0] and x.shape[1:] == self.shape[1:]:
            x = np.concatenate([x, np.zeros((self.shape[0] - n, *x.shape[1:]), dtype=np.float32)])
        if self.shape != x.shape:
            self._compile(x.shape)
        out = self.request.infer({0: x})
        return np.asarray(next(iter(out.values()))[:n], dtype=np.float32)


# ------------------------------------------------------------------------------ selection


def installed(engine: str) -> bool:
    """Whether ``engine``'s package can be imported (without importing it)."""
    if engine == "torch":
        return True
    try:
        return importlib.util.find_spec(MODULES[engine]) is not None
    except (ImportError, ValueError):
        return False


def check_engine(engine: str) -> None:
    """Raise for an unknown engine or an optional one that is not installed.

    Raises:
        ConfigError: an unknown engine name.
        EngineUnavailableError: one line naming the extra to install.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if engine in ("onnxruntime", "openvino"):
        require(MODULES[engine], engine)
        require("onnx", engine)  # the export needs it too


@dataclass(frozen=True)
class EngineChoice:
    """The engine to run and why it was chosen (printed by the CLI).

    Attributes:
        engine: the engine, or the first candidate when ``measure`` is set.
        reason: why, in words.
        measure: engines to time on one batch before choosing (empty: no measurement).
    """

    engine: str
    reason: str
    measure: tuple[str, ...] = ()


def choose_engine(requested: str, device: torch.device, precision: str, model_path: Path) -> EngineChoice:
    """Which engine runs ``model_path`` on ``device``.

    Raises:
        ConfigError: an unknown engine, an engine that cannot run on ``device``, or a
            torch engine asked for an exported model.
        EngineUnavailableError: an optional engine asked for by name is not installed.
    """
    exported = model_path.suffix in (".onnx", ".xml")
    if requested != "auto":
        check_engine(requested)
        if requested == "torch" and exported:
            raise ConfigError(f"--engine torch needs the .pth checkpoint, not the exported {model_path.name}")
        if requested == "onnxruntime" and model_path.suffix == ".xml":
            raise ConfigError(f"--engine onnxruntime needs a .onnx model or the .pth, not {model_path.name}")
        if requested != "torch" and device.type != "cpu":
            raise ConfigError(
                f"--engine {requested} runs on the CPU only; use --device cpu or --engine torch"
            )
        return EngineChoice(requested, "asked for")
    if device.type != "cpu":
        if exported:
            raise ConfigError(
                f"{model_path.name} is an exported model, which runs on the CPU; use --device cpu"
            )
        return EngineChoice("torch", f"{device}: torch is the engine for CUDA")
    candidates = [e for e in CPU_ORDER if installed(e) and (e == "torch" or installed("onnx"))]
    if model_path.suffix == ".onnx":
        candidates = [e for e in candidates if e != "torch"]
    elif model_path.suffix == ".xml":
        candidates = [e for e in candidates if e == "openvino"]
    if precision in ("bf16", "fp16"):
        candidates = [e for e in candidates if e != "onnxruntime" and (e == "torch" or precision == "bf16")]
    if not candidates:
        needed = "openvino" if model_path.suffix == ".xml" else "onnx"
        raise ConfigError(
            f"no installed engine runs {model_path.name} at --precision {precision}; "
            f"pip install 'geoglacier[{needed}]' or use the .pth checkpoint"
        )
    capability = cpu_capability()
    if len(candidates) > 1 and capability not in MEASURED_CAPABILITIES:
        return EngineChoice(candidates[0], f"measured on this {capability} CPU", tuple(candidates))
    return EngineChoice(
        candidates[0], f"fastest installed engine on {capability} CPUs (benchmarks/results/inference.md)"
    )


def measure_fastest(engines: dict[str, Engine], sample: np.ndarray) -> str:
    """The engine that runs ``sample`` fastest (after one warm-up call each)."""
    seconds: dict[str, float] = {}
    for name, engine in engines.items():
        engine.logits(sample)  # builds kernels; not charged
        start = time.perf_counter()
        engine.logits(sample)
        seconds[name] = time.perf_counter() - start
    return min(seconds, key=seconds.__getitem__)


@dataclass
class LoadedEngine:
    """An engine ready to run, the metadata of its model, and why it was chosen."""

    engine: Engine
    meta: CheckpointMeta
    reason: str


def _make(
    name: str,
    model_path: Path,
    precision: str,
    device: torch.device,
    loaded: tuple[nn.Module, CheckpointMeta] | None,
) -> Engine:
    if name == "torch":
        assert loaded is not None
        dtype = resolve_precision(precision, device)
        if device.type == "cpu":
            warn_if_emulated_bf16(precision_name(dtype))
        return TorchEngine(loaded[0], device, dtype)
    cpu_precision = precision
    if precision == "auto":
        cpu_precision = "bf16" if name == "openvino" and cpu_has_bf16() else "fp32"
    if name == "onnxruntime" and cpu_precision != "fp32":
        raise ConfigError(
            f"--engine onnxruntime runs fp32 only (got --precision {precision}); use --engine openvino for bf16"
        )
    exported = (
        model_path if model_path.suffix in (".onnx", ".xml") else cached_export(model_path, "onnx", loaded)
    )
    if name == "onnxruntime":
        return OnnxRuntimeEngine(exported)
    warn_if_emulated_bf16(cpu_precision)
    if model_path.suffix not in (".onnx", ".xml"):
        exported = cached_export(model_path, "openvino", loaded)
    return OpenVinoEngine(exported, cpu_precision)


def load_engine(
    model_path: str | os.PathLike[str],
    engine: str = "auto",
    device: str = "auto",
    precision: str = "auto",
    expected_bands: int | None = None,
    sample: Callable[[CheckpointMeta], np.ndarray] | None = None,
) -> LoadedEngine:
    """Load a checkpoint (``.pth``) or an exported model (``.onnx``, ``.xml``) into an engine.

    A ``.pth`` asked to run on onnxruntime or OpenVINO is exported on the fly into a
    cache beside it (:func:`geoglacier.inference.export.cached_export`).

    Args:
        model_path: the checkpoint or exported model.
        engine: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (onnxruntime and OpenVINO: CPU only;
            ``auto`` with an exported model or an optional engine means the CPU).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        expected_bands: refuse a model trained on another band count.
        sample: a batch to time the candidates on, where ``auto`` must measure (default
            random windows of the model's patch size).

    Raises:
        ConfigError, EngineUnavailableError, CheckpointError: see :func:`choose_engine`.
    """
    path = Path(model_path)
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    exported = path.suffix in (".onnx", ".xml")
    cpu_only = exported or engine in ("onnxruntime", "openvino")
    torch_device = torch.device("cpu") if cpu_only and device == "auto" else resolve_device(device)
    choice = choose_engine(engine, torch_device, precision, path)
    loaded: tuple[nn.Module, CheckpointMeta] | None = None
    if exported:
        meta = read_exported_meta(path)
    elif choice.engine == "torch" or "torch" in choice.measure:
        loaded = load_checkpoint(path, expected_bands=expected_bands, device=torch_device)
        meta = loaded[1]
    else:  # the network is built only if the export cache has to be filled
        meta = read_checkpoint(path)[0]
    if expected_bands is not None and meta.band_count != expected_bands:
        raise band_count_error(path, meta, expected_bands)
    if choice.measure:
        built = {name: _make(name, path, precision, torch_device, loaded) for name in choice.measure}
        size = int(meta.patch_size)
        batch = (
            sample(meta)
            if sample
            else np.random.default_rng(0).standard_normal((2, meta.band_count, size, size), dtype=np.float32)
        )
        best = measure_fastest(built, batch)
        return LoadedEngine(built[best], meta, f"auto: {choice.reason}")
    made = _make(choice.engine, path, precision, torch_device, loaded)
    reason = choice.reason if engine != "auto" else f"auto: {choice.reason}"
    if precision == "auto" and made.device == "cpu" and made.precision == "bf16":
        reason += "; precision auto: bf16, native on this CPU"
    return LoadedEngine(made, meta, reason)
