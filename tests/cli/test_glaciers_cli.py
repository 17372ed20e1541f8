"""``geoglacier glaciers``: outputs, printed totals, and one-line errors that write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import fiona
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from geoglacier.cli.main import cli
from tests.glacier_data import SIZE, px_box, true_px_area, write_mask, write_outlines

A_PX_KM2 = true_px_area() / 1e6


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[10:20, 10:30] = 1
    write_mask(tmp_path / "mask.tif", mask)
    write_outlines(tmp_path / "inv.gpkg", [px_box(10, 10, 20, 20), px_box(10, 20, 20, 30)])
    return tmp_path


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["glaciers", *args, "--no-progress"])


def test_writes_gpkg_csv_and_totals(inputs: Path) -> None:
    out, csv, js = inputs / "g.gpkg", inputs / "g.csv", inputs / "t.json"
    res = _invoke(
        str(inputs / "mask.tif"),
        "--inventory",
        str(inputs / "inv.gpkg"),
        "--out",
        str(out),
        "--summary",
        str(js),
    )
    assert res.exit_code == 0, res.output
    assert "mapped inside outlines" in res.output and "glaciers in table        2" in res.output
    with fiona.open(out) as src:
        assert len(src) == 2 and src.crs.to_epsg() == 32645
        rows = [dict(f.properties) for f in src]
    assert rows[0]["glacier_id"] == "G1" and rows[0]["name"] == "glacier 1"
    assert rows[0]["mapped_area_km2"] == pytest.approx(100 * A_PX_KM2, rel=1e-6)
    totals = json.loads(js.read_text())
    assert totals["glaciers_counted"] == 2
    assert totals["mapped_area_km2"] == pytest.approx(200 * A_PX_KM2, rel=1e-6)
    assert totals["uncertainty_buffer_km2"] == pytest.approx(sum(r["uncertainty_buffer_km2"] for r in rows))
    assert "fully correlated" in totals["error_model"]
    png = inputs / "q.png"
    res = _invoke(
        str(inputs / "mask.tif"),
        "--inventory",
        str(inputs / "inv.gpkg"),
        "--out",
        str(csv),
        "--quicklook",
        str(png),
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(csv)
    assert list(table["glacier_id"]) == ["G1", "G2"]
    assert {"coverage", "recall", "ring_area_km2", "low_coverage", "inventory_area_km2"} <= set(table.columns)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing-inventory", "inventory not found"),
        ("no-id", "no glacier id column"),
        ("dup-id", "not unique"),
        ("no-overlap", "overlaps the mask"),
        ("bad-ext", "unknown table format"),
        ("exists", "already exists; pass --overwrite"),
        ("no-crs", "no CRS"),
        ("coverage", "--min-coverage must be between 0 and 1"),
        ("same-out", "give distinct files"),
        ("id-column", "no column 'nope' for --id-column"),
    ],
)
def test_bad_input_one_line_error_and_nothing_written(inputs: Path, case: str, match: str) -> None:
    inv, mask, out = inputs / "inv.gpkg", inputs / "mask.tif", inputs / "out" / "g.gpkg"
    out.parent.mkdir()
    extra: list[str] = []
    if case == "missing-inventory":
        inv = inputs / "nope.gpkg"
    elif case == "no-id":
        inv = write_outlines(inputs / "x.gpkg", [px_box(1, 1, 3, 3)], props=[{"ident": "a"}])
    elif case == "dup-id":
        inv = write_outlines(inputs / "x.gpkg", [px_box(1, 1, 3, 3)] * 2, props=[{"RGIId": "a"}] * 2)
    elif case == "no-overlap":
        inv = write_outlines(inputs / "x.gpkg", [px_box(900, 900, 903, 903)])
    elif case == "bad-ext":
        out = out.with_suffix(".xlsx")
    elif case == "exists":
        out.write_text("keep me")
    elif case == "no-crs":
        mask = write_mask(inputs / "nocrs.tif", np.zeros((SIZE, SIZE)), crs=None)
    elif case == "coverage":
        extra = ["--min-coverage", "2"]
    elif case == "same-out":
        extra = ["--summary", str(out)]
    elif case == "id-column":
        extra = ["--id-column", "nope"]
    before = {p: p.read_bytes() for p in out.parent.iterdir()}
    res = CliRunner().invoke(
        cli, ["glaciers", str(mask), "--inventory", str(inv), "--out", str(out), "--no-progress", *extra]
    )
    assert res.exit_code != 0
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert match in lines[0]
    assert "Traceback" not in res.output
    assert {p: p.read_bytes() for p in out.parent.iterdir()} == before


def test_dropped_and_repaired_outlines_warn_in_one_line(inputs: Path) -> None:
    from shapely.geometry import Polygon

    bowtie = Polygon([(500000, 4000), (500300, 4300), (500300, 4000), (500000, 4300)])
    inv = write_outlines(inputs / "bad.gpkg", [px_box(10, 10, 20, 20), None, bowtie])
    res = CliRunner().invoke(
        cli, ["glaciers", str(inputs / "mask.tif"), "--inventory", str(inv), "--out", str(inputs / "g.csv")]
    )
    assert res.exit_code == 0, res.output
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("Warning:")]
    assert len(warned) == 1
    assert (
        "dropped 1 with empty or non-polygon geometry and repaired 1 invalid geometry (of 3 glaciers)"
        in warned[0]
    )
    assert "warnings.warn" not in res.stderr and "read_inventory(" not in res.stderr
