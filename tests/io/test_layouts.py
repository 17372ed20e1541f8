"""Tests of geoglacier.io.layouts: the classic and scene layouts and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoglacier.errors import BandCountError, LayoutError, MaskError, SceneNotFoundError
from geoglacier.io.layouts import detect_layout, find_pairs
from tests.data import glacier_mask, scene_array, write_raster, write_scene


def _classic(folder: Path, names: list[str], shape: tuple[int, int] = (40, 36)) -> Path:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        data = scene_array(*shape, seed=i)
        np.save(folder / f"masked_{name}.npy", np.moveaxis(data, 0, -1))
        write_raster(folder / f"{name}.tif", glacier_mask(data))
    return folder


def _scenes(folder: Path, names: list[str]) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i, name in enumerate(names):
        path = write_scene(folder / "images" / f"{name}.tif", height=48, width=40, seed=i)
        import rasterio

        with rasterio.open(path) as ds:
            write_raster(folder / "masks" / f"{name}.tif", glacier_mask(ds.read()))
    return folder


def test_classic_layout_pairs(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a", "b", "c"])
    layout, pairs = find_pairs(root)
    assert layout == "classic"
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert pairs[0].shape == (40, 36)
    assert pairs[1].mask == root / "b.tif"


def test_scene_layout_pairs(tmp_path: Path) -> None:
    root = _scenes(tmp_path / "d", ["x", "y"])
    layout, pairs = find_pairs(root)
    assert layout == "scenes"
    assert [p.name for p in pairs] == ["x", "y"]
    assert pairs[0].info.shape == (48, 40)


def test_unmatched_array_is_named(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a", "b"])
    (root / "b.tif").unlink()
    with pytest.raises(LayoutError, match="masked_b.npy has no mask"):
        find_pairs(root)


def test_unmatched_mask_is_named(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a", "b"])
    (root / "masked_a.npy").unlink()
    with pytest.raises(LayoutError, match="a.tif has no image"):
        find_pairs(root)


def test_channels_first_array_gets_a_hint(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a"])
    np.save(root / "masked_a.npy", scene_array(40, 36))
    with pytest.raises(BandCountError, match=r"shape \(5, 40, 36\).*transpose"):
        find_pairs(root)


def test_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a"])
    write_raster(root / "a.tif", np.zeros((20, 20), np.uint8))
    with pytest.raises(LayoutError, match="a.tif: mask shape 20x20 differs from .*masked_a.npy"):
        find_pairs(root)


def test_bad_mask_values_in_classic_layout(tmp_path: Path) -> None:
    root = _classic(tmp_path / "d", ["a"])
    write_raster(root / "a.tif", np.full((40, 36), 3, np.uint8))
    with pytest.raises(MaskError, match="found"):
        find_pairs(root)


def test_scene_without_mask_and_mask_without_scene(tmp_path: Path) -> None:
    root = _scenes(tmp_path / "d", ["x", "y"])
    (root / "masks" / "y.tif").unlink()
    with pytest.raises(LayoutError, match="y.tif has no mask"):
        find_pairs(root)
    root2 = _scenes(tmp_path / "e", ["x", "y"])
    (root2 / "images" / "x.tif").unlink()
    with pytest.raises(LayoutError, match="x.tif has no scene"):
        find_pairs(root2)


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError):
        detect_layout(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no training data found"):
        detect_layout(tmp_path / "empty")


def test_real_seed_layout(everest: Path) -> None:
    layout, pairs = find_pairs(everest / "seed-layout")
    assert layout == "classic"
    assert [p.name for p in pairs] == ["west_r0c0", "west_r0c1", "west_r1c0", "west_r1c1"]
    assert pairs[0].shape == (328, 240)
