"""``train --error-folds``: bad inputs fail before training; a tiny run stores a working error model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from geoglacier.cli.main import cli
from geoglacier.errors import ConfigError
from geoglacier.glaciers.error_model import read_error_model
from geoglacier.inference.error_folds import fold_paths, prepare_folds, strips, train_with_error_folds
from tests.data import UTM_TRANSFORM
from tests.glacier_data import px_box, write_outlines
from tests.training.test_training import FAST, write_separable_scenes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 128
BOX = 28  # 28 x 28 px of 30 m: 0.7 km2 of outline, about 0.26 km2 of it glacier
COLS = (2, 34, 66, 98)


def _boxes(rows: tuple[int, ...]) -> list:
    return [px_box(r, c, r + BOX, c + BOX, UTM_TRANSFORM) for r in rows for c in COLS]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_separable_scenes(tmp_path_factory.mktemp("folds") / "data", size=SIZE)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_outlines(tmp_path_factory.mktemp("inv") / "inv.gpkg", _boxes((2, 34, 66, 98)))


def test_strips_cover_the_rows_once() -> None:
    assert strips(655, 3) == [(0, 218), (218, 437), (437, 655)]
    assert fold_paths("m.pth", 2) == [Path("m.fold1.pth"), Path("m.fold2.pth")]


def test_folds_hold_their_glaciers(data: Path, inventory: Path, tmp_path: Path) -> None:
    import rasterio

    folds = prepare_folds(data, inventory, 2, tmp_path, patch_size=64, gap=0)
    with rasterio.open(data / "masks" / "tile.tif") as ds:
        mask = ds.read(1)
    # by hand: boxes whose glacier pixels (30 m, ~900 m2 each) make at least 0.1 km2, per strip
    glacier = {
        (r, c): mask[r : r + BOX, c : c + BOX].sum() * 900 / 1e6 for r in (2, 34, 66, 98) for c in COLS
    }
    expected = [sum(v >= 0.1 for (r, _), v in glacier.items() if (r < 64) == (k == 0)) for k in (0, 1)]
    assert [len(f.reference) for f in folds] == expected and sum(expected) >= 9
    for fold in folds:
        assert fold.reference["reference_km2"].between(0.1, 0.71).all()
    assert sorted(p.name for p in (folds[0].data / "images").iterdir()) == ["tile_below.tif"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--error-folds", "2"], "--error-folds needs --inventory"),
        (["--inventory", "INV"], "add --error-folds"),
        (["--inventory", "INV", "--error-folds", "1"], "at least 2"),
        (["--inventory", "TOP", "--error-folds", "2"], "fold 2 of 2 .* holds no inventory glacier"),
        (
            ["--inventory", "INV", "--error-folds", "2", "--error-gap", "40"],
            "no strip outside the held-out rows",
        ),
        (["--inventory", "INV", "--error-folds", "2", "--ensemble", "2"], "cannot be combined"),
        (["--inventory", "INV", "--error-folds", "2", "--error-level", "1.5"], "between 0 and 1"),
    ],
)
def test_bad_inputs_are_one_line_errors_before_training(
    data: Path, inventory: Path, tmp_path: Path, args: list[str], match: str
) -> None:
    top = write_outlines(tmp_path / "top.gpkg", _boxes((2, 34)))  # glaciers only in the top strip
    args = [{"INV": str(inventory), "TOP": str(top)}.get(a, a) for a in args]
    out = tmp_path / "m.pth"
    res = CliRunner().invoke(
        cli,
        [
            "train",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--patch-size",
            "64",
            "--error-gap",
            "0",
            *args,
        ],
    )
    assert res.exit_code != 0
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    import re

    assert re.search(match, res.output), res.output
    assert not out.exists() and not any(tmp_path.glob("m.fold*"))


def test_classic_layout_is_refused(tmp_path: Path, inventory: Path) -> None:
    import numpy as np

    (tmp_path / "masked_a.npy").write_bytes(b"")
    np.save(tmp_path / "a.npy", np.zeros((8, 8, 5)))
    with pytest.raises(ConfigError, match="scene layout"):
        prepare_folds(tmp_path, inventory, 2, tmp_path / "w", patch_size=64)


def test_a_tiny_run_stores_the_error_model_and_the_fold_networks(
    data: Path, inventory: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.pth"
    result, model = train_with_error_folds(
        data, out, inventory, 2, gap=0, log=lambda _: None, epochs=1, patches_per_epoch=4, **FAST
    )
    assert read_error_model(out) == model and model.n >= 9 and model.level == 0.9
    assert all(p.exists() for p in fold_paths(out, 2))
    assert read_error_model(fold_paths(out, 2)[0]) is None  # the fold networks carry none
    # the final checkpoint's table gets intervals; the folds together work as an ensemble
    from geoglacier.inference.ensemble import segment_ensemble
    from geoglacier.inference.segment import segment_scene

    scene = data / "images" / "tile.tif"
    segment_scene(
        scene, out, tmp_path / "mask.tif", inventory=inventory, glaciers=tmp_path / "g.csv", window=64
    )
    table = pd.read_csv(tmp_path / "g.csv")
    assert {"area_low_km2", "area_high_km2", "beyond_calibration"} <= set(table.columns)
    segment_ensemble(scene, fold_paths(out, 2), tmp_path / "ens.tif", window=64, progress=False)
    assert (tmp_path / "ens.tif").exists()
