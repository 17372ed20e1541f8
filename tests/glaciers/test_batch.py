"""segment-scenes --inventory: per-scene tables and one batch table from the best-covering scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.glaciers.areas import best_coverage
from geoglacier.inference.batch import plan_outputs, segment_one, write_batch_glaciers
from geoglacier.model import ModelConfig, build_model
from tests.data import UTM_TRANSFORM, write_scene
from tests.glacier_data import px_box, write_outlines


def _table(ids: list[str], coverage: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"glacier_id": ids, "name": "", "coverage": coverage, "mapped_area_km2": 1.0})


def test_best_coverage_then_latest_date() -> None:
    best = best_coverage(
        [
            ("a.tif", "2020-08-01", _table(["G1", "G2", "G3"], [1.0, 0.4, 0.9])),
            ("b.tif", "2021-08-01", _table(["G2", "G3", "G4"], [0.8, 0.9, 0.2])),
            ("c.tif", "", _table(["G1"], [1.0])),
        ]
    )
    chosen = dict(zip(best["glacier_id"], best["scene"], strict=True))
    assert chosen == {"G1": "a.tif", "G2": "b.tif", "G3": "b.tif", "G4": "b.tif"}
    assert list(best.columns[:3]) == ["glacier_id", "scene", "acquisition_date"]
    assert best_coverage([]).empty


def test_batch_table_from_two_overlapping_scenes(tmp_path: Path, one_torch_thread: None) -> None:
    torch.manual_seed(0)
    config = ModelConfig(arch="Unet", encoder="resnet18")
    meta = CheckpointMeta(
        model=config,
        bands=("red", "green", "blue", "nir", "ndvi"),
        mean=(127.0,) * 5,
        std=(60.0,) * 5,
        patch_size=64,
    )
    ckpt = save_checkpoint(build_model(config, encoder_weights=None), meta, tmp_path / "m.pth")
    # scene b is shifted 32 px east of scene a: G1 (west) only in a, G3 (east) only in b, G2 half/whole
    shifted = UTM_TRANSFORM * Affine.translation(32, 0)
    a = write_scene(tmp_path / "a.tif", height=64, width=64, seed=1)
    b = write_scene(tmp_path / "b.tif", height=64, width=64, seed=2, transform=shifted)
    with rasterio.open(b, "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2021-09-01")
    far = write_scene(
        tmp_path / "far.tif",
        height=64,
        width=64,
        seed=3,
        transform=UTM_TRANSFORM * Affine.translation(5000, 0),
    )
    inv = write_outlines(
        tmp_path / "inv.gpkg",
        [
            px_box(10, 4, 30, 24, UTM_TRANSFORM),
            px_box(10, 40, 30, 60, UTM_TRANSFORM),
            px_box(40, 70, 60, 90, UTM_TRANSFORM),
        ],
    )
    out = tmp_path / "out"
    out.mkdir()
    plans = plan_outputs([a, b, far], out, "gpkg", glaciers=True)
    rows = [segment_one(p, str(ckpt), "cpu", {"window": 64}, False, inventory=str(inv)) for p in plans]
    assert [r["status"] for r in rows] == ["done"] * 3, rows
    assert all(p.complete() for p in plans)
    assert pd.read_csv(plans[2].glaciers).empty  # no outline reaches the far scene
    table = pd.read_csv(write_batch_glaciers(plans, rows, out / "glaciers.csv"))
    chosen = dict(zip(table["glacier_id"], table["scene"], strict=True))
    # G2 (cols 40-60) is whole in both: coverage ties, the dated (later) scene b wins
    assert chosen == {"G1": "a.tif", "G2": "b.tif", "G3": "b.tif"}
    assert table.set_index("glacier_id").loc["G2", "acquisition_date"] == "2021-09-01"
    assert table["coverage"].to_numpy() == pytest.approx(np.array([1.0, 1.0, 1.0]))
    # Outlines carry the inventory's ids as segment-scene --inventory --outlines writes them.
    from geoglacier.inference.segment import segment_scene

    segment_scene(a, ckpt, tmp_path / "ref.tif", outlines=tmp_path / "ref.gpkg", inventory=inv, window=64)
    got, ref = (_outline_rows(p) for p in (plans[0].outlines, tmp_path / "ref.gpkg"))
    assert got == ref and any(i for i, _ in got), got
    assert not any(i for i, _ in _outline_rows(plans[2].outlines))  # no outline reaches the far scene


def _outline_rows(path: Path) -> list[tuple[str, float]]:
    import fiona

    with fiona.open(path) as src:
        rows = [(f["properties"].get("glacier_id") or "", round(f["properties"]["area_km2"], 9)) for f in src]
    return sorted(rows)
