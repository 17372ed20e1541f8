"""Ensembles: the mean of the members' probabilities, their spread, and the averaged threshold."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.errors import CheckpointError, ConfigError, OutputPathError
from geoglacier.inference.ensemble import ensemble_stats, segment_ensemble
from geoglacier.inference.segment import segment_scene
from geoglacier.model import ModelConfig, build_model
from tests.data import write_scene

BANDS = ("red", "green", "blue", "nir", "ndvi")
OPTIONS = dict(window=64, overlap=0.25, device="cpu", progress=False)


def _member(path: Path, seed: int, threshold: float, temperature: float = 1.0, bands=BANDS) -> Path:
    torch.manual_seed(seed)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config, bands=bands, mean=(127.0,) * 5, std=(60.0,) * 5, patch_size=64,
        threshold=threshold, temperature=temperature,
    )  # fmt: skip
    return save_checkpoint(build_model(config, None), meta, path)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("ens")
    scene = write_scene(d / "scene.tif", height=96, width=112, seed=4, nodata=-9999.0, descriptions=BANDS)
    with rasterio.open(scene, "r+") as ds:  # a nodata corner
        data = ds.read()
        data[:, :10, :12] = -9999.0
        ds.write(data)
    return scene, _member(d / "a.pth", 1, 0.4, 1.5), _member(d / "b.pth", 2, 0.6)


def test_ensemble_is_the_mean_of_its_members(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    scene, a, b = members
    singles = []
    for name, ckpt in (("a", a), ("b", b)):
        segment_scene(
            scene, ckpt, tmp_path / f"{name}.tif", probabilities=tmp_path / f"{name}_p.tif", **OPTIONS
        )
        singles.append(_read(tmp_path / f"{name}_p.tif").astype(np.float64))
    result = segment_ensemble(
        scene, [a, b], tmp_path / "ens.tif", probabilities=tmp_path / "ens_p.tif",
        uncertainty=tmp_path / "ens_u.tif", summary=tmp_path / "ens.json", **OPTIONS,
    )  # fmt: skip
    mean = (singles[0] + singles[1]) / 2
    spread = np.abs(singles[0] - singles[1]) / 2  # population std of two values
    nodata = np.isnan(mean)
    assert nodata[:10, :12].all() and not nodata[20:, 20:].any()
    np.testing.assert_allclose(_read(tmp_path / "ens_p.tif")[~nodata], mean[~nodata], atol=1e-6)
    np.testing.assert_allclose(_read(tmp_path / "ens_u.tif")[~nodata], spread[~nodata], atol=1e-6)
    assert result.threshold == pytest.approx(0.5)  # mean of 0.4 and 0.6
    mask = _read(tmp_path / "ens.tif")
    np.testing.assert_array_equal(mask[nodata], 255)
    np.testing.assert_array_equal(mask[~nodata], (mean[~nodata] > 0.5).astype(np.uint8))
    with rasterio.open(tmp_path / "ens.tif") as ds, rasterio.open(scene) as src:
        assert (ds.crs, ds.transform) == (src.crs, src.transform)
    assert result.summary is not None and (tmp_path / "ens.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".geoglacier-tmp")]


def test_uncertainty_is_zero_where_members_agree(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    scene, a, _ = members
    twin = Path(shutil.copy(a, tmp_path / "twin.pth"))  # the same weights in another file
    segment_ensemble(scene, [a, twin], tmp_path / "same.tif", uncertainty=tmp_path / "u.tif", **OPTIONS)
    spread = _read(tmp_path / "u.tif")
    valid = ~np.isnan(spread)
    assert valid.sum() > 0.8 * spread.size
    assert np.all(spread[valid] == 0.0)


def test_ensemble_stats_by_hand() -> None:
    probs = np.array([[[0.2, np.nan]], [[0.6, 0.5]], [[0.4, 0.5]]], dtype=np.float32)
    mean, spread = ensemble_stats(probs)
    assert mean[0, 0] == pytest.approx(0.4) and np.isnan(mean[0, 1])
    assert spread[0, 0] == pytest.approx(np.sqrt(((0.2 - 0.4) ** 2 + 0.2**2 + 0) / 3))


def test_bad_ensembles(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    scene, a, _ = members
    with pytest.raises(ConfigError, match="at least two"):
        segment_ensemble(scene, [a], tmp_path / "x.tif", **OPTIONS)
    other = _member(tmp_path / "other.pth", 3, 0.5, bands=("green", "red", "blue", "nir", "ndvi"))
    with pytest.raises(CheckpointError, match="different bands"):
        segment_ensemble(scene, [a, other], tmp_path / "x.tif", **OPTIONS)
    with pytest.raises(ConfigError, match=r"given twice .*an ensemble needs distinct members"):
        segment_ensemble(scene, [a, a.parent / ".." / a.parent.name / a.name], tmp_path / "x.tif", **OPTIONS)
    assert not (tmp_path / "x.tif").exists()
    (tmp_path / "exists.tif").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        segment_ensemble(scene, [a, a], tmp_path / "exists.tif", **OPTIONS)
    assert (tmp_path / "exists.tif").read_bytes() == b"keep"
    with pytest.raises(OutputPathError, match="used for both --probabilities and --uncertainty"):
        segment_ensemble(
            scene, [a, a], tmp_path / "m.tif", probabilities=tmp_path / "pu.tif", uncertainty=tmp_path / "pu.tif",
            **OPTIONS,
        )  # fmt: skip
    assert not (tmp_path / "m.tif").exists() and not (tmp_path / "pu.tif").exists()
    # No output may be a member's checkpoint (or the scene), even with overwrite.
    b = tmp_path / "b.pth"
    b.write_bytes(a.read_bytes())
    with pytest.raises(OutputPathError, match="--summary is the same file as the input --model"):
        segment_ensemble(scene, [a, b], tmp_path / "m.tif", summary=b, overwrite=True, **OPTIONS)
    with pytest.raises(OutputPathError, match="--uncertainty is the same file as the input SCENE"):
        segment_ensemble(scene, [a, b], tmp_path / "m.tif", uncertainty=scene, overwrite=True, **OPTIONS)
    assert b.read_bytes() == a.read_bytes() and not (tmp_path / "m.tif").exists()


def test_train_ensemble_writes_one_member_per_seed(tmp_path: Path) -> None:
    from geoglacier.checkpoint import read_checkpoint
    from geoglacier.training.ensemble import ensemble_paths, train_ensemble
    from tests.training.test_training import FAST, write_separable_scenes

    data = write_separable_scenes(tmp_path / "data", size=128)
    lines: list[str] = []
    torch.set_num_threads(1)
    results = train_ensemble(
        data, tmp_path / "m.pth", 2, epochs=1, patches_per_epoch=4, log=lines.append, **FAST
    )
    paths = ensemble_paths(tmp_path / "m.pth", 2)
    assert [r.paths.checkpoint for r in results] == paths == [tmp_path / "m.m1.pth", tmp_path / "m.m2.pth"]
    (m1, w1), (m2, w2) = (read_checkpoint(p) for p in paths)
    assert (m1.train_config["seed"], m2.train_config["seed"]) == (0, 1)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)
    assert sum(line.startswith("Ensemble member") for line in lines) == 2
    with pytest.raises(ConfigError, match="at least 2"):
        train_ensemble(data, tmp_path / "n.pth", 1, **FAST)


def test_cli_two_models_make_an_ensemble(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from geoglacier.cli.main import cli

    scene, a, b = members
    args = [
        "segment-scene",
        str(scene),
        "--model",
        str(a),
        "--model",
        str(b),
        "--out",
        str(tmp_path / "e.tif"),
    ]
    args += ["--uncertainty", str(tmp_path / "u.tif"), "--window", "64", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 members" in result.output
    assert (tmp_path / "e.tif").exists() and (tmp_path / "u.tif").exists()
    bad = CliRunner().invoke(
        cli, [*args[:4], "--out", str(tmp_path / "x.tif"), "--uncertainty", str(tmp_path / "y.tif")]
    )
    assert bad.exit_code == 2 and "needs an ensemble" in bad.output


# ------------------------------------------------------------------------------- outlines


def _features(path: Path) -> list[dict]:
    import fiona

    with fiona.open(path) as src:
        return [{"geometry": f.geometry, **dict(f.properties)} for f in src]


def test_ensemble_outlines_are_those_of_its_mask(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from rasterio.features import rasterize
    from shapely.geometry import shape

    from geoglacier.measure.outlines import write_outlines

    scene, a, b = members
    out = tmp_path / "o.gpkg"
    result = segment_ensemble(scene, [a, b], tmp_path / "ens.tif", outlines=out, **OPTIONS)
    assert result.outlines == out and result.outline_count is not None
    ref_count = write_outlines(result.mask, tmp_path / "ref.gpkg")  # the mask, traced on its own
    got, ref = _features(out), _features(tmp_path / "ref.gpkg")
    assert result.outline_count == len(got) == ref_count > 1
    total = sum(f["area_km2"] for f in got)
    assert total == pytest.approx(sum(f["area_km2"] for f in ref), rel=1e-9)
    assert total > 0
    # independent of the tracer: the polygons cover exactly the mask's glacier pixels
    mask = _read(result.mask)
    with rasterio.open(result.mask) as ds:
        burned = rasterize([shape(f["geometry"]) for f in got], out_shape=mask.shape, transform=ds.transform)
    np.testing.assert_array_equal(burned, (mask == 1).astype(np.uint8))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".geoglacier-tmp")]


def test_ensemble_outlines_are_checked_before_any_member_runs(
    members: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.inference.segment as segment
    from geoglacier.errors import OutputExistsError

    scene, a, b = members
    ran: list[object] = []
    monkeypatch.setattr(segment, "segment_scene", lambda *args, **kwargs: ran.append(args))
    (tmp_path / "o.gpkg").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match="o.gpkg"):
        segment_ensemble(scene, [a, b], tmp_path / "m.tif", outlines=tmp_path / "o.gpkg", **OPTIONS)
    with pytest.raises(ConfigError, match="unknown outline format '.shp'"):
        segment_ensemble(scene, [a, b], tmp_path / "m.tif", outlines=tmp_path / "o.shp", **OPTIONS)
    with pytest.raises(ConfigError, match="--min-area"):
        segment_ensemble(
            scene, [a, b], tmp_path / "m.tif", outlines=tmp_path / "x.gpkg", min_area=-1, **OPTIONS
        )
    assert ran == []
    assert [p.name for p in tmp_path.iterdir()] == ["o.gpkg"]
    assert (tmp_path / "o.gpkg").read_bytes() == b"keep"


def test_cli_ensemble_writes_outlines_with_inventory_ids(
    members: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from geoglacier.cli.main import cli
    from geoglacier.measure.outlines import write_outlines
    from tests.data import UTM_TRANSFORM
    from tests.glacier_data import px_box
    from tests.glacier_data import write_outlines as write_inventory

    scene, a, b = members
    boxes = [px_box(0, 0, 48, 56, UTM_TRANSFORM), px_box(48, 56, 96, 112, UTM_TRANSFORM)]
    inv = write_inventory(tmp_path / "inv.gpkg", boxes)
    mask, out = tmp_path / "e.tif", tmp_path / "o.gpkg"
    args = ["segment-scene", str(scene), "--model", str(a), "--model", str(b), "--out", str(mask)]
    args += ["--outlines", str(out), "--min-area", "0.005", "--inventory", str(inv)]
    args += ["--window", "64", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    ref_count = write_outlines(mask, tmp_path / "ref.gpkg", 0.005, zones=(boxes, ["G1", "G2"]))
    assert f"wrote {out} ({ref_count} polygons)" in result.output
    got, ref = _features(out), _features(tmp_path / "ref.gpkg")
    assert len(got) == ref_count and {"G1", "G2"} <= {f["glacier_id"] for f in got}
    assert [(f["glacier_id"], f["area_km2"]) for f in got] == [(f["glacier_id"], f["area_km2"]) for f in ref]
    assert min(f["area_km2"] for f in got) >= 0.005
    assert ref_count < write_outlines(mask, tmp_path / "all.gpkg")  # --min-area dropped some
    # the outlines file now exists: a rerun without --overwrite fails before any member runs
    again = CliRunner().invoke(cli, [*args[:7], str(tmp_path / "m2.tif"), *args[8:]])
    assert again.exit_code != 0 and "o.gpkg" in again.output and "Traceback" not in again.output
    assert not (tmp_path / "m2.tif").exists()


def test_ensemble_mask_and_summary_carry_the_acquisition_date(
    members: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """As for one model: --date reaches the mask's ACQUISITION_DATE tag and the summary JSON."""
    import json

    scene, a, b = members
    segment_ensemble(
        scene, [a, b], tmp_path / "ens.tif", summary=tmp_path / "ens.json", date="2001-02-03", **OPTIONS
    )
    segment_scene(scene, a, tmp_path / "one.tif", summary=tmp_path / "one.json", date="2001-02-03", **OPTIONS)
    with rasterio.open(tmp_path / "ens.tif") as ds:
        assert ds.tags()["ACQUISITION_DATE"] == "2001-02-03"
    ens, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ens", "one"))
    assert ens["acquisition_date"] == one["acquisition_date"] == "2001-02-03"
    assert {"sensor", "source_product"} <= set(ens)


