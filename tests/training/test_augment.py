"""Augmentation on normalised 5-band float patches: no clipping, image and mask move together."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from geoglacier.io.masks import IGNORE
from geoglacier.training.augment import Augment, GainOffset, build_augment


def _patch(seed: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Smooth-ish normalised data, well outside [0, 1], different per band.
    base = rng.normal(0, 1.5, (size // 8, size // 8, 5)).astype(np.float32)
    image = np.kron(base, np.ones((8, 8, 1), np.float32)) + np.arange(5, dtype=np.float32) * 3 - 6
    mask = (image[..., 0] > image[..., 0].mean()).astype(np.uint8)
    return image, mask


def test_same_seed_same_output_and_seeds_differ() -> None:
    image, mask = _patch()
    a, b, c = build_augment(7), build_augment(7), build_augment(8)
    outs_a = [a(image, mask) for _ in range(6)]
    outs_b = [b(image, mask) for _ in range(6)]
    outs_c = [c(image, mask) for _ in range(6)]
    for (ia, ma), (ib, mb) in zip(outs_a, outs_b, strict=True):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(outs_a, outs_c, strict=True))


def test_reseed_restarts_draws_and_pickles() -> None:
    image, mask = _patch()
    aug = build_augment(3)
    first = [aug(image, mask)[0] for _ in range(3)]
    clone = pickle.loads(pickle.dumps(aug))
    assert isinstance(clone, Augment)
    aug.reseed(3)
    again = [aug(image, mask)[0] for _ in range(3)]
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)


def test_shapes_dtypes_and_mask_values() -> None:
    image, mask = _patch()
    aug = build_augment(0)
    for _ in range(20):
        out, m = aug(image, mask)
        assert out.shape == image.shape and out.dtype == np.float32
        assert m.shape == mask.shape and m.dtype == np.uint8
        assert set(np.unique(m)) <= {0, 1, IGNORE}  # nearest neighbour: no blended labels


def test_gain_offset_no_clipping_all_bands_mask_untouched() -> None:
    image, mask = _patch()
    t = GainOffset(gain=(1.5, 1.5), offset=(0.7, 0.7), p=1.0)
    out = t(image=image, mask=mask)
    np.testing.assert_allclose(out["image"], image * 1.5 + 0.7, rtol=1e-6, atol=1e-6)
    assert out["image"].min() < -1 and out["image"].max() > 2  # would be clipped by a [0, 1] transform
    np.testing.assert_array_equal(out["mask"], mask)


def test_photometric_only_when_geometry_is_identity() -> None:
    # Find draws where the output equals gain * input + offset: those are photometric
    # only, and the mask must then be unchanged and every band shifted alike.
    image, mask = _patch(1)
    aug = build_augment(11)
    seen = 0
    for _ in range(60):
        out, m = aug(image, mask)
        x, y = image.reshape(-1, 5), out.reshape(-1, 5)
        gain = np.polyfit(x[:, 0], y[:, 0], 1)
        fitted = x * gain[0] + gain[1]
        if np.allclose(fitted, y, atol=1e-4) and not np.array_equal(out, image):
            seen += 1
            np.testing.assert_array_equal(m, mask)
            assert out.min() < -1 and out.max() > 2
    assert seen > 0


def _homogeneous(m: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood has one known label (no edge, no padding near)."""
    padded = np.pad(m, radius, constant_values=IGNORE)
    win = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    return (win.min(axis=(2, 3)) == win.max(axis=(2, 3))) & (m != IGNORE)


def test_geometry_moves_image_and_mask_identically() -> None:
    # Band 0 is the mask itself (-1 / +1), so away from label edges and padding
    # (where the image is interpolated but the mask is nearest-neighbour) band 0 must
    # still show the mask: one value on glacier, a lower one elsewhere (gain and
    # offset are shared and monotone).
    image, mask = _patch(2)
    image[..., 0] = mask.astype(np.float32) * 2 - 1
    aug = build_augment(5)
    moved = 0
    for _ in range(40):
        out, m = aug(image, mask)
        moved += not np.array_equal(m, mask)
        core = _homogeneous(m)
        hi, lo = out[..., 0][core & (m == 1)], out[..., 0][core & (m == 0)]
        assert len(hi) and len(lo)
        np.testing.assert_allclose(hi, hi[0], atol=1e-5)
        np.testing.assert_allclose(lo, lo[0], atol=1e-5)
        assert hi[0] > lo[0]
    assert moved > 10


