"""Out-of-fold coverage of the per-glacier error model on the Everest west folds (issue 26).

Needs the fold networks of a ``benchmarks/cv_everest.py`` run (``WORK/fold{k}/model.pth``,
``test_scene.tif``, ``test_mask.tif``; test strips = ``strips(655, 3)`` of the west scene).
For each fold the test strip is mapped again with probabilities, and
:func:`~geoglacier.glaciers.areas.glacier_areas` measures each RGI glacier twice on the
strip: in the map (mapped area and the features the error model may use) and in the
RGI-burned reference mask (the reference area inside the outline). Then for each fold k
the error model is fitted on the OTHER folds' glaciers and applied to fold k's: a true
out-of-fold test of the stated interval.

Reported per fold and pooled, for each variant of the scale: empirical coverage of the
90 % intervals, the median relative half-width and the mean width; for contrast the
coverage of today's buffer-only uncertainty (``|error| <= uncertainty_buffer_km2``) and a
constant relative interval (scale = mapped area) fitted the same way.

    .venv/bin/python benchmarks/cv_error_model.py --cv-work /work/cvruns/west5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EVEREST = ROOT.parent / "shared" / "data" / "everest"
OUTLINES = EVEREST / "west_rgi60_outlines.gpkg"
RESULTS = ROOT / "benchmarks" / "results" / "error_model.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS: dict[str, tuple[str, ...]] = {
    "constant relative (scale = mapped area, no intercept)": ("RELATIVE",),
    "constant width": (),
    "mapped + buffer (default)": ("mapped_area_km2", "uncertainty_buffer_km2"),
    "mapped + undecided": ("mapped_area_km2", "uncertainty_probability_km2"),
    "mapped + buffer + undecided": (
        "mapped_area_km2",
        "uncertainty_buffer_km2",
        "uncertainty_probability_km2",
    ),
    "mapped + undecided 0.2-0.8": ("mapped_area_km2", "undecided_wide_km2"),
    "mapped + buffer + undecided 0.2-0.8": (
        "mapped_area_km2",
        "uncertainty_buffer_km2",
        "undecided_wide_km2",
    ),
    "mapped + buffer + unmapped outline (valid - mapped)": (
        "mapped_area_km2",
        "uncertainty_buffer_km2",
        "unmapped_km2",
    ),
    "mapped + buffer, scale cross-fitted across folds": (
        "CROSS",
        "mapped_area_km2",
        "uncertainty_buffer_km2",
    ),
}
"""Scale features per variant (``uncertainty_probability_km2``: half the area with 0.4 <= p < 0.6)."""


def fold_table(k: int, fold: Path, work: Path) -> pd.DataFrame:
    """One fold's per-glacier table: the map's columns plus ``reference_km2`` and ``fold``."""
    from geoglacier.glaciers.areas import glacier_areas
    from geoglacier.inference.segment import segment_scene

    pred, prob = work / f"pred{k}.tif", work / f"prob{k}.tif"
    segment_scene(
        fold / "test_scene.tif", fold / "model.pth", pred, probabilities=prob,
        device="cpu", overwrite=True, progress=False,
    )  # fmt: skip
    mapped = glacier_areas(pred, OUTLINES, probabilities=prob).table
    ref = glacier_areas(fold / "test_mask.tif", OUTLINES).table
    assert (mapped["glacier_id"].to_numpy() == ref["glacier_id"].to_numpy()).all()
    out = mapped.copy()
    out["reference_km2"] = ref["mapped_area_km2"].to_numpy()
    wide = glacier_areas(pred, OUTLINES, probabilities=prob, thresholds=(0.2, 0.8)).table
    out["undecided_wide_km2"] = 2 * wide["uncertainty_probability_km2"].to_numpy()  # area with 0.2 <= p < 0.8
    out["fold"] = k
    return out


def _relative_interval(cal: pd.DataFrame, test: pd.DataFrame, level: float) -> tuple[np.ndarray, np.ndarray]:
    """A constant relative interval ``mapped * (1 + [q_lo, q_hi])`` by the same conformal quantiles."""
    from geoglacier.glaciers.error_model import conformal_quantile, lower_conformal_quantile, min_glaciers

    eps = 1e-6
    r = ((cal["reference_km2"] - cal["mapped_area_km2"]) / np.maximum(cal["mapped_area_km2"], eps)).to_numpy()
    if len(r) >= min_glaciers(level, "two"):  # the same choice of tails as fit_error_model
        tail = 1 - (1 - level) / 2
        lo, hi = lower_conformal_quantile(r, tail), conformal_quantile(r, tail)
    else:
        hi = conformal_quantile(np.abs(r), level)
        lo = -hi
    a = test["mapped_area_km2"].to_numpy()
    return _clip(test, np.maximum(a * (1 + lo), 0), a * (1 + hi))


def _clip(test: pd.DataFrame, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds clipped to the outline's valid area as the model's are (not with --no-clip)."""
    if "valid_area_km2" not in test:
        return low, high
    cap = np.maximum(test["valid_area_km2"].to_numpy(), test["mapped_area_km2"].to_numpy())
    high = np.minimum(high, cap)
    return np.minimum(low, high), high


