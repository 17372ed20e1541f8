"""What ``glaciers`` measures: the per-glacier table and its totals.

:class:`GlacierAreas` is what :func:`geoglacier.glaciers.areas.glacier_areas` returns;
:class:`GlacierTotals` are its totals over the glaciers the mask covers well enough. Both
live here, apart from the code that computes them (:mod:`~geoglacier.glaciers.areas`) and
the code that writes them (:mod:`~geoglacier.glaciers.glacier_tables`), so that neither of
those imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyproj

from geoglacier.glaciers.error_model import NO_ERROR_MODEL_NOTE


@dataclass(frozen=True)
class GlacierTotals:
    """Totals over the glaciers whose coverage reaches ``min_coverage`` (see the module doc)."""

    mask: str
    inventory: str
    crs: str | None
    area_method: str
    glaciers: int
    glaciers_counted: int
    glaciers_low_coverage: int
    min_coverage: float
    inventory_area_km2: float | None
    outline_area_km2: float
    mapped_area_km2: float
    uncertainty_buffer_km2: float
    uncertainty_probability_km2: float | None
    uncertainty_ensemble_km2: float | None
    ring_area_km2: float
    mapped_outside_outlines_km2: float
    mask_glacier_area_km2: float
    ring_pixels: int
    thresholds: tuple[float, float] | None
    spread_raster: str | None = None
    error_model: str = "fully correlated: per-glacier uncertainties are summed"
    id_column: str = ""
    model_error: str = NO_ERROR_MODEL_NOTE
    error_level: float | None = None
    area_low_km2: float | None = None
    area_high_km2: float | None = None
    glaciers_with_interval: int | None = None
    glaciers_beyond_calibration: int | None = None
    interval_mapped_area_km2: float | None = None
    interval_assumption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GlacierAreas:
    """The per-glacier table, its totals, and the outlines (in the mask's CRS)."""

    table: pd.DataFrame
    totals: GlacierTotals
    geometries: np.ndarray = field(repr=False)
    crs: pyproj.CRS = field(repr=False)
