"""Tests of geoglacier.inference.engines and .export: same masks on every engine, exports, cache.

Tolerance: every engine's blended probabilities stay within 1e-4 of torch fp32 and the masks
agree on at least 99.9 % of pixels (only pixels within 1e-4 of the threshold may flip). The
graphs are the same network; onnxruntime and OpenVINO differ from torch by the order of
float32 sums (about 1e-5 in the logits of a trained model).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.errors import CheckpointError, EngineUnavailableError, GeoglacierWarning, RecipeMismatchError
from geoglacier.inference import engines
from geoglacier.inference.config import InferenceConfig
from geoglacier.inference.engines import load_engine
from geoglacier.inference.export import cache_dir, cached_export, export_model, read_exported_meta
from geoglacier.inference.segment import Segmenter, segment_scene
from geoglacier.inference.windows import stride_for
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene

BANDS = ("red", "green", "blue", "nir", "ndvi")
MEAN, STD = 127.0, 60.0
PROB_TOL = 1e-4
MASK_AGREEMENT = 0.999


def tiny_meta(temperature: float = 1.0) -> CheckpointMeta:
    return CheckpointMeta(
        model=ModelConfig(arch="Unet", encoder="resnet18"),
        bands=BANDS,
        mean=(MEAN,) * 5,
        std=(STD,) * 5,
        patch_size=64,
        threshold=0.5,
        temperature=temperature,
    )


def save_tiny(path: Path, seed: int = 0, temperature: float = 1.5) -> Path:
    torch.manual_seed(seed)
    meta = tiny_meta(temperature)
    return save_checkpoint(build_model(meta.model, None), meta, path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights U-Net/ResNet18 checkpoint (patch 64, temperature 1.5) in its own folder."""
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "model.pth")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scene(
        tmp_path_factory.mktemp("scene") / "scene.tif", height=96, width=160, descriptions=BANDS
    )


def probabilities(seg: Segmenter, scene: Path) -> np.ndarray:
    with rasterio.open(scene) as ds:
        out = np.full((ds.height, ds.width), np.nan, dtype=np.float32)
    for tile in seg.predict(scene):
        h, w = tile.probabilities.shape
        out[tile.row_off : tile.row_off + h, tile.col_off : tile.col_off + w] = tile.probabilities
    return out


def config(engine: str, precision: str = "fp32") -> InferenceConfig:
    return InferenceConfig(
        window=64, overlap=0.25, batch_size=3, device="cpu", precision=precision, engine=engine
    )


@pytest.fixture(scope="module")
def torch_fp32(checkpoint: Path, scene: Path) -> np.ndarray:
    return probabilities(Segmenter.from_checkpoint(checkpoint, config("torch")), scene)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_every_engine_gives_torch_fp32_mask(
    engine: str, checkpoint: Path, scene: Path, torch_fp32: np.ndarray
) -> None:
    pytest.importorskip(engine)
    seg = Segmenter.from_checkpoint(checkpoint, config(engine))
    assert seg.engine.name == engine and seg.precision == "fp32"
    got = probabilities(seg, scene)
    assert np.isfinite(got).all()
    assert np.abs(got - torch_fp32).max() < PROB_TOL
    assert np.mean((got > 0.5) == (torch_fp32 > 0.5)) >= MASK_AGREEMENT
    # the temperature is applied: the uncalibrated model would differ by far more
    assert 0.05 < np.mean(torch_fp32 > 0.5) < 0.95


def test_torch_engine_is_todays_path(checkpoint: Path, scene: Path, torch_fp32: np.ndarray) -> None:
    """The engine seam changed nothing: the nn.Module path gives sigmoid(logits / T) blended."""
    from geoglacier.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    direct = probabilities(Segmenter(model, meta, config("torch")), scene)
    np.testing.assert_array_equal(direct, torch_fp32)
    with rasterio.open(scene) as ds:
        x = (ds.read(window=((0, 64), (0, 64))).astype(np.float32) - MEAN) / STD
    with torch.no_grad():
        logits = model(torch.from_numpy(x)[None])[0, 0].numpy()
    window = Segmenter(model, meta, config("torch")).predict_windows(x[None])[0]
    np.testing.assert_allclose(window, 1 / (1 + np.exp(-logits / 1.5)), atol=1e-6)


