"""Train the default recipe on the real Everest west scene for a fixed wall-clock budget.

The scene and mask (``../shared/data/everest``) are linked into a scene layout
(``images/west.tif`` + ``masks/west.tif``) in a work folder; ``make_datasets`` then
holds out whole blocks of the scene for validation (a spatial hold-out, blocks of
``2 * patch_size``). Training runs epoch after epoch until the next epoch would not
fit in ``--minutes``; every epoch prints its seconds and validation MCC.

Results go to ``benchmarks/results/train_everest.json`` under ``runs["patch<P>"]``, so
a ``--patch-size 64`` and a ``--patch-size 256`` run sit side by side in one file.

    .venv/bin/python benchmarks/train_everest.py --minutes 30
    .venv/bin/python benchmarks/train_everest.py --minutes 30 --patch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVEREST = ROOT.parent / "shared" / "data" / "everest"
RESULTS = ROOT / "benchmarks" / "results" / "train_everest.json"


def link_scene_layout(work: Path) -> Path:
    """``work/data/images/west.tif`` and ``masks/west.tif`` as symlinks to the shared files."""
    data = work / "data"
    for sub, name in (("images", "west_scene.tif"), ("masks", "west_mask.tif")):
        (data / sub).mkdir(parents=True, exist_ok=True)
        link = data / sub / "west.tif"
        if not link.exists():
            link.symlink_to(EVEREST / name)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget for training")
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--arch", default="UnetPlusPlus")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--encoder-weights", default="none", help="none here: no network for imagenet")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--patches-per-epoch", type=int, default=None)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep checkpoint and metrics here")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not (EVEREST / "west_scene.tif").exists():
        raise SystemExit(f"{EVEREST} is not here; this benchmark needs the shared Everest data")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from geoglacier.io.atomic import atomic_output
    from geoglacier.training.config import TrainConfig
    from geoglacier.training.datasets import make_datasets
    from geoglacier.training.loop import train

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="train_everest_"))
    work.mkdir(parents=True, exist_ok=True)
    data = link_scene_layout(work)
    config = TrainConfig(
        arch=args.arch,
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        epochs=100_000,  # the budget ends the run
        batch_size=args.batch_size,
        lr=args.lr,
        patch_size=args.patch_size,
        patches_per_epoch=args.patches_per_epoch,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_workers=args.num_workers,
        device=args.device,
    )
    split = make_datasets(data, args.patch_size, args.val_fraction, args.seed, args.patches_per_epoch)
    val_pixels = int(sum(split.val[i]["valid"].sum() for i in range(len(split.val))))
    total_pixels = int(np.prod(split.regions.shapes[0])) if split.regions is not None else 0
    print(
        f"Everest west {split.regions.shapes[0] if split.regions else '?'} px, patch {args.patch_size}: "
        f"{split.patches_per_epoch} training windows per epoch, {len(split.val)} validation windows "
        f"({val_pixels / max(total_pixels, 1):.0%} of the scene held out)"
    )
    budget = args.minutes * 60.0
    t0 = time.perf_counter()

    def stop(row: dict[str, float]) -> bool:
        elapsed = time.perf_counter() - t0
        print(
            f"  epoch {int(row['epoch'])}: {row['seconds']:.1f} s, loss {row['loss']:.4f}, "
            f"train MCC {row['train_mcc']:.4f}, val MCC {row['val_mcc']:.4f} ({elapsed / 60:.1f} min)",
            flush=True,
        )
        return elapsed + row["seconds"] > budget

    result = train(data, work / "model.pth", config, overwrite=True, stop=stop, log=lambda _: None)
    wall = time.perf_counter() - t0
    seconds = [row["seconds"] for row in result.history]
    run = {
        "minutes_budget": args.minutes,
        "wall_seconds": round(wall, 1),
        "epochs": result.epochs,
        "seconds_per_epoch_mean": round(float(np.mean(seconds)), 2),
        "seconds_per_epoch_first": round(seconds[0], 2),
        "best_epoch": result.best_epoch,
        "best_val_mcc": round(result.best_val_mcc, 4),
        "final_val_mcc": round(result.final["val_mcc"], 4),
        "train_windows_per_epoch": split.patches_per_epoch,
        "val_windows": len(split.val),
        "val_fraction_of_scene": round(val_pixels / max(total_pixels, 1), 4),
        "config": config.to_dict(),
        "history": result.history,
        "device": str(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        if args.device == "auto"
        else args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "checkpoint": str(work / "model.pth"),
    }
    report = json.loads(args.json.read_text()) if args.json.exists() else {}
    report.setdefault("runs", {})[f"patch{args.patch_size}"] = run
    report["scene"] = str(EVEREST / "west_scene.tif")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.json, overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{result.epochs} epochs in {wall / 60:.1f} min ({run['seconds_per_epoch_mean']} s/epoch); "
        f"best val MCC {result.best_val_mcc:.4f} at epoch {result.best_epoch}; wrote {args.json}"
    )


if __name__ == "__main__":
    main()
