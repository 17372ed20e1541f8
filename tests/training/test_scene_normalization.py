"""Per-scene normalisation (``normalization="scene"``): training, checkpoint, inference.

The defining property: a checkpoint in scene mode gives the same probabilities for a
scene ``S`` and for ``S * gain_b + offset_b`` (positive gain, per band), because each
scene is standardised by its own mean and std; the training mode, which applies the
training statistics to every scene, does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import (
    FORMAT_VERSION,
    CheckpointMeta,
    checkpoint_dict,
    meta_from_dict,
    read_checkpoint,
    save_checkpoint,
)
from geoglacier.errors import CheckpointError, ConfigError, InvalidRasterError
from geoglacier.inference.ensemble import segment_ensemble
from geoglacier.inference.normalization import scene_normalization
from geoglacier.inference.segment import segment_scene
from geoglacier.io.scene import inspect_scene
from geoglacier.model import ModelConfig, build_model
from geoglacier.training.config import RESUME_LOCKED, TrainConfig
from geoglacier.training.datasets import make_datasets
from geoglacier.training.loop import train
from geoglacier.training.normalization import scene_scan
from tests.data import glacier_mask, scene_array, write_raster
from tests.training.test_training import FAST

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BANDS = ("red", "green", "blue", "nir", "ndvi")
NODATA = -9999.0
GAIN = np.array([0.5, 2.0, 1.3, 3.0, 0.8], dtype=np.float32)[:, None, None]
OFFSET = np.array([40.0, -30.0, 500.0, 5.0, 1000.0], dtype=np.float32)[:, None, None]
# The torch engine in fp32: bf16 (auto on some CPUs) rounds inputs to 3 digits.
RUN = dict(window=64, overlap=0.25, device="cpu", engine="torch", precision="fp32", progress=False)


def _with_nodata(data: np.ndarray) -> np.ndarray:
    """A nodata corner, one pixel nodata in one band only, and a few NaN pixels."""
    h, w = data.shape[1:]
    data[:, : h // 4, : w // 3] = NODATA
    data[3, h // 2, w // 2] = NODATA
    data[:, h - 5 :, 20:30] = np.nan
    return data


def _valid(data: np.ndarray) -> np.ndarray:
    """Independent reference: pixels where every band is finite and not nodata."""
    return np.all(np.isfinite(data) & (data != NODATA), axis=0)


def _numpy_stats(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = data[:, _valid(data)].astype(np.float64)
    return x.mean(axis=1), x.std(axis=1)


def _transformed(data: np.ndarray) -> np.ndarray:
    """``data * GAIN + OFFSET`` per band, nodata and NaN left as they are."""
    out = data * GAIN + OFFSET
    out[:, ~_valid(data)] = data[:, ~_valid(data)]
    return out.astype(np.float32)


def _untrained(path: Path, mode: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config, bands=BANDS, mean=(127.0,) * 5, std=(60.0,) * 5, patch_size=64, normalization=mode
    )
    return save_checkpoint(build_model(config, None), meta, path)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A scene S with nodata and S' = S * gain + offset per band; and S's array."""
    d = tmp_path_factory.mktemp("scenes")
    data = _with_nodata(scene_array(96, 112, seed=3))
    s = write_raster(d / "s.tif", data, nodata=NODATA, descriptions=BANDS)
    s2 = write_raster(d / "s2.tif", _transformed(data), nodata=NODATA, descriptions=BANDS)
    return s, s2, data


def _probabilities(scene: Path, model: Path, out: Path) -> tuple[np.ndarray, dict]:
    result = segment_scene(
        scene, model, out / f"{scene.stem}_m.tif", probabilities=out / f"{scene.stem}_p.tif", **RUN
    )
    return _read(out / f"{scene.stem}_p.tif"), result.extra


# ------------------------------------------------------------------- (a) invariance