def test_onnx_export_carries_the_checkpoint_metadata(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    out = export_model(checkpoint, "onnx", tmp_path / "m.onnx")
    meta = read_exported_meta(out)
    want = tiny_meta(1.5)
    assert (meta.bands, meta.mean, meta.std, meta.patch_size, meta.threshold, meta.temperature) == (
        want.bands,
        want.mean,
        want.std,
        want.patch_size,
        want.threshold,
        want.temperature,
    )
    assert meta.model == want.model


def test_openvino_export_has_a_json_sidecar(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    out = export_model(checkpoint, "openvino", tmp_path / "m.xml")
    assert out.with_suffix(".bin").is_file()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["bands"] == list(BANDS) and sidecar["temperature"] == 1.5
    assert read_exported_meta(out).patch_size == 64


def test_export_never_writes_over_its_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    # Checked before onnx/openvino are needed: the OpenVINO IR's .json sidecar (or its .bin)
    # would land on a checkpoint named like it.
    from geoglacier.errors import OutputPathError

    for name in ("m.json", "m.bin"):
        ckpt = tmp_path / name
        ckpt.write_bytes(checkpoint.read_bytes())
        with pytest.raises(
            OutputPathError, match=rf"{name}: its \.{name[2:]} is the same file as the input CHECKPOINT"
        ):
            export_model(ckpt, "openvino", tmp_path / "m.xml", overwrite=True)
        assert ckpt.read_bytes() == checkpoint.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.json"]


def test_exported_model_segments_alone_and_refuses_other_bands(
    checkpoint: Path, scene: Path, tmp_path: Path, torch_fp32: np.ndarray
) -> None:
    pytest.importorskip("onnxruntime")
    onnx = export_model(checkpoint, "onnx", tmp_path / "m.onnx")
    result = segment_scene(scene, onnx, tmp_path / "mask.tif", window=64, precision="fp32", progress=False)
    assert result.engine in ("onnxruntime", "openvino")  # auto: whichever runs .onnx fastest here
    with rasterio.open(result.mask) as ds:
        mask = ds.read(1)
    assert np.mean(mask == (torch_fp32 > 0.5)) >= MASK_AGREEMENT

    swapped = write_scene(
        tmp_path / "swapped.tif", height=96, width=160, descriptions=("nir", "red", "green", "blue", "ndvi")
    )
    with pytest.raises(
        RecipeMismatchError,
        match="bands are nir,red,green,blue,ndvi but the checkpoint was trained on red,green,blue,nir,ndvi",
    ):
        segment_scene(swapped, onnx, tmp_path / "mask2.tif", window=64, progress=False)
    assert not (tmp_path / "mask2.tif").exists()
    res = CliRunner().invoke(
        cli, ["segment-scene", str(swapped), "--model", str(onnx), "--out", str(tmp_path / "m3.tif")]
    )
    assert res.exit_code == 1
    assert "bands are nir,red,green,blue,ndvi" in res.output and len(res.output.strip().splitlines()) == 1

    four = write_scene(tmp_path / "four.tif", height=96, width=160, bands=4)
    with pytest.raises(
        CheckpointError, match=r"trained on 5 bands \(red,green,blue,nir,ndvi\) but the data has 4"
    ):
        segment_scene(four, onnx, tmp_path / "mask4.tif", window=64, progress=False)
    assert not (tmp_path / "mask4.tif").exists()


@pytest.mark.parametrize(("engine", "extra"), [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_missing_engine_is_one_line_naming_the_extra(
    engine: str, extra: str, checkpoint: Path, scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, engine, None)  # import fails as if not installed
    with pytest.raises(EngineUnavailableError, match=rf"geoglacier\[{extra}\]"):
        load_engine(checkpoint, engine)
    res = CliRunner().invoke(
        cli,
        [
            "segment-scene",
            str(scene),
            "--model",
            str(checkpoint),
            "--out",
            str(tmp_path / "m.tif"),
            "--engine",
            engine,
        ],
    )
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and f"geoglacier[{extra}]" in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "m.tif").exists()


def test_auto_skips_engines_that_are_not_installed(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, name, None)
    loaded = load_engine(checkpoint, "auto", "cpu")
    assert loaded.engine.name == "torch" and loaded.reason.startswith("auto:")


def test_auto_measures_on_an_unmeasured_cpu(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(engines, "cpu_capability", lambda: "SVE256")
    timed: list[str] = []

    def fastest(built: dict, sample: np.ndarray) -> str:
        timed.extend(built)
        assert sample.shape[1:] == (5, 64, 64)
        return "torch"

    monkeypatch.setattr(engines, "measure_fastest", fastest)
    loaded = load_engine(checkpoint, "auto", "cpu")
    assert loaded.engine.name == "torch" and "measured" in loaded.reason
    assert "torch" in timed and "onnxruntime" in timed


def test_bf16_without_native_support_warns(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: False)
    with pytest.warns(GeoglacierWarning, match="no native bf16.*slower"):
        load_engine(checkpoint, "torch", "cpu", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_engine(checkpoint, "auto", "cpu", "auto")
    assert loaded.engine.precision == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_on_openvino_with_native_bf16(
    native: bool, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: native)
    for name in ("torch", "onnxruntime", "openvino"):
        if name != "torch" and not engines.installed(name):
            continue
        loaded = load_engine(checkpoint, name, "cpu", "auto")
        assert loaded.engine.precision == ("bf16" if native and name == "openvino" else "fp32")


def test_cache_is_reused_and_invalidated(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ckpt = save_tiny(tmp_path / "model.pth", seed=0)
    first = cached_export(ckpt, "onnx")
    assert first.parent == cache_dir(ckpt) == tmp_path / "model.pth.export"
    stamp = first.stat().st_mtime_ns
    again = cached_export(ckpt, "onnx")
    assert again == first and again.stat().st_mtime_ns == stamp  # reused, not re-exported

    save_tiny(ckpt, seed=1)  # retrained in place
    fresh = cached_export(ckpt, "onnx")
    assert fresh != first and fresh.is_file() and not first.exists()
    assert [p.name for p in cache_dir(ckpt).iterdir()] == [fresh.name]


def test_export_cache_stays_out_of_a_read_only_folder_and_is_made_once(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    ro = tmp_path / "shared"
    ro.mkdir()
    ckpt = save_tiny(ro / "model.pth")
    ro.chmod(0o555)  # like ../shared: read-only for all, which root alone could ignore
    try:
        with pytest.warns(GeoglacierWarning, match="export cache"):
            first = cached_export(ckpt, "onnx")
        assert sorted(p.name for p in ro.iterdir()) == ["model.pth"]
        assert not first.is_relative_to(ro) and first.is_file()
        stamp = first.stat().st_mtime_ns
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the throw-away export is reused, not redone
            again = cached_export(ckpt, "onnx")
        assert again == first and again.stat().st_mtime_ns == stamp
    finally:
        ro.chmod(0o700)


def test_overlap_in_pixels(checkpoint: Path) -> None:
    cfg = InferenceConfig(window=512, overlap_px=64)
    assert stride_for(512, cfg.overlap_fraction()) == 448
    assert stride_for(256, InferenceConfig(window=256, overlap_px=32).overlap_fraction()) == 224
    from geoglacier.errors import ConfigError

    with pytest.raises(ConfigError, match="overlap-px"):
        InferenceConfig(window=64, overlap_px=64).validate()


def test_onnx_export_of_a_dropout_model_is_its_eval_network(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from geoglacier.checkpoint import load_checkpoint

    meta = dataclasses.replace(tiny_meta(), model=ModelConfig(arch="Unet", encoder="resnet18", dropout=0.5))
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(meta.model, None), meta, tmp_path / "dropout.pth")
    out = export_model(ckpt, "onnx", tmp_path / "dropout.onnx")
    assert read_exported_meta(out).model.dropout == 0.5
    assert "Dropout" not in {node.op_type for node in onnx.load(str(out)).graph.node}
    model, _ = load_checkpoint(ckpt)
    x = np.random.default_rng(0).normal(size=(2, 5, 64, 96)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    first = session.run(None, {"bands": x})[0]
    np.testing.assert_allclose(first, want, atol=1e-4)
    np.testing.assert_array_equal(session.run(None, {"bands": x})[0], first)


def test_openvino_export_keeps_a_users_bin_or_json_without_overwrite(
    checkpoint: Path, tmp_path: Path
) -> None:
    from geoglacier.errors import OutputExistsError

    for name in ("m.bin", "m.json"):
        (tmp_path / name).write_text("a user's file")
        with pytest.raises(OutputExistsError, match=name):
            export_model(checkpoint, "openvino", tmp_path / "m.xml")
        assert (tmp_path / name).read_text() == "a user's file" and not (tmp_path / "m.xml").exists()
        (tmp_path / name).unlink()
