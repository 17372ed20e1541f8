"""Balanced sampling (``--sampling balanced``): windows half on glacier, half on other ground.

References are independent of the sampler: the mask's own pixels at each window centre,
the validation block grid, naive per-cell loops, and the unchanged uniform sampler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoglacier.checkpoint import load_checkpoint
from geoglacier.errors import ConfigError, GeoglacierWarning
from geoglacier.io.layouts import classic_pairs
from geoglacier.io.masks import IGNORE
from geoglacier.training.config import RESUME_LOCKED, TrainConfig
from geoglacier.training.datasets import ClassicPatchDataset, make_datasets
from geoglacier.training.normalization import Normalization
from geoglacier.training.sampling import (
    CellSampler,
    centred_windows,
    coarse_valid_fraction,
    mask_class_counts,
    sample_balanced_windows,
    sample_train_windows,
)
from geoglacier.training.split import TrainRegions
from tests.cli_groups import train_group
from tests.data import scene_array, write_raster
from tests.training.test_training import write_separable_scenes

SIZE, CORNER, P, N = 256, 80, 32, 400  # glacier: an 80 px corner square, 9.8 % of the scene
TOLERANCE = 3 * np.sqrt(0.25 / N)  # three binomial standard deviations of a share near 0.5
IDENTITY = Normalization((0.0,) * 5, (1.0,) * 5)


def _corner_mask(h: int = SIZE, w: int = SIZE, corner: int = CORNER) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[:corner, :corner] = 1
    return mask


def _corner_scene(root: Path, glacier: bool = True) -> Path:
    """images/ + masks/ with one 256 px scene whose glacier is only the top-left corner."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = _corner_mask() if glacier else np.zeros((SIZE, SIZE), dtype=np.uint8)
    write_raster(root / "images" / "s.tif", scene_array(SIZE, SIZE, seed=3))
    write_raster(root / "masks" / "s.tif", mask, nodata=IGNORE)
    return root