def test_scene_mode_is_invariant_to_per_band_gain_and_offset(
    scenes: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    s, s2, data = scenes
    for mode in ("scene", "training"):
        ckpt = _untrained(tmp_path / f"{mode}.pth", mode)
        (tmp_path / mode).mkdir()
        p, extra = _probabilities(s, ckpt, tmp_path / mode)
        p2, extra2 = _probabilities(s2, ckpt, tmp_path / mode)
        assert extra["normalization"] == extra2["normalization"] == mode
        nodata = ~_valid(data)
        assert np.isnan(p[nodata]).all() and np.isnan(p2[nodata]).all()
        assert not np.isnan(p[~nodata]).any()
        if mode == "scene":
            np.testing.assert_allclose(p2, p, atol=1e-5, rtol=0)
        else:  # the training statistics applied to both: S' looks like another scene
            assert np.nanmax(np.abs(p2 - p)) > 0.05


def test_scene_statistics_at_inference_skip_nodata(scenes: tuple[Path, Path, np.ndarray]) -> None:
    s, s2, data = scenes
    for path, array in ((s, data), (s2, _transformed(data))):
        mean, std = scene_normalization(inspect_scene(path, expected_bands=None, warn_no_crs=False))
        ref_mean, ref_std = _numpy_stats(array)
        np.testing.assert_allclose(mean.ravel(), ref_mean, rtol=1e-6)
        np.testing.assert_allclose(std.ravel(), ref_std, rtol=1e-6)
    # S' statistics are S's moved by the gain and offset, as the invariance needs.
    ref_mean, ref_std = _numpy_stats(data)
    mean2, std2 = _numpy_stats(_transformed(data))
    np.testing.assert_allclose(mean2, GAIN.ravel() * ref_mean + OFFSET.ravel(), rtol=1e-5)
    np.testing.assert_allclose(std2, GAIN.ravel() * ref_std, rtol=1e-5)


def test_all_nodata_scene_in_scene_mode_is_a_clear_error(tmp_path: Path) -> None:
    scene = write_raster(
        tmp_path / "empty.tif", np.full((5, 64, 64), NODATA, np.float32), nodata=NODATA, descriptions=BANDS
    )
    ckpt = _untrained(tmp_path / "scene.pth", "scene")
    with pytest.raises(InvalidRasterError, match="empty.tif: every pixel is nodata"):
        segment_scene(scene, ckpt, tmp_path / "mask.tif", **RUN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tif", "scene.pth"]


def test_ensemble_members_in_scene_mode_are_invariant(
    scenes: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    s, s2, _ = scenes
    members = [_untrained(tmp_path / f"m{k}.pth", "scene", seed=k) for k in (1, 2)]
    means = []
    for scene in (s, s2):
        prob = tmp_path / f"{scene.stem}_mean.tif"
        segment_ensemble(scene, members, tmp_path / f"{scene.stem}_ens.tif", probabilities=prob, **RUN)
        means.append(_read(prob))
    np.testing.assert_allclose(means[1], means[0], atol=1e-5, rtol=0)


def _count_scans(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every scene scan that inference makes (and forget what it remembers)."""
    import geoglacier.inference.normalization as normalization

    scans: list[Path] = []

    def counting(path, *args, **kwargs):
        scans.append(Path(path))
        return scene_scan(path, *args, **kwargs)

    normalization.clear_scene_stats()
    monkeypatch.setattr(normalization, "scene_scan", counting)
    return scans


def test_ensemble_in_scene_mode_scans_the_scene_once(
    scenes: tuple[Path, Path, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoglacier.inference.normalization import clear_scene_stats

    s, _, _ = scenes
    scans = _count_scans(monkeypatch)
    members = [_untrained(tmp_path / f"m{k}.pth", "scene", seed=k) for k in (1, 2)]
    segment_ensemble(s, members, tmp_path / "ens.tif", probabilities=tmp_path / "ens_p.tif", **RUN)
    assert scans == [s]
    singles = []
    for k, member in enumerate(members):  # each alone, with a fresh scan of its own
        clear_scene_stats()
        segment_scene(s, member, tmp_path / f"{k}.tif", probabilities=tmp_path / f"{k}_p.tif", **RUN)
        singles.append(_read(tmp_path / f"{k}_p.tif").astype(np.float64))
    assert scans == [s, s, s]
    np.testing.assert_allclose(
        _read(tmp_path / "ens_p.tif"), (singles[0] + singles[1]) / 2, atol=1e-6, rtol=0
    )


def test_remembered_scene_statistics_follow_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import os

    from geoglacier.inference.normalization import SCENE_STATS_CACHE_SIZE

    scans = _count_scans(monkeypatch)
    data = _with_nodata(scene_array(64, 64, seed=11))
    path = write_raster(tmp_path / "s.tif", data, nodata=NODATA, descriptions=BANDS)
    info = inspect_scene(path, expected_bands=None, warn_no_crs=False)
    mean, std = scene_normalization(info)
    again, _ = scene_normalization(inspect_scene(path, expected_bands=None, warn_no_crs=False))
    assert len(scans) == 1 and np.array_equal(again, mean)
    with pytest.raises(ValueError, match="read-only"):
        again += 1.0  # a caller cannot change what the next one gets
    # rewritten in place (same size), with other values and a later mtime: scanned again
    before = path.stat()
    write_raster(path, _transformed(data), nodata=NODATA, descriptions=BANDS)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_size == before.st_size
    mean2, std2 = scene_normalization(inspect_scene(path, expected_bands=None, warn_no_crs=False))
    assert len(scans) == 2
    ref_mean, ref_std = _numpy_stats(_transformed(data))
    np.testing.assert_allclose(mean2.ravel(), ref_mean, rtol=1e-6)
    np.testing.assert_allclose(std2.ravel(), ref_std, rtol=1e-6)
    assert np.abs(mean2 - mean).max() > 1.0
    # another nodata value is another key; only the last few scenes are kept
    scene_normalization(dataclasses.replace(info, nodata=0.0))
    assert len(scans) == 3
    for k in range(SCENE_STATS_CACHE_SIZE):
        other = write_raster(tmp_path / f"o{k}.tif", scene_array(32, 32, seed=k), descriptions=BANDS)
        scene_normalization(inspect_scene(other, expected_bands=None, warn_no_crs=False))
    scene_normalization(inspect_scene(path, expected_bands=None, warn_no_crs=False))
    assert len(scans) == 3 + SCENE_STATS_CACHE_SIZE + 1  # evicted by the others: scanned once more


def test_remembered_statistics_of_a_vrt_follow_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import rasterio.shutil

    scans = _count_scans(monkeypatch)
    data = scene_array(48, 48, seed=12)
    source = write_raster(tmp_path / "src.tif", data, descriptions=BANDS)
    vrt = tmp_path / "s.vrt"
    rasterio.shutil.copy(source, vrt, driver="VRT")
    mean, _ = scene_normalization(inspect_scene(vrt, expected_bands=None, warn_no_crs=False))
    scene_normalization(inspect_scene(vrt, expected_bands=None, warn_no_crs=False))
    assert len(scans) == 1
    # the source is rewritten; the .vrt file itself is untouched
    vrt_before, before = vrt.stat(), source.stat()
    write_raster(source, _transformed(data), descriptions=BANDS)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert vrt.stat().st_mtime_ns == vrt_before.st_mtime_ns
    mean2, _ = scene_normalization(inspect_scene(vrt, expected_bands=None, warn_no_crs=False))
    assert len(scans) == 2
    np.testing.assert_allclose(mean2.ravel(), _numpy_stats(_transformed(data))[0], rtol=1e-6)
    assert np.abs(mean2 - mean).max() > 1.0


def test_batch_segments_in_scene_mode_inside_dask_workers(
    scenes: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    from geoglacier.inference.batch import segment_scenes

    s, s2, _ = scenes
    ckpt = _untrained(tmp_path / "scene.pth", "scene")
    options = {k: v for k, v in RUN.items() if k not in ("device", "progress")}
    result = segment_scenes(
        [s, s2], ckpt, tmp_path / "out", workers=1, device="cpu", progress=False, **options
    )
    assert [r["status"] for r in result.rows] == ["done", "done"], result.rows
    p, _ = _probabilities(s, ckpt, tmp_path)
    masks = [_read(tmp_path / "out" / f"{x.stem}_mask.tif") for x in (s, s2)]
    near = np.abs(np.nan_to_num(p, nan=0.0) - 0.5) < 1e-4  # a 1e-6 difference may flip these
    assert (masks[0] == masks[1])[~near].all()
    assert (masks[0] == 255).sum() == (~np.isfinite(p)).sum()


# ------------------------------------------------------ (b) training datasets, (e) nodata


def _two_scene_layout(root: Path) -> list[np.ndarray]:
    """Two 128 px scenes, the second with very different per-band offsets; nodata in both."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    arrays = []
    for k, (gain, offset) in enumerate(((1.0, 0.0), (2.5, 1000.0))):
        data = _with_nodata(scene_array(128, 128, seed=30 + k))
        data = np.where(_valid(data), data * gain + offset * np.arange(1, 6)[:, None, None], data)
        data = data.astype(np.float32)
        write_raster(root / "images" / f"s{k}.tif", data, nodata=NODATA, descriptions=BANDS)
        write_raster(root / "masks" / f"s{k}.tif", glacier_mask(np.nan_to_num(data)), nodata=None)
        arrays.append(data)
    return arrays


def _normalised_pixels(dataset, k: int, size: int = 128, patch: int = 64) -> np.ndarray:
    """Every valid normalised pixel of scene ``k``, read through the dataset window by window."""
    dataset.windows = np.array([(k, r, c) for r in range(0, size, patch) for c in range(0, size, patch)])
    values = []
    for i in range(len(dataset)):
        sample = dataset[i]
        values.append(sample["image"].numpy()[:, sample["valid"].numpy()])
    return np.concatenate(values, axis=1)


def test_scene_mode_training_patches_are_standardised_per_scene(tmp_path: Path) -> None:
    arrays = _two_scene_layout(tmp_path / "data")
    data = make_datasets(
        tmp_path / "data", patch_size=64, val_fraction=0.25, augment=False, normalization="scene"
    )
    assert data.normalization_mode == "scene"
    for k, array in enumerate(arrays):
        ref_mean, ref_std = _numpy_stats(array)  # the whole scene, nodata excluded
        own = data.train.normalizations[k]
        np.testing.assert_allclose(own.mean, ref_mean, rtol=1e-9)
        np.testing.assert_allclose(own.std, ref_std, rtol=1e-9)
        x = _normalised_pixels(data.val, k)
        assert x.shape[1] == _valid(array).sum()
        np.testing.assert_allclose(x.mean(axis=1, dtype=np.float64), 0.0, atol=1e-5)
        np.testing.assert_allclose(x.std(axis=1, dtype=np.float64), 1.0, rtol=1e-5)
    # The training statistics are still those of the training blocks of both scenes.
    plain = make_datasets(
        tmp_path / "data", patch_size=64, val_fraction=0.25, augment=False, normalization="training"
    )
    assert data.normalization == plain.normalization
    assert plain.normalization_mode == "training"
    # With them, the second scene is nowhere near standardised: the test can fail.
    x = _normalised_pixels(plain.val, 1)
    assert np.abs(x.mean(axis=1)).min() > 0.5 and x.std(axis=1).max() < 0.5


def test_scene_scan_whole_excludes_nodata_with_regions(tmp_path: Path) -> None:
    data = _with_nodata(scene_array(100, 90, seed=7))
    path = write_raster(tmp_path / "s.tif", data, nodata=NODATA)
    scan = scene_scan(path, chunks=32, regions=[(0, 0, 50, 50)], whole=True)
    ref_mean, ref_std = _numpy_stats(data)
    assert scan.scene_moments is not None
    np.testing.assert_allclose(scan.scene_moments.mean, ref_mean, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(scan.scene_moments.m2 / scan.scene_moments.count), ref_std, rtol=1e-9)
    assert scan.scene_moments.count[0] == _valid(data).sum()
    region = data[:, :50, :50]
    np.testing.assert_allclose(scan.moments.mean, _numpy_stats(region)[0], rtol=1e-9)
    assert scene_scan(path, chunks=32).scene_moments is None


def test_classic_pairs_in_scene_mode_use_their_own_statistics(tmp_path: Path) -> None:
    root = tmp_path / "classic"
    root.mkdir()
    arrays = []
    for k in range(3):
        data = scene_array(64, 64, seed=40 + k) * (1 + k) + 700.0 * k
        np.save(root / f"masked_p{k}.npy", np.ascontiguousarray(data.transpose(1, 2, 0)))
        write_raster(root / f"p{k}.tif", glacier_mask(data), crs=None, tiled=False)
        arrays.append(data)
    data = make_datasets(root, patch_size=64, val_fraction=0.34, augment=False, normalization="scene")
    for dataset in (data.train, data.val):
        for i, pair in enumerate(dataset.pairs):
            array = arrays[int(pair.image.stem[-1])]
            x = dataset[i]["image"].numpy().reshape(5, -1)
            np.testing.assert_allclose(
                dataset.normalizations[i].mean, array.mean(axis=(1, 2), dtype=np.float64)
            )
            np.testing.assert_allclose(x.mean(axis=1, dtype=np.float64), 0.0, atol=1e-5)
            np.testing.assert_allclose(x.std(axis=1, dtype=np.float64), 1.0, rtol=1e-5)


# ---------------------------------------------------------- training end to end, (c), (d)


def test_train_in_scene_mode_writes_the_mode_and_segments_invariantly(
    scenes: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    _two_scene_layout(tmp_path / "data")
    out = tmp_path / "model.pth"
    train(
        tmp_path / "data",
        out,
        log=lambda _: None,
        epochs=1,
        patches_per_epoch=8,
        normalization="scene",
        **FAST,
    )
    meta, _ = read_checkpoint(out)
    assert meta.normalization == "scene" and meta.train_config["normalization"] == "scene"
    plain = make_datasets(tmp_path / "data", patch_size=64, val_fraction=0.25, augment=False)
    assert meta.mean == pytest.approx(plain.normalization.mean) and meta.std == pytest.approx(
        plain.normalization.std
    )
    raw = torch.load(out, weights_only=True)
    assert raw["format_version"] == 2 and raw["normalization"]["mode"] == "scene"
    s, s2, _ = scenes
    p, _ = _probabilities(s, out, tmp_path)
    p2, _ = _probabilities(s2, out, tmp_path)
    np.testing.assert_allclose(p2, p, atol=1e-5, rtol=0)
    # "normalization" is part of the recipe: resuming with the other mode is refused before any work.
    assert "normalization" in RESUME_LOCKED
    with pytest.raises(ConfigError, match="--normalization scene"):
        train(
            tmp_path / "data",
            out,
            resume=True,
            epochs=2,
            patches_per_epoch=8,
            normalization="training",
            **FAST,
        )


def _meta(mode: str = "training") -> CheckpointMeta:
    config = ModelConfig(arch="Unet", encoder="resnet18")
    return CheckpointMeta(
        config, BANDS, (1.0, 2.0, 3.0, 4.0, 5.0), (6.0, 7.0, 8.0, 9.0, 10.0), 64, normalization=mode
    )


def test_checkpoint_round_trip_and_old_checkpoints(tmp_path: Path) -> None:
    model = build_model(ModelConfig(arch="Unet", encoder="resnet18"), None)
    for mode, version in (("scene", 2), ("training", 1)):
        path = save_checkpoint(model, _meta(mode), tmp_path / f"{mode}.pth")
        meta, _ = read_checkpoint(path)
        assert meta.normalization == mode
        assert meta.mean == (1.0, 2.0, 3.0, 4.0, 5.0) and meta.std == (6.0, 7.0, 8.0, 9.0, 10.0)
        raw = torch.load(path, weights_only=True)
        assert raw["format_version"] == version and raw["normalization"]["mode"] == mode
    old = checkpoint_dict(model, _meta("training"))
    del old["normalization"]["mode"]
    torch.save(old, tmp_path / "old.pth")
    assert read_checkpoint(tmp_path / "old.pth")[0].normalization == "training"
    old["normalization"]["mode"] = "median"
    torch.save(old, tmp_path / "bogus.pth")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "bogus.pth")
    message = str(info.value)
    assert "bogus.pth" in message and "'median'" in message and "training, scene" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="normalization 'median'"):
        _meta("median")


def test_newer_formats_are_refused_in_checkpoints_and_exports(tmp_path: Path) -> None:
    """A checkpoint or an exported model's metadata from a newer format fails with one line."""
    from geoglacier.inference.export import meta_dict, read_exported_meta

    model = build_model(ModelConfig(arch="Unet", encoder="resnet18"), None)
    newer = FORMAT_VERSION + 1
    future = checkpoint_dict(model, _meta("scene"))
    future["format_version"] = newer
    torch.save(future, tmp_path / "future.pth")
    with pytest.raises(
        CheckpointError, match=rf"future.pth: checkpoint format {newer} is newer .*upgrade geoglacier"
    ):
        read_checkpoint(tmp_path / "future.pth")
    sidecar = {**meta_dict(_meta("scene")), "format_version": newer}
    (tmp_path / "m.xml").write_text("<net/>")
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match=rf"m.xml: checkpoint format {newer} is newer") as info:
        read_exported_meta(tmp_path / "m.xml")
    assert "\n" not in str(info.value)
    sidecar["format_version"] = 2
    (tmp_path / "m.json").write_text(json.dumps(sidecar))
    assert read_exported_meta(tmp_path / "m.xml").normalization == "scene"


def test_exported_model_carries_the_mode(tmp_path: Path) -> None:
    from geoglacier.inference.export import export_onnx, meta_dict, read_exported_meta

    assert (
        meta_from_dict(json.loads(json.dumps(meta_dict(_meta("scene")))), tmp_path).normalization == "scene"
    )
    pytest.importorskip("onnx")
    model = build_model(ModelConfig(arch="Unet", encoder="resnet18"), None).eval()
    path = export_onnx(model, _meta("scene"), tmp_path / "m.onnx")
    meta = read_exported_meta(path)
    assert meta.normalization == "scene" and meta.mean == _meta().mean


def test_bad_normalization_is_a_one_line_error(tmp_path: Path) -> None:
    from geoglacier.cli.main import cli

    with pytest.raises(ConfigError) as info:
        TrainConfig(normalization="bogus").validate()
    assert str(info.value) == "--normalization must be one of training, scene, got 'bogus'"
    with pytest.raises(ConfigError, match="--normalization must be one of training, scene"):
        make_datasets(tmp_path, patch_size=64, normalization="bogus")
    result = CliRunner().invoke(
        cli, ["train", str(tmp_path), "--out", str(tmp_path / "m.pth"), "--normalization", "bogus"]
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'--normalization'" in errors[0] and "'bogus'" in errors[0]
    assert "'training'" in errors[0] and "'scene'" in errors[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.pth").exists()