def test_loaded_members_must_match_and_carry_their_own_window(
    members: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from geoglacier.inference.config import InferenceConfig
    from geoglacier.inference.segment import Segmenter

    scene, a, b = members
    segs = [Segmenter.from_checkpoint(p, InferenceConfig(device="cpu", window=64)) for p in (a, b)]
    with pytest.raises(ConfigError, match="carry their own window"):
        segment_ensemble(scene, [a, b], tmp_path / "x.tif", segmenters=segs, window=64)
    with pytest.raises(ConfigError, match="1 segmenters for 2"):
        segment_ensemble(scene, [a, b], tmp_path / "x.tif", segmenters=segs[:1], progress=False)
    assert not (tmp_path / "x.tif").exists()


def test_exported_members_make_the_same_ensemble(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """ONNX exports of the members give the checkpoints' ensemble (within engine tolerance)."""
    pytest.importorskip("onnxruntime")
    from geoglacier.inference.export import export_model

    scene, a, b = members
    exported = [export_model(ckpt, "onnx", tmp_path / f"{ckpt.stem}.onnx") for ckpt in (a, b)]
    fp32 = {**OPTIONS, "precision": "fp32"}  # torch fp32, as the engine tests compare
    ref = segment_ensemble(scene, [a, b], tmp_path / "ref.tif", probabilities=tmp_path / "ref_p.tif", **fp32)
    got = segment_ensemble(
        scene, exported, tmp_path / "onnx.tif", probabilities=tmp_path / "onnx_p.tif", engine="onnxruntime",
        **fp32,
    )  # fmt: skip
    assert got.threshold == pytest.approx(ref.threshold)
    p_ref, p_got = _read(tmp_path / "ref_p.tif"), _read(tmp_path / "onnx_p.tif")
    valid = ~np.isnan(p_ref)
    np.testing.assert_array_equal(np.isnan(p_got), ~valid)
    np.testing.assert_allclose(p_got[valid], p_ref[valid], atol=1e-4)


def test_ensemble_outputs_keep_a_gcp_scenes_gcps(members: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from rasterio.control import GroundControlPoint

    src, a, b = members
    scene = tmp_path / "gcp.tif"
    gcps = [
        GroundControlPoint(r, c, 478000.0 + 30 * c, 3108140.0 - 30 * r) for r in (0, 96) for c in (0, 112)
    ]
    with rasterio.open(src) as ds:
        data, nodata, descriptions = ds.read(), ds.nodata, ds.descriptions
    profile = dict(driver="GTiff", count=5, height=96, width=112, dtype="float32", nodata=nodata)
    with rasterio.open(scene, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = descriptions
        ds.gcps = (gcps, "EPSG:32645")
    with rasterio.open(scene) as ds:
        assert ds.crs is None and len(ds.gcps[0]) == 4
    result = segment_ensemble(
        scene, [a, b], tmp_path / "ens.tif", probabilities=tmp_path / "p.tif", uncertainty=tmp_path / "u.tif",
        **OPTIONS,
    )  # fmt: skip
    for out in (result.mask, result.probabilities, result.uncertainty):
        with rasterio.open(out) as ds:
            assert ds.gcps[1] == "EPSG:32645"
            assert [(g.row, g.col, g.x, g.y) for g in ds.gcps[0]] == [(g.row, g.col, g.x, g.y) for g in gcps]


class _Unhandled(Exception):
    """What SIGTERM raises outside the ensemble's own handler (the default would kill pytest)."""


def test_sigterm_while_the_members_are_combined_leaves_no_temporary(
    members: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: segment-scene ends SIGTERM like Ctrl-C, with several --model too."""
    import os
    import signal
    import time

    import geoglacier.inference.ensemble as ensemble
    from geoglacier.io.atomic import atomic_output

    scene, a, b = members

    def terminated_mid_write(probs: list[Path], threshold: float, mask_out: Path, *args: object) -> None:
        with atomic_output(mask_out, overwrite=False) as tmp:
            tmp.write_bytes(b"half a mask")
            os.kill(os.getpid(), signal.SIGTERM)  # what a job scheduler sends
            time.sleep(5)  # the handler interrupts this

    def unhandled(signum: int, frame: object) -> None:
        raise _Unhandled

    monkeypatch.setattr(ensemble, "combine_probabilities", terminated_mid_write)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_ensemble(scene, [a, b], tmp_path / "mask.tif", **OPTIONS)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.listdir(tmp_path) == []


def test_an_interrupted_ensemble_keeps_no_partial_state_and_does_not_offer_resume(
    members: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoglacier.io.cog as cog

    src, a, b = members
    real, calls = cog.translate_to_cog, []

    def ctrl_c_once_the_second_member_is_done(*args: object) -> None:
        calls.append(1)
        if len(calls) == 3:  # the second member's mask COG: all its tiles are written
            raise KeyboardInterrupt
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(cog, "translate_to_cog", ctrl_c_once_the_second_member_is_done)
    with pytest.raises(KeyboardInterrupt) as stop:
        segment_ensemble(src, [a, b], tmp_path / "ens.tif", **OPTIONS)
    assert len(calls) == 3 and "--resume" not in str(stop.value)
    assert list(tmp_path.iterdir()) == []
