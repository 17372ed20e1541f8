"""Tests of geoglacier.inference.segment: blending without seams, nodata, grids, COG outputs, atomicity."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.errors import (
    CheckpointError,
    ConfigError,
    CRSMissingError,
    GeoglacierWarning,
    InvalidRasterError,
    OutputExistsError,
    OutputPathError,
)
from geoglacier.inference import engines
from geoglacier.inference import segment as inference
from geoglacier.inference.config import InferenceConfig
from geoglacier.inference.segment import Segmenter, segment_scene
from geoglacier.inference.windows import tile_grid
from geoglacier.io.atomic import TMP_PREFIX
from geoglacier.model import ModelConfig, build_model
from tests.data import GEO_TRANSFORM, UTM_TRANSFORM, scene_array, write_raster, write_scene
from tests.glacier_data import px_box, write_outlines

BANDS = ("red", "green", "blue", "nir", "ndvi")
MEAN, STD = 127.0, 60.0


def stand_in_meta(patch_size: int = 64, threshold: float = 0.5) -> CheckpointMeta:
    return CheckpointMeta(
        model=ModelConfig(encoder="resnet18"),
        bands=BANDS,
        mean=(MEAN,) * 5,
        std=(STD,) * 5,
        patch_size=patch_size,
        threshold=threshold,
    )


class ConvNet(nn.Module):
    """A seeded k x k convolution: translation-equivariant except within k//2 px of a window edge."""

    def __init__(self, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(5, 1, k, padding=k // 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.4)
            self.conv.bias.fill_(0.1)
        self.calls = 0
        self.windows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.windows += x.shape[0]
        return self.conv(x)


class ConstantNet(nn.Module):
    """Predicts the same logit everywhere and counts the windows it sees."""

    def __init__(
        self, logit: float = 10.0, fail_on_call: int | None = None, exc: BaseException | None = None
    ):
        super().__init__()
        self.logit = logit
        self.calls = 0
        self.windows = 0
        self.fail_on_call = fail_on_call
        self.exc = exc or RuntimeError("injected failure")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise self.exc
        self.windows += x.shape[0]
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.logit, dtype=x.dtype, device=x.device)


class SigtermNet(ConstantNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().forward(x)


def fp32(**kwargs) -> InferenceConfig:
    return InferenceConfig(device="cpu", precision="fp32", **kwargs)


def predict_array(seg: Segmenter, scene: Path, tile: int | None = None) -> np.ndarray:
    """Assemble the finished tiles, checking they cover the scene exactly once."""
    with rasterio.open(scene) as ds:
        height, width = ds.height, ds.width
    out = np.zeros((height, width), dtype=np.float32)
    seen = np.zeros((height, width), dtype=np.int64)
    for t in seg.predict(scene, tile=tile):
        h, w = t.probabilities.shape
        out[t.row_off : t.row_off + h, t.col_off : t.col_off + w] = t.probabilities
        seen[t.row_off : t.row_off + h, t.col_off : t.col_off + w] += 1
    assert (seen == 1).all()
    return out


def whole_image(model: nn.Module, data: np.ndarray) -> np.ndarray:
    """The model on the whole normalised scene at once: the seam-free reference."""
    x = torch.from_numpy((data - MEAN) / STD).float()[None]
    with torch.no_grad():
        return torch.sigmoid(model(x))[0, 0].numpy()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weights U-Net++/ResNet18 checkpoint with patch size 64."""
    torch.manual_seed(0)
    config = ModelConfig(encoder="resnet18")
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    meta = CheckpointMeta(model=config, bands=BANDS, mean=(MEAN,) * 5, std=(STD,) * 5, patch_size=64)
    return save_checkpoint(build_model(config, None), meta, path)


# ------------------------------------------------------------------------------- seams


@pytest.mark.parametrize("blend", ["gaussian", "cosine", "none"])
@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_blend_has_no_seams(tmp_path: Path, blend: str, overlap: float) -> None:
    height, width, window = 176, 208, 64
    data = scene_array(height, width, seed=4)
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConvNet()
    seg = Segmenter(model, stand_in_meta(), fp32(window=window, overlap=overlap, blend=blend, batch_size=3))
    got = predict_array(seg, scene)
    ref = whole_image(model, data)
    # A 3x3 zero-padded conv differs from the whole-image result only on a window's
    # outer ring where that ring is not the scene edge: everywhere else must match.
    dirty = np.zeros((height, width), dtype=bool)
    for r, c in tile_grid(height, width, window, overlap):
        if r > 0:
            dirty[r, c : c + window] = True
        if r + window < height:
            dirty[r + window - 1, c : c + window] = True
        if c > 0:
            dirty[r : r + window, c] = True
        if c + window < width:
            dirty[r : r + window, c + window - 1] = True
    assert (~dirty).mean() > 0.75
    np.testing.assert_allclose(got[~dirty], ref[~dirty], atol=1e-5)
    assert seg.stats.windows_run == len(tile_grid(height, width, window, overlap))


@pytest.mark.parametrize("blend", ["gaussian", "cosine", "none"])
def test_pointwise_model_matches_whole_image_everywhere(tmp_path: Path, blend: str) -> None:
    """With a 1x1 model no pixel has edge effects, so blending must reproduce it exactly (and cover all)."""
    data = scene_array(150, 130, seed=5)
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConvNet(k=1)
    got = predict_array(Segmenter(model, stand_in_meta(), fp32(window=64, overlap=0.25, blend=blend)), scene)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, whole_image(model, data), atol=1e-5)


def test_every_pixel_covered_with_positive_weight(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=161, width=97, seed=2)
    got = predict_array(Segmenter(ConstantNet(0.4), stand_in_meta(), fp32(window=64, overlap=0.3)), scene)
    # A pixel with zero total weight would come back as NaN (the fill), not sigmoid(0.4).
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-0.4)), atol=1e-6)


def test_scene_smaller_than_window(tmp_path: Path) -> None:
    data = scene_array(40, 50, seed=6)
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConvNet(k=1)
    seg = Segmenter(model, stand_in_meta(), fp32(window=64))
    got = predict_array(seg, scene)
    assert got.shape == (40, 50)
    np.testing.assert_allclose(got, whole_image(model, data), atol=1e-5)
    assert seg.stats.windows_run == 1
    result = seg.run(scene, tmp_path / "mask.tif")
    with rasterio.open(result.mask) as ds:
        assert (ds.height, ds.width) == (40, 50)


def test_tta_averages_the_four_flips(tmp_path: Path) -> None:
    data = scene_array(64, 64, seed=7)
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConvNet(k=3, seed=3)
    got = predict_array(Segmenter(model, stand_in_meta(), fp32(window=64, tta=True)), scene)
    x = torch.from_numpy((data - MEAN) / STD).float()[None]
    ref = torch.zeros(64, 64)
    with torch.no_grad():
        for dims in ((), (-1,), (-2,), (-2, -1)):
            p = torch.sigmoid(model(torch.flip(x, dims) if dims else x))
            ref += (torch.flip(p, dims) if dims else p)[0, 0] / 4
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
    plain = predict_array(Segmenter(model, stand_in_meta(), fp32(window=64)), scene)
    assert np.abs(plain - got).max() > 1e-3  # the flips really changed something


# ------------------------------------------------------------------------------ nodata


def test_nodata_pixels_are_255_and_empty_windows_skip_the_model(tmp_path: Path) -> None:
    data = scene_array(128, 192, seed=8)
    data[:, :64, :64] = -9999.0  # one whole window of nodata
    data[2, 100:110, 20:30] = -9999.0  # nodata value in one band only
    data[0, 70:75, 150:170] = np.nan  # NaN in one band only
    scene = write_raster(tmp_path / "s.tif", data, nodata=-9999.0)
    model = ConstantNet(10.0)  # says glacier everywhere it is asked
    seg = Segmenter(model, stand_in_meta(), fp32(window=64, overlap=0.0))
    result = seg.run(
        scene, tmp_path / "mask.tif", probabilities=tmp_path / "p.tif", summary=tmp_path / "s.json"
    )
    bad = (data == -9999.0).any(axis=0) | np.isnan(data).any(axis=0)
    with rasterio.open(result.mask) as ds:
        mask = ds.read(1)
        assert ds.nodata == 255
    assert np.array_equal(mask == 255, bad)
    assert np.all(mask[~bad] == 1)
    with rasterio.open(result.probabilities) as ds:
        prob = ds.read(1)
        assert np.isnan(ds.nodata)
    assert np.array_equal(np.isnan(prob), bad)
    assert (result.windows_run, result.windows_skipped) == (5, 1)
    assert model.windows == 5
    assert result.summary is not None
    assert result.summary.nodata_pixels == int(bad.sum())
    assert json.loads(Path(result.summary_path).read_text())["glacier_pixels"] == int((~bad).sum())


# ------------------------------------------------------------------- GDAL mask bands


def write_masked_scene(path: Path, data: np.ndarray, valid: np.ndarray) -> Path:
    """A scene whose no-data area is an internal GDAL mask band (as gdalwarp -co or a COG writes), not a value."""
    write_raster(path, data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        ds.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    with rasterio.open(path) as ds:
        assert ds.nodata is None and rasterio.enums.MaskFlags.per_dataset in ds.mask_flag_enums[0]
    return path


def test_pixels_masked_by_a_gdal_mask_band_are_nodata(tmp_path: Path) -> None:
    data = scene_array(128, 128, seed=21)
    valid = np.ones((128, 128), dtype=bool)
    valid[:64, :64] = False  # one whole window outside the footprint
    valid[90:100, 70:120] = False
    data[:, ~valid] = 0.0  # what gdalwarp leaves under a mask band
    scene = write_masked_scene(tmp_path / "s.tif", data, valid)
    model = ConstantNet(10.0)
    seg = Segmenter(model, stand_in_meta(), fp32(window=64, overlap=0.0))
    result = seg.run(scene, tmp_path / "mask.tif", summary=tmp_path / "s.json")
    with rasterio.open(result.mask) as ds:
        mask = ds.read(1)
    assert np.array_equal(mask == 255, ~valid)
    assert np.all(mask[valid] == 1)
    assert (result.windows_run, result.windows_skipped) == (3, 1)
    assert result.summary is not None and result.summary.nodata_pixels == int((~valid).sum())


def test_scene_statistics_leave_out_pixels_masked_by_a_gdal_mask_band(tmp_path: Path) -> None:
    from geoglacier.inference.normalization import clear_scene_stats, scene_normalization
    from geoglacier.io.scene import inspect_scene

    data = scene_array(96, 96, seed=22)
    valid = np.ones((96, 96), dtype=bool)
    valid[:, :40] = False
    data[:, ~valid] = 0.0
    scene = write_masked_scene(tmp_path / "s.tif", data, valid)
    clear_scene_stats()
    mean, std = scene_normalization(inspect_scene(scene))
    inside = data[:, valid].astype(np.float64)
    np.testing.assert_allclose(mean[:, 0, 0], inside.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(std[:, 0, 0], inside.std(axis=1), rtol=1e-4)


def test_scene_wholly_outside_its_gdal_mask_band_is_refused(tmp_path: Path) -> None:
    data = scene_array(64, 64, seed=23)
    scene = write_masked_scene(tmp_path / "s.tif", data, np.zeros((64, 64), dtype=bool))
    seg = Segmenter(ConstantNet(10.0), stand_in_meta(), fp32(window=64))
    with pytest.raises(InvalidRasterError, match="mask band"):
        seg.run(scene, tmp_path / "mask.tif")
    assert not (tmp_path / "mask.tif").exists()


def test_float32_lowest_as_nodata_raises_no_numpy_warning(tmp_path: Path) -> None:
    """GDAL's usual float nodata (-3.4e38) must not overflow into RuntimeWarnings on a user's console."""
    lowest = float(np.finfo(np.float32).min)
    data = scene_array(64, 64, seed=25) / 255.0  # reflectance-like: a std below 1 scales nodata past float32
    data[:, :8] = lowest
    scene = write_raster(tmp_path / "s.tif", data.astype(np.float32), nodata=lowest)
    meta = dataclasses.replace(stand_in_meta(), mean=(0.5,) * 5, std=(0.2,) * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = Segmenter(ConstantNet(10.0), meta, fp32(window=64)).run(scene, tmp_path / "mask.tif")
    with rasterio.open(result.mask) as ds:
        mask = ds.read(1)
    assert (mask[:8] == 255).all() and (mask[8:] == 1).all()


def test_skipped_windows_counted_with_overlap(tmp_path: Path) -> None:
    data = scene_array(160, 160, seed=9)
    data[:, :100, :] = np.nan
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConstantNet(-10.0)
    seg = Segmenter(model, stand_in_meta(), fp32(window=64, overlap=0.25, batch_size=2))
    mask_probs = predict_array(seg, scene)
    offsets = tile_grid(160, 160, 64, 0.25)
    expected_run = sum(not np.isnan(data[0, r : r + 64, c : c + 64]).all() for r, c in offsets)
    assert model.windows == expected_run == seg.stats.windows_run
    assert seg.stats.windows_skipped == len(offsets) - expected_run > 0
    assert np.isnan(mask_probs[:100]).all() and np.isfinite(mask_probs[100:]).all()


# ------------------------------------------------------------------------ grid and COG


@pytest.mark.parametrize(("crs", "transform"), [("EPSG:32645", UTM_TRANSFORM), ("EPSG:4326", GEO_TRANSFORM)])
def test_mask_keeps_the_scene_grid(tmp_path: Path, checkpoint: Path, crs: str, transform) -> None:
    scene = write_scene(tmp_path / "s.tif", height=150, width=170, seed=1, crs=crs, transform=transform)
    result = segment_scene(
        scene, checkpoint, tmp_path / "mask.tif", summary=tmp_path / "s.json", progress=False
    )
    with rasterio.open(scene) as src, rasterio.open(result.mask) as ds:
        assert ds.crs == src.crs
        assert ds.transform == src.transform
        assert (ds.height, ds.width, ds.count) == (src.height, src.width, 1)
        assert ds.dtypes[0] == "uint8"
        assert ds.nodata == 255
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.block_shapes[0] == (256, 256)
        assert set(np.unique(ds.read(1))) <= {0, 1}
    summary = json.loads(Path(result.summary_path).read_text())
    assert summary["crs"] == crs
    assert summary["valid_pixels"] == 150 * 170
    assert "geographic" in summary["method"] if crs == "EPSG:4326" else "projected" in summary["method"]


def test_scene_georeferenced_by_gcps_keeps_them_in_its_outputs(tmp_path: Path) -> None:
    from rasterio.control import GroundControlPoint

    gcps = [
        GroundControlPoint(row, col, 478000.0 + 30 * col + 3 * row, 3108140.0 - 30 * row + 2 * col)
        for row in (0, 96)
        for col in (0, 64)
    ]
    scene = write_raster(tmp_path / "s.tif", scene_array(96, 64, seed=24), crs=None)
    with rasterio.open(scene, "r+") as ds:
        ds.gcps = (gcps, "EPSG:32645")
    seg = Segmenter(ConstantNet(10.0), stand_in_meta(), fp32(window=64))
    result = seg.run(scene, tmp_path / "mask.tif", probabilities=tmp_path / "p.tif")
    for out in (result.mask, result.probabilities):
        with rasterio.open(out) as ds:
            got, crs = ds.gcps
            assert crs == "EPSG:32645"
            assert [(g.row, g.col, g.x, g.y) for g in got] == [(g.row, g.col, g.x, g.y) for g in gcps]
    with pytest.raises(CRSMissingError, match="gdalwarp"):  # areas need a warped scene, not a CRS
        seg.run(scene, tmp_path / "m2.tif", summary=tmp_path / "s.json")


def test_cog_outputs_have_overviews(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=600, width=530, seed=2)
    seg = Segmenter(ConvNet(k=1), stand_in_meta(), fp32(window=128, overlap=0.0, batch_size=8))
    result = seg.run(scene, tmp_path / "mask.tif", probabilities=tmp_path / "p.tif")
    for path, dtype in ((result.mask, "uint8"), (result.probabilities, "float32")):
        with rasterio.open(path) as ds:
            assert ds.dtypes[0] == dtype
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") == "DEFLATE"
            assert ds.overviews(1), "a 600 px COG with 256 px tiles needs an overview"
            assert ds.profile["tiled"]
    with rasterio.open(result.mask) as m, rasterio.open(result.probabilities) as p:
        assert np.array_equal(m.read(1), (p.read(1) > 0.5).astype(np.uint8))


def test_threshold_comes_from_the_checkpoint(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    seg = Segmenter(ConstantNet(0.0), stand_in_meta(threshold=0.6), fp32(window=64))  # p = 0.5 < 0.6
    with rasterio.open(seg.run(scene, tmp_path / "m.tif").mask) as ds:
        assert (ds.read(1) == 0).all()


# -------------------------------------------------------------------- atomic outputs


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_mid_run_leaves_nothing(tmp_path: Path, exc: BaseException) -> None:
    scene = write_scene(tmp_path / "s.tif", height=200, width=100, seed=3)
    before = sorted(os.listdir(tmp_path))
    seg = Segmenter(ConstantNet(fail_on_call=3, exc=exc), stand_in_meta(), fp32(window=64, batch_size=1))
    with pytest.raises(type(exc)):
        seg.run(scene, tmp_path / "mask.tif", probabilities=tmp_path / "p.tif", summary=tmp_path / "s.json")
    assert sorted(os.listdir(tmp_path)) == before


def test_sigterm_leaves_nothing_and_handler_is_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = write_scene(tmp_path / "s.tif", height=200, width=100, seed=3)
    from geoglacier.inference.engines import LoadedEngine, TorchEngine

    monkeypatch.setattr(
        inference,
        "load_engine",
        lambda *a, **k: LoadedEngine(TorchEngine(SigtermNet(), torch.device("cpu")), stand_in_meta(), "test"),
    )
    model_file = tmp_path / "m.pth"
    model_file.write_bytes(b"stand-in")  # what load_engine (replaced) would read
    before_files = sorted(os.listdir(tmp_path))
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="no output was left behind"):  # before any tile
        segment_scene(
            scene,
            model_file,
            tmp_path / "mask.tif",
            window=64,
            precision="fp32",
            batch_size=1,
            progress=False,
        )
    assert sorted(os.listdir(tmp_path)) == before_files
    assert signal.getsignal(signal.SIGTERM) is previous


class InterruptNet(ConvNet):
    """A ConvNet that stops the run (as Ctrl-C does) on its ``stop_at``-th call."""

    def __init__(self, stop_at: int | None) -> None:
        super().__init__(k=3, seed=4)
        self.stop_at = stop_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stop_at is not None and self.calls + 1 >= self.stop_at:
            raise KeyboardInterrupt
        return super().forward(x)


def _resumable_run(tmp_path: Path, scene: Path, net: nn.Module, out: str, **kwargs) -> object:
    from geoglacier.inference.engines import LoadedEngine, TorchEngine

    inference.load_engine = lambda *a, **k: LoadedEngine(  # type: ignore[assignment]
        TorchEngine(net, torch.device("cpu")), stand_in_meta(patch_size=32), "test"
    )
    run = {"window": 32, "overlap": 0.25, "precision": "fp32", "batch_size": 2, "progress": False}
    return segment_scene(
        scene, tmp_path / "m.pth", tmp_path / out, probabilities=tmp_path / f"{out}.p.tif",
        summary=tmp_path / f"{out}.json", **run, **kwargs,
    )  # fmt: skip


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "load_engine", inference.load_engine)  # restored after the test
    data = scene_array(600, 100, seed=21)  # 3 tiles of 256 px, one above the other
    data[:, 120:200, 40:90] = np.nan
    scene = write_raster(tmp_path / "s.tif", data)
    (tmp_path / "m.pth").write_bytes(b"stand-in")
    whole = _resumable_run(tmp_path, scene, InterruptNet(None), "whole.tif")
    with pytest.raises(KeyboardInterrupt, match=r"; 1 of 3 output tiles .* --resume"):
        _resumable_run(tmp_path, scene, InterruptNet(stop_at=35), "mask.tif")
    assert not (tmp_path / "mask.tif").exists() and not list(tmp_path.glob(".geoglacier-tmp-*"))
    # without --resume the kept tiles are not thrown away silently
    with pytest.raises(OutputExistsError, match="pass --resume to continue it, or --overwrite"):
        _resumable_run(tmp_path, scene, InterruptNet(None), "mask.tif")
    # with other options they are not reused
    with pytest.raises(ConfigError, match="made with a different --tta"):
        _resumable_run(tmp_path, scene, InterruptNet(None), "mask.tif", resume=True, tta=True)
    # a Ctrl-C while the kept tiles are read back keeps them as they were
    from geoglacier.io.cog import TileWriter

    def ctrl_c(self: TileWriter) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(TileWriter, "replay", ctrl_c)
        with pytest.raises(KeyboardInterrupt, match="; 1 of 3 output tiles"):
            _resumable_run(tmp_path, scene, InterruptNet(None), "mask.tif", resume=True)
    net = InterruptNet(None)
    resumed = _resumable_run(tmp_path, scene, net, "mask.tif", resume=True)
    assert not (tmp_path / ".geoglacier-partial-mask.tif").exists()
    for a, b, exact in (("whole.tif", "mask.tif", True), ("whole.tif.p.tif", "mask.tif.p.tif", False)):
        with rasterio.open(tmp_path / a) as x, rasterio.open(tmp_path / b) as y:
            assert str(x.profile) == str(y.profile) and x.tags() == y.tags()  # nodata NaN != NaN
            if exact:
                assert np.array_equal(x.read(1), y.read(1))
            else:
                np.testing.assert_allclose(x.read(1), y.read(1), rtol=0, atol=2e-6)
    assert resumed.summary.glacier_pixels == whole.summary.glacier_pixels  # the kept tiles counted too
    assert resumed.summary.valid_pixels == whole.summary.valid_pixels
    assert json.loads((tmp_path / "mask.tif.json").read_text())["glacier_area_km2"] == pytest.approx(
        json.loads((tmp_path / "whole.tif.json").read_text())["glacier_area_km2"], rel=1e-12
    )
    assert net.windows < whole.windows_run  # the kept tiles' windows did not run again


@pytest.mark.parametrize("stage", ["translate", "summary", "failure"])
def test_resume_after_the_last_tile_or_after_a_failed_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """Stopped while the COG is built or the summary written (every tile done), or a
    resumed run that fails: the kept tiles stay, and --resume finishes from them."""
    import geoglacier.inference.outputs as outputs_module
    import geoglacier.io.cog as cog

    monkeypatch.setattr(inference, "load_engine", inference.load_engine)  # restored after the test
    scene = write_raster(tmp_path / "s.tif", scene_array(600, 100, seed=22))
    (tmp_path / "m.pth").write_bytes(b"stand-in")
    whole = _resumable_run(tmp_path, scene, InterruptNet(None), "whole.tif")
    if stage == "failure":  # interrupted after one tile, then a resumed run fails
        with pytest.raises(KeyboardInterrupt, match="; 1 of 3 output tiles"):
            _resumable_run(tmp_path, scene, InterruptNet(stop_at=35), "mask.tif")
        with pytest.raises(RuntimeError, match="injected"):
            _resumable_run(tmp_path, scene, ConstantNet(fail_on_call=3), "mask.tif", resume=True)
    else:
        target = (cog, "translate_to_cog") if stage == "translate" else (outputs_module, "write_summary_json")
        real = getattr(*target)

        def stop(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(*target, stop)
            with pytest.raises(KeyboardInterrupt, match="; 3 of 3 output tiles"):
                _resumable_run(tmp_path, scene, InterruptNet(None), "mask.tif")
        assert getattr(*target) is real
    net = InterruptNet(None)
    resumed = _resumable_run(tmp_path, scene, net, "mask.tif", resume=True)
    assert (net.windows == 0) is (stage != "failure")  # every tile was kept
    with rasterio.open(tmp_path / "whole.tif") as x, rasterio.open(tmp_path / "mask.tif") as y:
        assert np.array_equal(x.read(1), y.read(1))
    assert resumed.summary.glacier_pixels == whole.summary.glacier_pixels
    assert not (tmp_path / ".geoglacier-partial-mask.tif").exists()


def test_stale_temporaries_of_a_killed_run_are_cleared(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    stale = [tmp_path / f"{TMP_PREFIX}mask.tif.stage-abc.tif", tmp_path / f"{TMP_PREFIX}mask.tif.x1.tif"]
    for path in stale:
        path.write_bytes(b"half a tiff")
    Segmenter(ConstantNet(), stand_in_meta(), fp32(window=64)).run(scene, tmp_path / "mask.tif")
    assert sorted(os.listdir(tmp_path)) == ["mask.tif", "s.tif"]


def test_existing_outputs_kept_unless_overwrite(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    (tmp_path / "s.json").write_text("keep")
    model = ConstantNet()
    seg = Segmenter(model, stand_in_meta(), fp32(window=64))
    with pytest.raises(OutputExistsError, match="s.json"):
        seg.run(scene, tmp_path / "mask.tif", summary=tmp_path / "s.json")
    assert model.calls == 0 and not (tmp_path / "mask.tif").exists()
    assert (tmp_path / "s.json").read_text() == "keep"
    seg.run(scene, tmp_path / "mask.tif", summary=tmp_path / "s.json", overwrite=True)
    assert json.loads((tmp_path / "s.json").read_text())["glacier_pixels"] == 64 * 64
    with pytest.raises(OutputExistsError):
        seg.run(scene, tmp_path / "mask.tif")
    seg.run(scene, tmp_path / "mask.tif", overwrite=True)


# ------------------------------------------------------------------ checks before work


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": 48}, ConfigError, "multiple of 32"),
        ({"overlap": 1.0}, ConfigError, "overlap"),
        ({"batch_size": 0}, ConfigError, "batch-size"),
        ({"blend": "linear"}, ConfigError, "blend"),
        ({"precision": "fp8"}, ConfigError, "precision"),
        ({"device": "tpu"}, ConfigError, "device"),
        ({"outlines": "o.shp"}, ConfigError, "outline format"),
        ({"min_area": -1.0}, ConfigError, "min-area"),
        ({"probabilities": "mask.tif"}, OutputPathError, "both"),
    ],
)
def test_bad_options_fail_before_work(tmp_path: Path, checkpoint: Path, kwargs, error, match) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    for key in ("outlines", "probabilities"):
        if key in kwargs:
            kwargs[key] = tmp_path / kwargs[key]
    with pytest.raises(error, match=match):
        segment_scene(scene, checkpoint, tmp_path / "mask.tif", progress=False, **kwargs)
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


def test_band_count_mismatch(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, bands=4)
    with pytest.raises(CheckpointError, match="5 bands"):
        segment_scene(scene, checkpoint, tmp_path / "mask.tif", progress=False)


def test_missing_crs(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, crs=None)
    with pytest.raises(CRSMissingError, match="pixel-size"):
        segment_scene(scene, checkpoint, tmp_path / "mask.tif", summary=tmp_path / "s.json", progress=False)
    with pytest.raises(CRSMissingError):
        segment_scene(
            scene,
            checkpoint,
            tmp_path / "mask.tif",
            outlines=tmp_path / "o.gpkg",
            pixel_size=30,
            progress=False,
        )
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]
    result = segment_scene(
        scene, checkpoint, tmp_path / "mask.tif", summary=tmp_path / "s.json", pixel_size=30.0, progress=False
    )
    assert result.summary is not None
    assert result.summary.valid_area_km2 == pytest.approx(64 * 64 * 900 / 1e6)


def test_missing_checkpoint(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64)
    with pytest.raises(CheckpointError):
        segment_scene(scene, tmp_path / "nope.pth", tmp_path / "mask.tif", progress=False)


# ------------------------------------------------------------------ precision, memory


def test_reduced_precision_agrees_with_fp32(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=128, width=96, seed=11)
    ref = predict_array(Segmenter.from_checkpoint(checkpoint, fp32()), scene)
    low = predict_array(
        Segmenter.from_checkpoint(checkpoint, InferenceConfig(device="cpu", precision="bf16")), scene
    )
    assert np.abs(ref - low).max() < 0.05
    cpu = torch.device("cpu")
    assert engines.resolve_precision("auto", cpu) == torch.float32  # bf16 only when asked for on CPU
    assert engines.resolve_precision("bf16", cpu) == torch.bfloat16


@pytest.mark.parametrize("axis", ["height", "width"])
def test_memory_does_not_grow_with_scene_length(tmp_path: Path, axis: str) -> None:
    """Neither a taller nor a wider scene holds more: blocks and open tiles stay put."""
    peaks, open_pixels = {}, {}
    for length in (256, 2048):
        shape = {"height": length, "width": 96} if axis == "height" else {"height": 96, "width": length}
        scene = write_scene(tmp_path / f"s{length}.tif", seed=1, **shape)
        seg = Segmenter(ConstantNet(), stand_in_meta(), fp32(window=64, overlap=0.25, block_size=128))
        tracemalloc.start()
        for _ in seg.predict(scene, tile=64):
            pass
        peaks[length] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        open_pixels[length] = seg.stats.max_open_pixels
    # The open tiles form a band across the short side: about a block plus a window long.
    assert open_pixels[2048] == open_pixels[256] <= (128 + 64 + 64) * 96
    # Had anything grown with the scene, the extra 1792 px (3.4 MB of float32 bands)
    # would show in the peak; a quarter of that absorbs allocator noise.
    extra_scene_bytes = (2048 - 256) * 96 * 5 * 4
    assert peaks[2048] - peaks[256] < 0.25 * extra_scene_bytes


def test_narrow_scenes_fill_whole_batches(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=256, width=256, seed=1)  # 5 x 5 windows
    model = ConstantNet()
    seg = Segmenter(model, stand_in_meta(), fp32(window=64, overlap=0.25, batch_size=4, block_size=128))
    got = predict_array(seg, scene)
    assert np.isfinite(got).all()
    # Batches run on across block edges: only the very last one is partial.
    assert (model.windows, model.calls) == (25, 7)


# ------------------------------------------------------------------- blocks of windows


@pytest.mark.parametrize(("height", "width"), [(80, 256), (256, 80), (200, 232)])
@pytest.mark.parametrize("tile", [32, 48, 256])
def test_blend_is_exact_across_block_edges(tmp_path: Path, height: int, width: int, tile: int) -> None:
    """Small blocks (several along each axis) give the whole-image blend, seams included."""
    data = scene_array(height, width, seed=12)
    scene = write_raster(tmp_path / "s.tif", data)
    window, overlap = 32, 0.25
    model = ConvNet(k=3, seed=2)
    small = fp32(window=window, overlap=overlap, batch_size=3, block_size=64)  # 2 x 2 windows a block
    got = predict_array(Segmenter(model, stand_in_meta(patch_size=32), small), scene, tile=tile)
    one = fp32(window=window, overlap=overlap, batch_size=3, block_size=4096)  # a single block
    whole = predict_array(Segmenter(model, stand_in_meta(patch_size=32), one), scene, tile=tile)
    # The same windows blended in another order: equal up to float32 rounding.
    np.testing.assert_allclose(got, whole, rtol=0, atol=2e-6)
    # And the seam-free reference where a 3x3 conv sees no window edge.
    ref = whole_image(model, data)
    dirty = np.zeros((height, width), dtype=bool)
    for r, c in tile_grid(height, width, window, overlap):
        dirty[r, c : c + window] |= r > 0
        dirty[r + window - 1, c : c + window] |= r + window < height
        dirty[r : r + window, c] |= c > 0
        dirty[r : r + window, c + window - 1] |= c + window < width
    assert (~dirty).mean() > 0.5
    np.testing.assert_allclose(got[~dirty], ref[~dirty], atol=1e-5)
    pointwise = ConvNet(k=1)
    exact = predict_array(Segmenter(pointwise, stand_in_meta(patch_size=32), small), scene, tile=tile)
    np.testing.assert_allclose(exact, whole_image(pointwise, data), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiles_done_by_an_interrupted_run_are_left_out_and_the_rest_is_unchanged(
    tmp_path: Path, seed: int
) -> None:
    from geoglacier.inference.windows import tile_shape, windows_needed

    height, width, window, tile = 200, 232, 32, 48
    data = scene_array(height, width, seed=12)
    data[:, 100:160, 20:90] = np.nan  # windows without data next to done tiles
    scene = write_raster(tmp_path / "s.tif", data)
    config = fp32(window=window, overlap=0.25, batch_size=3, block_size=64)
    full = {
        (t.row_off, t.col_off): t.probabilities
        for t in Segmenter(ConvNet(k=3, seed=2), stand_in_meta(patch_size=32), config).predict(
            scene, tile=tile
        )
    }
    done = np.random.default_rng(seed).random(tile_shape(height, width, tile)) < 0.5
    model = ConvNet(k=3, seed=2)
    seg = Segmenter(model, stand_in_meta(patch_size=32), config)
    rest = {(t.row_off, t.col_off): t.probabilities for t in seg.predict(scene, tile=tile, done=done)}
    assert set(rest) == {(ty * tile, tx * tile) for ty, tx in zip(*np.nonzero(~done), strict=True)}
    for key, probs in rest.items():
        np.testing.assert_allclose(probs, full[key], rtol=0, atol=2e-6)
    offsets = tile_grid(height, width, window, 0.25)
    needed = offsets[windows_needed(offsets, window, tile, height, width, done)]
    assert seg.stats.windows_total == len(needed) < len(offsets)
    assert model.windows == seg.stats.windows_run <= len(needed)
    # by hand: a window is needed when a tile it overlaps is not done
    for (r, c), need in zip(
        offsets.tolist(), windows_needed(offsets, window, tile, height, width, done), strict=True
    ):
        tiles = done[
            r // tile : (min(r + window, height) - 1) // tile + 1,
            c // tile : (min(c + window, width) - 1) // tile + 1,
        ]
        assert need == (not tiles.all())


def test_nodata_and_skipped_windows_across_block_edges(tmp_path: Path) -> None:
    data = scene_array(96, 320, seed=13)
    data[:, :, 40:150] = np.nan  # several whole windows and blocks without data
    data[1, 60:70, 200:230] = np.nan
    scene = write_raster(tmp_path / "s.tif", data)
    model = ConstantNet(0.3)
    seg = Segmenter(model, stand_in_meta(patch_size=32), fp32(window=32, overlap=0.5, block_size=64))
    got = predict_array(seg, scene, tile=48)
    bad = np.isnan(data).any(axis=0)
    assert np.array_equal(np.isnan(got), bad)
    np.testing.assert_allclose(got[~bad], 1 / (1 + np.exp(-0.3)), atol=1e-6)
    offsets = tile_grid(96, 320, 32, 0.5)
    expected_run = sum(not bad[r : r + 32, c : c + 32].all() for r, c in offsets)
    assert seg.stats.windows_run == model.windows == expected_run
    assert seg.stats.windows_skipped == len(offsets) - expected_run > 0


def test_wide_scene_in_small_blocks_writes_the_same_outputs(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=72, width=300, seed=14)
    results = {}
    for block in (64, 4096):
        seg = Segmenter(ConvNet(k=3, seed=5), stand_in_meta(patch_size=32), fp32(window=32, block_size=block))
        out = tmp_path / str(block)
        out.mkdir()
        results[block] = seg.run(scene, out / "mask.tif", probabilities=out / "p.tif", summary=out / "s.json")
    with rasterio.open(results[64].mask) as a, rasterio.open(results[4096].mask) as b:
        assert a.profile == b.profile
        assert np.array_equal(a.read(1), b.read(1))
    with rasterio.open(results[64].probabilities) as a, rasterio.open(results[4096].probabilities) as b:
        np.testing.assert_allclose(a.read(1), b.read(1), rtol=0, atol=2e-6)
    small, big = results[64].summary, results[4096].summary
    assert small is not None and big is not None
    assert small.glacier_pixels == big.glacier_pixels
    assert small.glacier_area_km2 == pytest.approx(big.glacier_area_km2, rel=1e-12)


def test_striped_wide_scene_warns_and_still_segments(tmp_path: Path) -> None:
    data = scene_array(40, 300, seed=15)
    striped = write_raster(tmp_path / "striped.tif", data, tiled=False)
    tiled = write_raster(tmp_path / "tiled.tif", data)
    config = fp32(window=32, block_size=64)
    with pytest.warns(GeoglacierWarning, match="full-width strips.*TILED=YES"):
        from_strips = predict_array(Segmenter(ConvNet(), stand_in_meta(patch_size=32), config), striped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_tiles = predict_array(Segmenter(ConvNet(), stand_in_meta(patch_size=32), config), tiled)
    np.testing.assert_array_equal(from_strips, from_tiles)


def test_block_size_is_validated() -> None:
    with pytest.raises(ConfigError, match="block_size"):
        InferenceConfig(block_size=0).validate()


def test_output_may_not_replace_the_input_scene(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=4)
    before = scene.read_bytes()
    with pytest.raises(OutputPathError, match="--out is the same file as the input SCENE"):
        segment_scene(scene, checkpoint, scene, overwrite=True, device="cpu", progress=False)
    assert scene.read_bytes() == before


@pytest.mark.parametrize("role", ["out", "summary", "probabilities", "outlines", "glaciers"])
def test_no_output_may_replace_the_checkpoint_or_inventory(
    tmp_path: Path, checkpoint: Path, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: --model e/mm.pth --out e/mm.pth --overwrite destroyed the checkpoint.
    from tests.data import UTM_TRANSFORM
    from tests.glacier_data import px_box, write_outlines

    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=4)
    model = tmp_path / "model.pth"
    model.write_bytes(checkpoint.read_bytes())
    inv = write_outlines(tmp_path / "inv.gpkg", [px_box(5, 5, 20, 20, UTM_TRANSFORM)])
    before = {p: p.read_bytes() for p in (scene, model, inv)}
    monkeypatch.chdir(tmp_path)
    victim = {"outlines": "inv.gpkg", "glaciers": "./inv.gpkg"}.get(role, "./model.pth")
    outputs: dict[str, object] = {"out": "mask.tif", role: victim}  # "out" may be the victim
    if role == "glaciers":
        outputs["outlines"] = "o.gpkg"
    out = outputs.pop("out")
    if role in ("out", "probabilities"):  # a .pth is no GeoTIFF name: refused for its extension first
        error, match = ConfigError, rf"--{role} .*model.pth: writes a GeoTIFF"
    else:
        error, match = OutputPathError, r"is the same file as the input --(model|inventory)"
    with pytest.raises(error, match=match):
        segment_scene("s.tif", "model.pth", out, overwrite=True, device="cpu", progress=False, inventory="inv.gpkg"
                      if role in ("outlines", "glaciers") else None, **outputs)  # fmt: skip
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["inv.gpkg", "model.pth", "s.tif"]


def test_raster_outputs_must_be_geotiffs(tmp_path: Path, checkpoint: Path) -> None:
    # Before: --out m.png wrote a GeoTIFF named .png.
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=4)
    with pytest.raises(ConfigError, match=r"--out .*m\.png: writes a GeoTIFF.*\.tif or \.tiff"):
        segment_scene(scene, checkpoint, tmp_path / "m.png", device="cpu", progress=False)
    with pytest.raises(ConfigError, match=r"--probabilities .*p\.jpg"):
        segment_scene(scene, checkpoint, tmp_path / "m.tif", probabilities=tmp_path / "p.jpg", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]
    result = segment_scene(scene, checkpoint, tmp_path / "m.TIFF", device="cpu", progress=False)
    assert result.mask.is_file()


def test_pixel_size_for_a_scene_with_a_crs_is_refused(tmp_path: Path, checkpoint: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=4)
    with pytest.raises(ConfigError, match="has a CRS .*drop --pixel-size"):
        segment_scene(scene, checkpoint, tmp_path / "m.tif", summary=tmp_path / "s.json", pixel_size=10.0)
    assert sorted(os.listdir(tmp_path)) == ["s.tif"]


def test_a_local_crs_takes_pixel_size_for_areas_but_not_for_outlines(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.inference.segment as segment

    local = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=4, crs=local)
    loads: list[object] = []
    real = segment.load_engine
    monkeypatch.setattr(segment, "load_engine", lambda *a, **k: loads.append(a) or real(*a, **k))
    with pytest.raises(
        CRSMissingError,
        match="neither projected nor geographic, so areas cannot be computed; pass --pixel-size",
    ):
        segment_scene(scene, checkpoint, tmp_path / "m.tif", summary=tmp_path / "s.json", progress=False)
    with pytest.raises(CRSMissingError, match="neither projected nor geographic; outlines need"):
        segment_scene(
            scene, checkpoint, tmp_path / "m.tif", summary=tmp_path / "s.json", outlines=tmp_path / "o.gpkg",
            pixel_size=10.0, progress=False,
        )  # fmt: skip
    inventory = write_outlines(tmp_path / "inv.gpkg", [px_box(1, 1, 5, 5)])
    with pytest.raises(CRSMissingError, match="neither projected nor geographic; --inventory need"):
        segment_scene(
            scene, checkpoint, tmp_path / "m.tif", inventory=inventory, glaciers=tmp_path / "g.csv",
            pixel_size=10.0, progress=False,
        )  # fmt: skip
    assert loads == [] and sorted(os.listdir(tmp_path)) == [
        "inv.gpkg",
        "s.tif",
    ]  # refused before the model loads
    result = segment_scene(
        scene, checkpoint, tmp_path / "m.tif", summary=tmp_path / "s.json", pixel_size=10.0, progress=False
    )
    assert result.summary is not None and result.summary.valid_area_km2 == pytest.approx(64 * 64 * 100 / 1e6)


def test_constant_band_checkpoint_is_usable(tmp_path: Path) -> None:
    meta = stand_in_meta()
    flat = CheckpointMeta(**{**meta.__dict__, "std": (60.0, 60.0, 60.0, 60.0, 0.0)})
    scene = write_scene(tmp_path / "s.tif", height=64, width=64, seed=5)
    probs = predict_array(Segmenter(ConstantNet(), flat, fp32(window=64)), scene)
    assert np.isfinite(probs).all()