def oracle_relative(test: pd.DataFrame, coverage: float) -> dict[str, Any]:
    """The narrowest constant relative interval ``[a A, b A]`` covering ``coverage`` of the test glaciers.

    Tuned on the test glaciers themselves (an oracle no user has), so it is the hardest
    contrast: the conditioned intervals must be narrower on average at the same coverage.
    """
    a = test["mapped_area_km2"].to_numpy()
    ratio = np.where(a > 0, test["reference_km2"].to_numpy() / np.maximum(a, 1e-12), np.inf)
    ratio = np.sort(ratio)
    m = math.ceil(coverage * len(ratio) - 1e-9)
    if m == 0:
        return {"coverage": 0.0, "mean_width_km2": 0.0}
    spans = ratio[m - 1 :] - ratio[: len(ratio) - m + 1]
    i = int(np.nanargmin(np.where(np.isnan(spans), np.inf, spans)))
    lo, hi = float(ratio[i]), float(ratio[i + m - 1])
    # a glacier mapped as nothing is covered only by an unbounded ratio (then up to its outline)
    low = lo * a
    high = np.where(a > 0, hi * np.where(a > 0, a, 1.0), np.inf if math.isinf(hi) else 0.0)
    low, high = _clip(test, low, high)
    sc = score(test, low, high)
    return {"coverage": sc["coverage"], "mean_width_km2": float(np.mean(high - low)), "ratio": [lo, hi]}


