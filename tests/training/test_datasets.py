"""Patch datasets, spatial split and samplers, against plain rasterio and NumPy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoglacier.errors import ConfigError
from geoglacier.io.layouts import classic_pairs, scene_pairs
from geoglacier.io.masks import IGNORE
from geoglacier.training.checks import check_patch_size
from geoglacier.training.datasets import ClassicPatchDataset, ScenePatchDataset, make_datasets, seed_worker
from geoglacier.training.normalization import Normalization
from geoglacier.training.sampling import coarse_valid_fraction, sample_train_windows
from geoglacier.training.split import (
    VAL_SHARE_TOLERANCE,
    TrainRegions,
    block_areas,
    pick_val_blocks,
    spatial_split,
)
from tests.data import EVEREST, glacier_mask, scene_array, write_raster

NODATA = -9999.0
IDENTITY = Normalization((0.0,) * 5, (1.0,) * 5)


def _scene_layout(root: Path, shapes=((200, 160), (200, 160)), nodata: float | None = NODATA) -> Path:
    """images/ + masks/ with nodata and NaN pixels in the scene and nodata in the mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k, (h, w) in enumerate(shapes):
        data = scene_array(h, w, seed=10 + k)
        mask = glacier_mask(data)
        if nodata is not None:
            data[:, : h // 4, : w // 3] = nodata  # a nodata corner
            data[3, h // 2, w // 2] = nodata  # one band only
        data[:, h - 7 :, 20:30] = np.nan
        mask[h // 2 : h // 2 + 5, :10] = IGNORE
        write_raster(root / "images" / f"s{k}.tif", data, nodata=nodata, block=32)
        write_raster(root / "masks" / f"s{k}.tif", mask, nodata=IGNORE, block=32)
    return root


def _classic_layout(root: Path, n: int = 4, h: int = 64, w: int = 96) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        data = scene_array(h, w, seed=20 + k)
        np.save(root / f"masked_p{k}.npy", np.ascontiguousarray(data.transpose(1, 2, 0)))
        write_raster(root / f"p{k}.tif", glacier_mask(data), crs=None, tiled=False)
    return root


def _boundless(path: Path, row: int, col: int, size: int, bands: bool = True) -> np.ndarray:
    with rasterio.open(path) as ds:
        win = Window(col, row, size, size)
        if bands:
            return ds.read(window=win, boundless=True, fill_value=np.nan, out_dtype=np.float32)
        return ds.read(1, window=win, boundless=True, fill_value=IGNORE)


# ---------------------------------------------------------------------------------------
# the fast path reads exactly what rasterio reads


def test_scene_dataset_matches_plain_rasterio(tmp_path: Path) -> None:
    root = _scene_layout(tmp_path / "d")
    pairs = scene_pairs(root)
    p = 64
    windows = np.array(
        [
            [0, 0, 0],  # nodata corner
            [0, 50, 40],  # interior, one-band nodata pixel
            [0, 150, 10],  # NaN strip at the bottom edge, mask nodata rows
            [1, 170, 130],  # past the bottom-right corner
            [1, -20, -30],  # before the top-left corner
            [1, 300, 300],  # entirely outside
        ]
    )
    ds = ScenePatchDataset(pairs, windows, p, IDENTITY)
    for i, (k, r, c) in enumerate(windows):
        raw = _boundless(pairs[k].image, r, c, p)
        rawmask = _boundless(pairs[k].mask, r, c, p, bands=False)
        block, mask = ds.read(i)
        np.testing.assert_array_equal(block, raw)  # NaN == NaN here
        expected_valid = np.isfinite(raw).all(0) & (raw != NODATA).all(0) & (rawmask != IGNORE)
        sample = ds[i]
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (5, p, p)
        assert sample["valid"].dtype == torch.bool and sample["mask"].dtype == torch.float32
        np.testing.assert_array_equal(sample["valid"].numpy(), expected_valid)
        np.testing.assert_array_equal(sample["image"].numpy(), np.where(expected_valid, raw, 0))
        np.testing.assert_array_equal(
            sample["mask"].numpy(), ((rawmask == 1) & expected_valid).astype(np.float32)
        )
        np.testing.assert_array_equal(sample["window"].numpy(), [k, r, c])
        assert sample["index"] == i
    assert not ds[5]["valid"].any()
    assert (~ds[0]["valid"].numpy()).sum() >= (200 // 4) * (160 // 3) - 1


def test_scene_dataset_normalises(tmp_path: Path) -> None:
    root = _scene_layout(tmp_path / "d", nodata=None)
    pairs = scene_pairs(root)
    norm = Normalization((100.0, 110.0, 120.0, 130.0, 140.0), (10.0, 20.0, 30.0, 40.0, 50.0))
    ds = ScenePatchDataset(pairs, np.array([[0, 100, 40]]), 64, norm)
    raw = _boundless(pairs[0].image, 100, 40, 64)
    expected = (raw - np.array(norm.mean)[:, None, None]) / np.array(norm.std)[:, None, None]
    sample = ds[0]
    ok = sample["valid"].numpy()
    np.testing.assert_allclose(sample["image"].numpy()[:, ok], expected[:, ok], rtol=1e-5, atol=1e-5)
    assert (sample["image"].numpy()[:, ~ok] == 0).all()


def test_dataloader_two_workers_fork_opens_once_per_worker(tmp_path: Path) -> None:
    root = _scene_layout(tmp_path / "d")
    pairs = scene_pairs(root)
    rng = np.random.default_rng(0)
    windows = np.stack([rng.integers(0, 2, 24), rng.integers(0, 140, 24), rng.integers(0, 100, 24)], 1)

    class Traced(ScenePatchDataset):
        def __getitem__(self, i: int) -> dict:
            out = super().__getitem__(i)
            out["pid"] = os.getpid()
            out["opens"] = self.opens[os.getpid()]
            return out

    ds = Traced(pairs, windows, 64, IDENTITY)
    ds[0]  # the parent opens handles before forking: workers must not reuse them
    parent_opens = dict(ds.opens)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=3, num_workers=2, multiprocessing_context="fork", worker_init_fn=seed_worker
    )
    batches = list(loader)
    pids = torch.cat([b["pid"] for b in batches]).tolist()
    opens = torch.cat([b["opens"] for b in batches]).tolist()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # Each worker opens each scene (image + mask) at most once, however many patches it reads.
    assert max(opens) <= 2 * len(pairs)
    assert ds.opens == parent_opens
    reference = ScenePatchDataset(pairs, windows, 64, IDENTITY)
    images = torch.cat([b["image"] for b in batches])
    for i in range(len(windows)):
        torch.testing.assert_close(images[i], reference[i]["image"], rtol=0, atol=0)


def test_scene_dataset_pickles_without_handles(tmp_path: Path) -> None:
    import pickle

    root = _scene_layout(tmp_path / "d")
    ds = ScenePatchDataset(scene_pairs(root), np.array([[0, 60, 60]]), 64, IDENTITY)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles == {}
    torch.testing.assert_close(clone[0]["image"], ds[0]["image"])


# ---------------------------------------------------------------------------------------
# classic layout


def test_patch_size_must_be_multiple_of_32(tmp_path: Path) -> None:
    for bad in (0, 50, 100, -32):
        with pytest.raises(ConfigError, match="--patch-size"):
            check_patch_size(bad)
    root = _classic_layout(tmp_path / "c")
    with pytest.raises(ConfigError, match="--patch-size"):
        make_datasets(root, patch_size=48)
    with pytest.raises(ConfigError, match="--patch-size"):
        ClassicPatchDataset(classic_pairs(root), 40, IDENTITY)


def test_classic_crop_and_pad(tmp_path: Path) -> None:
    root = _classic_layout(tmp_path / "c", n=2, h=64, w=96)
    pairs = classic_pairs(root)
    arr = np.load(pairs[0].image)
    # 64 x 96 with patch 64: rows fit, columns are cropped.
    train = ClassicPatchDataset(pairs, 64, IDENTITY, train=True, seed=1)
    offsets = {train.crop_offset(0) for train.epoch in range(12)}
    assert len(offsets) > 1 and all(r == 0 and 0 <= c <= 32 for r, c in offsets)
    train.set_epoch(3)
    r, c = train.crop_offset(0)
    sample = train[0]
    np.testing.assert_array_equal(sample["image"].numpy(), arr[r : r + 64, c : c + 64].transpose(2, 0, 1))
    assert sample["valid"].all()
    # Evaluation: centred crop, the same every time.
    val = ClassicPatchDataset(pairs, 64, IDENTITY, train=False)
    assert val.crop_offset(0) == (0, 16)
    torch.testing.assert_close(val[0]["image"], val[0]["image"])
    # 128: both axes padded; padding is invalid, ignored and 0.
    big = ClassicPatchDataset(pairs, 128, IDENTITY, train=True)
    s = big[1]
    assert s["image"].shape == (5, 128, 128)
    valid = s["valid"].numpy()
    assert valid[:64, :96].all() and not valid[64:].any() and not valid[:, 96:].any()
    assert (s["image"].numpy()[:, 64:] == 0).all() and (s["mask"].numpy()[64:] == 0).all()
    mask = rasterio.open(pairs[1].mask).read(1)
    np.testing.assert_array_equal(s["mask"].numpy()[:64, :96], mask)


def test_classic_nan_pixels_invalid(tmp_path: Path) -> None:
    root = _classic_layout(tmp_path / "c", n=2)
    arr = np.load(root / "masked_p0.npy")
    arr[5, 7, 2] = np.nan
    np.save(root / "masked_p0.npy", arr)
    ds = ClassicPatchDataset(classic_pairs(root), 96, IDENTITY, train=False)
    s = ds[0]
    assert not s["valid"][5, 7] and s["valid"][5, 8]
    assert s["image"][:, 5, 7].eq(0).all()


def test_classic_dataloader_with_augmentation(tmp_path: Path) -> None:
    data = make_datasets(_classic_layout(tmp_path / "c"), patch_size=64, seed=0)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=2, num_workers=2, worker_init_fn=seed_worker, multiprocessing_context="fork"
    )
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 5, 64, 64) and batch["mask"].shape == (2, 64, 64)
    assert set(torch.unique(batch["mask"]).tolist()) <= {0.0, 1.0}
    assert (batch["image"][~batch["valid"].unsqueeze(1).expand_as(batch["image"])] == 0).all()


# ---------------------------------------------------------------------------------------
# spatial split and samplers


def _in_scene(win: np.ndarray, shapes, p: int) -> tuple[int, int, int, int]:
    k, r, c = (int(v) for v in win)
    h, w = shapes[k]
    return max(r, 0), max(c, 0), min(r + p, h), min(c + p, w)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("shape", [(200, 160), (480, 655), (64, 64), (300, 97), (1000, 1000), (130, 700)])
def test_split_never_overlaps(shape: tuple[int, int]) -> None:
    p = 64
    shapes = [shape, (shape[1], shape[0])]
    for seed in range(15):
        regions, val = spatial_split(shapes, p, val_fraction=0.3, seed=seed)
        train = sample_train_windows(regions, 40, p, np.random.default_rng(seed))
        assert train.shape == (40, 3)
        for k, (h, w) in enumerate(shapes):
            b = regions.blocks[k]
            nblocks = -(-h // b) * -(-w // b)
            assert (val[:, 0] == k).any() == (nblocks >= 2)
            vboxes = [_in_scene(v, shapes, p) for v in val if v[0] == k]
            for t in train[train[:, 0] == k]:
                tb = _in_scene(t, shapes, p)
                assert tb[2] > tb[0] and tb[3] > tb[1]
                assert not any(_overlap(tb, vb) for vb in vboxes)
            # Validation windows lie in validation blocks.
            for vb in vboxes:
                rows = range(vb[0] // b, (vb[2] - 1) // b + 1)
                cols = range(vb[1] // b, (vb[3] - 1) // b + 1)
                assert all(regions.is_val[k][i, j] for i in rows for j in cols)


def test_split_is_seeded_and_fraction_respected() -> None:
    shapes = [(1024, 1024)]
    a = spatial_split(shapes, 64, 0.25, seed=3)
    b = spatial_split(shapes, 64, 0.25, seed=3)
    c = spatial_split(shapes, 64, 0.25, seed=4)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert a[0].is_val[0].sum() == 16  # 8 x 8 blocks of 128, a quarter of them
    assert len(a[1]) == 16 * 4  # four 64-windows per 128-block
    with pytest.raises(ConfigError):
        spatial_split(shapes, 64, block=32)


def _held_out_share(shapes: list[tuple[int, int]], regions: object) -> float:
    total = sum(h * w for h, w in shapes)
    return 1.0 - float(regions.train_pixels().sum()) / total  # type: ignore[attr-defined]


@pytest.mark.parametrize("val_fraction", [0.1, 0.2, 0.3])
def test_held_out_share_is_about_the_val_fraction(val_fraction: float) -> None:
    # The real Everest west scene at the default 256 px patches: with blocks of 512 it has
    # two (512 and 143 rows); holding out one of them kept 22 % or 78 % of it, by seed.
    # (At 10 % one 256 px block is already 10-20 % of this scene.)
    everest = [(655, 480)]
    for seed in range(40):
        regions, _ = spatial_split(everest, 256, val_fraction, seed)
        share = _held_out_share(everest, regions)
        tolerance = VAL_SHARE_TOLERANCE * val_fraction if val_fraction >= 0.2 else 0.15
        assert abs(share - val_fraction) <= tolerance, (seed, share)
    # scenes one or two large patches across: the first block drawn is not taken when it
    # alone is far over the share (a 300 x 300 scene at 256 px patches held out 73 %)
    for shape, patch in (((300, 300), 256), ((96, 96), 64), ((700, 300), 256), ((400, 600), 256)):
        for seed in range(40):
            regions, _ = spatial_split([shape], patch, 0.2, seed)
            assert 0.1 <= _held_out_share([shape], regions) <= 0.3, (shape, seed)
    # many scene shapes with room for several patch-size blocks
    rng = np.random.default_rng(0)
    for seed in range(60):
        shapes = [
            (int(rng.integers(256, 1500)), int(rng.integers(256, 1500)))
            for _ in range(int(rng.integers(1, 4)))
        ]
        regions, _ = spatial_split(shapes, 64, val_fraction, seed)
        for k, (h, w) in enumerate(shapes):
            b = regions.blocks[k]
            areas = block_areas(h, w, b)
            share = float(areas[regions.is_val[k]].sum()) / (h * w)
            assert abs(share - val_fraction) <= VAL_SHARE_TOLERANCE * val_fraction, (shapes, seed, k, share)


def test_strips_two_blocks_wide_get_smaller_blocks() -> None:
    # 202 x 480 at 128 px patches: blocks of 256 make two per strip, one held out = half
    shapes = [(202, 480), (202, 480)]
    for seed in range(10):
        regions, val = spatial_split(shapes, 128, 0.2, seed)
        assert regions.blocks == (128, 128)
        assert 0.1 <= _held_out_share(shapes, regions) <= 0.3
        assert len(val) and set(val[:, 0]) == {0, 1}


def test_pick_val_blocks_by_hand() -> None:
    areas = np.array([[100, 100], [100, 700]])  # 1000 px, target 200 at 20 %
    for seed in range(8):
        val = pick_val_blocks(areas, 0.2, np.random.default_rng(seed))
        # whatever the order: the 700 px block never brings 0 or 100 closer to 200; two 100s reach it
        assert val.sum() == 2 and areas[val].sum() == 200 and not val[1, 1]
    rng = np.random.default_rng(0)
    # every block is more than twice the target: the one closest to it, not the first drawn
    assert pick_val_blocks(np.array([[900, 500, 2000]]), 0.1, rng).tolist() == [[False, True, False]]
    assert not pick_val_blocks(areas, 0.0, rng).any()
    assert not pick_val_blocks(np.array([[500]]), 0.5, rng).any()
    assert pick_val_blocks(np.array([[10, 10]]), 0.9, rng).sum() == 1  # one block always stays for training
    np.testing.assert_array_equal(block_areas(5, 7, 4), [[16, 12], [4, 3]])


def test_describe_names_the_held_out_share(tmp_path: Path) -> None:
    data = make_datasets(_scene_layout(tmp_path / "d"), patch_size=64, seed=1, patches_per_epoch=30)
    regions = data.regions
    held = sum(
        int(block_areas(h, w, b)[v].sum())
        for (h, w), b, v in zip(regions.shapes, regions.blocks, regions.is_val, strict=True)
    )
    total = sum(h * w for h, w in regions.shapes)
    line = data.describe()
    assert line.startswith(f"Validation: {held / total:.0%} of the scenes' pixels")
    assert (
        f"{sum(int(v.sum()) for v in regions.is_val)} blocks" in line
        and "30 training windows of 64 px" in line
    )
    classic = make_datasets(_classic_layout(tmp_path / "c"), patch_size=64, seed=0)
    assert classic.describe().startswith(
        f"Validation: {len(classic.val)} of {len(classic.val) + len(classic.train)} pairs"
    )


def test_coarse_fraction_exact_for_aligned_windows() -> None:
    rng = np.random.default_rng(0)
    valid = rng.random((96, 80)) > 0.4
    cell = 8
    coarse = valid.reshape(12, cell, 10, cell).sum(axis=(1, 3))
    frac = coarse_valid_fraction([coarse], 32, cell)
    wins = np.array([[0, 0, 0], [0, 64, 48], [0, 16, 8], [0, 80, 64]])  # last one hangs outside
    expected = []
    for _, r, c in wins:
        expected.append(valid[r : r + 32, c : c + 32].sum() / 32**2)
    np.testing.assert_allclose(frac(wins), expected)


def test_sampler_skips_mostly_nodata() -> None:
    h, w, cell, p = 256, 256, 8, 32
    valid = np.zeros((h, w), dtype=bool)
    valid[:, : w // 4] = True  # three quarters of the scene is nodata
    coarse = valid.reshape(h // cell, cell, w // cell, cell).sum(axis=(1, 3))
    regions = TrainRegions(((h, w),), (64,), (np.zeros((4, 4), dtype=bool),))
    wins = sample_train_windows(
        regions, 200, p, np.random.default_rng(1), coarse_valid_fraction([coarse], p, cell)
    )
    true_frac = np.array([valid[r : r + p, c : c + p].mean() for _, r, c in wins])
    assert (true_frac >= 0.5 - cell / p).all()  # coarse cells may round up by one cell
    unfiltered = sample_train_windows(regions, 200, p, np.random.default_rng(1))
    assert np.mean([valid[r : r + p, c : c + p].mean() < 0.5 for _, r, c in unfiltered]) > 0.5


# ---------------------------------------------------------------------------------------
# make_datasets


def test_make_datasets_classic(tmp_path: Path) -> None:
    root = _classic_layout(tmp_path / "c")
    data = make_datasets(root, patch_size=64, seed=0)
    assert data.layout == "classic" and len(data.train) == 3 and len(data.val) == 1
    train_names = {q.name for q in data.train.pairs}
    assert not train_names & {q.name for q in data.val.pairs}
    arrays = [np.load(q.image).reshape(-1, 5).astype(np.float64) for q in data.train.pairs]
    x = np.concatenate(arrays)
    np.testing.assert_allclose(data.normalization.mean, x.mean(0), rtol=1e-9)
    np.testing.assert_allclose(data.normalization.std, x.std(0), rtol=1e-9)
    assert data.band_names == ("red", "green", "blue", "nir", "ndvi")
    s = data.train[0]
    assert s["image"].shape == (5, 64, 64) and s["valid"].shape == (64, 64)
    assert data.val.augment is None and data.train.augment is not None
    data.resample(2)
    assert data.train.epoch == 2


def test_make_datasets_scenes_stats_and_resample(tmp_path: Path) -> None:
    root = _scene_layout(tmp_path / "d")
    p = 64
    data = make_datasets(root, patch_size=p, seed=1, patches_per_epoch=30)
    assert data.layout == "scenes" and len(data.train) == 30 and len(data.val) > 0
    shapes = data.regions.shapes
    # Statistics: exactly the valid pixels of the training blocks.
    cols = []
    for k, q in enumerate(data.train.pairs):
        with rasterio.open(q.image) as ds:
            arr = ds.read().astype(np.float64)
        inside = np.zeros(arr.shape[1:], dtype=bool)
        for _, r, c, h, w in data.regions.boxes(k):
            inside[r : r + h, c : c + w] = True
        ok = inside & np.isfinite(arr).all(0) & (arr != NODATA).all(0)
        cols.append(arr[:, ok])
    x = np.concatenate(cols, axis=1)
    np.testing.assert_allclose(data.normalization.mean, x.mean(1), rtol=1e-9)
    np.testing.assert_allclose(data.normalization.std, x.std(1), rtol=1e-9)
    # No training window of any epoch touches a validation window.
    vboxes = [(v[0], _in_scene(v, shapes, p)) for v in data.val.windows]
    for epoch in range(3):
        data.resample(epoch)
        for t in data.train.windows:
            tb = _in_scene(t, shapes, p)
            assert not any(k == t[0] and _overlap(tb, vb) for k, vb in vboxes)
    # resample is a function of (seed, epoch).
    data.resample(1)
    w1 = data.train.windows.copy()
    data.resample(2)
    assert not np.array_equal(w1, data.train.windows)
    again = make_datasets(root, patch_size=p, seed=1, patches_per_epoch=30)
    again.resample(1)
    np.testing.assert_array_equal(again.train.windows, w1)
    batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=4)))
    assert batch["image"].shape == (4, 5, p, p) and batch["window"].shape == (4, 3)


def test_make_datasets_everest_seed_layout() -> None:
    root = EVEREST / "seed-layout"
    if not root.exists():
        pytest.skip("../shared/data/everest is not here")
    data = make_datasets(root, patch_size=256, seed=0)
    assert len(data.train) == 3 and len(data.val) == 1
    s = data.val[0]
    assert s["image"].shape == (5, 256, 256)
    valid = s["valid"].numpy()
    assert valid[:, :240].all() and not valid[:, 240:].any()  # 240 columns padded to 256
    assert s["image"].abs().max() < 20  # normalised, not raw 0-255 values


def test_make_datasets_everest_scene_layout(tmp_path: Path) -> None:
    if not (EVEREST / "west_scene.tif").exists():
        pytest.skip("../shared/data/everest is not here")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "west.tif").symlink_to(EVEREST / "west_scene.tif")
    (tmp_path / "masks" / "west.tif").symlink_to(EVEREST / "west_mask.tif")
    data = make_datasets(tmp_path, patch_size=128, seed=0, patches_per_epoch=16)
    assert len(data.train) == 16 and len(data.val) > 0
    assert data.band_names[:4] == ("red", "green", "blue", "nir")
    assert all(0 < m < 255 for m in data.normalization.mean[:4])
    batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=4)))
    assert batch["image"].shape == (4, 5, 128, 128) and batch["valid"].float().mean() > 0.4