def test_padding_is_ignored_and_zero() -> None:
    image, mask = _patch(3)
    aug = build_augment(9)
    found = False
    for _ in range(80):
        out, m = aug(image, mask)
        pad = m == IGNORE
        if pad.any():
            found = True
            # Filled image pixels are 0 before the photometric step, so all bands are equal there.
            core = pad.copy()
            for axis in (0, 1):
                for shift in (-2, -1, 1, 2):
                    core &= np.roll(pad, shift, axis=axis)
            vals = out[core]
            assert np.allclose(vals, vals[:, :1], atol=1e-5)
    assert found


# ------------------------------------------------------------------ radiometric shifts


def _run(transform: object, image: np.ndarray, seed: int = 0) -> np.ndarray:
    import albumentations as A

    pipeline = A.Compose([transform], seed=seed)
    return pipeline(image=image)["image"]


def test_band_shift_is_an_affine_map_per_band() -> None:
    from geoglacier.training.augment import BandShift

    image, _ = _patch(1)
    out = _run(BandShift(p=1.0), image)
    gains = []
    for b in range(image.shape[-1]):
        x, y = image[..., b].ravel(), out[..., b].ravel()
        gain, offset = np.polyfit(x, y, 1)
        np.testing.assert_allclose(y, gain * x + offset, atol=1e-4)
        assert 0.85 - 1e-6 <= gain <= 1.15 + 1e-6 and -0.3 - 1e-6 <= offset <= 0.3 + 1e-6
        gains.append(gain)
    assert len(set(np.round(gains, 6))) > 1  # bands shift unequally


def test_saturate_clips_bright_values_only() -> None:
    from geoglacier.training.augment import Saturate

    image, _ = _patch(2)
    out = _run(Saturate(p=1.0), image, seed=4)
    assert np.all(out <= image + 1e-7)
    changed = [b for b in range(5) if not np.array_equal(out[..., b], image[..., b])]
    assert changed, "no band was clipped"
    for b in changed:
        level = out[..., b].max()
        below = image[..., b] < level
        np.testing.assert_array_equal(out[..., b][below], image[..., b][below])  # darker pixels untouched
        assert (out[..., b] == level).mean() >= 0.05  # a flat, saturated top


def test_patch_gamma_keeps_order_and_range() -> None:
    from geoglacier.training.augment import PatchGamma

    image, _ = _patch(3)
    out = _run(PatchGamma(gamma=(0.5, 0.5), p=1.0), image)
    for b in range(5):
        x, y = image[..., b].ravel(), out[..., b].ravel()
        order = np.argsort(x, kind="stable")
        assert np.all(np.diff(y[order]) >= -1e-5)  # monotonic
        assert y.min() == pytest.approx(x.min(), abs=1e-5) and y.max() == pytest.approx(x.max(), abs=1e-4)
        mid = (x.min() + x.max()) / 2
        assert np.mean(y[x < mid] - x[x < mid]) > 0  # gamma 0.5 lifts the darker half


def test_radiometric_pipeline_seeded_and_mask_untouched_by_shifts() -> None:
    image, mask = _patch(4)
    a, b = build_augment(5, radiometric=True), build_augment(5, radiometric=True)
    for _ in range(4):
        (ia, ma), (ib, mb) = a(image, mask), b(image, mask)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ma, mb)
        assert set(np.unique(ma)) <= {0, 1, IGNORE}
    plain = build_augment(5)
    assert not any(isinstance(t, type(a.pipeline.transforms[-1])) for t in plain.pipeline.transforms)
