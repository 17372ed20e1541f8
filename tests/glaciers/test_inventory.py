"""Reading glacier inventories: formats, id columns, reprojection and every bad input."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import Polygon

from geoglacier.errors import InventoryError, SceneNotFoundError
from geoglacier.glaciers.inventory import (
    InventoryWarning,
    footprint,
    geodesic_area_perimeter,
    read_inventory,
    read_inventory_for_mask,
)
from tests.glacier_data import EQ_TRANSFORM, K0, PX, SIZE, UTM, px_box, write_mask, write_outlines

REGION = footprint(EQ_TRANSFORM, SIZE, SIZE)


def _two(tmp_path: Path, name: str = "inv.gpkg", **kw) -> Path:
    return write_outlines(tmp_path / name, [px_box(10, 10, 20, 20), px_box(10, 20, 20, 30)], **kw)


def test_reads_ids_names_areas_and_true_outline_area(tmp_path: Path) -> None:
    inv = read_inventory(_two(tmp_path), UTM, region=REGION)
    assert inv.ids == ("G1", "G2")
    assert inv.names == ("glacier 1", "glacier 2")
    assert inv.id_column == "RGIId" and inv.area_column == "Area"
    np.testing.assert_allclose(inv.inventory_area_km2, [1.0, 1.0])
    side = 10 * PX / K0  # ground metres of 10 pixels on the central meridian
    np.testing.assert_allclose(inv.outline_area_km2, side**2 / 1e6, rtol=1e-6)
    np.testing.assert_allclose(inv.perimeter_km, 4 * side / 1e3, rtol=1e-6)


def test_zipped_shapefile_reads_like_the_shapefile(tmp_path: Path) -> None:
    shp = _two(tmp_path, "rgi.shp")
    archive = tmp_path / "15_rgi60_region.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("rgi.*"):
            zf.write(part, f"15_rgi60_region/{part.name}")  # RGI 7 zips keep a folder inside
    a = read_inventory(shp, UTM, region=REGION)
    b = read_inventory(archive, UTM, region=REGION)
    assert a.ids == b.ids
    np.testing.assert_allclose(a.outline_area_km2, b.outline_area_km2)
    c = read_inventory(f"/vsizip/{archive}/15_rgi60_region/rgi.shp", UTM)  # a GDAL path works too
    assert c.ids == a.ids


def test_geographic_inventory_is_reprojected_onto_the_mask_crs(tmp_path: Path) -> None:
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    square = px_box(10, 10, 30, 30)
    ll = shapely.transform(square, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
    path = write_outlines(tmp_path / "ll.geojson", [ll], crs="EPSG:4326")
    inv = read_inventory(path, UTM, region=REGION)
    assert inv.crs == pyproj.CRS(UTM)
    back = inv.geometries[0]
    assert back.symmetric_difference(square).area < 1e-6 * square.area
    # the geodesic area is the same whichever CRS the outline is measured in
    np.testing.assert_allclose(inv.outline_area_km2, geodesic_area_perimeter([ll], "EPSG:4326")[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"rgi_id": "RGI2000-v7.0-G-15-0001", "glac_name": "x", "area_km2": 2.0}, "rgi_id"),
        ({"glac_id": "G086852E27949N", "anlys_id": 1}, "anlys_id"),  # glac_id repeats
        ({"RGIId": "RGI60-15.00001", "Name": "y", "Area": 2.0}, "RGIId"),
    ],
)
def test_id_column_is_found_for_rgi6_rgi7_and_glims(tmp_path: Path, columns: dict, expected: str) -> None:
    props = []
    for i in range(2):
        row = dict(columns)
        row[expected] = row[expected] + i if isinstance(row[expected], int) else f"{row[expected]}{i}"
        props.append(row)
    path = write_outlines(tmp_path / "i.gpkg", [px_box(1, 1, 5, 5), px_box(6, 6, 9, 9)], props=props)
    repeats = "glac_id" in columns  # GLIMS analyses of one glacier: said in a warning
    with pytest.warns(InventoryWarning, match="several analyses") if repeats else contextlib.nullcontext():
        inv = read_inventory(path, UTM, region=REGION)
    assert inv.id_column == expected
    assert len(set(inv.ids)) == 2
    if "area_km2" in columns:
        np.testing.assert_allclose(inv.inventory_area_km2, [2.0, 2.0])
        assert inv.names == ("x", "x")


def test_explicit_id_column(tmp_path: Path) -> None:
    inv = read_inventory(_two(tmp_path), UTM, id_column="Name")
    assert inv.ids == ("glacier 1", "glacier 2")


def test_outlines_outside_the_region_are_left_out(tmp_path: Path) -> None:
    far = px_box(1000, 1000, 1010, 1010)
    path = write_outlines(tmp_path / "i.gpkg", [px_box(1, 1, 5, 5), far])
    inv = read_inventory(path, UTM, region=REGION)
    assert inv.ids == ("G1",)


def test_empty_and_invalid_geometries_warn_with_counts(tmp_path: Path) -> None:
    bowtie = Polygon([(500000, 4000), (500300, 4300), (500300, 4000), (500000, 4300)])
    assert not bowtie.is_valid
    path = write_outlines(tmp_path / "i.gpkg", [px_box(1, 1, 5, 5), None, bowtie])
    with pytest.warns(InventoryWarning, match=r"dropped 1 .*repaired 1 .*of 3 glaciers"):
        inv = read_inventory(path, UTM, region=REGION)
    assert inv.ids == ("G1", "G3")
    assert inv.geometries[1].is_valid
    assert inv.dropped_empty == 1 and inv.repaired == 1


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("no-id", r"no glacier id column .*--id-column"),
        ("no-columns", r"the outlines have no attribute columns, so nothing names the glaciers"),
        ("no-columns-named", r"no column 'RGIId' for --id-column; it has no attribute columns"),
        ("dup-id", r"not unique \(1 repeated, e.g. G1\)"),
        ("null-id", r"1 glacier\(s\) have no value in id column 'RGIId'"),
        ("no-overlap", r"none of its 1 outlines overlaps the mask"),
        ("no-crs", r"no CRS; assign one"),
        ("not-vector", r"not a vector file GDAL can read"),
        ("bad-column", r"no column 'nope' for --id-column"),
        ("all-empty", r"no usable glacier polygon among 1 features"),
    ],
)
def test_bad_inventories_raise_one_line_errors(tmp_path: Path, case: str, match: str) -> None:
    geoms = [px_box(1, 1, 5, 5), px_box(6, 6, 9, 9)]
    kw: dict = {}
    path = tmp_path / "i.gpkg"
    if case == "no-id":
        write_outlines(path, geoms, props=[{"ident": "a"}, {"ident": "b"}])
    elif case in ("no-columns", "no-columns-named"):
        write_outlines(path, geoms, props=[{}, {}])
        if case == "no-columns-named":
            kw["id_column"] = "RGIId"
    elif case == "dup-id":
        write_outlines(path, geoms, props=[{"RGIId": "G1"}, {"RGIId": "G1"}])
    elif case == "null-id":
        write_outlines(path, geoms, props=[{"RGIId": "G1"}, {"RGIId": ""}])
    elif case == "no-overlap":
        write_outlines(path, [px_box(1000, 1000, 1010, 1010)])
    elif case == "no-crs":
        path = write_outlines(tmp_path / "i.shp", geoms, crs=None)
    elif case == "not-vector":
        path.write_text("not a geopackage")
    elif case == "bad-column":
        write_outlines(path, geoms)
        kw["id_column"] = "nope"
    elif case == "all-empty":
        write_outlines(path, [None])
    with pytest.warns() if case == "all-empty" else _nothing():
        with pytest.raises(InventoryError, match=match) as err:
            read_inventory(path, UTM, region=REGION, **kw)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_missing_file_and_mask_without_crs(tmp_path: Path) -> None:
    with pytest.raises(SceneNotFoundError, match="inventory not found"):
        read_inventory(tmp_path / "nope.gpkg", UTM)
    mask = write_mask(tmp_path / "m.tif", np.zeros((SIZE, SIZE)), crs=None)
    from geoglacier.errors import CRSMissingError

    with pytest.raises(CRSMissingError, match="no CRS"):
        read_inventory_for_mask(_two(tmp_path), mask)


def test_zip_without_vector_file(tmp_path: Path) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(InventoryError, match="holds no vector file"):
        read_inventory(archive, UTM)


def test_glims_download_glacier_boundaries_minus_internal_rock(tmp_path: Path) -> None:
    # A GLIMS download (glims_polygons.shp): per analysis one 'glac_bound' polygon, its
    # nunataks as separate 'intrnl_rock' polygons with the same ids, and other line types
    # (debris cover, lakes) that are parts of a glacier, not glaciers.
    from geoglacier.glaciers.areas import glacier_areas

    def row(line_type: str, anlys: int, glac: str) -> dict:
        return {"line_type": line_type, "anlys_id": anlys, "glac_id": glac, "anlys_time": "2009-10-01T00:00:00",
                "glac_name": "", "db_area": 0.3}  # fmt: skip

    geoms = [
        px_box(10, 10, 30, 30),  # glacier G1: 400 pixels ...
        px_box(15, 15, 20, 20),  # ... with a 25-pixel nunatak
        px_box(25, 10, 30, 30),  # G1's debris-covered tongue (inside its boundary)
        px_box(10, 35, 20, 45),  # glacier G2: 100 pixels
    ]
    props = [row("glac_bound", 7, "G1"), row("intrnl_rock", 7, "G1"), row("debris_cov", 7, "G1"),
             row("glac_bound", 8, "G2")]  # fmt: skip
    path = write_outlines(tmp_path / "glims_polygons.shp", geoms, props=props)
    with pytest.warns(InventoryWarning, match=r"1 internal rock.*1 other"):
        inv = read_inventory(path, UTM, region=REGION)
    assert inv.ids == ("G1", "G2") and inv.id_column == "glac_id"
    ground = (PX / K0) ** 2 / 1e6  # km2 of one pixel on the central meridian
    np.testing.assert_allclose(inv.outline_area_km2, [375 * ground, 100 * ground], rtol=1e-5)

    mask = np.ones((SIZE, SIZE), dtype=np.uint8)
    with pytest.warns(InventoryWarning):
        table = glacier_areas(write_mask(tmp_path / "m.tif", mask), path, ring_pixels=0).table
    np.testing.assert_allclose(table["mapped_area_km2"], [375 * ground, 100 * ground], rtol=1e-4)


def test_glims_analyses_of_one_glacier_warn_that_they_compete_for_pixels(tmp_path: Path) -> None:
    # Two analyses (2000, 2015) of glacier G1 overlap: anlys_id becomes the id, and the
    # later analysis gets only the pixels the earlier one leaves. That must not be silent.
    props = [
        {"glac_id": "G1", "anlys_id": 11, "anlys_time": "2000-09-01T00:00:00"},
        {"glac_id": "G1", "anlys_id": 12, "anlys_time": "2015-09-01T00:00:00"},
        {"glac_id": "G2", "anlys_id": 21, "anlys_time": "2015-09-01T00:00:00"},
    ]
    geoms = [px_box(10, 10, 32, 30), px_box(10, 10, 30, 30), px_box(40, 10, 50, 20)]
    path = write_outlines(tmp_path / "glims.gpkg", geoms, props=props)
    with pytest.warns(InventoryWarning, match=r"1 glacier \(e\.g\. G1\) has several analyses.*anlys_id"):
        inv = read_inventory(path, UTM, region=REGION)
    assert inv.id_column == "anlys_id" and inv.ids == ("11", "12", "21")
