"""What a satellite product offers the stacker: band files, their scaling, a quality layer, metadata.

Each product reader (:mod:`~geoglacier.products.landsat`, :mod:`~geoglacier.products.sentinel2`,
:mod:`~geoglacier.products.stac`, :mod:`~geoglacier.products.hls`) turns a folder or an item into a :class:`Product`;
:mod:`~geoglacier.products.stack` reads any :class:`Product` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from geoglacier.products.metadata import DATE_TAG, PRODUCT_TAG, SENSOR_TAG
from geoglacier.products.quality import FMASK_FILL, fmask_classes, qa_pixel_classes, scl_classes

Kind = Literal["landsat", "sentinel2-safe", "sentinel2-cogs", "stac", "hls"]
KINDS: tuple[str, ...] = ("landsat", "sentinel2-safe", "sentinel2-cogs", "stac", "hls")
QualityKind = Literal["qa_pixel", "scl", "fmask"]
#: the value that means "no data" in each quality layer
QUALITY_FILL: dict[str, int] = {"qa_pixel": 1, "scl": 0, "fmask": FMASK_FILL}


@dataclass(frozen=True)
class BandFile:
    """One reflectance band: ``reflectance = raw * scale + offset``; ``raw == nodata`` is no data.

    ``path`` is anything GDAL opens: a local file, a ``/vsi...`` path or an http(s) URL;
    ``index`` is the band of that file (1-based; more than 1 in a multi-band scene).
    """

    path: str
    scale: float
    offset: float
    nodata: float | None = 0.0
    index: int = 1


@dataclass(frozen=True)
class QualityFile:
    """The product's per-pixel quality layer (Landsat ``QA_PIXEL``, Sentinel-2 ``SCL`` or HLS ``Fmask``)."""

    path: str
    kind: QualityKind

    @property
    def fill(self) -> int:
        """The value that means "no data" (used outside the layer's footprint too)."""
        return QUALITY_FILL[self.kind]

    def classify(self, raw: np.ndarray) -> np.ndarray:
        """Quality classes (see :mod:`geoglacier.products.quality`) of raw values."""
        if self.kind == "fmask":
            return fmask_classes(raw)
        return qa_pixel_classes(raw) if self.kind == "qa_pixel" else scl_classes(raw)


@dataclass(frozen=True)
class Product:
    """A product reduced to what stacking needs.

    Attributes:
        kind: how it was recognised (``landsat``, ``sentinel2-safe``, ``sentinel2-cogs``, ``stac``, ``hls``).
        source: the folder or file the user gave.
        bands: reflectance name (:data:`geoglacier.products.recipes.REFLECTANCE`) -> file.
        quality: the quality layer, ``None`` when the product has none.
        acquisition_date: ISO 8601 date, ``None`` when unknown.
        sensor: e.g. ``Landsat 8 OLI``.
        product_id: the product's id.
    """

    kind: str
    source: str
    bands: dict[str, BandFile]
    quality: QualityFile | None = None
    acquisition_date: str | None = None
    sensor: str | None = None
    product_id: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags for the scene (those known)."""
        pairs = ((DATE_TAG, self.acquisition_date), (SENSOR_TAG, self.sensor), (PRODUCT_TAG, self.product_id))
        return {k: v for k, v in pairs if v}
