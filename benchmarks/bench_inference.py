"""Benchmark ``segment-scene``: speed against MONAI and the bare model, and peak memory vs scene size.

Speed (one synthetic scene, default 1024 x 1024, same random-weights fp32 network,
same window, overlap and batch size for everyone):

* ``bare``: the network alone over the same window grid (no reading, no blending):
  the floor any sliding-window tool can reach at that precision.
* ``monai``: ``monai.inferers.sliding_window_inference(mode="gaussian")`` on the
  whole normalised scene held in memory.
* ``ours fp32`` / ``ours bf16``: :meth:`geoglacier.inference.segment.Segmenter.run` from the
  GeoTIFF on disk to the mask and probability COGs (reading, prefetch, blending and
  COG writing included); ``bf16`` is CPU autocast (``--precision bf16``).

Agreement is measured on the final masks (probability > 0.5) and on the probabilities.

Memory: ``segment-scene`` runs as a subprocess on synthetic scenes of growing size
and its peak RSS is read with ``/usr/bin/time -f %M`` (the child's own high-water mark).
These runs use a lighter network (U-Net / ResNet18, window 256, ``--precision fp32``)
so that the 8192 x 8192 scene finishes in minutes; the buffers do not depend on it.

Usage::

    python benchmarks/bench_inference.py                      # all, defaults
    python benchmarks/bench_inference.py --memory-sizes 1024 2048 --skip-speed

Writes ``benchmarks/results/inference.json`` and ``inference.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from geoglacier.checkpoint import CheckpointMeta, save_checkpoint
from geoglacier.device import cpu_has_bf16
from geoglacier.inference.config import InferenceConfig
from geoglacier.inference.segment import Segmenter
from geoglacier.inference.windows import tile_grid
from geoglacier.model import ModelConfig, build_model
from geoglacier.synthetic import generate_scene

RESULTS = Path(__file__).resolve().parent / "results"
#: Fold 0 of a spatial cross-validation run (benchmarks/cv_everest.py): a U-Net++/ResNet34
#: trained on the other strips of the Everest west scene, and its held-out strip.
CV = Path("/work/cv/baseline/fold0")
BANDS = ("red", "green", "blue", "nir", "ndvi")


def make_checkpoint(path: Path, scene: Path, arch: str, encoder: str, window: int, seed: int = 0) -> Path:
    """A random-weights checkpoint whose normalisation statistics come from ``scene``."""
    with rasterio.open(scene) as ds:
        data = ds.read(out_dtype=np.float32, out_shape=(ds.count, 512, 512))  # decimated read is enough
    mean = tuple(float(v) for v in np.nanmean(data, axis=(1, 2)))
    std = tuple(float(max(v, 1e-3)) for v in np.nanstd(data, axis=(1, 2)))
    torch.manual_seed(seed)
    config = ModelConfig(arch=arch, encoder=encoder)
    meta = CheckpointMeta(model=config, bands=BANDS, mean=mean, std=std, patch_size=window)
    return save_checkpoint(build_model(config, None), meta, path)


def normalised(scene: Path, meta: CheckpointMeta) -> np.ndarray:
    with rasterio.open(scene) as ds:
        data = ds.read(out_dtype=np.float32)
    mean = np.asarray(meta.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(meta.std, dtype=np.float32)[:, None, None]
    return (data - mean) / std


def best_of(repeats: int, fn: Any) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


#: engine, precision, windows. On the default 768 px mosaic with the overlap of
#: :func:`overlap_for` each window size computes the same number of pixels (64 windows
#: of 128, 16 of 256, 4 of 512), so the table compares the cost of a pixel, not the grid.
ENGINE_RUNS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("torch", "fp32", (128, 256, 512)),
    ("onnxruntime", "fp32", (128, 256, 512)),
    ("openvino", "fp32", (128, 256, 512)),
    ("openvino", "bf16", (128, 256)),
    ("torch", "bf16", (256,)),
)


def overlap_for(window: int, overlap_px: int) -> int:
    """``overlap_px``, but at most a quarter of the window (32 px for a 128 px window)."""
    return min(overlap_px, window // 4)


def mosaic(scene: Path, size: int, out: Path) -> Path:
    """A ``size`` x ``size`` GeoTIFF of ``scene``'s content, mirrored out to fill the square.

    Real glacier content at a size where window geometry and batching matter, from a
    hold-out scene of a few hundred pixels.
    """
    with rasterio.open(scene) as ds:
        data = ds.read(out_dtype=np.float32)
        profile = ds.profile
        descriptions = ds.descriptions
    while data.shape[1] < size or data.shape[2] < size:
        data = np.concatenate([data, data[:, ::-1]], axis=1)[:, :size]
        data = np.concatenate([data, data[:, :, ::-1]], axis=2)[:, :, :size]
    data = data[:, :size, :size]
    profile.update(height=size, width=size, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = descriptions
    return out


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def mcc(pred: np.ndarray, ref: np.ndarray) -> float:
    from geoglacier.measure.metrics import mcc_from_counts

    p, r = pred == 1, ref == 1
    tp, fp = int(np.sum(p & r)), int(np.sum(p & ~r))
    fn, tn = int(np.sum(~p & r)), int(np.sum(~p & ~r))
    return float(mcc_from_counts(tp, fp, tn, fn))


def bench_engines(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """engine x precision x window on a mosaic of the hold-out, MONAI timed in the same run."""
    from monai.inferers import sliding_window_inference

    from geoglacier.checkpoint import load_checkpoint
    from geoglacier.inference.engines import cpu_capability
    from geoglacier.inference.export import file_sha256

    # A snapshot: the checkpoint may still be written by a training run, and the export
    # cache goes beside the copy, not into someone else's folder.
    ckpt = work / "model.pth"
    shutil.copyfile(args.model, ckpt)
    sha = file_sha256(ckpt)
    model, meta = load_checkpoint(ckpt)
    scene = mosaic(args.scene, args.size, work / "timing_scene.tif")
    x = torch.from_numpy(normalised(scene, meta))[None]
    overlap_px = args.overlap_px
    ref_mask = read_band(args.reference)
    print(
        f"engines: {args.model} (epoch {meta.epoch}, sha256 {sha[:12]}), hold-out {args.scene} "
        f"{ref_mask.shape[0]}x{ref_mask.shape[1]}, timing scene {args.size}^2 mosaic of it, "
        f"{torch.get_num_threads()} threads, CPU {cpu_capability()}, native bf16 {cpu_has_bf16()}",
        flush=True,
    )

    def monai() -> np.ndarray:
        with torch.inference_mode():
            out = sliding_window_inference(
                x,
                (256, 256),
                4,
                lambda t: torch.sigmoid(model(t) / meta.temperature),
                overlap=0.25,
                mode="gaussian",
                sigma_scale=0.125,
            )
        return out[0, 0].numpy()

    runs: list[dict[str, Any]] = []
    segmenters: dict[tuple[str, str, int], Segmenter] = {}
    patch = int(meta.patch_size)
    plan = [("auto", "auto", (patch,)), *ENGINE_RUNS]  # first: the defaults (window = the patch size)
    if patch not in ENGINE_RUNS[0][2]:
        plan.append(("torch", "fp32", (patch,)))
    for engine, precision, windows in plan:
        for window in windows:
            start = time.perf_counter()
            seg = Segmenter.from_checkpoint(
                ckpt,
                InferenceConfig(
                    window=window,
                    overlap_px=overlap_for(window, overlap_px),
                    batch_size=args.batch_size,
                    device="cpu",
                    precision=precision,
                    engine=engine,
                ),
            )
            load_s = time.perf_counter() - start
            seg.predict_windows(np.zeros((1, meta.band_count, window, window), np.float32))  # warm kernels
            segmenters[engine, precision, window] = seg
            row_extra = {
                "engine_used": seg.engine.name,
                "precision_used": seg.precision,
                "reason": seg.engine_reason,
            }
            runs.append(
                {
                    "engine": engine,
                    "precision": precision,
                    "window": window,
                    "load_s": load_s,
                    "seconds": [],
                    "windows": 0,
                    **row_extra,
                }
            )
    with torch.inference_mode():  # oneDNN builds its kernels on first use: not charged to rep 1
        model(x[..., :256, :256].repeat(4, 1, 1, 1))
    monai_seconds: list[float] = []
    load = [os.getloadavg()[0]]
    monai_prob = None
    for rep in range(args.repeats):  # repetitions interleaved: load changes hit every row alike
        start = time.perf_counter()
        monai_prob = monai()
        monai_seconds.append(time.perf_counter() - start)
        print(f"  rep {rep + 1}: monai {monai_seconds[-1]:6.2f} s", flush=True)
        for row in runs:
            seg = segmenters[row["engine"], row["precision"], row["window"]]
            start = time.perf_counter()
            result = seg.run(
                scene, work / f"mask_{row['engine']}_{row['precision']}_{row['window']}.tif", overwrite=True
            )
            row["seconds"].append(time.perf_counter() - start)
            row["windows"] = result.windows_run
            print(
                f"  rep {rep + 1}: {row['engine']:11s} {row['precision']} {row['window']:5d} "
                f"{row['seconds'][-1]:6.2f} s",
                flush=True,
            )
        load.append(os.getloadavg()[0])
    assert monai_prob is not None
    t_monai = min(monai_seconds)
    baseline = read_band(work / "mask_torch_fp32_256.tif")
    holdout: dict[tuple[str, str, int], np.ndarray] = {}
    timing_masks = {
        (r["engine"], r["precision"], r["window"]): read_band(
            work / f"mask_{r['engine']}_{r['precision']}_{r['window']}.tif"
        )
        for r in runs
        if r["engine"] == "torch" and r["precision"] == "fp32"
    }
    for row in runs:
        key = (row["engine"], row["precision"], row["window"])
        seg = segmenters[key]
        mask = read_band(work / f"mask_{key[0]}_{key[1]}_{key[2]}.tif")
        row["best_s"] = min(row["seconds"])
        row["ratio_to_monai"] = row["best_s"] / t_monai
        row["ratio_to_monai_per_rep"] = [s / m for s, m in zip(row["seconds"], monai_seconds, strict=True)]
        row["mask_agreement_vs_torch_fp32_256"] = float(np.mean(mask == baseline))
        out = work / f"holdout_{key[0]}_{key[1]}_{key[2]}.tif"
        seg.run(args.scene, out, overwrite=True)
        holdout[key] = read_band(out)
        row["holdout_mcc"] = mcc(holdout[key], ref_mask)
        row["pixels_computed_per_scene_pixel"] = row["windows"] * row["window"] ** 2 / args.size**2
    base_holdout = holdout["torch", "fp32", 256]
    mcc_of = {(r["engine"], r["precision"], r["window"]): r["holdout_mcc"] for r in runs}
    for row in runs:
        key = (row["engine"], row["precision"], row["window"])
        same_window = ("torch", "fp32", row["window"])
        row["holdout_mask_agreement_vs_torch_fp32_256"] = float(np.mean(holdout[key] == base_holdout))
        row["mask_agreement_vs_torch_fp32_same_window"] = float(
            np.mean(read_band(work / f"mask_{key[0]}_{key[1]}_{key[2]}.tif") == timing_masks[same_window])
        )
        row["holdout_mask_agreement_vs_torch_fp32_same_window"] = float(
            np.mean(holdout[key] == holdout[same_window])
        )
        row["holdout_mcc_change"] = row["holdout_mcc"] - mcc_of[same_window]
        row["holdout_mcc_change_vs_torch_fp32_256"] = row["holdout_mcc"] - mcc_of["torch", "fp32", 256]
    monai_mask = (monai_prob > meta.threshold).astype(np.uint8)
    return {
        "checkpoint": f"{args.model} ({meta.model.arch}/{meta.model.encoder}, epoch {meta.epoch}, "
        f"val MCC {meta.metrics.get('val_mcc', float('nan')):.3f}, sha256 {sha[:16]})",
        "holdout": f"{args.scene} with reference {args.reference} ({ref_mask.shape[0]}x{ref_mask.shape[1]} px)",
        "timing_scene": f"{args.size}x{args.size} mosaic of the hold-out scene (mirrored copies), tiled GeoTIFF",
        "overlap_px": overlap_px,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "cpu_capability": cpu_capability(),
        "cpu_native_bf16": cpu_has_bf16(),
        "repeats": args.repeats,
        "load_average_1min": load,
        "monai": {
            "what": "monai.inferers.sliding_window_inference, same network (torch NCHW fp32), window 256, "
            "overlap 0.25, batch 4, gaussian, normalised scene in memory",
            "seconds": monai_seconds,
            "best_s": t_monai,
            "mask_agreement_vs_torch_fp32_256": float(np.mean(monai_mask == baseline)),
        },
        "runs": runs,
    }


def peak_rss_run(cmd: list[str], work: Path) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RSS in MiB).

    ``/usr/bin/time -f %M`` reports the child's own high-water mark. (``os.wait4``
    from this process would not: a forked child starts with the parent's resident
    pages, and Linux keeps that mark across ``exec``.) Without ``/usr/bin/time`` the
    RSS is polled with psutil every 20 ms, which can miss short peaks.
    """
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    report = work / "maxrss.txt"
    full = [timer, "-f", "%M", "-o", str(report), *cmd] if timer else cmd
    start = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    polled = 0.0
    if not timer:
        import psutil

        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                polled = max(polled, ps.memory_info().rss / 2**20)
            except psutil.Error:
                break
            time.sleep(0.02)
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}"
        )
    if timer:
        return seconds, int(report.read_text().split()[-1]) / 1024.0  # KiB
    return seconds, polled


