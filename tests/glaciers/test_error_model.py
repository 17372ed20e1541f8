"""The conformal error model: coverage on known distributions, fitting, range flags, round trips."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from geoglacier.errors import ConfigError
from geoglacier.glaciers.error_model import (
    ErrorModel,
    add_interval_columns,
    conformal_quantile,
    fit_error_model,
    lower_conformal_quantile,
    min_glaciers,
    total_interval,
)


def test_conformal_quantile_is_the_ceil_rank_by_hand() -> None:
    scores = np.arange(1.0, 11.0)  # n = 10
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest
    assert conformal_quantile(scores, 0.9) == 10.0  # ceil(9.9) = 10
    assert conformal_quantile(scores, 0.95) == math.inf  # ceil(10.45) = 11 > n
    assert lower_conformal_quantile(scores, 0.9) == 1.0  # floor(11 * 0.1) = 1st smallest
    assert lower_conformal_quantile(scores, 0.95) == -math.inf


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_conformal_quantile_gives_its_coverage_on_known_distributions(level: float) -> None:
    """Calibrate on 99 draws, test on 10 000 fresh ones, over many repetitions: the mean
    coverage is ceil(100 * level) / 100 = the level (within 1 %), for a skewed and a
    heavy-tailed law."""
    rng = np.random.default_rng(0)
    for draw in (lambda k: rng.exponential(size=k), lambda k: np.abs(rng.standard_t(2, size=k))):
        covered = []
        for _ in range(200):
            q = conformal_quantile(draw(99), level)
            covered.append(np.mean(draw(10_000) <= q))
        assert abs(np.mean(covered) - level) < 0.01


def _synthetic_table(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Glaciers whose map misses a share of the true area that scales with size (heteroscedastic)."""
    true = rng.lognormal(0.0, 1.0, n)
    mapped = true * (1 - rng.uniform(0.0, 0.4, n))
    buffer = 0.05 * np.sqrt(true)
    table = pd.DataFrame(
        {
            "mapped_area_km2": mapped,
            "uncertainty_buffer_km2": buffer,
            "coverage": rng.uniform(0.9, 1.0, n),
        }
    )
    return table, true


def test_fitted_intervals_cover_new_glaciers_at_the_level() -> None:
    rng = np.random.default_rng(1)
    covered = []
    for _ in range(40):
        cal, ref = _synthetic_table(rng, 200)
        model = fit_error_model(cal, ref, level=0.9)
        test, truth = _synthetic_table(rng, 2000)
        low, high, beyond = model.interval(test)
        ok = ~beyond
        covered.append(np.mean((truth[ok] >= low[ok]) & (truth[ok] <= high[ok])))
    assert 0.88 <= np.mean(covered) <= 0.93
    # asymmetric: the map only under-estimates here, so the lower bound sits near the mapped area
    assert model.q_low > -0.2 and model.q_high > 0


def test_conditioning_beats_a_constant_width() -> None:
    """On heteroscedastic errors the scaled interval is narrower on average than one
    constant width with the same coverage."""
    rng = np.random.default_rng(2)
    cal, ref = _synthetic_table(rng, 500)
    model = fit_error_model(cal, ref)
    const = fit_error_model(cal, ref, features=())
    test, _ = _synthetic_table(rng, 5000)
    width = np.nanmean(np.subtract(*model.interval(test)[1::-1]))
    width_const = np.nanmean(np.subtract(*const.interval(test)[1::-1]))
    assert width < 0.8 * width_const


def test_symmetric_intervals_cover_at_the_level() -> None:
    rng = np.random.default_rng(8)
    covered = []
    for _ in range(100):
        cal, ref = _synthetic_table(rng, 15)  # too few for two tails: symmetric
        model = fit_error_model(cal, ref, level=0.9)
        assert model.tails == "symmetric" and model.q_low == -model.q_high
        test, truth = _synthetic_table(rng, 500)
        low, high, beyond = model.interval(test)
        # a fresh draw's features fall outside a 15-glacier range often; the guarantee is
        # for exchangeable glaciers, so score them all (bounds without the range flag)
        s = model.scale(test)
        a = test["mapped_area_km2"].to_numpy()
        covered.append(np.mean((truth >= a - model.q_high * s) & (truth <= a + model.q_high * s)))
    assert 0.89 <= np.mean(covered) <= 0.96


def test_beyond_calibration_rows_get_no_interval() -> None:
    rng = np.random.default_rng(3)
    cal, ref = _synthetic_table(rng, 100)
    model = fit_error_model(cal, ref)
    test = cal.iloc[:4].copy()
    test.loc[test.index[0], "mapped_area_km2"] = cal["mapped_area_km2"].max() * 2  # bigger than any seen
    test.loc[test.index[1], "coverage"] = 0.5  # less of its outline seen than any calibration glacier
    test.loc[test.index[3], "mapped_area_km2"] = 0.0  # a glacier the map missed: the interval is for it
    low, high, beyond = model.interval(test)
    assert beyond.tolist() == [True, True, False, False]
    assert 0.0 <= low[3] < high[3]
    assert np.isnan(low[:2]).all() and np.isnan(high[:2]).all()
    assert 0 <= low[2] < high[2]


