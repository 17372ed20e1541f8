"""Training augmentation for normalised multi-band patches (Albumentations).

The patches reaching the augmentation are already normalised: five float32 bands of
roughly zero mean and unit variance, not images in [0, 1]. Albumentations'
``RandomBrightnessContrast`` assumes a float image lives in [0, 1] and clips to it,
which would destroy our data, so brightness and contrast are implemented here as a
multiplicative and an additive shift in normalised units (:class:`GainOffset`),
applied to all bands alike and never clipped.

Geometric transforms move image and mask together; the mask is resampled with
nearest neighbour and areas the affine transform brings in from outside the patch are
filled with 0 in the image and :data:`geoglacier.io.masks.IGNORE` in the mask, so the loss
ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np

from geoglacier.io.masks import IGNORE

AugmentFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class GainOffset(A.ImageOnlyTransform):
    """Contrast (gain) and brightness (offset) in normalised units: ``x * gain + offset``.

    Args:
        gain: range of the multiplicative factor.
        offset: range of the additive shift, in standard deviations.
        p: probability.
    """

    def __init__(
        self,
        gain: tuple[float, float] = (0.8, 1.2),
        offset: tuple[float, float] = (-0.2, 0.2),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.gain = gain
        self.offset = offset

    def get_params(self) -> dict[str, float]:
        return {
            "gain": self.py_random.uniform(*self.gain),
            "offset": self.py_random.uniform(*self.offset),
        }

    def apply(self, img: np.ndarray, gain: float = 1.0, offset: float = 0.0, **params: Any) -> np.ndarray:
        out = img * np.float32(gain)
        out += np.float32(offset)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain", "offset")


class BandShift(A.ImageOnlyTransform):
    """Per-band gain and offset in normalised units: sensors, dates and haze shift bands unequally.

    Normalisation is affine per band, so a per-band affine change of the normalised
    values is exactly a per-band gain and offset of the raw reflectances or DNs.
    """

    def __init__(
        self,
        gain: tuple[float, float] = (0.85, 1.15),
        offset: tuple[float, float] = (-0.3, 0.3),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.gain = gain
        self.offset = offset

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        bands = data["image"].shape[-1]
        draw = self.random_generator.uniform
        return {
            "gains": draw(*self.gain, bands).astype(np.float32),
            "offsets": draw(*self.offset, bands).astype(np.float32),
        }

    def apply(self, img: np.ndarray, gains: np.ndarray, offsets: np.ndarray, **params: Any) -> np.ndarray:
        return img * gains + offsets

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain", "offset")


class Saturate(A.ImageOnlyTransform):
    """Clip a band at a random high quantile of the patch, as saturated bright snow does.

    About 38 % of the Everest scene's visible pixels sit at 255 over snow; another
    scene saturates less or more. Clipping is monotonic, so doing it on normalised
    values equals clipping the raw values at the matching level.
    """

    def __init__(self, quantile: tuple[float, float] = (0.6, 0.95), p: float = 0.3) -> None:
        super().__init__(p=p)
        self.quantile = quantile

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        bands = data["image"].shape[-1]
        return {
            "which": self.random_generator.random(bands) < 0.5,
            "quantile": float(self.random_generator.uniform(*self.quantile)),
        }

    def apply(self, img: np.ndarray, which: np.ndarray, quantile: float = 0.9, **params: Any) -> np.ndarray:
        out = img.copy()
        for b in np.flatnonzero(which[: img.shape[-1]]):
            level = np.quantile(img[..., b], quantile)
            np.minimum(out[..., b], level, out=out[..., b])
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("quantile",)


class PatchGamma(A.ImageOnlyTransform):
    """A gamma curve over each band's range within the patch (non-linear contrast changes)."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.4), p: float = 0.3) -> None:
        super().__init__(p=p)
        self.gamma = gamma

    def get_params(self) -> dict[str, float]:
        return {"g": self.py_random.uniform(*self.gamma)}

    def apply(self, img: np.ndarray, g: float = 1.0, **params: Any) -> np.ndarray:
        low = img.min(axis=(0, 1), keepdims=True)
        span = np.maximum(img.max(axis=(0, 1), keepdims=True) - low, np.float32(1e-6))
        return (((img - low) / span) ** np.float32(g) * span + low).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gamma",)


class Augment:
    """A picklable ``(image (H, W, C), mask (H, W)) -> (image, mask)`` callable.

    Wraps an Albumentations pipeline so DataLoader workers can reseed it
    (:meth:`reseed`); otherwise every forked worker would replay the same draws.
    """

    def __init__(self, seed: int | None = None, radiometric: bool = False) -> None:
        # Patches are small: OpenCV's thread pool buys nothing and, next to PyTorch's
        # OpenMP threads, oversubscribes the cores (we measured collation 10x slower).
        # Parallelism comes from DataLoader workers instead.
        cv2.setNumThreads(1)
        self.seed = seed
        self.radiometric = radiometric
        shifts = [BandShift(p=0.5), Saturate(p=0.3), PatchGamma(p=0.3)] if radiometric else []
        self.pipeline = A.Compose(
            [
                A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.5),
                A.RandomRotate90(p=0.5),
                A.Affine(
                    scale=(0.9, 1.1),
                    shear=(-10.0, 10.0),
                    rotate=(-20.0, 20.0),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0.0,
                    fill_mask=IGNORE,
                    p=0.5,
                ),
                GainOffset(p=0.5),
                *shifts,
            ],
            seed=seed,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        cv2.setNumThreads(1)
        self.__dict__.update(state)

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws from ``seed`` (called per DataLoader worker)."""
        self.seed = seed
        self.pipeline.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.pipeline(image=image, mask=mask)
        return np.ascontiguousarray(out["image"], dtype=np.float32), np.ascontiguousarray(out["mask"])


def build_augment(seed: int | None = None, radiometric: bool = False) -> Augment:
    """The training augmentation: flips, rot90, affine, gain/offset; seeded when ``seed`` is given.

    ``radiometric`` adds the shifts real scenes have between them: per-band gain and
    offset (:class:`BandShift`), saturation of bright bands (:class:`Saturate`) and a
    gamma curve (:class:`PatchGamma`).
    """
    return Augment(seed, radiometric)
