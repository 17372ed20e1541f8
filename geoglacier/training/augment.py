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


class Augment:
    """A picklable ``(image (H, W, C), mask (H, W)) -> (image, mask)`` callable.

    Wraps an Albumentations pipeline so DataLoader workers can reseed it
    (:meth:`reseed`); otherwise every forked worker would replay the same draws.
    """

    def __init__(self, seed: int | None = None) -> None:
        # Patches are small: OpenCV's thread pool buys nothing and, next to PyTorch's
        # OpenMP threads, oversubscribes the cores (we measured collation 10x slower).
        # Parallelism comes from DataLoader workers instead.
        cv2.setNumThreads(1)
        self.seed = seed
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


def build_augment(seed: int | None = None) -> Augment:
    """The training augmentation: flips, rot90, affine, gain/offset; seeded when ``seed`` is given."""
    return Augment(seed)
