"""Spatial k-fold cross-validation of a training recipe on the real Everest west scene.

The scene (``../shared/data/everest``, 655 x 480 px of Landsat 7 at 30 m) is cut into
``--folds`` horizontal strips. The glaciers of this part of the Khumbu run mostly east to
west, so a strip holds whole valley sections: its ice, its debris tongues and its snow
fields are terrain the model has not seen. For each fold the model trains on the other
strips (each a scene of its own, a ``--gap`` of pixels on both sides of the test strip
left out so that no training window touches it) with the recipe's own block hold-out
choosing the best epoch, then ``segment_scene`` maps the test strip and
``evaluate_masks`` scores it against the RGI-burned reference mask.

Each fold trains for a fixed number of epochs (not a wall-clock budget), so a run gives
the same figures whatever else the machine is doing; run it under ``nice`` beside other
work. Results (per fold: MCC, relative area error, best epoch, seconds; mean and spread)
go to ``benchmarks/results/cv_everest.json`` under ``runs[<name>]`` and a table to
``cv_everest.md``.

    .venv/bin/python benchmarks/cv_everest.py --name baseline
    .venv/bin/python benchmarks/cv_everest.py --name gain-aug --set augment_radiometric=true
    .venv/bin/python benchmarks/cv_everest.py --name tta --recalibrate WORK --segment-set tta=true
    .venv/bin/python benchmarks/cv_everest.py --name ens --ensemble-of WORK_SEED0 WORK_SEED1
    .venv/bin/python benchmarks/cv_everest.py --name fit --in-sample   # the ceiling: strips seen in training
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

Region = tuple[int, int, int, int]  # row0, row1, col0, col1

ROOT = Path(__file__).resolve().parents[1]
EVEREST = ROOT.parent / "shared" / "data" / "everest"
RESULTS = ROOT / "benchmarks" / "results" / "cv_everest.json"


def strips(height: int, folds: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of ``folds`` horizontal strips of near-equal height."""
    edges = np.linspace(0, height, folds + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _crop(src_path: Path, region: Region, dst: Path) -> None:
    """Write the ``(row0, row1, col0, col1)`` window of ``src_path`` to ``dst`` (descriptions kept)."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src_path) as src:
        window = Window(region[2], region[0], region[3] - region[2], region[1] - region[0])
        profile = src.profile | {
            "height": region[1] - region[0],
            "width": region[3] - region[2],
            "transform": src.window_transform(window),
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(src.read(window=window))
            for i in range(1, src.count + 1):
                if src.descriptions[i - 1]:
                    out.set_band_description(i, src.descriptions[i - 1])
            out.update_tags(**src.tags())


def fold_regions(area: Region, axis: str, folds: int) -> list[Region]:
    """The test regions: ``folds`` strips of ``area`` cut across ``axis`` (``rows`` or ``cols``)."""
    r0, r1, c0, c1 = area
    if axis == "rows":
        return [(r0 + a, r0 + b, c0, c1) for a, b in strips(r1 - r0, folds)]
    return [(r0, r1, c0 + a, c0 + b) for a, b in strips(c1 - c0, folds)]


def training_parts(area: Region, test: Region, axis: str, gap: int) -> dict[str, Region]:
    """What is left of ``area`` on both sides of ``test``, ``gap`` pixels away from it."""
    r0, r1, c0, c1 = area
    if axis == "rows":
        return {"above": (r0, test[0] - gap, c0, c1), "below": (test[1] + gap, r1, c0, c1)}
    return {"left": (r0, r1, c0, test[2] - gap), "right": (r0, r1, test[3] + gap, c1)}


def make_fold(work: Path, area: Region, test: Region, args: argparse.Namespace) -> Path:
    """``work/data/{images,masks}/*.tif`` (training parts) and ``work/test_{scene,mask}.tif``."""
    for sub in ("images", "masks"):
        (work / "data" / sub).mkdir(parents=True, exist_ok=True)
    for name, part in training_parts(area, test, args.axis, args.gap).items():
        if min(part[1] - part[0], part[3] - part[2]) >= args.patch_size:
            _crop(args.scene, part, work / "data" / "images" / f"{name}.tif")
            _crop(args.mask, part, work / "data" / "masks" / f"{name}.tif")
    _crop(args.scene, test, work / "test_scene.tif")
    _crop(args.mask, test, work / "test_mask.tif")
    return work / "data"


def parse_area(text: str | None, height: int, width: int) -> Region:
    """``"364:655"`` or ``"364:655,0:480"`` -> ``(row0, row1, col0, col1)``; None -> the whole scene."""
    if not text:
        return (0, height, 0, width)
    rows, _, cols = text.partition(",")
    r0, r1 = (int(v) for v in rows.split(":"))
    c0, c1 = (int(v) for v in cols.split(":")) if cols else (0, width)
    return (r0, r1, c0, c1)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        out[key.replace("-", "_")] = value
    return out


def score_fold(k: int, region: Region, pred: Path, reference: Path) -> dict[str, Any]:
    """The fold's row of figures: MCC and glacier areas of ``pred`` against ``reference``."""
    from geoglacier.measure.evaluate import evaluate_masks

    scores = evaluate_masks(pred, reference)
    return {
        "fold": k,
        "rows": list(region[:2]),
        "cols": list(region[2:]),
        "mcc": round(float(scores["mcc"]), 4),
        "area_error_relative": round(float(scores["area_error_relative"]), 4),
        "ref_area_km2": round(float(scores["ref_area_km2"]), 3),
        "pred_area_km2": round(float(scores["pred_area_km2"]), 3),
    }


def _train(data: Path, model: Path, args: argparse.Namespace) -> tuple[Any, float]:
    """Train the recipe of ``args`` on ``data``; the result and the seconds it took."""
    from geoglacier.training.config import TrainConfig
    from geoglacier.training.loop import train

    config = TrainConfig(
        arch=args.arch,
        encoder=args.encoder,
        encoder_weights="none",
        epochs=args.epochs,
        patch_size=args.patch_size,
        patches_per_epoch=args.patches_per_epoch,
        seed=args.seed,
        num_workers=0,
        device="cpu",
    ).with_overrides(**_parse_sets(args.set))
    t0 = time.perf_counter()
    result = train(data, model, config, overwrite=True, log=lambda _: None, progress=False)
    return result, time.perf_counter() - t0


def _segment(scene: Path, model: Path, pred: Path, args: argparse.Namespace) -> None:
    from geoglacier.inference.segment import segment_scene

    segment_scene(
        scene, model, pred, device="cpu", overwrite=True, progress=False, **_parse_sets(args.segment_set)
    )


def run_fold(k: int, region: Region, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    fold = work / f"fold{k}"
    data = make_fold(fold, args.area, region, args)
    result, train_s = _train(data, fold / "model.pth", args)
    _segment(fold / "test_scene.tif", fold / "model.pth", fold / "pred.tif", args)
    row = {
        **score_fold(k, region, fold / "pred.tif", fold / "test_mask.tif"),
        "best_epoch": result.best_epoch,
        "inner_val_mcc": round(float(result.best_val_mcc), 4),
        "train_seconds": round(train_s, 1),
    }
    print(
        f"  fold {k} rows {region[0]}-{region[1]} cols {region[2]}-{region[3]}: MCC {row['mcc']:.3f}, area error "
        f"{row['area_error_relative']:+.1%}, inner val MCC {row['inner_val_mcc']:.3f} "
        f"(best epoch {row['best_epoch']}), {train_s / 60:.1f} min",
        flush=True,
    )
    return row


def run_in_sample(regions: list[Region], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Train once on every strip (each a scene of its own), then score each strip.

    Not a cross-validation: the figures say how well the recipe can fit the RGI labels
    of terrain it has seen (its own block hold-out aside), the ceiling that the folds'
    figures on unseen terrain sit under.
    """
    for sub in ("images", "masks"):
        (work / "data" / sub).mkdir(parents=True, exist_ok=True)
    for k, region in enumerate(regions):
        _crop(args.scene, region, work / "data" / "images" / f"strip{k}.tif")
        _crop(args.mask, region, work / "data" / "masks" / f"strip{k}.tif")
    result, train_s = _train(work / "data", work / "model.pth", args)
    out = []
    for k, region in enumerate(regions):
        scene, mask = work / "data" / "images" / f"strip{k}.tif", work / "data" / "masks" / f"strip{k}.tif"
        _segment(scene, work / "model.pth", work / f"pred{k}.tif", args)
        out.append({**score_fold(k, region, work / f"pred{k}.tif", mask), "train_seconds": round(train_s, 1)})
        print(f"  strip {k} (seen in training): MCC {out[-1]['mcc']:.3f}", flush=True)
    return out


def recalibrate_fold(k: int, region: Region, args: argparse.Namespace, trained: Path) -> dict[str, Any]:
    """Calibrate an earlier run's fold checkpoint on its own validation windows, then score it.

    Calibration does not change training, so its effect is measured on the very same
    networks as the run it starts from.
    """
    import torch

    from geoglacier.checkpoint import load_checkpoint, save_checkpoint
    from geoglacier.inference.segment import segment_scene
    from geoglacier.training.calibrate import calibrate_checkpoint
    from geoglacier.training.datasets import make_datasets

    fold = trained / f"fold{k}"
    model, meta = load_checkpoint(fold / "model.pth")
    val = make_datasets(
        fold / "data",
        args.patch_size,
        0.2,
        args.seed,
        args.patches_per_epoch,
        augment=False,
        normalization=meta.normalization,
    ).val
    calibration, meta = calibrate_checkpoint(
        model, meta, val, torch.device("cpu"), args.threshold, tune_threshold=args.tune_threshold
    )
    save_checkpoint(model, meta, fold / "model_calibrated.pth")
    segment_scene(
        fold / "test_scene.tif", fold / "model_calibrated.pth", fold / "pred_calibrated.tif",
        device="cpu", overwrite=True, progress=False, **_parse_sets(args.segment_set),
    )  # fmt: skip
    row = {
        **score_fold(k, region, fold / "pred_calibrated.tif", fold / "test_mask.tif"),
        "temperature": round(calibration.temperature, 3),
        "threshold": round(calibration.threshold, 3),
        "ece_before": round(calibration.ece_before, 4),
        "ece_after": round(calibration.ece_after, 4),
    }
    print(
        f"  fold {k}: MCC {row['mcc']:.3f}, area error {row['area_error_relative']:+.1%}, "
        f"T {row['temperature']}, threshold {row['threshold']}, ECE {row['ece_before']} -> {row['ece_after']}"
    )
    return row


def ensemble_fold(k: int, region: Region, members: list[Path], work: Path) -> dict[str, Any]:
    """Average earlier runs' fold networks (``segment_ensemble``) on the fold's test strip and score it."""
    from geoglacier.inference.ensemble import segment_ensemble

    fold = members[0] / f"fold{k}"
    out = work / f"fold{k}"
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = [m / f"fold{k}" / "model.pth" for m in members]
    segment_ensemble(
        fold / "test_scene.tif", checkpoints, out / "pred.tif", uncertainty=out / "spread.tif",
        device="cpu", overwrite=True, progress=False,
    )  # fmt: skip
    row = {
        **score_fold(k, region, out / "pred.tif", fold / "test_mask.tif"),
        "members": [str(c) for c in checkpoints],
    }
    print(f"  fold {k}: MCC {row['mcc']:.3f}, area error {row['area_error_relative']:+.1%}", flush=True)
    return row


def summarize(folds: list[dict[str, Any]]) -> dict[str, float]:
    mcc = [f["mcc"] for f in folds]
    err = [f["area_error_relative"] for f in folds]
    spread = statistics.stdev if len(folds) > 1 else (lambda _: 0.0)
    return {
        "mcc_mean": round(statistics.fmean(mcc), 4),
        "mcc_std": round(spread(mcc), 4),
        "area_error_mean": round(statistics.fmean(err), 4),
        "area_error_std": round(spread(err), 4),
        "area_error_max_abs": round(max(abs(e) for e in err), 4),
    }


def write_table(report: dict[str, Any], path: Path) -> None:
    lines = [
        "| recipe | folds | MCC mean ± sd | area error mean ± sd | max abs area error | per-fold MCC |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in report["runs"].items():
        s = run["summary"]
        per = ", ".join(f"{f['mcc']:.3f}" for f in run["folds"])
        lines.append(
            f"| {name} | {len(run['folds'])} | {s['mcc_mean']:.3f} ± {s['mcc_std']:.3f} | "
            f"{s['area_error_mean']:+.1%} ± {s['area_error_std']:.1%} | {s['area_error_max_abs']:.1%} | {per} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="name of this recipe in the results")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--gap", type=int, default=16, help="pixels left out on both sides of the test strip")
    parser.add_argument("--scene", type=Path, default=EVEREST / "west_scene.tif", help="the scene to cut")
    parser.add_argument("--mask", type=Path, default=EVEREST / "west_mask.tif", help="its reference mask")
    parser.add_argument(
        "--area",
        default=None,
        help="ROW0:ROW1[,COL0:COL1]: cross-validate inside this window only (default: the whole scene)",
    )
    parser.add_argument(
        "--axis",
        choices=("rows", "cols"),
        default="rows",
        help="cut the folds across rows (horizontal strips) or columns (vertical strips)",
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--patches-per-epoch", type=int, default=48)
    parser.add_argument("--arch", default="UnetPlusPlus")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="TrainConfig field=value (repeatable)")
    parser.add_argument("--segment-set", action="append", default=[], help="segment_scene option=value")
    parser.add_argument(
        "--fold", type=int, action="append", default=None, help="run only this fold (repeatable)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument(
        "--recalibrate", type=Path, default=None, help="work dir of an earlier run: calibrate its folds again"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="with --recalibrate: the threshold")
    parser.add_argument(
        "--ensemble-of",
        type=Path,
        nargs="+",
        default=None,
        help="work dirs of earlier runs: average their folds",
    )
    parser.add_argument(
        "--in-sample",
        action="store_true",
        help="train once on all strips and score each (the fit to terrain seen in training)",
    )
    parser.add_argument(
        "--tune-threshold",
        action="store_true",
        help="with --recalibrate: use the validation-MCC-best threshold",
    )
    args = parser.parse_args()
    if not args.scene.exists():
        raise SystemExit(f"{args.scene} is not here; this benchmark needs the shared Everest data")
    import rasterio
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from geoglacier.device import cpu_has_bf16
    from geoglacier.io.atomic import atomic_output

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cv_everest_"))
    with rasterio.open(args.scene) as src:
        args.area = parse_area(args.area, src.height, src.width)
    regions = fold_regions(args.area, args.axis, args.folds)
    print(
        f"{args.name}: {args.folds} folds across {args.axis} of {args.area}, gap {args.gap}, {args.epochs} epochs x "
        f"{args.patches_per_epoch} patches of {args.patch_size} px; work in {work}",
        flush=True,
    )
    t0 = time.perf_counter()
    if args.ensemble_of:
        folds = [ensemble_fold(k, region, args.ensemble_of, work) for k, region in enumerate(regions)]
    elif args.in_sample:
        folds = run_in_sample(regions, args, work)
    elif args.recalibrate is not None:
        folds = [recalibrate_fold(k, region, args, args.recalibrate) for k, region in enumerate(regions)]
    else:
        folds = [
            run_fold(k, region, args, work)
            for k, region in enumerate(regions)
            if args.fold is None or k in args.fold
        ]
    summary = summarize(folds)
    report = json.loads(args.json.read_text()) if args.json.exists() else {"runs": {}}
    report["runs"][args.name] = {
        "summary": summary,
        "folds": folds,
        "args": json.loads(json.dumps(vars(args), default=str)),
        "wall_minutes": round((time.perf_counter() - t0) / 60, 1),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_bf16(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.json, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    write_table(report, args.json.with_suffix(".md"))
    print(
        f"{args.name}: MCC {summary['mcc_mean']:.3f} ± {summary['mcc_std']:.3f}, area error "
        f"{summary['area_error_mean']:+.1%} ± {summary['area_error_std']:.1%}; wrote {args.json}"
    )


if __name__ == "__main__":
    main()