def test_outputs_may_not_be_files_of_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from geoglacier.errors import OutputPathError
    from geoglacier.training.checks import check_outputs_outside_data

    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        (tmp_path / "data" / sub / "a.tif").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        OutputPathError, match=r"data/masks/a\.tif: --out is the same file as the input a file of DATA_DIR"
    ):
        check_outputs_outside_data("data", ["data/masks/a.tif", "data/masks/a.metrics.csv"])
    with pytest.raises(OutputPathError, match="--out's companion a.tif"):
        check_outputs_outside_data("data", ["m.pth", "./data/images/a.tif"])
    check_outputs_outside_data("data", ["data/model.pth", "data/model.metrics.csv"])  # beside is fine
    for name in ("model.pth", "model.metrics.csv", "model.pth.state"):  # resuming a run kept in there
        (tmp_path / "data" / name).write_bytes(b"x")
    check_outputs_outside_data("data", ["data/model.pth", "data/model.metrics.csv", "data/model.pth.state"])
    # a symlinked folder of scenes (data/linked -> elsewhere), and a link back up that must not loop
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.tif").write_bytes(b"x")
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "up").symlink_to(tmp_path / "data", target_is_directory=True)
    for out in ("data/linked/b.tif", str(tmp_path / "elsewhere" / "b.tif")):
        with pytest.raises(
            OutputPathError, match="b.tif: --out is the same file as the input a file of DATA_DIR"
        ):
            check_outputs_outside_data("data", [out])
    check_outputs_outside_data("missing", ["m.pth"])


