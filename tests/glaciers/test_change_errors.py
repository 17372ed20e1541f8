"""``change`` with the network's error model: each date's model error in sigma_change, snr and the flags."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import norm

from geoglacier.errors import ConfigError
from geoglacier.glaciers.change import glacier_change
from geoglacier.glaciers.error_model import ErrorModel
from tests.glaciers.test_change import shrink  # noqa: F401 - the fixture

WIDE = {"mapped_area_km2": (0.0, 10.0), "uncertainty_buffer_km2": (0.0, 10.0), "coverage": (0.9, 1.0)}


def _model(coef: tuple[float, ...] = (0.01, 0.1, 0.5), ranges: dict | None = None) -> ErrorModel:
    return ErrorModel(
        level=0.9,
        features=("mapped_area_km2", "uncertainty_buffer_km2"),
        coef=coef,
        q_low=-1.0,
        q_high=2.0,
        ranges=WIDE if ranges is None else ranges,
        n=30,
    )


def _run(paths: dict[str, Path], tmp_path: Path, **kw: object):  # noqa: ANN202
    return glacier_change(
        paths["t0"], paths["t1"], tmp_path / "c.tif", inventory=paths["inventory"],
        t0_date="2000-08-01", t1_date="2020-08-01", overwrite=True, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_model_error_enters_sigma_change_by_hand(
    shrink: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    rho: float,
) -> None:
    plain = _run(shrink, tmp_path).glaciers.iloc[0]
    g = _run(shrink, tmp_path, error_model=_model(), model_error_correlation=rho).glaciers.iloc[0]
    b0, b1 = plain["sigma_t0_km2"], plain["sigma_t1_km2"]  # the buffers alone
    z = norm.ppf(0.95)
    m0 = 3.0 * (0.01 + 0.1 * g["area_t0_km2"] + 0.5 * b0) / (2 * z)  # (q_high - q_low) * s / 2z
    m1 = 3.0 * (0.01 + 0.1 * g["area_t1_km2"] + 0.5 * b1) / (2 * z)
    assert g["model_sigma_t0_km2"] == pytest.approx(m0, rel=1e-6)
    assert g["model_sigma_t1_km2"] == pytest.approx(m1, rel=1e-6)
    assert g["sigma_t0_km2"] == pytest.approx(math.hypot(b0, m0), rel=1e-6)
    expected = math.sqrt(b0**2 + b1**2 + m0**2 + m1**2 - 2 * rho * m0 * m1)
    assert g["sigma_change_km2"] == pytest.approx(expected, rel=1e-6)
    assert g["snr"] == pytest.approx(abs(g["change_km2"]) / expected, rel=1e-6)
    assert not g["beyond_calibration"]


def test_a_change_smaller_than_the_model_error_is_flagged(shrink: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    plain = _run(shrink, tmp_path)
    assert plain.glaciers.iloc[0]["snr"] > 2 and plain.glacier_totals["in_totals"]["glaciers"] == 1
    assert "model error not included" in plain.glacier_totals["model_error"]
    big = _run(shrink, tmp_path, error_model=_model(coef=(0.0, 0.5, 0.0)))  # s = half the area
    g = big.glaciers.iloc[0]
    assert g["within_uncertainty"] and not g["in_totals"]
    assert big.glacier_totals["in_totals"]["glaciers"] == 0
    assert big.glacier_totals["model_error_correlation"] == 0.0


def test_beyond_calibration_gets_no_sigma(shrink: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    ranges = {**WIDE, "mapped_area_km2": (0.0, 0.1)}  # the square (0.9 km2) is bigger than any seen
    r = _run(shrink, tmp_path, error_model=_model(ranges=ranges))
    g = r.glaciers.iloc[0]
    assert g["beyond_calibration"] and math.isnan(g["sigma_change_km2"]) and math.isnan(g["snr"])
    assert not g["in_totals"] and r.glacier_totals["flagged_beyond_calibration"] == 1


def test_bad_error_model_options_fail_before_any_output(shrink: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="within \\[0, 1\\]"):
        _run(shrink, tmp_path, error_model=_model(), model_error_correlation=1.5)
    needs = ErrorModel(0.9, ("uncertainty_probability_km2",), (0.1, 1.0), -1.0, 1.0)
    with pytest.raises(ConfigError, match="change does not measure"):
        _run(shrink, tmp_path, error_model=needs)
    assert not (tmp_path / "c.tif").exists()


def test_change_cli_says_once_that_model_error_is_missing(shrink: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from geoglacier.cli.main import cli

    args = ["change", str(shrink["t0"]), str(shrink["t1"]), "--out", str(tmp_path / "c.tif")]
    res = CliRunner().invoke(cli, [*args, "--inventory", str(shrink["inventory"])])
    assert res.exit_code == 0, res.output
    assert res.output.count("model error not included") == 1
    bad = CliRunner().invoke(cli, [*args, "--model-error-correlation", "2", "--overwrite"])
    assert bad.exit_code != 0 and "within [0, 1]" in bad.output and "Traceback" not in bad.output