def _glacier_share(windows: np.ndarray, mask: np.ndarray, p: int = P) -> float:
    return float(np.mean([mask[r + p // 2, c + p // 2] == 1 for _, r, c in windows]))


@pytest.fixture(scope="module")
def corner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corner_scene(tmp_path_factory.mktemp("corner") / "data")


def _data(root: Path, seed: int = 0, **kwargs):
    return make_datasets(root, patch_size=P, seed=seed, patches_per_epoch=N, augment=False, **kwargs)


# ---------------------------------------------------------------------------------------
# scene layout


def test_balanced_windows_centre_half_on_glacier(corner: Path) -> None:
    mask = _corner_mask()
    for seed in (0, 1):
        data = _data(corner, seed, sampling="balanced")
        for epoch in (0, 1):
            data.resample(epoch)
            windows = data.train.windows
            assert windows.shape == (N, 3)
            assert abs(_glacier_share(windows, mask) - 0.5) <= TOLERANCE
        uniform = _data(corner, seed)
        assert _glacier_share(uniform.train.windows, mask) < 0.2  # the sampler, not the scene, balances


def test_balanced_windows_never_touch_validation_blocks(corner: Path) -> None:
    for seed in range(4):
        data = _data(corner, seed, sampling="balanced")
        regions = data.regions
        (h, w), b, is_val = regions.shapes[0], regions.blocks[0], regions.is_val[0]
        assert is_val.any() and (~is_val).any()
        for _, r, c in data.train.windows:
            assert 0 <= r <= h - P and 0 <= c <= w - P
            rows = range(r // b, (r + P - 1) // b + 1)
            cols = range(c // b, (c + P - 1) // b + 1)
            assert not any(is_val[i, j] for i in rows for j in cols)


def test_balanced_windows_are_seeded(corner: Path) -> None:
    a = _data(corner, 2, sampling="balanced")
    b = _data(corner, 2, sampling="balanced")
    np.testing.assert_array_equal(a.train.windows, b.train.windows)
    first = a.train.windows.copy()
    a.resample(1)
    assert not np.array_equal(a.train.windows, first)
    a.resample(0)
    np.testing.assert_array_equal(a.train.windows, first)
    assert not np.array_equal(_data(corner, 3, sampling="balanced").train.windows, first)


def test_uniform_is_the_default_and_draws_with_the_uniform_sampler(corner: Path) -> None:
    default = _data(corner, 5)
    uniform = _data(corner, 5, sampling="uniform")
    np.testing.assert_array_equal(default.train.windows, uniform.train.windows)
    # the uniform sampler called as TrainingData called it before balanced sampling (the
    # windows themselves moved with the new validation split, not with sampling)
    before = sample_train_windows(
        default.regions, N, P, np.random.default_rng([5, 0]), default.valid_fraction_fn
    )
    np.testing.assert_array_equal(uniform.train.windows, before)
    assert uniform.class_samplers == (None, None)


def test_no_glacier_falls_back_to_uniform_with_a_warning(tmp_path: Path) -> None:
    root = _corner_scene(tmp_path / "d", glacier=False)
    with pytest.warns(GeoglacierWarning, match="no valid glacier pixel.*drawn uniformly"):
        data = _data(root, sampling="balanced")
    assert data.train.windows.shape == (N, 3)
    assert data.class_samplers[0] is None and data.class_samplers[1] is not None


def test_rejected_centres_fall_back_to_uniform_windows() -> None:
    h = w = 256
    valid = np.zeros((h, w), dtype=bool)
    valid[:, :128] = True  # the right half is nodata
    coarse = valid.reshape(32, 8, 32, 8).sum(axis=(1, 3))
    regions = TrainRegions(((h, w),), (64,), (np.zeros((4, 4), dtype=bool),))
    glacier = np.zeros((32, 32), dtype=np.uint16)
    glacier[:, 28:] = 64  # glacier only deep in the nodata half: every centred window is rejected
    other = np.full((32, 32), 64, dtype=np.uint16)
    samplers = tuple(CellSampler.from_counts([m], [(h, w)], 8) for m in (glacier, other))
    fraction = coarse_valid_fraction([coarse], P)
    wins = sample_balanced_windows(regions, 101, P, np.random.default_rng(0), samplers, fraction)
    assert wins.shape == (101, 3)
    assert (fraction(wins) >= 0.5).all()
    assert (np.array([valid[r : r + P, c : c + P].mean() for _, r, c in wins]) >= 0.5 - 8 / P).all()


def test_mask_class_counts_match_a_naive_count(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    h, w, cell = 37, 29, 8  # ragged edges in both axes
    mask = rng.choice(np.array([0, 1, IGNORE], dtype=np.uint8), size=(h, w), p=[0.5, 0.3, 0.2])
    path = write_raster(tmp_path / "m.tif", mask, nodata=IGNORE, tiled=False)
    for strip in (8, 16, 1024):
        glacier, other = mask_class_counts(path, cell, strip_rows=strip)
        assert glacier.shape == other.shape == (5, 4)
        for i in range(5):
            for j in range(4):
                part = mask[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
                assert glacier[i, j] == (part == 1).sum()
                assert other[i, j] == (part == 0).sum()  # nodata (255) counts as neither
    # Without a declared nodata, 255 means glacier (a 0/255 mask), as training reads it.
    path = write_raster(tmp_path / "m255.tif", np.where(mask == 1, 255, 0).astype(np.uint8), tiled=False)
    glacier, other = mask_class_counts(path, cell)
    assert glacier.sum() == (mask == 1).sum() and other.sum() == h * w - (mask == 1).sum()


def test_cell_sampler_draws_in_proportion_inside_the_scene() -> None:
    counts = np.zeros((3, 2), dtype=np.uint16)  # a 20 x 13 scene in 8 px cells
    counts[0, 0], counts[2, 1] = 10, 30  # the second is a ragged 4 x 5 corner cell
    sampler = CellSampler.from_counts([counts], [(20, 13)], 8)
    assert sampler is not None and sampler.total == 40
    pixels = sampler.draw(4000, np.random.default_rng(0))
    assert (pixels[:, 0] == 0).all()
    in_first = (pixels[:, 1] < 8) & (pixels[:, 2] < 8)
    in_corner = (pixels[:, 1] >= 16) & (pixels[:, 1] < 20) & (pixels[:, 2] >= 8) & (pixels[:, 2] < 13)
    assert (in_first | in_corner).all()
    assert abs(in_first.mean() - 0.25) < 3 * np.sqrt(0.25 * 0.75 / 4000)
    assert CellSampler.from_counts([np.zeros((3, 2))], [(20, 13)], 8) is None


def test_centred_windows_stay_inside_the_scene() -> None:
    centres = np.array([[0, 5, 5], [0, 100, 60], [0, 127, 127], [1, 10, 10]])
    got = centred_windows(centres, [(128, 128), (20, 20)], 32)
    np.testing.assert_array_equal(got, [[0, 0, 0], [0, 84, 44], [0, 96, 96], [1, 0, 0]])


# ---------------------------------------------------------------------------------------
# classic layout


def test_classic_balanced_crops_centre_half_on_glacier(tmp_path: Path) -> None:
    h = w = 128
    for k in range(2):
        data = scene_array(h, w, seed=30 + k)
        np.save(tmp_path / f"masked_p{k}.npy", np.ascontiguousarray(data.transpose(1, 2, 0)))
        write_raster(tmp_path / f"p{k}.tif", _corner_mask(h, w, 40), crs=None, tiled=False)
    pairs = classic_pairs(tmp_path)
    mask = _corner_mask(h, w, 40)  # 9.8 % glacier
    shares = {}
    for sampling in ("balanced", "uniform"):
        ds = ClassicPatchDataset(pairs, P, IDENTITY, train=True, seed=1, sampling=sampling)
        centres = []
        for epoch in range(N // len(pairs)):
            ds.set_epoch(epoch)
            centres += [ds.crop_offset(i) for i in range(len(pairs))]
        shares[sampling] = np.mean([mask[r + P // 2, c + P // 2] == 1 for r, c in centres])
    assert abs(shares["balanced"] - 0.5) <= TOLERANCE
    assert shares["uniform"] < 0.2
    ds = ClassicPatchDataset(pairs, P, IDENTITY, train=True, seed=1, sampling="balanced")
    sample = ds[0]
    r, c = ds.crop_offset(0)
    np.testing.assert_array_equal(sample["mask"].numpy(), mask[r : r + P, c : c + P])
    # counted, not indexed: after a whole epoch of crops the dataset holds no per-pixel indices
    assert [ds.class_counts(i) for i in range(len(pairs))] == [
        (int((mask == 1).sum()), int((mask == 0).sum()))
    ] * len(pairs)
    held = [v for d in vars(ds).values() if isinstance(d, dict) for v in d.values()]
    assert not any(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in held)


# ---------------------------------------------------------------------------------------
# config and CLI


def test_bad_sampling_is_refused() -> None:
    with pytest.raises(ConfigError, match="--sampling must be one of uniform, balanced, got 'bogus'"):
        TrainConfig(sampling="bogus").validate()
    assert "sampling" in RESUME_LOCKED


@pytest.mark.usefixtures("one_torch_thread")
def test_cli_sampling_balanced_is_recorded_and_locked_on_resume(tmp_path: Path) -> None:
    data = write_separable_scenes(tmp_path / "data")
    out = tmp_path / "model.pth"
    args = ["train", str(data), "--out", str(out), "--arch", "Unet", "--encoder", "resnet18"]
    args += ["--encoder-weights", "none", "--patch-size", "64", "--batch-size", "4", "--device", "cpu"]
    args += ["--val-fraction", "0.25", "--patches-per-epoch", "8", "--num-workers", "0"]
    group = train_group()
    result = CliRunner().invoke(group, [*args, "--epochs", "1", "--sampling", "balanced"])
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out)
    assert meta.train_config["sampling"] == "balanced"
    again = CliRunner().invoke(group, [*args, "--epochs", "2", "--resume", "--sampling", "uniform"])
    assert again.exit_code != 0
    assert "--sampling balanced, not uniform" in again.output and "Traceback" not in again.output
    bogus = CliRunner().invoke(group, [*args, "--sampling", "bogus", "--overwrite"])
    assert bogus.exit_code == 2
    errors = [line for line in bogus.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'--sampling'" in errors[0] and "'bogus'" in errors[0]
    assert "'uniform'" in errors[0] and "'balanced'" in errors[0]
