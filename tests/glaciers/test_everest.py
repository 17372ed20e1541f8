"""The reference west Everest mask against the RGI 6.0 outlines it was burned from (skips without data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoglacier.glaciers.areas import glacier_areas


@pytest.fixture(scope="module")
def result(request: pytest.FixtureRequest):
    everest = request.getfixturevalue("everest_module")
    return glacier_areas(everest / "west_mask.tif", everest / "west_rgi60_outlines.gpkg")


@pytest.fixture(scope="module")
def everest_module() -> Path:
    from tests.data import EVEREST

    if not (EVEREST / "west_rgi60_outlines.gpkg").exists():
        pytest.skip("../shared/data/everest is not here")
    return EVEREST


def test_fully_inside_glaciers_match_their_outlines_within_the_buffer(result) -> None:
    table = result.table
    assert len(table) == 59 and table["glacier_id"].is_unique
    assert table["glacier_id"].str.startswith("RGI60-15.").all()
    inside = table[table["coverage"] > 0.999]
    assert len(inside) >= 40
    diff = (inside["mapped_area_km2"] - inside["outline_area_km2"]).abs()
    assert (diff <= inside["uncertainty_buffer_km2"]).all()
    np.testing.assert_allclose(inside["recall"], 1.0)  # the mask was burned from these outlines
    # the inventory's own attribute agrees for outlines not cut by the scene (RGI rounds to 0.001 km2)
    uncut = inside[(inside["outline_area_km2"] - inside["inventory_area_km2"]).abs() < 0.01]
    assert len(uncut) >= 0.8 * len(inside)


def test_glaciers_cut_by_the_scene_edges_say_so(result) -> None:
    table = result.table.set_index("glacier_id")
    cut = table[table["coverage"] < 0.999]
    assert 4 <= len(cut) < len(table)
    assert (cut["zone_area_km2"] < cut["outline_area_km2"]).all()
    rongbuk = table.loc["RGI60-15.09991"]  # Rongbuk: its eastern part is beyond the scene
    assert 0.5 < rongbuk["coverage"] < 0.9 and rongbuk["low_coverage"]
    assert result.totals.glaciers_low_coverage == int(table["low_coverage"].sum())
    # everything the reference mask maps lies inside some outline
    assert result.totals.mapped_outside_outlines_km2 == pytest.approx(0.0, abs=1e-9)
    assert table["mapped_area_km2"].sum() == pytest.approx(result.totals.mask_glacier_area_km2, rel=1e-9)


def test_the_outlines_as_a_zipped_shapefile_through_the_cli(
    everest_module: Path, tmp_path: Path, result
) -> None:
    """RGI distributes zipped shapefiles: the same outlines that way give the same table."""
    import zipfile

    import fiona
    import pandas as pd
    from click.testing import CliRunner

    from geoglacier.cli.main import cli

    src_path = everest_module / "west_rgi60_outlines.gpkg"
    with fiona.open(src_path, layer="glaciers") as src:
        meta = src.meta
        meta.update(driver="ESRI Shapefile")
        with fiona.open(tmp_path / "15_rgi60_west.shp", "w", **meta) as dst:
            dst.writerecords(src)
    archive = tmp_path / "15_rgi60_west.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("15_rgi60_west.*"):
            if part.suffix != ".zip":
                zf.write(part, part.name)
    out = tmp_path / "g.csv"
    res = CliRunner().invoke(
        cli,
        ["glaciers", str(everest_module / "west_mask.tif"), "--inventory", str(archive), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert list(table["glacier_id"]) == list(result.table["glacier_id"])
    np.testing.assert_allclose(table["mapped_area_km2"], result.table["mapped_area_km2"], rtol=1e-5)
