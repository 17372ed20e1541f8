"""Glacier change on the real Everest west mask against a copy of itself shrunk by 2 pixels.

The shrunk copy is the reference mask eroded twice (``scipy.ndimage.binary_erosion``,
4-connected): the ice lost is exactly the eroded ring. Per glacier, the reference loss is
the true area of the ring pixels whose centre lies in the glacier's RGI outline, with the
outlines reprojected and rasterized here one by one (fiona + pyproj + rasterio), apart
from the zone code under test. Skips when ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from scipy import ndimage

from geoglacier.glaciers.change import glacier_change
from geoglacier.measure.areas import pixel_area_at

ERODE = 2


def test_everest_losses_per_glacier_equal_the_eroded_ring(everest: Path, tmp_path: Path) -> None:
    with rasterio.open(everest / "west_mask.tif") as ds:
        ref = ds.read(1)
        profile = ds.profile
        transform, crs = ds.transform, ds.crs
    eroded = ndimage.binary_erosion(ref == 1, iterations=ERODE).astype(np.uint8)
    profile.update(nodata=255)
    shrunk = tmp_path / "west_shrunk.tif"
    with rasterio.open(shrunk, "w", **profile) as ds:
        ds.write(eroded, 1)
        ds.update_tags(ACQUISITION_DATE="2024-10-30")

    result = glacier_change(
        everest / "west_mask.tif",
        shrunk,
        tmp_path / "change.tif",
        inventory=everest / "west_rgi60_outlines.gpkg",
        t0_date="2000-10-30",
    )

    ring = (ref == 1) & (eroded == 0)
    area = pixel_area_at(transform, crs, *np.mgrid[0 : ref.shape[0], 0 : ref.shape[1]]) / 1e6
    assert result.areas.ice_lost_km2 == pytest.approx(float(area[ring].sum()), rel=1e-6)
    assert result.areas.ice_gained_km2 == 0.0
    assert result.years == pytest.approx(24.0, abs=1e-3)

    to_mask = pyproj.Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True)
    table = result.glaciers.set_index("glacier_id")
    checked = 0
    with fiona.open(everest / "west_rgi60_outlines.gpkg", layer="glaciers") as src:
        for feat in src:
            geom = shapely.transform(
                shapely.geometry.shape(feat.geometry), lambda xy: np.column_stack(to_mask.transform(*xy.T))
            )
            zone = rasterio.features.geometry_mask(
                [geom], out_shape=ref.shape, transform=transform, invert=True
            )
            if not zone.any():
                continue
            row = table.loc[feat.properties["RGIId"]]
            expected = float(area[ring & zone].sum())
            # The reader densifies outlines before reprojecting them (straight in lon/lat is curved
            # in UTM), which moves a few pixel centres across long edges: a few pixels at most,
            # and the glacier's area agrees within its buffer uncertainty.
            assert row["lost_km2"] == pytest.approx(expected, abs=3 * 9e-4), feat.properties["RGIId"]
            assert row["area_t0_km2"] == pytest.approx(
                float(area[(ref == 1) & zone].sum()), abs=row["sigma_t0_km2"]
            )
            checked += 1
    assert checked == len(table) == 59
    # Shrinking every edge by 2 pixels is beyond the buffer uncertainty of half a pixel (on both
    # dates) for glaciers the scene covers; partial ones carry their whole perimeter, so more.
    big = table[(table["area_t0_km2"] > 1.0) & ~table["low_coverage"]]
    assert (big["snr"] > 1.0).all()
    assert (table["rate_km2_per_year"] <= 0).all()
    assert result.glacier_totals["in_totals"]["change_km2"] < 0
