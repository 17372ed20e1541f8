"""Training masks that hold one class only are pointed out before any training."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from geoglacier.errors import GeoglacierWarning
from geoglacier.io.layouts import find_pairs
from tests.data import glacier_mask, scene_array, write_raster


def _scenes(root: Path, masks: list[np.ndarray], nodata: float | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, mask in enumerate(masks):
        write_raster(root / "images" / f"s{k}.tif", scene_array(64, 64, seed=k))
        write_raster(root / "masks" / f"s{k}.tif", mask, nodata=nodata)
    return root


def _classic(root: Path, masks: list[np.ndarray]) -> Path:
    root.mkdir()
    for k, mask in enumerate(masks):
        np.save(root / f"masked_t{k}.npy", scene_array(64, 64, seed=k).transpose(1, 2, 0).copy())
        write_raster(root / f"t{k}.tif", mask)
    return root


ZEROS = np.zeros((64, 64), np.uint8)
ONES = np.ones((64, 64), np.uint8)
MIXED = glacier_mask(scene_array(64, 64))


@pytest.mark.parametrize(
    ("masks", "nodata", "missing"),
    [
        ([ZEROS, ZEROS], None, "no glacier pixel"),
        ([ONES, ONES], None, "no non-glacier pixel"),
        ([MIXED, MIXED], 1, "no glacier pixel"),  # nodata 1: every glacier pixel is nodata
        ([np.full((64, 64), 255, np.uint8)] * 2, 255, "no valid pixel"),
    ],
)
def test_scene_masks_of_one_class_warn(
    tmp_path: Path, masks: list[np.ndarray], nodata: float | None, missing: str
) -> None:
    root = _scenes(tmp_path / "data", masks, nodata)
    with pytest.warns(GeoglacierWarning, match=f"masks hold {missing}"):
        find_pairs(root)


def test_classic_masks_of_one_class_warn(tmp_path: Path) -> None:
    with pytest.warns(GeoglacierWarning, match="masks hold no glacier pixel"):
        find_pairs(_classic(tmp_path / "data", [ZEROS, ZEROS, ZEROS]))


@pytest.mark.parametrize("masks", [[ZEROS, ONES], [MIXED, ZEROS]])
def test_both_classes_across_the_masks_do_not_warn(tmp_path: Path, masks: list[np.ndarray]) -> None:
    scenes, classic = _scenes(tmp_path / "scenes", masks), _classic(tmp_path / "classic", masks)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeoglacierWarning)
        find_pairs(scenes)
        find_pairs(classic)
