"""True areas on every projection: geoglacier.measure.areas against hand computations and pyproj.Geod."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from geoglacier.errors import ConfigError, CRSMissingError, OutputExistsError
from geoglacier.measure.areas import (
    AreaAccumulator,
    AreaSummary,
    area_summary,
    format_summary,
    pixel_area_at,
    pixel_area_grid,
    summarize_mask,
    write_summary_json,
)

# A 256 x 256, 30 m grid in UTM 23N centred near 61 N, 45 W (south Greenland) on the
# zone's central meridian, where UTM's areal scale is exactly 0.9996^2.
UTM = "EPSG:32623"
LAT0, LON0 = 61.0, -45.0
SIZE, RES = 256, 30.0


def utm_transform() -> Affine:
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(LON0, LAT0)
    return Affine(RES, 0.0, x0 - SIZE * RES / 2, 0.0, -RES, y0 + SIZE * RES / 2)


def blob_mask(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A seeded glacier blob (union of discs) with a nodata strip along the top."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(6):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.12, 0.22) * size
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    mask[:12] = 255
    return mask


def write_mask(
    path: Path,
    arr: np.ndarray,
    transform: Affine,
    crs: str | CRS | None,
    nodata: float | None = 255,
    tiled: bool = True,
) -> Path:
    profile = {
        "driver": "GTiff",
        "height": arr.shape[0],
        "width": arr.shape[1],
        "count": 1,
        "dtype": arr.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(arr, 1)
    return path


def reproject_mask(arr: np.ndarray, src_transform: Affine, dst_crs: str) -> tuple[np.ndarray, Affine]:
    h, w = arr.shape
    bounds = rasterio.transform.array_bounds(h, w, src_transform)
    dst_transform, dw, dh = calculate_default_transform(UTM, dst_crs, w, h, *bounds)
    dst = np.full((dh, dw), 255, dtype=np.uint8)
    reproject(
        arr,
        dst,
        src_transform=src_transform,
        src_crs=UTM,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        resampling=Resampling.nearest,
        src_nodata=255,
        dst_nodata=255,
    )
    return dst, dst_transform


def test_utm_hand_computed() -> None:
    mask = blob_mask()
    s = area_summary(mask, utm_transform(), UTM)
    n_glacier = int((mask == 1).sum())
    n_valid = int((mask != 255).sum())
    assert (s.glacier_pixels, s.valid_pixels, s.nodata_pixels) == (n_glacier, n_valid, 12 * SIZE)
    assert s.nominal_glacier_area_km2 == pytest.approx(n_glacier * 900 / 1e6, rel=1e-12)
    assert s.nominal_valid_area_km2 == pytest.approx(n_valid * 900 / 1e6, rel=1e-12)
    # On the central meridian UTM shrinks lengths by k0 = 0.9996 (7.7 km off it: < 1e-6 more).
    assert s.glacier_area_km2 == pytest.approx(n_glacier * 900 / 0.9996**2 / 1e6, rel=2e-6)
    assert s.glacier_fraction == pytest.approx(n_glacier / n_valid, rel=1e-5)
    assert s.crs == "EPSG:32623"
    assert s.method == "projected: areal scale factor on WGS 84 (pyproj)"


def _areal_scale_3857(lat: float) -> float:
    return 1.0 / math.cos(math.radians(lat)) ** 2


def _areal_scale_3413(lat: float) -> float:
    # Polar stereographic with true scale at 70 N (spherical approximation, ~0.3 % off).
    return ((1 + math.sin(math.radians(70))) / (1 + math.sin(math.radians(lat)))) ** 2


@pytest.mark.parametrize(
    ("dst_crs", "predicted_scale"),
    [
        (UTM, lambda lat: 0.9996**-2),
        ("EPSG:32622", None),  # neighbouring UTM zone: the blob is 3 degrees off its meridian
        ("EPSG:3413", _areal_scale_3413),
        ("EPSG:3857", _areal_scale_3857),
        ("EPSG:6933", lambda lat: 1.0),  # EASE-Grid 2.0: equal area
        ("EPSG:4326", None),
    ],
)
def test_true_area_is_the_same_on_every_projection(dst_crs: str, predicted_scale, tmp_path: Path) -> None:
    src = blob_mask()
    truth = area_summary(src, utm_transform(), UTM)
    dst, transform = reproject_mask(src, utm_transform(), dst_crs)
    s = summarize_mask(write_mask(tmp_path / "m.tif", dst, transform, dst_crs))
    assert s.glacier_area_km2 == pytest.approx(truth.glacier_area_km2, rel=0.01)
    assert s.valid_area_km2 == pytest.approx(truth.valid_area_km2, rel=0.02)
    if dst_crs == "EPSG:4326":
        assert s.nominal_glacier_area_km2 is None
        assert s.method == "geographic: geodesic cell area on WGS 84"
        return
    # The nominal figure is off by the projection's areal scale, as predicted by hand.
    scale = s.nominal_glacier_area_km2 / s.glacier_area_km2
    if predicted_scale is not None:
        assert scale == pytest.approx(predicted_scale(LAT0), rel=0.02)
    if dst_crs == "EPSG:3857":
        assert scale > 4.0  # Web Mercator inflates areas ~4.3x at 61 N


def test_interpolated_scale_factor_matches_exact_on_huge_grids() -> None:
    rng = np.random.default_rng(1)
    grids = [
        # 20000 x 20000 px of 100 m over Greenland in polar stereographic.
        ("EPSG:3413", Affine(100.0, 0, -1.0e6, 0, -100.0, -0.5e6)),
        # 20000 px of 250 m in Web Mercator from ~27 N to ~62 N, where the scale changes fastest.
        ("EPSG:3857", Affine(250.0, 0, -5.0e6, 0, -250.0, 8.9e6)),
    ]
    for crs, transform in grids:
        worst = 0.0
        for r0, c0 in rng.integers(0, 20000 - 64, size=(6, 2)):
            window = Window(int(c0), int(r0), 64, 64)
            approx = pixel_area_grid(transform, crs, 20000, 20000, window=window)
            rows, cols = np.mgrid[r0 : r0 + 64, c0 : c0 + 64]
            exact = pixel_area_at(transform, crs, rows, cols)
            worst = max(worst, float(np.max(np.abs(approx / exact - 1))))
        assert worst < 1e-4, (crs, worst)


def _geod_pixel_area(transform: Affine, crs: str, row: int, col: int, n: int = 64) -> float:
    """Area of one pixel: its 4 edges densified in the CRS, then pyproj.Geod on lon/lat."""
    t = np.linspace(0, 1, n, endpoint=False)
    corners = [(0, 0), (1, 0), (1, 1), (0, 1)]  # (dcol, drow), counter-clockwise in pixel space
    cs, rs = [], []
    for (c1, r1), (c2, r2) in zip(corners, corners[1:] + corners[:1], strict=True):
        cs.append(col + c1 + (c2 - c1) * t)
        rs.append(row + r1 + (r2 - r1) * t)
    x, y = transform * (np.concatenate(cs), np.concatenate(rs))
    pcrs = pyproj.CRS(crs)
    lon, lat = pyproj.Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True).transform(x, y)
    area, _ = pcrs.get_geod().polygon_area_perimeter(lon, lat)
    return abs(area)


@pytest.mark.parametrize(
    ("crs", "transform"),
    [
        ("EPSG:3413", Affine(1000.0, 0, -300000.0, 0, -1000.0, -2000000.0)),
        ("EPSG:3857", Affine(2000.0, 0, -5.0e6, 0, -2000.0, 8.9e6)),
        ("EPSG:4326", Affine(0.05, 0, -46.0, 0, -0.05, 75.0)),
        ("EPSG:32645", Affine.rotation(25.0) * Affine(30.0, 0.1, 450000.0, 0, -30.0, 3100000.0)),
    ],
)
def test_single_pixels_match_geodesic_polygon_area(crs: str, transform: Affine) -> None:
    for row, col in [(0, 0), (37, 211), (255, 255), (128, 5)]:
        expected = _geod_pixel_area(transform, crs, row, col)
        assert pixel_area_at(transform, crs, row, col) == pytest.approx(expected, rel=2e-5)
        grid = pixel_area_grid(transform, crs, 256, 256, window=Window(col, row, 1, 1))
        assert grid[0, 0] == pytest.approx(expected, rel=1e-4)  # interpolated between 64 km nodes


@pytest.mark.parametrize(
    ("crs", "lon", "lat"), [(UTM, -43.0, 61.0), ("EPSG:3413", -45.0, 61.0), ("EPSG:2227", -122, 37.7)]
)
def test_matches_proj_areal_scale_on_conformal_projections(crs: str, lon: float, lat: float) -> None:
    # For projections that are conformal on the ellipsoid PROJ's areal scale factor is right.
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    transform = Affine(10.0, 0, x - 5.0, 0, -10.0, y + 5.0)
    nominal = 100.0 * pyproj.CRS(crs).axis_info[0].unit_conversion_factor ** 2
    k = pyproj.Proj(crs).get_factors(lon, lat).areal_scale
    assert pixel_area_at(transform, crs, 0, 0) == pytest.approx(nominal / k, rel=1e-7)


def test_rotated_geographic_grid_uses_local_area_element() -> None:
    north_up = Affine(0.01, 0, 10.0, 0, -0.01, 50.0)
    tilted = north_up * Affine.shear(0.0, 1e-9)  # not north-up: takes the interpolated path
    a = pixel_area_grid(north_up, "EPSG:4326", 100, 100)
    b = pixel_area_grid(tilted, "EPSG:4326", 100, 100)
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert a[0, 0] < a[-1, 0]  # cells grow towards the equator


def test_us_survey_feet(tmp_path: Path) -> None:
    # California zone 3 (US survey feet), 100 ft pixels near San Francisco.
    crs = "EPSG:2227"
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(-122.2, 37.7)
    transform = Affine(100.0, 0, x0, 0, -100.0, y0)
    mask = blob_mask(3, 128)
    s = summarize_mask(write_mask(tmp_path / "ft.tif", mask, transform, crs))
    ft = 1200 / 3937  # metres per US survey foot
    n = int((mask == 1).sum())
    assert s.nominal_glacier_area_km2 == pytest.approx(n * (100 * ft) ** 2 / 1e6, rel=1e-9)
    k = pyproj.Proj(crs).get_factors(-122.2, 37.68).areal_scale
    assert s.glacier_area_km2 == pytest.approx(s.nominal_glacier_area_km2 / k, rel=1e-4)
    assert s.glacier_area_km2 == pytest.approx(_geod_pixel_area(transform, crs, 64, 64) * n / 1e6, rel=1e-3)


def test_no_crs_needs_pixel_size(tmp_path: Path) -> None:
    mask = blob_mask()
    path = write_mask(tmp_path / "nocrs.tif", mask, Affine(10, 0, 0, 0, -10, 0), None)
    with pytest.raises(CRSMissingError, match="has no CRS; pass --pixel-size"):
        summarize_mask(path)
    s = summarize_mask(path, pixel_size=10.0)
    n = int((mask == 1).sum())
    assert s.glacier_area_km2 == pytest.approx(n * 100 / 1e6, rel=1e-12)
    assert s.nominal_glacier_area_km2 == s.glacier_area_km2
    assert s.method == "nominal: --pixel-size"
    assert s.pixel_size == 10.0
    assert s.crs is None
    with pytest.raises(ConfigError, match="pixel-size"):
        summarize_mask(path, pixel_size=-1.0)


def test_pixel_size_with_a_crs_is_refused() -> None:
    # The CRS gives true areas; a --pixel-size on top used to replace them with a nominal
    # figure (with a warning) that the summary still labelled "true".
    mask = blob_mask()
    with pytest.raises(
        ConfigError, match=r"has a CRS \(EPSG:32623\), which gives true areas.*drop --pixel-size"
    ):
        area_summary(mask, utm_transform(), UTM, pixel_size=20.0)
    with pytest.raises(ConfigError, match="drop --pixel-size"):
        AreaAccumulator(utm_transform(), UTM, 8, 8, pixel_size=20.0)


def test_a_local_crs_takes_pixel_size_as_a_raster_without_crs_does(tmp_path: Path) -> None:
    # A site grid is neither projected nor geographic: no true areas, so the only way to
    # areas is --pixel-size, which must then be accepted (not refused as "has a CRS").
    local = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    mask = blob_mask()
    path = write_mask(tmp_path / "local.tif", mask, Affine(10, 0, 0, 0, -10, 0), local)
    with pytest.raises(CRSMissingError, match="neither projected nor geographic; pass --pixel-size"):
        summarize_mask(path)
    s = summarize_mask(path, pixel_size=10.0)
    assert s.glacier_area_km2 == pytest.approx(int((mask == 1).sum()) * 100 / 1e6, rel=1e-12)
    assert s.method == "nominal: --pixel-size"


@pytest.mark.parametrize("crs", [UTM, "EPSG:4326"])
def test_accumulator_blockwise_equals_whole(crs: str) -> None:
    rng = np.random.default_rng(5)
    mask = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(300, 517), p=[0.5, 0.3, 0.2])
    transform = utm_transform() if crs == UTM else Affine(0.001, 0, -45.0, 0, -0.001, 61.0)
    whole = area_summary(mask, transform, crs)
    acc = AreaAccumulator(transform, crs, 300, 517)
    for r0 in range(0, 300, 97):
        for c0 in range(0, 517, 130):
            acc.add(mask[r0 : r0 + 97, c0 : c0 + 130], r0, c0)
    blocks = acc.result()
    assert blocks.glacier_pixels == whole.glacier_pixels == int((mask == 1).sum())
    assert blocks.nodata_pixels == int((mask == 255).sum())
    assert blocks.glacier_area_km2 == pytest.approx(whole.glacier_area_km2, rel=1e-12)
    assert blocks.valid_area_km2 == pytest.approx(whole.valid_area_km2, rel=1e-12)
    # Against a brute-force sum of exact per-pixel areas.
    rows, cols = np.nonzero(mask == 1)
    assert whole.glacier_area_km2 == pytest.approx(
        pixel_area_at(transform, crs, rows, cols).sum() / 1e6, rel=1e-6
    )
    with pytest.raises(ValueError, match="outside"):
        acc.add(mask[:10, :10], 295, 0)


def test_file_layouts_agree(tmp_path: Path) -> None:
    mask = blob_mask(7)
    tiled = summarize_mask(write_mask(tmp_path / "t.tif", mask, utm_transform(), UTM, tiled=True))
    striped = summarize_mask(write_mask(tmp_path / "s.tif", mask, utm_transform(), UTM, tiled=False))
    in_memory = area_summary(mask, utm_transform(), UTM)
    assert tiled.glacier_area_km2 == pytest.approx(in_memory.glacier_area_km2, rel=1e-12)
    assert striped.glacier_area_km2 == pytest.approx(in_memory.glacier_area_km2, rel=1e-12)
    assert tiled.source == str(tmp_path / "t.tif")


def test_zero_255_mask_without_nodata_warns(tmp_path: Path) -> None:
    mask = (blob_mask() == 1).astype(np.uint8) * 255
    path = write_mask(tmp_path / "z.tif", mask, utm_transform(), UTM, nodata=None)
    with pytest.warns(UserWarning, match="0/255"):
        s = summarize_mask(path)
    assert s.glacier_pixels == int((mask == 255).sum())
    assert s.nodata_pixels == 0


def test_format_and_json(tmp_path: Path) -> None:
    s = area_summary(blob_mask(), utm_transform(), UTM)
    text = format_summary(s)
    assert "glacier area (true)" in text and "EPSG:32623" in text
    out = write_summary_json(s, tmp_path / "s.json")
    data = json.loads(out.read_text())
    assert data == s.to_dict()
    assert AreaSummary(**data) == s
    with pytest.raises(OutputExistsError):
        write_summary_json(s, tmp_path / "s.json")
    assert json.loads(out.read_text()) == data
    write_summary_json(s, tmp_path / "s.json", overwrite=True)
    assert list(tmp_path.iterdir()) == [out]


def test_cli_summarize(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from geoglacier.cli.main import _Group
    from geoglacier.cli.summarize import summarize

    mask = blob_mask()
    path = write_mask(tmp_path / "m.tif", mask, utm_transform(), UTM)
    out = tmp_path / "s.json"
    runner = CliRunner()
    group = _Group("geoglacier", commands=[summarize])  # errors become one-line messages, as in main
    res = runner.invoke(group, ["summarize", str(path), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "glacier area (true)" in res.output and "EPSG:32623" in res.output
    data = json.loads(out.read_text())
    assert data == summarize_mask(path).to_dict()
    before = out.read_text()
    res = runner.invoke(group, ["summarize", str(path), "--json", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output and "Traceback" not in res.output
    assert out.read_text() == before
    res = runner.invoke(
        group, ["summarize", str(path), "--json", str(out), "--pixel-size", "10", "--overwrite"]
    )
    assert res.exit_code == 1 and "drop --pixel-size" in res.output and "Traceback" not in res.output
    assert out.read_text() == before
    no_crs = write_mask(tmp_path / "n.tif", mask, Affine(10, 0, 0, 0, -10, 0), None)
    res = runner.invoke(group, ["summarize", str(no_crs)])
    assert res.exit_code == 1 and "--pixel-size" in res.output
    res = runner.invoke(
        group, ["summarize", str(no_crs), "--json", str(out), "--pixel-size", "10", "--overwrite"]
    )
    assert res.exit_code == 0, res.output
    n_km2 = (mask == 1).sum() * 100 / 1e6
    assert json.loads(out.read_text())["glacier_area_km2"] == pytest.approx(n_km2)
    # No CRS: the figure is nominal and says so; no "true" area is claimed.
    assert f"glacier area (nominal, 10 m pixels)  {n_km2:,.4f} km2" in res.output
    assert "glacier area (true)" in res.output and "n/a (no CRS)" in res.output
    assert f"{n_km2:,.4f}" not in next(line for line in res.output.splitlines() if "(true)" in line)


def test_cli_summarize_json_is_never_the_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from geoglacier.cli.main import _Group
    from geoglacier.cli.summarize import summarize

    path = write_mask(tmp_path / "m.tif", blob_mask(), utm_transform(), UTM)
    before = path.read_bytes()
    monkeypatch.chdir(tmp_path)
    group = _Group("geoglacier", commands=[summarize])
    for spelling in ("m.tif", "./m.tif", str(path)):
        res = CliRunner().invoke(group, ["summarize", "m.tif", "--json", spelling, "--overwrite"])
        assert res.exit_code == 1, res.output
        assert f"{spelling}: --json is the same file as the input MASK" in res.output
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["m.tif"]