def bench_memory(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rows = []
    ckpt = None
    for size in args.memory_sizes:
        scene, truth = work / f"mem_{size}.tif", work / f"mem_{size}_truth.tif"
        start = time.perf_counter()
        generate_scene(scene, truth, height=size, width=size, seed=1, overwrite=True)
        gen_s = time.perf_counter() - start
        if ckpt is None:
            ckpt = make_checkpoint(work / "mem.pth", scene, args.memory_arch, args.memory_encoder, 256)
        out = work / f"mem_{size}_mask.tif"
        cmd = [
            sys.executable,
            "-c",
            "from geoglacier.cli.segment_scene import segment_scene; segment_scene(prog_name='segment-scene')",
            str(scene),
            "--model",
            str(ckpt),
            "--out",
            str(out),
            "--window",
            "256",
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
        seconds, rss = peak_rss_run(cmd, work)
        with rasterio.open(out) as ds:
            assert (ds.height, ds.width) == (size, size)
        windows = len(tile_grid(size, size, 256, args.overlap))
        rows.append(
            {"size": size, "windows": windows, "seconds": seconds, "peak_rss_mib": rss, "generate_s": gen_s}
        )
        print(
            f"  memory {size:>6}^2: {windows:5d} windows, {seconds:7.1f} s, peak RSS {rss:7.1f} MiB",
            flush=True,
        )
        for path in (scene, truth, out):
            path.unlink(missing_ok=True)
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["rss_ratio_to_smallest"] = row["peak_rss_mib"] / base
    return {
        "model": f"{args.memory_arch}/{args.memory_encoder}, random weights",
        "command": "segment-scene --window 256 --precision fp32 --device cpu "
        f"--overlap {args.overlap} --batch-size {args.batch_size}",
        "runs": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["# segment-scene inference benchmark", "", f"Machine: {result['machine']}", ""]
    eng = result.get("engines")
    if eng:
        m = eng["monai"]
        lines += [
            "## Engine x precision x window (`Segmenter.run`: scene file to mask COG)",
            "",
            f"Checkpoint: {eng['checkpoint']}. Hold-out: {eng['holdout']}. Timing scene: {eng['timing_scene']}. "
            f"Overlap {eng['overlap_px']} px (32 px for 128 px windows), batch {eng['batch_size']}, {eng['threads']} threads, "
            f"CPU capability {eng['cpu_capability']}, native bf16 {eng['cpu_native_bf16']}. "
            f"Best of {eng['repeats']} interleaved repetitions; 1-min load average through the run "
            f"{', '.join(f'{v:.1f}' for v in eng['load_average_1min'])} (2 cores shared with a training run: "
            "absolute seconds are noisy, ratios measured in the same run hold better).",
            "",
            f"MONAI: {m['what']}: best {m['best_s']:.2f} s "
            f"({', '.join(f'{v:.2f}' for v in m['seconds'])}); its mask agrees with torch fp32 / 256 on "
            f"{100 * m['mask_agreement_vs_torch_fp32_256']:.3f} % of pixels.",
            "",
            "Mask agreement and MCC change are given against torch fp32 at the same window (what the "
            "engine and precision change) and against torch fp32 at window 256 (what the window changes).",
            "",
            "Load s: building the engine from the checkpoint (the first onnxruntime and OpenVINO rows include "
            "the export into the cache; later ones reuse it).",
            "",
            "| engine | precision | window | windows | px computed / scene px | load s | s (best) | / MONAI | "
            "/ MONAI per rep | agreement vs torch fp32 same window (timing / hold-out) | "
            "agreement vs torch fp32 256 (timing / hold-out) | hold-out MCC | MCC change vs same window / vs 256 |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in eng["runs"]:
            engine = r["engine"] if r["engine"] != "auto" else f"**auto: {r['engine_used']}**"
            precision = r["precision"] if r["precision"] != "auto" else f"**auto: {r['precision_used']}**"
            lines.append(
                f"| {engine} | {precision} | {r['window']} | {r['windows']} | "
                f"{r['pixels_computed_per_scene_pixel']:.2f} | {r['load_s']:.1f} | {r['best_s']:.2f} | {r['ratio_to_monai']:.2f} | "
                f"{' '.join(f'{v:.2f}' for v in r['ratio_to_monai_per_rep'])} | "
                f"{100 * r['mask_agreement_vs_torch_fp32_same_window']:.2f} % / "
                f"{100 * r['holdout_mask_agreement_vs_torch_fp32_same_window']:.2f} % | "
                f"{100 * r['mask_agreement_vs_torch_fp32_256']:.2f} % / "
                f"{100 * r['holdout_mask_agreement_vs_torch_fp32_256']:.2f} % | {r['holdout_mcc']:.4f} | "
                f"{r['holdout_mcc_change']:+.4f} / {r['holdout_mcc_change_vs_torch_fp32_256']:+.4f} |"
            )
        lines.append("")
    memory = result.get("memory")
    if memory:
        lines += [
            f"## Peak memory of `{memory['command']}` ({memory['model']})",
            "",
            "Peak RSS of the whole process, `import torch` (a CUDA build: about 650 MiB here) included. "
            "What grows with the scene is bounded by its shorter side: the block of windows being "
            "processed and the one prefetched (bands x 1024 x 1024 float32 each), the output tiles open "
            "along the front of processed blocks (a band of about 600-1000 px across the shorter side, "
            "9 bytes a pixel) and GDAL's block cache, capped at 64 MiB during a run.",
            "",
            "| scene | windows | seconds | peak RSS (MiB) | / smallest |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in memory["runs"]:
            lines.append(
                f"| {row['size']}x{row['size']} | {row['windows']} | {row['seconds']:.1f} | "
                f"{row['peak_rss_mib']:.0f} | {row['rss_ratio_to_smallest']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=CV / "model.pth", help="a trained checkpoint")
    parser.add_argument("--scene", type=Path, default=CV / "test_scene.tif", help="held-out scene")
    parser.add_argument("--reference", type=Path, default=CV / "test_mask.tif", help="its reference mask")
    parser.add_argument("--size", type=int, default=768, help="edge of the timing mosaic")
    parser.add_argument("--overlap-px", type=int, default=64)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--memory-arch", default="Unet")
    parser.add_argument("--memory-encoder", default="resnet18")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    result: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    previous = args.out / "inference.json"
    if previous.exists():  # keep the sections this run skips
        kept = json.loads(previous.read_text())
        for key in ("engines", "memory"):
            if key in kept:
                result[key] = kept[key]
    work = Path(tempfile.mkdtemp(prefix="geoglacier-bench-"))
    try:
        if not args.skip_speed:
            result["engines"] = bench_engines(args, work)
        if not args.skip_memory:
            result["memory"] = bench_memory(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / "inference.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
