"""segment-scenes on a 2-worker dask LocalCluster: failures reported, reruns skip done scenes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.errors import ConfigError
from geoglacier.inference.batch import plan_outputs, segment_scenes
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    root = tmp_path_factory.mktemp("batch")
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="Unet", encoder="resnet18"), encoder_weights=None)
    meta = CheckpointMeta(
        model=ModelConfig(arch="Unet", encoder="resnet18"),
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(127.0,) * 5,
        std=(60.0,) * 5,
        patch_size=64,
    )
    ckpt = save_checkpoint(model, meta, root / "model.pth")
    scenes = [write_scene(root / f"s{i}.tif", height=96, width=80, seed=i) for i in range(2)]
    corrupt = root / "broken.tif"
    corrupt.write_bytes(scenes[0].read_bytes()[:300])
    return [scenes[0], corrupt, scenes[1]], ckpt


def test_two_workers_three_scenes_one_corrupt(batch_inputs: tuple[list[Path], Path], tmp_path: Path) -> None:
    scenes, ckpt = batch_inputs
    out = tmp_path / "out"
    logs: list[str] = []
    result = segment_scenes(scenes, ckpt, out, workers=2, device="cpu", progress=False, log=logs.append)
    status = {Path(r["scene"]).name: r["status"] for r in result.rows}
    assert status == {"s0.tif": "done", "broken.tif": "failed", "s1.tif": "done"}
    failed = result.failed[0]
    assert "broken.tif" in failed["error"] and "corrupt" in failed["error"]
    assert any("FAILED" in line and "broken.tif" in line for line in logs)
    for name in ("s0", "s1"):
        with rasterio.open(scenes[0]) as src, rasterio.open(out / f"{name}_mask.tif") as dst:
            assert dst.crs == src.crs and dst.transform == src.transform and dst.shape == src.shape
        summary = json.loads((out / f"{name}_summary.json").read_text())
        assert summary["valid_pixels"] == 96 * 80
    assert not (out / "broken_mask.tif").exists()
    assert not list(out.glob(".geoglacier-tmp-*"))
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [Path(r["scene"]).name for r in rows] == ["s0.tif", "broken.tif", "s1.tif"]
    by_name = {Path(r["scene"]).name: r for r in rows}
    expected = json.loads((out / "s1_summary.json").read_text())["glacier_area_km2"]
    assert float(by_name["s1.tif"]["glacier_area_km2"]) == pytest.approx(expected)

    # The rerun skips the complete scenes and tries the broken one again.
    mtime = (out / "s0_mask.tif").stat().st_mtime_ns
    again = segment_scenes(scenes, ckpt, out, workers=2, device="cpu", progress=False, log=logs.append)
    status = {Path(r["scene"]).name: r["status"] for r in again.rows}
    assert status == {"s0.tif": "skipped", "broken.tif": "failed", "s1.tif": "skipped"}
    assert (out / "s0_mask.tif").stat().st_mtime_ns == mtime
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert float({Path(r["scene"]).name: r for r in rows}["s1.tif"]["glacier_area_km2"]) == pytest.approx(
        expected
    )


def test_cli_exit_code_says_some_failed(batch_inputs: tuple[list[Path], Path], tmp_path: Path) -> None:
    scenes, ckpt = batch_inputs
    out = tmp_path / "out"
    args = ["segment-scenes", *map(str, scenes[:2]), "--model", str(ckpt), "--out-dir", str(out)]
    result = CliRunner().invoke(cli, [*args, "--workers", "1", "--device", "cpu"])
    assert result.exit_code == 1
    assert "1 scene(s) failed" in result.output and "broken.tif" in result.output
    assert (out / "s0_mask.tif").exists()


def test_same_stem_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="same outputs"):
        plan_outputs([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"], tmp_path, None)


# ------------------------------------------------------------------------------- ensembles

BANDS = ("red", "green", "blue", "nir", "ndvi")


def _member(path: Path, seed: int, threshold: float, bands: tuple[str, ...] = BANDS) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config, bands=bands, mean=(127.0,) * 5, std=(60.0,) * 5, patch_size=64, threshold=threshold
    )
    return save_checkpoint(build_model(config, encoder_weights=None), meta, path)


@pytest.fixture(scope="module")
def ensemble_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path, Path, Path]:
    from tests.data import UTM_TRANSFORM
    from tests.glacier_data import px_box, write_outlines

    root = tmp_path_factory.mktemp("batch_ens")
    scenes = [
        write_scene(root / f"e{i}.tif", height=64, width=80, seed=10 + i, nodata=-9999.0, descriptions=BANDS)
        for i in range(2)
    ]
    with rasterio.open(scenes[0], "r+") as ds:  # a nodata corner
        data = ds.read()
        data[:, :8, :10] = -9999.0
        ds.write(data)
    boxes = [px_box(4, 4, 40, 40, UTM_TRANSFORM), px_box(20, 44, 60, 76, UTM_TRANSFORM)]
    inventory = write_outlines(root / "inv.gpkg", boxes)
    return scenes, _member(root / "a.pth", 1, 0.4), _member(root / "b.pth", 2, 0.6), inventory


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_ensemble_batch_is_segment_ensemble_per_scene(
    ensemble_inputs: tuple[list[Path], Path, Path, Path], tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    scenes, a, b, inv = ensemble_inputs
    out = tmp_path / "out"
    # one worker process for both runs that segment (starting a cluster costs seconds)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    kwargs = dict(client=client, device="cpu", progress=False, window=64, inventory=inv, uncertainty=True)
    try:
        _check_ensemble_batch(scenes, a, b, inv, out, tmp_path, kwargs)
    finally:
        client.close()
        cluster.close()


def _check_ensemble_batch(
    scenes: list[Path], a: Path, b: Path, inv: Path, out: Path, tmp_path: Path, kwargs: dict
) -> None:
    import pandas as pd

    from geoglacier.inference.ensemble import segment_ensemble

    result = segment_scenes(scenes, [a, b], out, **kwargs)
    assert [r["status"] for r in result.rows] == ["done", "done"], result.rows
    for scene in scenes:
        ref = tmp_path / "ref" / scene.stem
        ref.mkdir(parents=True)
        segment_ensemble(
            scene, [a, b], ref / "m.tif", uncertainty=ref / "u.tif", inventory=inv, glaciers=ref / "g.csv",
            window=64, device="cpu", progress=False,
        )  # fmt: skip
        np.testing.assert_array_equal(_read(out / f"{scene.stem}_mask.tif"), _read(ref / "m.tif"))
        got, want = _read(out / f"{scene.stem}_uncertainty.tif"), _read(ref / "u.tif")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], atol=1e-6)
        assert np.nanmax(want) > 0  # the members disagree somewhere: the comparison means something
        table = pd.read_csv(out / f"{scene.stem}_glaciers.csv")
        ref_table = pd.read_csv(ref / "g.csv")
        np.testing.assert_allclose(table["uncertainty_ensemble_km2"], ref_table["uncertainty_ensemble_km2"])
        summary = json.loads((out / f"{scene.stem}_summary.json").read_text())
        mask = _read(ref / "m.tif")
        assert summary["glacier_pixels"] == int((mask == 1).sum())
        row = next(r for r in csv.DictReader((out / "summary.csv").open()) if r["scene"] == str(scene))
        assert float(row["glacier_area_km2"]) == pytest.approx(summary["glacier_area_km2"])
    assert np.isnan(_read(out / "e0_uncertainty.tif")[:8, :10]).all()
    batch = pd.read_csv(out / "glaciers.csv")
    assert "uncertainty_ensemble_km2" in batch.columns and len(batch) == 2
    assert (batch["uncertainty_ensemble_km2"] > 0).all()
    assert not list(out.glob(".geoglacier-tmp*"))

    # A rerun skips both complete scenes; one whose spread raster is gone is redone.
    again = segment_scenes(scenes, [a, b], out, **kwargs)
    assert [r["status"] for r in again.rows] == ["skipped", "skipped"]
    expected = _read(out / "e1_uncertainty.tif")
    mtimes = [(out / f"{n}_mask.tif").stat().st_mtime_ns for n in ("e0", "e1")]
    (out / "e1_uncertainty.tif").unlink()
    redo = segment_scenes(scenes, [a, b], out, **kwargs)
    assert [r["status"] for r in redo.rows] == ["skipped", "done"], redo.rows
    np.testing.assert_array_equal(_read(out / "e1_uncertainty.tif"), expected)
    assert (out / "e0_mask.tif").stat().st_mtime_ns == mtimes[0]
    assert (out / "e1_mask.tif").stat().st_mtime_ns != mtimes[1]  # the scene's outputs are written together
    assert "uncertainty_ensemble_km2" in pd.read_csv(out / "glaciers.csv").columns


def test_ensemble_batch_errors_come_once_before_the_cluster(
    ensemble_inputs: tuple[list[Path], Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.inference.batch as batch

    scenes, a, b, _ = ensemble_inputs
    started: list[object] = []
    monkeypatch.setattr(batch, "_cluster", lambda *args, **kwargs: started.append(args))
    other = _member(tmp_path / "other.pth", 3, 0.5, bands=("green", "red", "blue", "nir", "ndvi"))
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    base = ["segment-scenes", *map(str, scenes), "--out-dir", str(out), "--workers", "1"]
    cases = [
        (["--model", str(a), "--uncertainty"], "--uncertainty needs an ensemble"),
        (["--model", str(a), "--model", str(other)], "different bands"),
        (["--model", str(a), "--model", str(broken)], "broken.pth"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 1, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
        assert "Traceback" not in result.output
    assert started == [] and not out.exists()
    with pytest.raises(ConfigError, match="needs an ensemble"):
        segment_scenes(scenes, [a], out, uncertainty=True, progress=False)
    assert not out.exists()


def test_a_partly_written_scene_is_redone_whole(
    batch_inputs: tuple[list[Path], Path], tmp_path: Path
) -> None:
    """A scene left with its mask but no summary (an interrupted run) is redone, not refused."""
    from geoglacier.inference.batch import segment_one

    scenes, ckpt = batch_inputs
    plan = plan_outputs([scenes[0]], tmp_path, None)[0]
    options = {"window": 64}
    first = segment_one(plan, str(ckpt), "cpu", options, overwrite=False, threads=1)
    assert first["status"] == "done" and plan.complete()
    reference = plan.summary.read_text()
    plan.summary.unlink()
    again = segment_one(plan, str(ckpt), "cpu", options, overwrite=False, threads=1)
    assert again["status"] == "done", again.get("error")
    assert plan.complete() and plan.summary.read_text() == reference
