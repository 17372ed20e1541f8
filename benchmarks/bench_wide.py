"""Benchmark ``segment-scene`` peak memory on very wide scenes (1024 px tall, up to 65536 px wide).

Each scene is a seeded synthetic 5-band float32 GeoTIFF
(:func:`geoglacier.synthetic.generate_scene`, written block by block). ``segment-scene``
runs on it in a fresh subprocess through the real CLI path (reading, normalisation,
model, blending, COG writing, overviews), and the child's own peak RSS is read with
``/usr/bin/time -f %M`` (psutil polling where that tool is missing; see
:func:`bench_inference.peak_rss_run`).

The model is the cheapest configuration that still runs the whole path: Linknet with a
MobileNetV2 encoder, random weights (``encoder_weights=None``), window 256, fp32 on CPU,
one torch thread. A U-Net++/ResNet34 takes about 20 s per 1024 x 1024 on two cores,
which would make the 65536-wide scene take hours; the blending buffers, input blocks
and COG writing, which are what could grow with the width, do not depend on the network.

``--baseline-checkout PATH`` also runs every scene with another checkout of geoglacier
(for example the main branch, before block-wise blending) for comparison.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_wide.py
    python benchmarks/bench_wide.py --widths 1024 16384 --baseline-checkout ../main

Writes ``benchmarks/results/wide.json`` and ``wide.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inference import make_checkpoint, peak_rss_run  # noqa: E402

from geoglacier.inference.config import DEFAULT_BLOCK_SIZE  # noqa: E402
from geoglacier.inference.windows import tile_grid  # noqa: E402
from geoglacier.synthetic import generate_scene  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def segment_cmd(scene: Path, ckpt: Path, out: Path, args: argparse.Namespace) -> list[str]:
    """The segment-scene command line, run through the installed CLI module."""
    return [
        sys.executable,
        "-c",
        "from geoglacier.cli.segment_scene import segment_scene; segment_scene(prog_name='segment-scene')",
        str(scene),
        "--model",
        str(ckpt),
        "--out",
        str(out),
        "--window",
        str(args.window),
        "--overlap",
        str(args.overlap),
        "--batch-size",
        str(args.batch_size),
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--no-progress",
        "--overwrite",
    ]


def git_commit(path: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(cmd: list[str], work: Path, checkout: Path) -> tuple[float, float]:
    """Peak RSS of ``cmd`` with ``checkout``'s geoglacier first on the path."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)
    old_cwd = os.getcwd()
    os.chdir(checkout)  # ``python -c`` puts the working directory first on sys.path
    try:
        return peak_rss_run(cmd, work)
    finally:
        os.chdir(old_cwd)
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    ckpt: Path | None = None
    for width in args.widths:
        scene, truth = work / f"wide_{width}.tif", work / f"wide_{width}_truth.tif"
        start = time.perf_counter()
        generate_scene(scene, truth, height=args.height, width=width, seed=3, overwrite=True)
        gen_s = time.perf_counter() - start
        truth.unlink()
        if ckpt is None:
            ckpt = make_checkpoint(work / "wide.pth", scene, args.arch, args.encoder, args.window)
        row: dict[str, Any] = {
            "height": args.height,
            "width": width,
            "windows": len(tile_grid(args.height, width, args.window, args.overlap)),
            "generate_s": gen_s,
        }
        checkouts = {"ours": ROOT}
        if args.baseline_checkout:
            checkouts["baseline"] = args.baseline_checkout
        for name, checkout in checkouts.items():
            out = work / f"wide_{width}_{name}_mask.tif"
            seconds, rss = run_one(segment_cmd(scene, ckpt, out, args), work, checkout)
            with rasterio.open(out) as ds:
                assert (ds.height, ds.width) == (args.height, width)
            out.unlink()
            row[f"{name}_seconds"] = seconds
            row[f"{name}_peak_rss_mib"] = rss
            print(
                f"  {args.height}x{width:<6} {name:>8}: {row['windows']:5d} windows, {seconds:7.1f} s, "
                f"peak RSS {rss:7.1f} MiB",
                flush=True,
            )
        scene.unlink()
        rows.append(row)
    for name in ("ours", "baseline"):
        key = f"{name}_peak_rss_mib"
        if key in rows[0]:
            for row in rows:
                row[f"{name}_rss_ratio_to_first"] = row[key] / rows[0][key]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "model": f"{args.arch}/{args.encoder}, random weights (encoder_weights=None)",
        "command": " ".join(segment_cmd(Path("SCENE"), Path("MODEL"), Path("OUT"), args)[3:]),
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "block_size": DEFAULT_BLOCK_SIZE,
        "ours_commit": git_commit(ROOT),
        "baseline_commit": (args.baseline_label or git_commit(args.baseline_checkout))
        if args.baseline_checkout
        else None,
        "load_average_1min_after": os.getloadavg()[0],
        "runs": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    baseline = result["baseline_commit"] is not None
    lines = [
        "# segment-scene peak memory on wide scenes",
        "",
        f"Machine: {result['machine']}; OMP_NUM_THREADS={result['torch_threads']}; "
        f"1-min load average after the runs: {result['load_average_1min_after']:.1f} (shared machine: "
        "seconds are noisy, RSS is not).",
        "",
        f"`segment-scene {result['command']}` with {result['model']} (the cheapest network that "
        "runs the real path; what could grow with the width does not depend on it). Peak RSS of the "
        "whole child process, `import torch` included; each run in a fresh subprocess. "
        f"geoglacier at {result['ours_commit']} (blocks of {result['block_size']} px, tiles blended "
        "and written as soon as final)"
        + (
            f"; baseline: {result['baseline_commit']} (strips of window rows across the full width)."
            if baseline
            else "."
        ),
        "",
    ]
    head = "| scene | windows | seconds | peak RSS (MiB) | / first |"
    rule = "|---:|---:|---:|---:|---:|"
    if baseline:
        head += " baseline seconds | baseline peak RSS (MiB) | baseline / first |"
        rule += "---:|---:|---:|"
    lines += [head, rule]
    for row in result["runs"]:
        line = (
            f"| {row['height']}x{row['width']} | {row['windows']} | {row['ours_seconds']:.1f} | "
            f"{row['ours_peak_rss_mib']:.0f} | {row['ours_rss_ratio_to_first']:.2f} |"
        )
        if baseline:
            line += (
                f" {row['baseline_seconds']:.1f} | {row['baseline_peak_rss_mib']:.0f} | "
                f"{row['baseline_rss_ratio_to_first']:.2f} |"
            )
        lines.append(line)
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 16384, 65536])
    parser.add_argument("--arch", default="Linknet")
    parser.add_argument("--encoder", default="mobilenet_v2")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--baseline-checkout", type=Path, default=None)
    parser.add_argument(
        "--baseline-label", default=None, help="what the baseline is (default: its git commit)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)"
    )
    args = parser.parse_args()
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="bench_wide_") as tmp:
            result = bench(args, Path(tmp))
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = bench(args, args.workdir)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "wide.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (RESULTS / "wide.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
