"""Training input pipeline benchmark: patches per second from a large GeoTIFF.

One run, one file, one seeded list of random 256 x 256 windows, every reader timed on
the same windows:

- plain rasterio windowed reads (the disk-and-decode baseline);
- rioxarray + dask, one ``.values`` per window (the naive lazy way);
- our ``ScenePatchDataset`` without and with augmentation;
- a DataLoader (augmentation on, batch 4) with 0, 1 and 2 workers;
- TorchGeo's RasterDataset + RandomGeoSampler when TorchGeo is installed;
- Albumentations alone on an in-memory patch, for reference.

Each reader is timed twice: ``cold`` opens fresh file handles (GDAL's block cache is
per handle, so every tile is decompressed once, as in a first epoch or a scene larger
than the cache) and ``warm`` repeats the same windows on the same handles (all tiles
cached: only copying and our own per-patch work remain). DataLoaders are ``cold`` on
their first epoch and ``warm`` on a second epoch with persistent workers.

Then per-band normalisation statistics of a big scene are computed lazily with dask
(``scene_statistics``) while a thread samples the process's RSS, to show the memory
stays bounded. The test scenes are generated once and cached under ``--workdir``.

Usage::

    python benchmarks/bench_loader.py            # ~2-3 minutes on 2 cores
    python benchmarks/bench_loader.py --big      # statistics on a 20000 x 20000 scene

Writes ``benchmarks/results/loader.json`` and ``benchmarks/results/loader.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PATCH = 256


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ensure_scene(workdir: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """A ``size`` x ``size`` 5-band float32 deflate GeoTIFF with 512-px tiles, made once."""
    scene = workdir / f"scene_{size}.tif"
    mask = workdir / f"mask_{size}.tif"
    if scene.exists() and mask.exists():
        return scene, mask
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"generating {scene} (once) ...", flush=True)
    try:
        from geoglacier.synthetic import generate_scene
    except ImportError:
        generate_scene = None
    if generate_scene is not None:
        generate_scene(scene, mask, height=size, width=size, seed=seed, block_size=1024, overwrite=True)
    else:  # smooth random fields written tile by tile
        import rasterio

        rng = np.random.default_rng(seed)
        profile = dict(
            driver="GTiff",
            height=size,
            width=size,
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="deflate",
            crs="EPSG:32645",
            transform=rasterio.Affine(30, 0, 0, 0, -30, 0),
        )
        with (
            rasterio.open(scene, "w", count=5, dtype="float32", **profile) as dst,
            rasterio.open(mask, "w", count=1, dtype="uint8", **profile) as mdst,
        ):
            for _, win in dst.block_windows(1):
                h, w = int(win.height), int(win.width)
                base = rng.normal(0, 1, (5, h // 16 + 2, w // 16 + 2)).astype(np.float32)
                block = np.kron(base, np.ones((16, 16), np.float32))[:, :h, :w] * 40 + 120
                dst.write(block, window=win)
                mdst.write((block[:1] > 120).astype(np.uint8), window=win)
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return scene, mask


def cpu_seconds() -> float:
    """CPU time of this process and its live children (DataLoader workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def rate(fn: Callable[[], int]) -> tuple[float, float]:
    """``(patches per second, CPU milliseconds per patch)`` of one pass."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    n = fn()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return n / wall, cpu / n * 1e3


def bench_readers(scene: Path, mask: Path, windows: np.ndarray, workers: list[int]) -> list[dict]:
    import rasterio
    import torch
    from rasterio.windows import Window

    from geoglacier.io.layouts import ScenePair
    from geoglacier.io.scene import inspect_scene, open_scene
    from geoglacier.training.augment import build_augment
    from geoglacier.training.datasets import ScenePatchDataset, seed_worker
    from geoglacier.training.normalization import Normalization

    info = inspect_scene(scene)
    pair = ScenePair(scene.stem, scene, mask, info)
    norm = Normalization((100.0,) * 5, (50.0,) * 5)
    n = len(windows)
    rows: list[dict] = []

    def record(name: str, cold: tuple[float, float], warm: tuple[float, float] | None) -> None:
        rows.append(
            {
                "reader": name,
                "cold": cold[0],
                "warm": warm[0] if warm else None,
                "cold_cpu_ms": cold[1],
                "warm_cpu_ms": warm[1] if warm else None,
            }
        )
        warm_s = f"{warm[0]:9.1f} {warm[1]:9.2f}" if warm is not None else f"{'-':>9s} {'-':>9s}"
        print(f"  {name:58s} {cold[0]:9.1f} {cold[1]:9.2f} {warm_s}", flush=True)

    print(f"  {'reader':58s} {'cold/s':>9s} {'cpu ms':>9s} {'warm/s':>9s} {'cpu ms':>9s}")

    with rasterio.open(scene) as ds:

        def plain() -> int:
            for _, r, c in windows:
                ds.read(window=Window(int(c), int(r), PATCH, PATCH), out_dtype=np.float32)
            return n

        record("plain rasterio windowed reads", rate(plain), rate(plain))

    da = open_scene(scene, chunks=512)

    def dask_values() -> int:
        for _, r, c in windows:
            _ = da[:, r : r + PATCH, c : c + PATCH].values
        return n

    record("rioxarray + dask, .values per window (chunks 512)", rate(dask_values), rate(dask_values))

    for name, aug in (("ScenePatchDataset, no augmentation", None), ("ScenePatchDataset + augmentation", 0)):
        dset = ScenePatchDataset(
            [pair], windows, PATCH, norm, build_augment(aug) if aug is not None else None
        )

        def items(dset: ScenePatchDataset = dset) -> int:
            for i in range(n):
                dset[i]
            return n

        record(name, rate(items), rate(items))
        dset.close()

    for nw in workers:
        dset = ScenePatchDataset([pair], windows, PATCH, norm, build_augment(0))
        loader = torch.utils.data.DataLoader(
            dset,
            batch_size=4,
            shuffle=False,
            num_workers=nw,
            worker_init_fn=seed_worker,
            persistent_workers=nw > 0,
            generator=torch.Generator().manual_seed(0),
        )

        def epoch(loader: torch.utils.data.DataLoader = loader) -> int:
            return sum(int(b["image"].shape[0]) for b in loader)

        cold = rate(epoch)
        warm = rate(epoch)
        record(f"DataLoader + augmentation, batch 4, {nw} worker(s)", cold, warm)
        del loader
        dset.close()

    try:
        import torchgeo  # noqa: F401
    except ImportError:
        print("  TorchGeo not installed: skipped")
    else:
        rows.extend(bench_torchgeo(scene, n, record))

    patch = np.random.default_rng(0).normal(size=(PATCH, PATCH, 5)).astype(np.float32)
    pmask = (patch[..., 0] > 0).astype(np.uint8)
    aug = build_augment(0)

    def aug_only() -> int:
        for _ in range(n):
            aug(patch, pmask)
        return n

    record("Albumentations alone on a 256x256x5 float patch", rate(aug_only), None)
    return rows


def bench_torchgeo(scene: Path, n: int, record: Callable[..., None]) -> list[dict]:
    """TorchGeo RasterDataset + RandomGeoSampler (only when TorchGeo is installed)."""
    from torchgeo.datasets import RasterDataset
    from torchgeo.samplers import RandomGeoSampler

    class Scene(RasterDataset):
        filename_glob = scene.name
        is_image = True

    ds = Scene(paths=str(scene.parent))
    sampler = RandomGeoSampler(ds, size=PATCH, length=n, units=1)  # units=PIXELS

    def run() -> int:
        for q in sampler:
            ds[q]
        return n

    record("TorchGeo RasterDataset + RandomGeoSampler", rate(run), rate(run))
    return []


def bench_transport(batch: int = 4, reps: int = 50) -> dict:
    """Milliseconds to collate a batch of patches into ordinary vs shared memory.

    DataLoader workers hand batches to the main process through shared memory; where
    the kernel backs it with 4 KiB pages (no transparent huge pages for shmem) every
    page is faulted in on first write, which can cost more than reading the patch.
    """
    import torch

    xs = [
        torch.from_numpy(np.random.default_rng(i).random((5, PATCH, PATCH), dtype=np.float32))
        for i in range(batch)
    ]
    numel = batch * xs[0].numel()

    def plain() -> None:
        torch.stack(xs)

    def shared() -> None:
        storage = xs[0].untyped_storage()._new_shared(numel * 4)
        torch.stack(xs, out=xs[0].new(storage).resize_(batch, *xs[0].shape))

    out = {}
    for name, fn in (("ordinary", plain), ("shared", shared)):
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        out[f"{name}_ms_per_batch"] = (time.perf_counter() - t0) / reps * 1e3
    print(
        f"  collate a batch of {batch}: {out['ordinary_ms_per_batch']:.2f} ms into ordinary memory, "
        f"{out['shared_ms_per_batch']:.2f} ms into shared memory (what a worker does)",
        flush=True,
    )
    return out


def bench_stats(scene: Path) -> dict:
    import psutil

    from geoglacier.training.normalization import scene_statistics

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.02)

    import rasterio

    with rasterio.open(scene) as ds:
        h, w, c = ds.height, ds.width, ds.count
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    norm = scene_statistics(scene, chunks=1024)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    out = {
        "scene": f"{h} x {w} x {c} float32",
        "scene_gib": h * w * c * 4 / 2**30,
        "seconds": seconds,
        "mpix_per_s": h * w / seconds / 1e6,
        "rss_before_mib": base / 2**20,
        "rss_peak_mib": peak[0] / 2**20,
        "rss_growth_mib": (peak[0] - base) / 2**20,
        "mean": list(norm.mean),
        "std": list(norm.std),
    }
    print(
        f"  scene_statistics {out['scene']} ({out['scene_gib']:.2f} GiB decoded): {seconds:.1f} s, "
        f"peak RSS {out['rss_peak_mib']:.0f} MiB (+{out['rss_growth_mib']:.0f} MiB)",
        flush=True,
    )
    return out


def stats_in_child(scene: Path) -> dict:
    """Run :func:`bench_stats` in a fresh interpreter so earlier readers' memory does not count."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--stats-only", str(scene)],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("STATS "):
            return json.loads(line[len("STATS ") :])
        print(line)
    raise RuntimeError(f"statistics child printed no result:\n{proc.stdout}\n{proc.stderr}")


def markdown(result: dict) -> str:
    lines = [
        f"Loader benchmark, {result['machine']['cpu']} ({result['machine']['cpus']} CPUs), "
        f"{result['n_windows']} random {PATCH}x{PATCH} windows of a {result['scene']}; "
        f"torch threads in the main process: {result['machine']['torch_threads_main']}, "
        f"1-minute load average at the end: {result['machine']['load_average_1min']:.1f}.",
        "",
        "CPU ms/patch counts this process and its DataLoader workers: it shows the work per",
        "patch whatever else the machine is doing, where patches/s depends on free cores.",
        "",
        "| reader | patches/s cold | CPU ms/patch cold | patches/s warm | CPU ms/patch warm |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["readers"]:
        warm = f"{r['warm']:.0f} | {r['warm_cpu_ms']:.2f}" if r["warm"] is not None else "- | -"
        lines.append(f"| {r['reader']} | {r['cold']:.0f} | {r['cold_cpu_ms']:.2f} | {warm} |")
    lines += ["", "| ratio | cold | warm |", "| --- | ---: | ---: |"]
    for k, v in result["ratios"].items():
        lines.append(
            f"| {k} | {v['cold']:.2f} | {v['warm']:.2f} |"
            if v["warm"] is not None
            else f"| {k} | {v['cold']:.2f} | - |"
        )
    t = result["transport"]
    lines += [
        "",
        f"Collating a batch of 4 patches: {t['ordinary_ms_per_batch']:.2f} ms into ordinary memory, "
        f"{t['shared_ms_per_batch']:.2f} ms into the shared memory a DataLoader worker must use.",
    ]
    if result.get("stats"):
        s = result["stats"]
        lines += [
            "",
            f"scene_statistics on {s['scene']} ({s['scene_gib']:.2f} GiB decoded): {s['seconds']:.1f} s "
            f"({s['mpix_per_s']:.1f} Mpx/s), peak RSS {s['rss_peak_mib']:.0f} MiB "
            f"(+{s['rss_growth_mib']:.0f} MiB over the {s['rss_before_mib']:.0f} MiB before).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=HERE / ".cache", help="where test scenes are cached")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for loader.json / .md")
    parser.add_argument("--n", type=int, default=300, help="number of random windows")
    parser.add_argument("--size", type=int, default=4096, help="edge of the scene read by the loaders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--big", action="store_true", help="statistics on a --stats-size scene (default 20000)"
    )
    parser.add_argument("--stats-size", type=int, default=None, help="edge of the statistics scene")
    parser.add_argument("--no-stats", action="store_true", help="skip the statistics benchmark")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads in the main process (DataLoader workers always use 1); 1 keeps "
        "OpenMP barriers from dominating collation on a small, busy machine",
    )
    parser.add_argument("--stats-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stats_only:  # child process: a fresh RSS baseline for the statistics
        print("STATS " + json.dumps(bench_stats(args.stats_only)), flush=True)
        return 0
    import torch

    torch.set_num_threads(args.torch_threads)

    from geoglacier.io.atomic import atomic_output

    stats_size = args.stats_size or (20000 if args.big else 8192)
    if stats_size >= 20000 and not args.big:
        parser.error("--stats-size >= 20000 needs --big (it writes a multi-GB scene once)")
    scene, mask = ensure_scene(args.workdir, args.size, args.seed)
    rng = np.random.default_rng(args.seed)
    windows = np.stack(
        [
            np.zeros(args.n, dtype=np.int64),
            rng.integers(0, args.size - PATCH + 1, args.n),
            rng.integers(0, args.size - PATCH + 1, args.n),
        ],
        axis=1,
    )
    print(f"{args.n} windows of {PATCH}x{PATCH} from {scene} ({os.cpu_count()} CPUs: {cpu_name()})")
    for path in (scene, mask):  # the OS page cache holds the file for everyone: "cold" is GDAL's cache
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    readers = bench_readers(scene, mask, windows, args.workers)
    transport = bench_transport()
    by = {r["reader"]: r for r in readers}

    def ratio(a: str, b: str) -> dict:
        ra, rb = by[a], by[b]
        warm = ra["warm"] / rb["warm"] if ra["warm"] and rb["warm"] else None
        return {"cold": ra["cold"] / rb["cold"], "warm": warm}

    ratios = {
        "ScenePatchDataset (no aug) / plain rasterio": ratio(
            "ScenePatchDataset, no augmentation", "plain rasterio windowed reads"
        ),
        "plain rasterio / rioxarray+dask per window": ratio(
            "plain rasterio windowed reads", "rioxarray + dask, .values per window (chunks 512)"
        ),
    }
    dl = {nw: f"DataLoader + augmentation, batch 4, {nw} worker(s)" for nw in args.workers}
    if 0 in dl:
        for nw in args.workers:
            if nw > 0:
                ratios[f"DataLoader {nw} workers / 0 workers (augmentation on)"] = ratio(dl[nw], dl[0])
    stats = None
    if not args.no_stats:
        big, _ = ensure_scene(args.workdir, stats_size, args.seed + 1)
        stats = stats_in_child(big)
    import rasterio
    import torch

    result = {
        "machine": {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__,
            "torch_threads_main": args.torch_threads,
            "load_average_1min": os.getloadavg()[0],
        },
        "scene": f"{args.size} x {args.size} 5-band float32 GeoTIFF (deflate, 512-px tiles)",
        "n_windows": args.n,
        "patch": PATCH,
        "readers": readers,
        "ratios": ratios,
        "transport": transport,
        "stats": stats,
    }
    print()
    for k, v in ratios.items():
        warm = f"{v['warm']:.2f}" if v["warm"] is not None else "-"
        print(f"  {k:58s} cold {v['cold']:.2f}  warm {warm}")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out / "loader.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    with atomic_output(args.out / "loader.md", overwrite=True) as tmp:
        Path(tmp).write_text(markdown(result))
    print(f"wrote {args.out / 'loader.json'} and {args.out / 'loader.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
