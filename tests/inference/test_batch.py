"""segment-scenes on a 2-worker dask LocalCluster: failures reported, reruns skip done scenes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.cli.main import cli
from geoglacier.errors import ConfigError, CRSMissingError
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


def test_an_output_that_is_a_scene_or_the_model_is_refused_before_any_work(
    batch_inputs: tuple[list[Path], Path], tmp_path: Path
) -> None:
    from geoglacier.errors import OutputPathError

    scenes, ckpt = batch_inputs
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(scenes[2], out / "s0_mask.tif")  # a scene named as s0's mask output
    before = (out / "s0_mask.tif").read_bytes()
    with pytest.raises(OutputPathError, match="s0_mask.tif"):
        segment_scenes([scenes[0], out / "s0_mask.tif"], ckpt, out, overwrite=True, progress=False)
    assert (out / "s0_mask.tif").read_bytes() == before and sorted(out.iterdir()) == [out / "s0_mask.tif"]
    model = out / "s1_summary.json"  # the checkpoint where s1's summary would go
    shutil.copy(ckpt, model)
    with pytest.raises(OutputPathError, match="s1_summary.json"):
        segment_scenes([scenes[2]], model, out, overwrite=True, progress=False)


def test_pixel_size_on_scenes_with_a_crs_is_refused_before_the_cluster(
    batch_inputs: tuple[list[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.inference.batch as batch

    (s0, _, s1), ckpt = batch_inputs
    started: list[object] = []
    monkeypatch.setattr(batch, "_cluster", lambda *args, **kwargs: started.append(args))
    with pytest.raises(
        ConfigError, match=r"s0.tif has a CRS .*drop --pixel-size \(1 more scene\(s\) like it\)"
    ):
        segment_scenes([s0, s1], ckpt, tmp_path / "out", pixel_size=10.0, progress=False)
    assert started == [] and not (tmp_path / "out").exists()
    nocrs = write_scene(tmp_path / "nocrs.tif", height=64, width=64, crs=None)
    with pytest.raises(CRSMissingError, match="nocrs.tif has no CRS; outlines need a georeferenced scene"):
        segment_scenes([s0, nocrs], ckpt, tmp_path / "out", outlines="gpkg", progress=False)
    assert started == [] and not (tmp_path / "out").exists()


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


# ------------------------------------------- reruns: what made the outputs, tables, interrupts


class _InlineClient:
    """Runs each scene at once in this process: the bookkeeping around the workers, without a cluster."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.before_each: Callable[[Any], None] | None = None

    def submit(
        self, fn: Callable[..., Any], plan: Any, *args: Any, key: str, pure: bool, **kwargs: Any
    ) -> Any:
        self.submitted.append(plan.scene.name)
        if self.before_each is not None:
            self.before_each(plan)
        return fn(plan, *args, **kwargs)

    def cancel(self, futures: list[Any]) -> None:
        pass


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> _InlineClient:
    import geoglacier.inference.batch as batch

    client = _InlineClient()

    @contextmanager
    def fake_cluster(*args: Any) -> Iterator[tuple[_InlineClient, None]]:
        yield client, None  # None: leave this process's torch threads alone

    monkeypatch.setattr(batch, "_cluster", fake_cluster)
    monkeypatch.setattr(batch, "_collect", lambda futures, *args: list(futures))
    return client


def _summary(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "summary.csv").open()))


def _without_status(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "status"} for r in rows]


def test_a_rerun_reuses_outputs_only_from_the_same_scene_model_and_options(
    batch_inputs: tuple[list[Path], Path], tmp_path: Path, inline: _InlineClient
) -> None:
    from geoglacier.errors import OutputExistsError

    (s0, _, s1), ckpt = batch_inputs
    scene = tmp_path / "s0.tif"
    shutil.copy(s0, scene)
    m1 = tmp_path / "m1.pth"
    shutil.copy(ckpt, m1)
    out = tmp_path / "bo"
    run = dict(device="cpu", progress=False, log=lambda m: None, window=64)
    first = segment_scenes([scene, s1], m1, out, **run)
    assert [r["status"] for r in first.rows] == ["done", "done"]
    again = segment_scenes([scene, s1], m1, out, **run)
    assert [r["status"] for r in again.rows] == ["skipped", "skipped"] and len(inline.submitted) == 2

    table = (out / "summary.csv").read_bytes()
    cases = [
        (
            dict(model=ckpt),
            r"s0_mask.tif was made with model m1.pth \(1 more scene\(s\) likewise\); pass --overwrite",
        ),
        (dict(overlap=0.5), r"s0_mask.tif was made with --overlap 0.25 \(now 0.5\)"),
        (dict(tta=True), r"s0_mask.tif was made without --tta \(1 more"),
    ]
    for change, message in cases:
        kwargs = {**run, **change}
        with pytest.raises(OutputExistsError, match=message):
            segment_scenes([scene, s1], kwargs.pop("model", m1), out, **kwargs)
    record = json.loads((out / "s0_run.json").read_text())
    assert record["complete"] is True
    assert record["fingerprint"]["models"][0]["path"] == str(m1.resolve())
    assert record["fingerprint"]["scene"]["size"] == scene.stat().st_size
    os.utime(scene, ns=(scene.stat().st_atime_ns, scene.stat().st_mtime_ns + 10**9))
    with pytest.raises(
        OutputExistsError, match=r"s0_mask.tif was made from an earlier version of scene s0.tif"
    ):
        segment_scenes([scene, s1], m1, out, **run)
    assert (out / "summary.csv").read_bytes() == table and len(inline.submitted) == 2  # refused up front

    redo = segment_scenes([scene, s1], ckpt, out, overwrite=True, **run)
    assert [r["status"] for r in redo.rows] == ["done", "done"]
    assert json.loads((out / "s1_run.json").read_text())["fingerprint"]["models"][0]["path"] == str(
        ckpt.resolve()
    )
    # Outputs without a record (an older geoglacier) cannot be told apart: refused too.
    (out / "s1_run.json").unlink()
    with pytest.raises(OutputExistsError, match=r"s1_mask.tif has no record .*s1_run.json is missing"):
        segment_scenes([scene, s1], ckpt, out, **run)


