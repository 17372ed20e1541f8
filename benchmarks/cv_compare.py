"""Paired comparison of two recipes' cross-validation runs, fold by fold.

Reads the runs that ``cv_everest.py`` wrote into ``benchmarks/results/cv_everest.json`` and
compares recipe A with recipe B on the same folds and seeds: each ``--pair A_RUN B_RUN``
names one run of each trained with the same seed (same folds, same budget). It prints
and writes (``--out``, markdown) the per-fold MCC and area error of both, the per-fold
difference A - B, and over all pairs the mean difference, the smallest per-fold
difference and the share of folds where A wins.

    .venv/bin/python benchmarks/cv_compare.py --out benchmarks/results/cv_terrain.md \\
        --title "terrain (7 bands) vs optical (5 bands)" \\
        --pair "DEM part, 7 bands (+elevation, slope), seed 0" "DEM part, 5 bands, seed 0" \\
        --pair "DEM part, 7 bands (+elevation, slope), seed 1" "DEM part, 5 bands, seed 1"
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cv_everest.json"


def fold_rows(runs: dict, a: str, b: str) -> list[dict]:
    """One row per fold of the pair ``(a, b)``: both runs' MCC and area error, and A - B."""
    folds_a = {f["fold"]: f for f in runs[a]["folds"]}
    folds_b = {f["fold"]: f for f in runs[b]["folds"]}
    if folds_a.keys() != folds_b.keys():
        raise SystemExit(f"{a!r} and {b!r} ran other folds: {sorted(folds_a)} vs {sorted(folds_b)}")
    rows = []
    for k in sorted(folds_a):
        fa, fb = folds_a[k], folds_b[k]
        if (fa["rows"], fa.get("cols")) != (fb["rows"], fb.get("cols")):
            raise SystemExit(f"fold {k} of {a!r} and {b!r} covers other pixels")
        rows.append(
            {
                "pair": f"{a} / {b}",
                "fold": k,
                "mcc_a": fa["mcc"],
                "mcc_b": fb["mcc"],
                "delta": round(fa["mcc"] - fb["mcc"], 4),
                "area_a": fa["area_error_relative"],
                "area_b": fb["area_error_relative"],
            }
        )
    return rows


def table(rows: list[dict], title: str) -> str:
    deltas = [r["delta"] for r in rows]
    lines = [
        f"### {title}",
        "",
        "| runs (A / B) | fold | MCC A | MCC B | A - B | area error A | area error B |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['pair']} | {r['fold']} | {r['mcc_a']:.3f} | {r['mcc_b']:.3f} | {r['delta']:+.3f} | "
            f"{r['area_a']:+.1%} | {r['area_b']:+.1%} |"
            for r in rows
        ),
        "",
        f"Over {len(rows)} folds: mean A - B {statistics.fmean(deltas):+.3f} "
        f"(sd {statistics.stdev(deltas) if len(deltas) > 1 else 0.0:.3f}), smallest {min(deltas):+.3f}, "
        f"A better on {sum(d > 0 for d in deltas)} of {len(deltas)}; "
        f"mean MCC A {statistics.fmean(r['mcc_a'] for r in rows):.3f}, "
        f"B {statistics.fmean(r['mcc_b'] for r in rows):.3f}; "
        f"mean |area error| A {statistics.fmean(abs(r['area_a']) for r in rows):.1%}, "
        f"B {statistics.fmean(abs(r['area_b']) for r in rows):.1%}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A_RUN", "B_RUN"))
    parser.add_argument("--title", default="A vs B")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=None, help="append the markdown table to this file")
    args = parser.parse_args()
    runs = json.loads(args.json.read_text())["runs"]
    missing = [name for pair in args.pair for name in pair if name not in runs]
    if missing:
        raise SystemExit(f"no run named {missing[0]!r} in {args.json}")
    rows = [row for a, b in args.pair for row in fold_rows(runs, a, b)]
    text = table(rows, args.title)
    print(text)
    if args.out is not None:
        with args.out.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