# ---------------------------------------------------------------------------------------
# a patch larger than the scenes; why validation is empty


def test_patch_larger_than_every_scene_is_a_config_error(tmp_path: Path) -> None:
    one = _scene_layout(tmp_path / "one", shapes=((40, 40),))
    with pytest.raises(
        ConfigError,
        match=r"--patch-size 64 is larger than scene .*s0\.tif \(40x40\); use --patch-size 32 or less",
    ):
        make_datasets(one, patch_size=64)
    # Smaller than the patch in one dimension only: still trained on padding alone, refused too.
    strips = _scene_layout(tmp_path / "strips", shapes=((100, 300), (60, 500)))
    with pytest.raises(
        ConfigError,
        match=r"larger than every scene \(the widest, .*s0\.tif, is 100x300\); use --patch-size 96 or less",
    ):
        make_datasets(strips, patch_size=128)
    tiny = _scene_layout(tmp_path / "tiny", shapes=((20, 400),), nodata=None)
    with pytest.raises(ConfigError, match="at least 32 px in height and width"):
        make_datasets(tiny, patch_size=32)


def test_a_scene_one_patch_wide_or_beside_a_larger_one_still_trains_with_validation(tmp_path: Path) -> None:
    narrow = make_datasets(_scene_layout(tmp_path / "narrow", shapes=((256, 64),)), patch_size=64, seed=0)
    assert len(narrow.val) > 0 and len(narrow.train) > 0
    mixed = make_datasets(_scene_layout(tmp_path / "mixed", shapes=((40, 40), (200, 160))), patch_size=64)
    assert len(mixed.val) > 0


def test_classic_tiles_smaller_than_the_patch_are_still_padded(tmp_path: Path) -> None:
    data = make_datasets(_classic_layout(tmp_path / "c", h=40, w=40), patch_size=64, seed=0)
    assert len(data.val) == 1 and data.val[0]["valid"].sum() == 40 * 40


def test_no_validation_reason_names_the_cause(tmp_path: Path) -> None:
    scenes = _scene_layout(tmp_path / "d")
    assert make_datasets(scenes, patch_size=64, val_fraction=0.0).no_validation_reason() == "--val-fraction 0"
    single = make_datasets(_scene_layout(tmp_path / "single", shapes=((64, 64),)), patch_size=64)
    assert len(single.val) == 0
    assert "single block of 64 px" in single.no_validation_reason()
    assert "--val-fraction" not in single.no_validation_reason()
    pair = make_datasets(_classic_layout(tmp_path / "c", n=1), patch_size=64)
    assert len(pair.val) == 0 and "single classic pair" in pair.no_validation_reason()