def score(test: pd.DataFrame, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    """Coverage and widths of intervals on the test glaciers that have one."""
    ok = np.isfinite(low) & np.isfinite(high)
    ref = test["reference_km2"].to_numpy()
    # the RGI-burned reference fills its outline, so a bound clipped to the outline's valid area
    # equals it up to the order of float sums: compare with a tolerance far below one pixel
    tol = 1e-9 + 1e-7 * ref
    hit = (ref >= low - tol) & (ref <= high + tol)
    half = (high - low) / 2
    mapped = test["mapped_area_km2"].to_numpy()
    rel = np.where(mapped > 0, half / np.maximum(mapped, 1e-9), np.inf)
    return {
        "glaciers": int(len(test)),
        "with_interval": int(ok.sum()),
        "coverage": float(hit[ok].mean()) if ok.any() else math.nan,
        "median_relative_half_width": float(np.median(rel[ok])) if ok.any() else math.nan,
        "mean_width_km2": float(np.mean((high - low)[ok])) if ok.any() else math.nan,
        "hits": int(hit[ok].sum()),
    }


def evaluate(tables: list[pd.DataFrame], level: float, cal_keep: Any, keep: Any) -> dict[str, Any]:
    """Leave-one-fold-out: fit on the other folds' ``cal_keep`` glaciers, score fold k's ``keep`` ones."""
    from geoglacier.glaciers.error_model import fit_error_model

    kept = [t[keep(t)].reset_index(drop=True) for t in tables]
    pool = [t[cal_keep(t)].reset_index(drop=True) for t in tables]
    report: dict[str, Any] = {
        "glaciers_per_fold": [len(t) for t in kept],
        "calibration_glaciers_per_fold": [
            sum(len(p) for j, p in enumerate(pool) if j != k) for k in range(len(pool))
        ],
        "variants": {},
    }
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, features in VARIANTS.items():
        per_fold, lows, highs = [], [], []
        for k, test in enumerate(kept):
            cal = pd.concat([t for j, t in enumerate(pool) if j != k], ignore_index=True)
            if features == ("RELATIVE",):
                low, high = _relative_interval(cal, test, level)
            else:
                cross = features[:1] == ("CROSS",)
                model = fit_error_model(
                    cal, cal["reference_km2"].to_numpy(), level=level, features=features[cross:],
                    groups=cal["fold"].to_numpy() if cross else None,
                )  # fmt: skip
                low, high, _ = model.interval(test)
            per_fold.append(
                {**score(test, low, high), "tails": None if features == ("RELATIVE",) else model.tails}
            )
            lows.append(low)
            highs.append(high)
        pooled = score(pd.concat(kept, ignore_index=True), np.concatenate(lows), np.concatenate(highs))
        report["variants"][name] = {"folds": per_fold, "pooled": pooled}
        bounds[name] = (np.concatenate(lows), np.concatenate(highs))
    # the same glaciers for every variant: those that all of them give an interval
    allk = pd.concat(kept, ignore_index=True)
    common = np.logical_and.reduce([np.isfinite(lo) & np.isfinite(hi) for lo, hi in bounds.values()])
    report["common_glaciers"] = int(common.sum())
    for name, (lo, hi) in bounds.items():
        report["variants"][name]["common"] = score(allk[common], lo[common], hi[common])
    default = report["variants"]["mapped + buffer (default)"]["common"]
    report["oracle_relative"] = oracle_relative(allk[common], default["coverage"])
    buf = []
    for test in kept:
        half = test["uncertainty_buffer_km2"].to_numpy()
        a = test["mapped_area_km2"].to_numpy()
        buf.append(score(test, a - half, a + half))
    half = allk["uncertainty_buffer_km2"].to_numpy()
    report["buffer_only"] = {
        "folds": buf,
        "pooled": score(
            allk, allk["mapped_area_km2"].to_numpy() - half, allk["mapped_area_km2"].to_numpy() + half
        ),
    }
    report["residuals"] = _residual_stats(kept)
    return report


def _residual_stats(kept: list[pd.DataFrame]) -> list[dict[str, Any]]:
    """Per fold: how the glaciers' errors lean (the case for summing bounds in totals)."""
    out = []
    for t in kept:
        e = t["reference_km2"] - t["mapped_area_km2"]
        out.append(
            {
                "glaciers": int(len(t)),
                "share_under_mapped": float((e > 0).mean()) if len(t) else math.nan,
                "sum_error_km2": float(e.sum()),
                "sum_abs_error_km2": float(e.abs().sum()),
                "reference_km2": float(t["reference_km2"].sum()),
            }
        )
    return out


def total_check(tables: list[pd.DataFrame], level: float, cal_keep: Any, keep: Any) -> list[dict[str, Any]]:
    """Per fold: the total reference area against the total interval, bounds summed vs root-sum-square."""
    from geoglacier.glaciers.error_model import fit_error_model

    kept = [t[keep(t)].reset_index(drop=True) for t in tables]
    pool = [t[cal_keep(t)].reset_index(drop=True) for t in tables]
    rows = []
    for k, test in enumerate(kept):
        cal = pd.concat([t for j, t in enumerate(pool) if j != k], ignore_index=True)
        model = fit_error_model(cal, cal["reference_km2"].to_numpy(), level=level)
        low, high, beyond = model.interval(test)
        ok = ~beyond
        a = test["mapped_area_km2"].to_numpy()[ok]
        lo_h, hi_h = (a - low[ok]), (high[ok] - a)
        ref = float(test["reference_km2"].to_numpy()[ok].sum())
        rows.append(
            {
                "fold": k,
                "glaciers": int(ok.sum()),
                "reference_km2": ref,
                "mapped_km2": float(a.sum()),
                "summed": [float(a.sum() - lo_h.sum()), float(a.sum() + hi_h.sum())],
                "root_sum_square": [
                    float(a.sum() - np.sqrt((lo_h**2).sum())),
                    float(a.sum() + np.sqrt((hi_h**2).sum())),
                ],
            }
        )
    return rows


def write_markdown(report: dict[str, Any], path: Path) -> None:
    lines = [f"# Per-glacier error model: out-of-fold coverage ({report['level']:.0%} intervals)", ""]
    lines.append(
        f"Networks: `{report['cv_work']}`, folds {report['folds']} (each trained on the other strips); "
        "for each fold the error model is fitted on the other folds' glaciers only. Bounds "
        + (
            "clipped to the outline's valid area."
            if report["clipped_to_outline"]
            else "NOT clipped (--no-clip)."
        )
    )
    for cut_name, cut in report["cuts"].items():
        if "error" in cut:
            lines += ["", f"## {cut_name}", "", f"Not possible: {cut['error']}"]
            continue
        lines += [
            "",
            f"## {cut_name}",
            "",
            f"Test glaciers per fold: {cut['glaciers_per_fold']}; calibration glaciers (the other folds): "
            f"{cut['calibration_glaciers_per_fold']}",
            "",
        ]
        lines.append(
            "| scale | coverage per fold (glaciers with an interval) | pooled coverage | median rel. half-width | "
            f"mean width km2 | on the {cut['common_glaciers']} glaciers all variants cover: coverage, mean width km2 |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for name, v in {**cut["variants"], "buffer only (today)": cut["buffer_only"]}.items():
            per = ", ".join(f"{f['coverage']:.0%} ({f['with_interval']})" for f in v["folds"])
            p = v["pooled"]
            c = v.get("common")
            common = "" if c is None else f"{c['coverage']:.1%}, {c['mean_width_km2']:.3f}"
            lines.append(
                f"| {name} | {per} | {p['coverage']:.1%} ({p['hits']}/{p['with_interval']}) | "
                f"{p['median_relative_half_width']:.1%} | {p['mean_width_km2']:.3f} | {common} |"
            )
        o = cut["oracle_relative"]
        lines += [
            "",
            f"Constant relative interval tuned on these {cut['common_glaciers']} test glaciers themselves to the "
            f"default model's coverage ({o['coverage']:.1%}): mean width {o['mean_width_km2']:.3f} km2 "
            f"(mapped x {o.get('ratio', [0, 0])[0]:.2f} to x {o.get('ratio', [0, 0])[1]:.2f}).",
        ]
        lines += ["", "Errors per fold (reference - mapped): " + "; ".join(
            f"{r['share_under_mapped']:.0%} under-mapped, sum {r['sum_error_km2']:+.2f} of "
            f"abs {r['sum_abs_error_km2']:.2f} km2" for r in cut["residuals"]
        )]  # fmt: skip
        lines += [
            "",
            "| fold | reference km2 | mapped km2 | summed bounds | root-sum-square |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in cut["totals"]:
            lines.append(
                f"| {r['fold']} | {r['reference_km2']:.2f} | {r['mapped_km2']:.2f} | "
                f"{r['summed'][0]:.2f} - {r['summed'][1]:.2f} | {r['root_sum_square'][0]:.2f} - {r['root_sum_square'][1]:.2f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cv-work", type=Path, required=True, help="work dir of a cv_everest.py run")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--no-clip",
        action="store_true",
        help="do not clip bounds to the outline's valid area (the model's own calibration, unhelped)",
    )
    args = parser.parse_args()
    if not OUTLINES.exists():
        raise SystemExit(f"{EVEREST} is not here; this benchmark needs the shared Everest data")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cv_error_model_"))
    work.mkdir(parents=True, exist_ok=True)
    tables = []
    done = [k for k in range(args.folds) if (args.cv_work / f"fold{k}" / "pred.tif").exists()]
    if len(done) < 2:
        raise SystemExit(
            f"{args.cv_work}: {len(done)} finished folds (fold*/pred.tif); at least 2 are needed"
        )
    for k in done:
        cache = work / f"fold{k}.csv"
        if cache.exists():
            tables.append(pd.read_csv(cache))
        else:
            tables.append(fold_table(k, args.cv_work / f"fold{k}", work))
            tables[-1].to_csv(cache, index=False)
        tables[-1]["unmapped_km2"] = tables[-1]["valid_area_km2"] - tables[-1]["mapped_area_km2"]
        if args.no_clip:
            tables[-1] = tables[-1].drop(columns="valid_area_km2")
        print(f"fold {k}: {len(tables[-1])} glaciers on the strip", flush=True)
    whole = lambda t: (t["coverage"] >= 0.9) & (t["reference_km2"] >= 0.1)  # noqa: E731
    parts = lambda t: (t["coverage"] >= 0.2) & (t["reference_km2"] >= 0.1)  # noqa: E731
    cuts = {
        "calibrate on whole glaciers (coverage >= 0.9, reference >= 0.1 km2), test on whole glaciers": (
            whole,
            whole,
        ),
        "calibrate on glacier parts inside the strips (coverage >= 0.2, reference >= 0.1 km2), "
        "test on whole glaciers": (parts, whole),
        "calibrate and test on glacier parts inside the strips": (parts, parts),
    }
    report: dict[str, Any] = {
        "level": args.level,
        "cv_work": str(args.cv_work),
        "folds": done,
        "clipped_to_outline": not args.no_clip,
        "cuts": {},
    }
    for name, (cal_keep, keep) in cuts.items():
        try:
            cut = evaluate(tables, args.level, cal_keep, keep)
            cut["totals"] = total_check(tables, args.level, cal_keep, keep)
        except Exception as exc:  # noqa: BLE001 - a cut with too few glaciers is reported, not fatal
            report["cuts"][name] = {"error": str(exc)}
            print(f"{name}: {exc}")
            continue
        report["cuts"][name] = cut
        for v, r in {**cut["variants"], "buffer only": cut["buffer_only"]}.items():
            p = r["pooled"]
            per = ", ".join(f"{f['coverage']:.0%}" for f in r["folds"])
            c = r.get("common", {})
            print(
                f"{name[:40]} | {v:<52} | folds {per} | pooled {p['coverage']:.1%} ({p['with_interval']}) | "
                f"med rel half {p['median_relative_half_width']:.1%} | mean width {p['mean_width_km2']:.3f} | "
                f"common: {c.get('coverage', math.nan):.1%} width {c.get('mean_width_km2', math.nan):.3f}"
            )
        o = cut["oracle_relative"]
        print(
            f"{name[:40]} | oracle constant relative at {o['coverage']:.1%}: mean width {o['mean_width_km2']:.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    write_markdown(report, args.json.with_suffix(".md"))
    print(f"wrote {args.json} and {args.json.with_suffix('.md')}")


if __name__ == "__main__":
    main()