def test_cli_counts_only_the_scenes_segmented_now(
    batch_inputs: tuple[list[Path], Path], tmp_path: Path, inline: _InlineClient
) -> None:
    (s0, _, s1), ckpt = batch_inputs
    base = ["segment-scenes", str(s0), str(s1), "--out-dir", str(tmp_path / "bo"), "--window", "64"]
    base += ["--device", "cpu"]
    first = CliRunner().invoke(cli, [*base, "--model", str(ckpt)])
    assert first.exit_code == 0, first.output
    assert "2 segmented, 0 skipped (already complete); table:" in first.output
    second = CliRunner().invoke(cli, [*base, "--model", str(ckpt)])
    assert "0 segmented, 2 skipped (already complete); table:" in second.output
    m1 = tmp_path / "m1.pth"
    shutil.copy(ckpt, m1)
    refused = CliRunner().invoke(cli, [*base, "--model", str(m1)])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        f"Error: {tmp_path / 'bo' / 's0_mask.tif'} was made with model model.pth (1 more scene(s) likewise); "
        "pass --overwrite to redo it, or use another --out-dir"
    ]
    assert len(inline.submitted) == 2


def test_a_subset_rerun_keeps_the_other_scenes_in_the_tables(tmp_path: Path, inline: _InlineClient) -> None:
    from affine import Affine

    from tests.data import UTM_TRANSFORM
    from tests.glacier_data import px_box, write_outlines

    ckpt = _member(tmp_path / "m.pth", 0, 0.5)
    # two scenes side by side, one inventory glacier in each
    a = write_scene(tmp_path / "a.tif", height=64, width=64, seed=1)
    b = write_scene(
        tmp_path / "b.tif", height=64, width=64, seed=2, transform=UTM_TRANSFORM * Affine.translation(64, 0)
    )
    inv = write_outlines(
        tmp_path / "inv.gpkg", [px_box(10, 4, 30, 24, UTM_TRANSFORM), px_box(10, 70, 30, 90, UTM_TRANSFORM)]
    )
    out = tmp_path / "bo"
    run = dict(device="cpu", progress=False, log=lambda m: None, window=64, inventory=inv)
    segment_scenes([a, b], ckpt, out, **run)
    summary, glaciers = _summary(out), (out / "glaciers.csv").read_text()
    assert [Path(r["scene"]).name for r in summary] == ["a.tif", "b.tif"]
    assert glaciers.count("a.tif") == 1 and glaciers.count("b.tif") == 1

    alone = segment_scenes([b], ckpt, out, **run)  # skipped, but the tables still list a
    assert _without_status(_summary(out)) == _without_status(summary)
    assert (out / "glaciers.csv").read_text() == glaciers
    assert [r["status"] for r in alone.rows] == ["skipped"] and len(alone.earlier) == 1
    segment_scenes([b], ckpt, out, overwrite=True, **run)  # redone: keeps its place
    assert [(Path(r["scene"]).name, r["status"]) for r in _summary(out)] == [
        ("a.tif", "done"),
        ("b.tif", "done"),
    ]
    assert (out / "glaciers.csv").read_text() == glaciers

    # a scene whose outputs are gone, or come from another model, drops out of the tables
    other = _member(tmp_path / "other.pth", 5, 0.5)
    logs: list[str] = []
    segment_scenes([b], other, out, overwrite=True, **{**run, "log": logs.append})
    assert [Path(r["scene"]).name for r in _summary(out)] == ["b.tif"]
    assert "a.tif" not in (out / "glaciers.csv").read_text()
    assert any("leaves out" in m and "a.tif" in m and "model m.pth" in m for m in logs), logs
    # outputs from before run records (no a_run.json): left out of the tables, and said so
    segment_scenes([a, b], other, out, overwrite=True, **run)
    (out / "a_run.json").unlink()
    logs.clear()
    segment_scenes([b], other, out, overwrite=True, **{**run, "log": logs.append})
    assert [Path(r["scene"]).name for r in _summary(out)] == ["b.tif"]
    assert any("leaves out" in m and "a.tif" in m and "no a_run.json" in m for m in logs), logs
    (out / "b_mask.tif").unlink()
    (out / "a_mask.tif").unlink()
    segment_scenes([a], other, out, overwrite=True, **run)
    assert [Path(r["scene"]).name for r in _summary(out)] == ["a.tif"]


