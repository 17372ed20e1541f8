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
from geoglacier.inference.segment import InferenceConfig, Segmenter, cpu_has_bf16
from geoglacier.inference.windows import tile_grid
from geoglacier.model import ModelConfig, build_model
from geoglacier.synthetic import generate_scene

RESULTS = Path(__file__).resolve().parent / "results"
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


def bench_speed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from monai.inferers import sliding_window_inference

    from geoglacier.checkpoint import load_checkpoint

    size, window, overlap, batch = args.size, args.window, args.overlap, args.batch_size
    scene, truth = work / "speed_scene.tif", work / "speed_truth.tif"
    generate_scene(scene, truth, height=size, width=size, seed=0, overwrite=True)
    ckpt = make_checkpoint(work / "speed.pth", scene, args.arch, args.encoder, window)
    model, meta = load_checkpoint(ckpt)
    x = torch.from_numpy(normalised(scene, meta))[None]
    offsets = tile_grid(size, size, window, overlap)

    def bare() -> None:
        with torch.inference_mode():
            for k in range(0, len(offsets), batch):
                chunk = offsets[k : k + batch]
                torch.sigmoid(model(torch.cat([x[..., r : r + window, c : c + window] for r, c in chunk])))

    def monai() -> np.ndarray:
        with torch.inference_mode():
            out = sliding_window_inference(
                x,
                (window, window),
                batch,
                lambda t: torch.sigmoid(model(t)),
                overlap=overlap,
                mode="gaussian",
                sigma_scale=0.125,
            )
        return out[0, 0].numpy()

    def ours(precision: str, tag: str) -> np.ndarray:
        seg = Segmenter(
            load_checkpoint(ckpt)[0],
            meta,
            InferenceConfig(
                window=window, overlap=overlap, batch_size=batch, device="cpu", precision=precision
            ),
        )
        mask, prob = work / f"mask_{tag}.tif", work / f"prob_{tag}.tif"
        seg.run(scene, mask, probabilities=prob, overwrite=True)
        with rasterio.open(prob) as ds:
            return ds.read(1)

    # One batch at each precision first: oneDNN builds its kernels on first use, which
    # should not be charged to whichever run happens to go first.
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            warm = model.to(memory_format=fmt)
            probe = x[..., :window, :window].repeat(batch, 1, 1, 1).contiguous(memory_format=fmt)
            warm(probe)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                warm(probe)
        model.to(memory_format=torch.contiguous_format)

    print(
        f"speed: {size}x{size}, {args.arch}/{args.encoder}, window {window}, overlap {overlap}, batch {batch}, "
        f"{len(offsets)} windows, {torch.get_num_threads()} threads",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    t_bare, _ = best_of(args.repeats, bare)
    print(f"  bare model     {t_bare:7.2f} s", flush=True)
    t_monai, p_monai = best_of(args.repeats, monai)
    print(f"  monai          {t_monai:7.2f} s", flush=True)
    t_fp32, p_fp32 = best_of(args.repeats, lambda: ours("fp32", "fp32"))
    print(f"  ours fp32      {t_fp32:7.2f} s", flush=True)
    t_bf16, p_bf16 = best_of(args.repeats, lambda: ours("bf16", "bf16"))
    print(f"  ours bf16      {t_bf16:7.2f} s", flush=True)

    def agree(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
        return {
            "mask_agreement": float(np.mean((a > 0.5) == (b > 0.5))),
            "prob_max_abs_diff": float(np.max(np.abs(a - b))),
            "prob_mean_abs_diff": float(np.mean(np.abs(a - b))),
        }

    return {
        "scene": f"{size}x{size} synthetic (geoglacier.synthetic.generate_scene, seed 0)",
        "model": f"{args.arch}/{args.encoder}, random weights, fp32",
        "window": window,
        "overlap": overlap,
        "batch_size": batch,
        "windows": len(offsets),
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_bf16(),
        "repeats": args.repeats,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "seconds": {"bare": t_bare, "monai": t_monai, "ours_fp32": t_fp32, "ours_bf16": t_bf16},
        "ratio_to_monai": {
            "ours_fp32": t_fp32 / t_monai,
            "ours_bf16": t_bf16 / t_monai,
            "bare": t_bare / t_monai,
        },
        "glacier_fraction_ours_fp32": float(np.mean(p_fp32 > 0.5)),
        "agreement": {
            "ours_fp32_vs_monai": agree(p_fp32, p_monai),
            "ours_bf16_vs_monai": agree(p_bf16, p_monai),
            "ours_bf16_vs_ours_fp32": agree(p_bf16, p_fp32),
        },
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
    speed = result.get("speed")
    if speed:
        s, r = speed["seconds"], speed["ratio_to_monai"]
        lines += [
            f"## Speed: {speed['scene']}",
            "",
            f"{speed['model']}; window {speed['window']}, overlap {speed['overlap']}, batch {speed['batch_size']}, "
            f"{speed['windows']} windows, {speed['threads']} torch threads, best of {speed['repeats']}. "
            f"CPU native bf16: {speed['cpu_native_bf16']}. 1-min load average before/after: "
            f"{speed['load_average_1min']['before']:.1f} / {speed['load_average_1min']['after']:.1f} "
            "(the machine is shared: timings are noisy).",
            "",
            "| run | seconds | / MONAI |",
            "|---|---:|---:|",
            f"| bare model over the same windows (no I/O, no blending) | {s['bare']:.2f} | {r['bare']:.2f} |",
            f"| MONAI sliding_window_inference (gaussian, in memory) | {s['monai']:.2f} | 1.00 |",
            f"| segment-scene engine, fp32 (file to COGs) | {s['ours_fp32']:.2f} | {r['ours_fp32']:.2f} |",
            f"| segment-scene engine, --precision bf16 (file to COGs) | {s['ours_bf16']:.2f} | {r['ours_bf16']:.2f} |",
            "",
            "| comparison | masks agree | max abs prob diff | mean abs prob diff |",
            "|---|---:|---:|---:|",
        ]
        for name, a in speed["agreement"].items():
            lines.append(
                f"| {name} | {100 * a['mask_agreement']:.3f} % | {a['prob_max_abs_diff']:.4f} | "
                f"{a['prob_mean_abs_diff']:.5f} |"
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
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--arch", default="UnetPlusPlus")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
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
        for key in ("speed", "memory"):
            if key in kept:
                result[key] = kept[key]
    work = Path(tempfile.mkdtemp(prefix="geoglacier-bench-"))
    try:
        if not args.skip_speed:
            result["speed"] = bench_speed(args, work)
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
