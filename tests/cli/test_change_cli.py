"""``geoglacier change`` through the command line: output, and bad inputs as one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from geoglacier.cli.main import cli
from tests.data import UTM_TRANSFORM, write_raster
from tests.glaciers.test_change import HI, LO, outline, square, write_inventory, write_mask


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    write_mask(d / "t0.tif", square(), date="2000-08-01")
    write_mask(d / "t1.tif", square(LO + 2, HI - 2), date="2020-08-01")
    write_inventory(d / "outlines.gpkg", [outline()])
    far = Affine(30.0, 0.0, UTM_TRANSFORM.c + 100_000, 0.0, -30.0, UTM_TRANSFORM.f)
    write_mask(d / "far.tif", square(), transform=far)
    write_raster(d / "two_bands.tif", np.stack([square(), square()]))
    write_mask(d / "values07.tif", square() * 7)
    (d / "text.tif").write_text("not a GeoTIFF\n")
    return d


def _run(argv: str, inputs: Path, out: Path) -> object:
    args = argv.format(i=inputs, o=out).split()
    return CliRunner().invoke(cli, [*args, "--no-progress"])


def test_change_prints_areas_rates_and_totals(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = _run(
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --inventory {i}/outlines.gpkg --glaciers {o}/g.csv "
        "--summary {o}/c.json --quicklook {o}/c.png",
        inputs,
        out,
    )
    assert result.exit_code == 0, result.output
    assert "ice lost" in result.output and "km2/yr" in result.output
    assert "change of 1 glaciers" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["c.json", "c.png", "c.tif", "g.csv"]


def test_change_without_dates_says_so(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write_mask(inputs / "nodate0.tif", square())
    write_mask(inputs / "nodate1.tif", square(LO + 2, HI - 2))
    result = _run("change {i}/nodate0.tif {i}/nodate1.tif --out {o}/c.tif", inputs, out)
    assert result.exit_code == 0, result.output
    assert "no rates" in result.output and "km2/yr" not in result.output


BAD = [
    ("no-overlap", "change {i}/t0.tif {i}/far.tif --out {o}/c.tif", ("far.tif", "overlap"), "same place"),
    (
        "two-bands",
        "change {i}/t0.tif {i}/two_bands.tif --out {o}/c.tif",
        ("two_bands.tif", "2"),
        "single-band",
    ),
    ("not-a-mask", "change {i}/values07.tif {i}/t1.tif --out {o}/c.tif", ("values07.tif", "7"), "reclassify"),
    ("not-a-raster", "change {i}/t0.tif {i}/text.tif --out {o}/c.tif", ("text.tif",), "re-export"),
    ("missing", "change {i}/t0.tif {i}/nope.tif --out {o}/c.tif", ("nope.tif",), "check the path"),
    (
        "glaciers-without-inventory",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --glaciers {o}/g.csv",
        ("--glaciers",),
        "--inventory",
    ),
    (
        "glaciers-shapefile",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --inventory {i}/outlines.gpkg --glaciers {o}/g.shp",
        ("g.shp",),
        ".gpkg",
    ),
    (
        "bad-date",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --t0-date 1.8.2000",
        ("--t0-date",),
        "YYYY-MM-DD",
    ),
    ("dates-reversed", "change {i}/t1.tif {i}/t0.tif --out {o}/c.tif", ("2000-08-01",), "earlier mask first"),
    (
        "min-coverage",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --min-coverage 80",
        ("--min-coverage",),
        "[0, 1]",
    ),
    (
        "same-output-twice",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --summary {o}/c.tif",
        ("c.tif", "--out", "--summary"),
        "distinct files",
    ),
    # An output that is an input: refused even with --overwrite (the t0 mask became the change map).
    (
        "out-is-mask-t0",
        "change {i}/t0.tif {i}/t1.tif --out {i}/./t0.tif --overwrite",
        ("t0.tif", "--out", "MASK_T0"),
        "another file name",
    ),
    (
        "summary-is-mask-t1",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --summary {i}/t1.tif --overwrite",
        ("t1.tif", "--summary", "MASK_T1"),
        "another file name",
    ),
    (
        "glaciers-is-inventory",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --inventory {i}/outlines.gpkg "
        "--glaciers {i}/outlines.gpkg --overwrite",
        ("outlines.gpkg", "--glaciers", "--inventory"),
        "another file name",
    ),
    (
        "quicklook-is-mask-t0",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --quicklook {i}/t0.tif --overwrite",
        ("t0.tif", "--quicklook"),
        ".png",
    ),
    # Extensions: the change map is a GeoTIFF, the quicklook a PNG.
    ("out-not-tif", "change {i}/t0.tif {i}/t1.tif --out {o}/c.png", ("--out", "c.png", ".tif"), "rename"),
    (
        "quicklook-not-png",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --quicklook {o}/c.jpg",
        ("--quicklook", "c.jpg", ".png"),
        "rename",
    ),
    (
        "inventory-missing",
        "change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --inventory {i}/none.gpkg --glaciers {o}/g.csv",
        ("none.gpkg",),
        "",
    ),
]


@pytest.mark.parametrize(("argv", "names", "fix"), [pytest.param(*row[1:], id=row[0]) for row in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    argv: str, names: tuple[str, ...], fix: str, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    result = _run(argv, inputs, out)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for name in names:
        assert name in lines[0]
    assert fix in lines[0]
    assert list(out.iterdir()) == []
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_existing_output_survives(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.json").write_text("earlier\n")
    result = _run("change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --summary {o}/c.json", inputs, out)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["c.json"]
    assert (out / "c.json").read_text() == "earlier\n"
    again = _run("change {i}/t0.tif {i}/t1.tif --out {o}/c.tif --summary {o}/c.json --overwrite", inputs, out)
    assert again.exit_code == 0, again.output
    assert (out / "c.json").read_text().startswith("{")