def test_ctrl_c_removes_this_runs_temporaries_once_the_cluster_is_down(
    batch_inputs: tuple[list[Path], Path],
    tmp_path: Path,
    inline: _InlineClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geoglacier.inference.batch as batch

    (s0, _, s1), ckpt = batch_inputs
    out = tmp_path / "bo"
    out.mkdir()
    older = out / ".geoglacier-tmp-s0_mask.tif.stage-older.tif"  # a killed run's: not ours to judge
    older.write_bytes(b"x")

    def stage(plan: Any) -> None:
        (out / f".geoglacier-tmp-{plan.mask.name}.stage-abc.tif").write_bytes(b"x")

    def interrupted(futures: list[Any], *args: Any) -> list[Any]:
        raise KeyboardInterrupt

    def terminated(futures: list[Any], *args: Any) -> list[Any]:
        os.kill(os.getpid(), signal.SIGTERM)  # what a job scheduler sends
        time.sleep(5)  # the handler interrupts this
        return []

    inline.before_each = stage
    monkeypatch.setattr(batch, "segment_one", lambda plan, *a, **k: plan.record.write_text("{}"))
    handler = signal.getsignal(signal.SIGTERM)
    for stop in (interrupted, terminated):
        monkeypatch.setattr(batch, "_collect", stop)
        with pytest.raises(KeyboardInterrupt):
            segment_scenes([s0, s1], ckpt, out, device="cpu", progress=False, log=lambda m: None)
        assert sorted(p.name for p in out.iterdir()) == [older.name]
    assert signal.getsignal(signal.SIGTERM) is handler  # restored


class _Unhandled(Exception):
    """What SIGTERM raises outside segment_scenes' own handler (the default would kill pytest)."""


def test_sigterm_while_the_tables_are_written_leaves_the_old_table_and_no_temporary(
    batch_inputs: tuple[list[Path], Path],
    tmp_path: Path,
    inline: _InlineClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import geoglacier.inference.batch as batch
    from geoglacier.io.atomic import atomic_output

    (s0, _, s1), ckpt = batch_inputs
    out = tmp_path / "bo"
    run = {"device": "cpu", "progress": False, "log": lambda m: None}
    segment_scenes([s0], ckpt, out, **run)
    table = (out / "summary.csv").read_text()

    def terminated_mid_write(rows: list[dict[str, Any]], path: Path) -> Path:
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text("scene,status\n")  # half a table
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        return path

    def unhandled(signum: int, frame: Any) -> None:
        raise _Unhandled

    monkeypatch.setattr(batch, "write_summary_csv", terminated_mid_write)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_scenes([s0, s1], ckpt, out, **run)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (out / "summary.csv").read_text() == table
    assert not list(out.glob(".geoglacier-tmp-*"))


def test_dask_loggers_are_quiet_while_the_cluster_closes() -> None:
    import logging

    from geoglacier.inference.batch import _quiet_dask

    nanny = logging.getLogger("distributed.nanny")
    before = (logging.getLogger("distributed").level, nanny.level)
    with _quiet_dask():
        assert not nanny.isEnabledFor(logging.CRITICAL)
        assert not logging.getLogger("distributed.client").isEnabledFor(logging.CRITICAL)
    assert (logging.getLogger("distributed").level, nanny.level) == before


def test_cli_matches_segment_scene_options(tmp_path: Path) -> None:
    help_text = CliRunner().invoke(cli, ["segment-scenes", "--help"]).output
    assert "multiple of 32" in help_text and "--no-progress" in help_text
    assert "Weights for blending" in help_text and "autocast on CUDA" in help_text
    # --uncertainty with one model: the same usage error (exit 2) in both commands
    one = ["--model", str(tmp_path / "m.pth")]
    batch = [
        "segment-scenes",
        str(tmp_path / "s.tif"),
        *one,
        "--out-dir",
        str(tmp_path / "o"),
        "--uncertainty",
    ]
    single = ["segment-scene", str(tmp_path / "s.tif"), *one, "--out", str(tmp_path / "m.tif")]
    single += ["--uncertainty", str(tmp_path / "u.tif")]
    for argv in (batch, single):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2 and "--uncertainty needs an ensemble" in result.output, result.output
    assert not (tmp_path / "o").exists()