def test_round_trip_through_a_plain_dict() -> None:
    rng = np.random.default_rng(4)
    cal, ref = _synthetic_table(rng, 60)
    model = fit_error_model(cal, ref, level=0.8, source="test")
    raw = model.to_dict()
    plain = (dict, list, str, int, float)

    def check(v: object) -> None:
        assert isinstance(v, plain)
        if isinstance(v, dict):
            for x in v.values():
                check(x)
        if isinstance(v, list):
            for x in v:
                check(x)

    check(raw)
    back = ErrorModel.from_dict(raw)
    assert back == model
    np.testing.assert_array_equal(back.interval(cal)[0], model.interval(cal)[0])


def test_bad_inputs_are_config_errors() -> None:
    rng = np.random.default_rng(5)
    cal, ref = _synthetic_table(rng, 30)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        fit_error_model(cal, ref, level=1.0)
    with pytest.raises(ConfigError, match="too few"):
        fit_error_model(cal.iloc[:8], ref[:8])
    with pytest.raises(ConfigError, match="too few"):
        fit_error_model(cal.iloc[:18], ref[:18], tails="two")
    assert fit_error_model(cal.iloc[:18], ref[:18]).tails == "symmetric"
    assert fit_error_model(cal.iloc[:19], ref[:19]).tails == "two"
    assert min_glaciers(0.9, "symmetric") == 9
    with pytest.raises(ConfigError, match="reference areas"):
        fit_error_model(cal, ref[:-1])
    with pytest.raises(ConfigError, match="not a geoglacier error model"):
        ErrorModel.from_dict({"level": 0.9})
    assert min_glaciers(0.9) == 19  # ceil(20 * 0.95) = 19 <= 19


def test_columns_and_totals() -> None:
    rng = np.random.default_rng(6)
    cal, ref = _synthetic_table(rng, 100)
    model = fit_error_model(cal, ref)
    test = cal.iloc[:4].copy()
    test.loc[test.index[0], "coverage"] = 0.1
    out = add_interval_columns(test, model)
    assert list(out.columns[:3]) == ["mapped_area_km2", "area_low_km2", "area_high_km2"]
    tot = total_interval(out)
    assert tot["glaciers_with_interval"] == 3 and tot["glaciers_beyond_calibration"] == 1
    assert tot["area_high_km2"] == pytest.approx(out["area_high_km2"].iloc[1:].sum())
    assert tot["area_low_km2"] == pytest.approx(out["area_low_km2"].iloc[1:].sum())
    assert tot["interval_mapped_area_km2"] == pytest.approx(out["mapped_area_km2"].iloc[1:].sum())


def test_round_trip_through_a_checkpoint(tmp_path) -> None:  # noqa: ANN001
    import torch

    from geoglacier.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from geoglacier.glaciers.error_model import read_error_model, store_error_model
    from geoglacier.model import ModelConfig, build_model

    cfg = ModelConfig(encoder="resnet18")
    meta = CheckpointMeta(model=cfg, bands=tuple("abcde"), mean=(0.0,) * 5, std=(1.0,) * 5, patch_size=64)
    path = save_checkpoint(build_model(cfg, encoder_weights=None), meta, tmp_path / "m.pth")
    assert read_error_model(path) is None
    rng = np.random.default_rng(7)
    cal, ref = _synthetic_table(rng, 50)
    model = fit_error_model(cal, ref)
    store_error_model(path, model)
    assert read_error_model(path) == model
    torch.load(path, weights_only=True)  # plain types only
    net, meta2 = load_checkpoint(path)  # still a loadable network
    assert ErrorModel.from_dict(meta2.error_model) == model
    # and save_checkpoint keeps it
    again = save_checkpoint(net, meta2, tmp_path / "again.pth")
    assert read_error_model(again) == model


def test_cross_fitted_scale_keeps_the_coverage_and_stores_the_full_fit() -> None:
    rng = np.random.default_rng(9)
    covered = []
    for _ in range(30):
        cal, ref = _synthetic_table(rng, 60)
        groups = np.repeat([0, 1, 2], 20)
        model = fit_error_model(cal, ref, groups=groups)
        assert model.coef == fit_error_model(cal, ref).coef  # the stored scale: fitted on all rows
        test, truth = _synthetic_table(rng, 1000)
        low, high, beyond = model.interval(test)
        ok = ~beyond
        covered.append(np.mean((truth[ok] >= low[ok]) & (truth[ok] <= high[ok])))
    assert 0.88 <= np.mean(covered) <= 0.95
    with pytest.raises(ConfigError, match="group labels"):
        fit_error_model(cal, ref, groups=[0, 1])


def test_bounds_never_exceed_the_outlines_valid_area() -> None:
    rng = np.random.default_rng(10)
    cal, ref = _synthetic_table(rng, 100)
    model = fit_error_model(cal, ref)
    test = cal.iloc[:5].copy()
    test["valid_area_km2"] = test["mapped_area_km2"] * 1.05  # outlines barely bigger than the map
    low, high, _ = model.interval(test)
    np.testing.assert_allclose(high, test["valid_area_km2"])
    assert (low <= high).all() and (low >= 0).all()
    assert (model.interval(cal.iloc[:5])[1] > high).all()  # without the column: not clipped
