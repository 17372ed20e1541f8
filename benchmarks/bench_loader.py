"""Training input pipeline benchmark: CPU time and patches per second from a large GeoTIFF.

One file, one seeded list of random 256 x 256 windows, every reader on the same windows:

- plain rasterio windowed reads of the image (the decode baseline), and of image + mask;
- rioxarray + dask, one ``.values`` per window (the naive lazy way);
- our ``ScenePatchDataset`` without and with augmentation;
- TorchGeo's ``RasterDataset`` answering the same windows as GeoSlice queries (what its
  ``RandomGeoSampler`` yields; image only, as TorchGeo reads a mask from a second dataset);
- a DataLoader (augmentation on, batch 4) with 0, 1 and 2 workers;
- Albumentations alone on an in-memory patch, for reference.

Order effects: every round runs the readers in a new shuffled order (seeded), and the
tables give the median over ``--rounds`` rounds; ratios are medians of per-round ratios,
so a reader never gains from running after another one warmed a cache.

Each reader is timed in three states, in this order, in every round:

``cold``
    the OS page cache of the scene and mask files is dropped first
    (``posix_fadvise(POSIX_FADV_DONTNEED)`` on those two files only; the fraction still
    resident is checked with ``mincore`` and reported) and the reader opens fresh file
    handles, so GDAL's block cache holds nothing of them either: a first epoch.
``cached``
    fresh handles again (GDAL's block cache is per handle: closing it drops its
    tiles), but the files are now in the OS page cache: every tile is decompressed
    again without disk reads. This is what a new DataLoader worker sees.
``warm``
    a second pass on the same handles: the tiles are in GDAL's cache, only copying
    and the per-patch work remain. DataLoaders: a second epoch, persistent workers.

The stable figure is CPU milliseconds per patch: user + system time of this process
and its DataLoader workers (``getrusage`` of the process and of its reaped children,
``psutil`` for the live ones). patches/s depends on what else the machine runs.

Then a training-step comparison of DataLoader workers against in-process loading
(``--train-rounds``): a real U-Net++ step on the CPU, and a stand-in for an
accelerator step (the main process sleeps ``--step-ms`` per batch, its CPU free, as
while a GPU computes). Loaders are built per epoch with non-persistent workers, as
``geoglacier train`` builds them.

Finally per-band normalisation statistics of a big scene are computed lazily with
dask (``scene_statistics``) in a fresh process while a thread samples its RSS.

Usage::

    python benchmarks/bench_loader.py                 # ~10-15 minutes on 2 busy cores
    python benchmarks/bench_loader.py --rounds 3 --no-train --no-stats
    python benchmarks/bench_loader.py --big           # statistics on a 20000 x 20000 scene

Writes ``benchmarks/results/loader.json`` and ``benchmarks/results/loader.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PATCH = 256
STATES = ("cold", "cached", "warm")


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


# ---------------------------------------------------------------------------------------
# cold caches and CPU time


def drop_page_cache(path: Path) -> None:
    """Ask the kernel to drop ``path``'s clean pages from the page cache (this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_fraction(path: Path) -> float | None:
    """Fraction of ``path``'s pages in the OS page cache (``mincore``), or None if unknown."""
    size = path.stat().st_size
    if size == 0:
        return 0.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        )
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    except (OSError, AttributeError):
        return None
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(addr, size, vec) != 0:
                return None
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / pages


def cpu_seconds() -> float:
    """User + system CPU time of this process and its children, reaped or alive."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def timed(fn: Callable[..., int], *args: Any) -> tuple[float, float]:
    """``(patches per second, CPU milliseconds per patch)`` of one pass ``fn(*args)``."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    n = fn(*args)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return n / wall, cpu / n * 1e3


@dataclass
class Reader:
    """A way of reading the windows: ``start()`` gives fresh handles, ``run`` one pass."""

    name: str
    start: Callable[[], Any]
    run: Callable[[Any], int]
    stop: Callable[[Any], None] = lambda state: None
    states: tuple[str, ...] = STATES


# ---------------------------------------------------------------------------------------
# the readers


def build_readers(scene: Path, mask: Path, windows: np.ndarray, workers: list[int]) -> list[Reader]:
    import rasterio
    import torch
    from rasterio.windows import Window

    from geoglacier.io.layouts import ScenePair
    from geoglacier.io.scene import inspect_scene, open_scene
    from geoglacier.training.augment import build_augment
    from geoglacier.training.datasets import ScenePatchDataset, seed_worker
    from geoglacier.training.normalization import Normalization

    pair = ScenePair(scene.stem, scene, mask, inspect_scene(scene))
    norm = Normalization((100.0,) * 5, (50.0,) * 5)
    n = len(windows)
    wins = [Window(int(c), int(r), PATCH, PATCH) for _, r, c in windows]
    readers: list[Reader] = []

    def plain_image(ds: Any) -> int:
        for w in wins:
            ds.read(window=w, out_dtype=np.float32)
        return n

    readers.append(
        Reader("plain rasterio, image", lambda: rasterio.open(scene), plain_image, lambda ds: ds.close())
    )

    def plain_both(handles: Any) -> int:
        img, msk = handles
        for w in wins:
            img.read(window=w, out_dtype=np.float32)
            msk.read(1, window=w)
        return n

    readers.append(
        Reader(
            "plain rasterio, image + mask",
            lambda: (rasterio.open(scene), rasterio.open(mask)),
            plain_both,
            lambda h: (h[0].close(), h[1].close()),
        )
    )

    def dask_values(da: Any) -> int:
        for _, r, c in windows:
            _ = da[:, r : r + PATCH, c : c + PATCH].values
        return n

    readers.append(
        Reader(
            "rioxarray + dask, .values per window (chunks 512)",
            lambda: open_scene(scene, chunks=512),
            dask_values,
            lambda da: da.close(),
        )
    )

    for name, aug in (("ScenePatchDataset, no augmentation", None), ("ScenePatchDataset + augmentation", 0)):

        def start(aug: int | None = aug) -> ScenePatchDataset:
            return ScenePatchDataset(
                [pair], windows, PATCH, norm, build_augment(aug) if aug is not None else None
            )

        def items(dset: ScenePatchDataset) -> int:
            for i in range(n):
                dset[i]
            return n

        readers.append(Reader(name, start, items, lambda d: d.close()))

    try:
        import torchgeo  # noqa: F401
    except ImportError:
        print("  TorchGeo not installed: skipped (pip install -e '.[bench]')")
    else:
        readers.append(torchgeo_reader(scene, windows))

    for nw in workers:

        def start_loader(nw: int = nw) -> Any:
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
            return dset, loader

        def epoch(state: Any) -> int:
            return sum(int(b["image"].shape[0]) for b in state[1])

        def stop_loader(state: Any) -> None:
            dset, loader = state
            if getattr(loader, "_iterator", None) is not None:
                loader._iterator._shutdown_workers()  # join now, so their CPU time is reaped
            dset.close()

        readers.append(
            Reader(f"DataLoader + augmentation, batch 4, {nw} worker(s)", start_loader, epoch, stop_loader)
        )

    patch = np.random.default_rng(0).normal(size=(PATCH, PATCH, 5)).astype(np.float32)
    pmask = (patch[..., 0] > 0).astype(np.uint8)

    def aug_only(aug: Any) -> int:
        for _ in range(n):
            aug(patch, pmask)
        return n

    readers.append(
        Reader(
            "Albumentations alone on a 256x256x5 float patch",
            lambda: build_augment(0),
            aug_only,
            states=("warm",),
        )
    )
    return readers


def geo_query(transform: Any, row: int, col: int) -> tuple[slice, slice]:
    """The ``[x, y]`` GeoSlice of the window at ``(row, col)``, at the scene's resolution."""
    x0, y0 = transform * (col, row)
    x1, y1 = transform * (col + PATCH, row + PATCH)
    return (
        slice(min(x0, x1), max(x0, x1), abs(transform.a)),
        slice(min(y0, y1), max(y0, y1), abs(transform.e)),
    )


def torchgeo_reader(scene: Path, windows: np.ndarray) -> Reader:
    """TorchGeo ``RasterDataset`` answering our windows as GeoSlice queries."""
    import rasterio
    from torchgeo.datasets import RasterDataset

    class Scene(RasterDataset):
        filename_glob = scene.name
        is_image = True

    with rasterio.open(scene) as ds:
        queries = [geo_query(ds.transform, int(r), int(c)) for _, r, c in windows]

    def run(ds: RasterDataset) -> int:
        for q in queries:
            ds[q]
        return len(queries)

    def stop(ds: RasterDataset) -> None:
        # TorchGeo keeps handles in an lru_cache on the class: clear it so they close (and
        # their tiles leave GDAL's cache), as ours do on close().
        Scene._cached_load_warp_file.cache_clear()

    return Reader(
        "TorchGeo RasterDataset, same windows (image only)",
        lambda: Scene(paths=str(scene.parent)),
        run,
        stop,
    )


def same_pixels(scene: Path, mask: Path, windows: np.ndarray) -> dict[str, bool]:
    """Do our dataset (identity normalisation) and TorchGeo return rasterio's pixels?"""
    import rasterio
    import torch
    from rasterio.windows import Window

    from geoglacier.io.layouts import ScenePair
    from geoglacier.io.scene import inspect_scene
    from geoglacier.training.datasets import ScenePatchDataset
    from geoglacier.training.normalization import Normalization

    out = {}
    dset = ScenePatchDataset(
        [ScenePair(scene.stem, scene, mask, inspect_scene(scene))],
        windows[:20],
        PATCH,
        Normalization((0.0,) * 5, (1.0,) * 5),
    )
    with rasterio.open(scene) as src:
        refs = [
            src.read(window=Window(int(c), int(r), PATCH, PATCH), out_dtype=np.float32)
            for _, r, c in windows[:20]
        ]
        transform = src.transform
    samples = [dset[i] for i in range(len(refs))]
    out["ScenePatchDataset"] = all(
        torch.equal(s["image"], torch.from_numpy(np.where(s["valid"].numpy(), ref, np.float32(0))))
        for s, ref in zip(samples, refs, strict=True)
    )
    dset.close()
    try:
        reader = torchgeo_reader(scene, windows[:1])
    except ImportError:
        return out
    ds = reader.start()
    _, r, c = (int(v) for v in windows[0])
    out["TorchGeo"] = bool(np.array_equal(ds[geo_query(transform, r, c)]["image"].numpy(), refs[0]))
    reader.stop(ds)
    return out


def run_rounds(
    readers: list[Reader], files: list[Path], rounds: int, seed: int
) -> tuple[list[dict], list[float]]:
    """Every reader in every state, readers shuffled anew each round; per-round figures kept."""
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {
        r.name: {s: [] for s in r.states} for r in readers
    }
    residency: list[float] = []
    rng = np.random.default_rng(seed)
    for k in range(rounds):
        order = [readers[i] for i in rng.permutation(len(readers))]
        print(
            f"  round {k + 1}/{rounds}: " + ", ".join(r.name.split(",")[0] for r in order[:3]) + ", ...",
            flush=True,
        )
        for reader in order:
            if "cold" in reader.states:
                for f in files:
                    drop_page_cache(f)
                left = [resident_fraction(f) for f in files]
                residency.extend(v for v in left if v is not None)
                state = reader.start()
                runs[reader.name]["cold"].append(timed(reader.run, state))
                reader.stop(state)
            state = reader.start()
            if "cached" in reader.states:
                runs[reader.name]["cached"].append(timed(reader.run, state))
            if "warm" in reader.states:
                if "cached" not in reader.states:
                    reader.run(state)  # fill caches first
                runs[reader.name]["warm"].append(timed(reader.run, state))
            reader.stop(state)
    rows = []
    for reader in readers:
        row: dict[str, Any] = {"reader": reader.name}
        for s in STATES:
            got = runs[reader.name].get(s)
            row[s] = (
                {
                    "patches_per_s": statistics.median(v[0] for v in got),
                    "cpu_ms": statistics.median(v[1] for v in got),
                    "cpu_ms_rounds": [round(v[1], 3) for v in got],
                    "patches_per_s_rounds": [round(v[0], 1) for v in got],
                }
                if got
                else None
            )
        rows.append(row)
    return rows, residency


def ratio(rows: list[dict], a: str, b: str, key: str = "cpu_ms") -> dict[str, dict | None]:
    """Per state, ``a / b`` in every round (same round, same machine load), its median and range."""
    by = {r["reader"]: r for r in rows}
    out: dict[str, dict | None] = {}
    for s in STATES:
        if a not in by or b not in by or by[a][s] is None or by[b][s] is None:  # --only, or no such state
            out[s] = None
            continue
        pairs = zip(by[a][s][f"{key}_rounds"], by[b][s][f"{key}_rounds"], strict=True)
        per_round = [x / y for x, y in pairs]
        out[s] = {
            "median": statistics.median(per_round),
            "min": min(per_round),
            "max": max(per_round),
            "rounds": [round(v, 3) for v in per_round],
        }
    return out


def compute_ratios(rows: list[dict], workers: list[int]) -> dict[str, dict]:
    """The ratios the tables quote, from the per-round figures of ``rows``."""
    ours = "ScenePatchDataset, no augmentation"
    ratios = {
        "ScenePatchDataset (no aug) / plain rasterio, image": ratio(rows, ours, "plain rasterio, image"),
        "ScenePatchDataset (no aug) / plain rasterio, image + mask": ratio(
            rows, ours, "plain rasterio, image + mask"
        ),
        "ScenePatchDataset (no aug) / TorchGeo": ratio(
            rows, ours, "TorchGeo RasterDataset, same windows (image only)"
        ),
        "rioxarray + dask per window / plain rasterio, image": ratio(
            rows, "rioxarray + dask, .values per window (chunks 512)", "plain rasterio, image"
        ),
    }
    dl = {nw: f"DataLoader + augmentation, batch 4, {nw} worker(s)" for nw in workers}
    for nw in workers:
        if nw > 0 and 0 in dl:
            ratios[f"DataLoader {nw} / 0 workers, patches/s"] = ratio(
                rows, dl[nw], dl[0], key="patches_per_s"
            )
            ratios[f"DataLoader {nw} / 0 workers, CPU ms"] = ratio(rows, dl[nw], dl[0])
    return {k: v for k, v in ratios.items() if any(x is not None for x in v.values())}


def fmt_ratio(v: dict | None) -> str:
    return "-" if v is None else f"{v['median']:.2f} ({v['min']:.2f}-{v['max']:.2f})"


# ---------------------------------------------------------------------------------------
# training steps: DataLoader workers against in-process loading


def bench_training(
    scene: Path,
    mask: Path,
    workers: list[int],
    rounds: int,
    cpu_patch: int,
    cpu_batches: int,
    step_ms: float,
    accel_batches: int,
    seed: int,
    only_kinds: tuple[str, ...] = ("cpu", "accelerator"),
) -> dict:
    """Seconds per training epoch with 0..N DataLoader workers, for two kinds of step.

    ``cpu``: a real U-Net++ (ResNet-18) step on ``cpu_patch`` patches with the torch
    threads the training loop gets (all cores): loading competes with the model for
    the CPU. ``accelerator``: 256-px patches, and the main process sleeps ``step_ms``
    per batch instead of stepping, its CPU free, as while a GPU computes: loading can
    hide behind the step. Each epoch builds a fresh DataLoader with
    non-persistent workers and new random windows, as ``geoglacier train`` does, so
    every epoch's workers start with empty GDAL caches while in-process loading keeps
    its handles.
    """
    import torch

    from geoglacier.io.layouts import ScenePair
    from geoglacier.io.scene import inspect_scene
    from geoglacier.model import ModelConfig, build_model
    from geoglacier.training.augment import build_augment
    from geoglacier.training.datasets import ScenePatchDataset, seed_worker
    from geoglacier.training.losses import BCEDiceLoss
    from geoglacier.training.normalization import Normalization

    info = inspect_scene(scene)
    pair = ScenePair(scene.stem, scene, mask, info)
    norm = Normalization((100.0,) * 5, (50.0,) * 5)
    batch = 4
    model = build_model(ModelConfig(encoder="resnet18"), encoder_weights=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = BCEDiceLoss(0.5)

    def cpu_step(b: dict) -> None:
        loss = criterion(model(b["image"]), b["mask"], b["valid"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def accel_step(b: dict) -> None:
        time.sleep(step_ms / 1e3)

    out: dict[str, Any] = {
        "batch": batch,
        "rounds": rounds,
        "cpu": {"patch": cpu_patch, "batches_per_epoch": cpu_batches, "model": "UnetPlusPlus/resnet18"},
        "accelerator": {"patch": PATCH, "batches_per_epoch": accel_batches, "step_ms": step_ms},
        "torch_threads": torch.get_num_threads(),
        "steps": {},
    }
    rng = np.random.default_rng(seed)
    kinds = (("cpu", cpu_step, cpu_patch, cpu_batches), ("accelerator", accel_step, PATCH, accel_batches))
    for kind, step, patch, batches in kinds:
        if kind not in only_kinds:
            continue
        if kind == "cpu":  # one untimed step: torch's one-off set-up must not land on one config
            x = torch.zeros(batch, info.count, patch, patch)
            step({"image": x, "mask": x[:, 0], "valid": x[:, 0] == 0})
        n = batches * batch
        times: dict[int, list[tuple[float, float]]] = {nw: [] for nw in workers}
        dsets = {
            nw: ScenePatchDataset([pair], np.zeros((0, 3), np.int64), patch, norm, build_augment(0))
            for nw in workers
        }
        for k in range(rounds):
            for nw in [workers[i] for i in rng.permutation(len(workers))]:
                dset = dsets[nw]
                dset.windows = np.stack(
                    [
                        np.zeros(n, np.int64),
                        rng.integers(0, info.height - patch, n),
                        rng.integers(0, info.width - patch, n),
                    ],
                    axis=1,
                )
                loader = torch.utils.data.DataLoader(
                    dset,
                    batch_size=batch,
                    shuffle=True,
                    num_workers=nw,
                    worker_init_fn=seed_worker,
                    generator=torch.Generator().manual_seed(k),
                )

                def epoch(loader: Any = loader, step: Callable[[dict], None] = step) -> int:
                    for b in loader:
                        step(b)
                    return 1

                per_s, cpu_ms = timed(epoch)
                times[nw].append((1.0 / per_s, cpu_ms / 1e3))
                del loader
        for d in dsets.values():
            d.close()
        # Round 1 is every loader's first epoch (all caches empty); later, in-process
        # loading keeps its handles and GDAL cache while new workers start empty again.
        rows = {}
        for nw in workers:
            wall = [t[0] for t in times[nw]]
            cpu = [t[1] for t in times[nw]]
            rows[nw] = {
                "first_epoch_s": wall[0],
                "epoch_s": statistics.median(wall[1:] or wall),
                "epoch_cpu_s": statistics.median(cpu[1:] or cpu),
                "epoch_s_rounds": [round(v, 3) for v in wall],
            }
        if 0 in rows:
            base = times[0]
            for nw in workers:
                pairs = list(zip(base, times[nw], strict=True))
                rows[nw]["first_speed_vs_0"] = pairs[0][0][0] / pairs[0][1][0]
                rows[nw]["speed_vs_0"] = statistics.median(b[0] / t[0] for b, t in pairs[1:] or pairs)
        out["steps"][kind] = rows
        for nw in workers:
            r = rows[nw]
            print(
                f"  {kind:11s} step, {nw} worker(s): first epoch {r['first_epoch_s']:.2f} s "
                f"({r.get('first_speed_vs_0', float('nan')):.2f}x in-process), later {r['epoch_s']:.2f} s "
                f"per epoch of {batches} batches (CPU {r['epoch_cpu_s']:.2f} s, "
                f"{r.get('speed_vs_0', float('nan')):.2f}x in-process)",
                flush=True,
            )
    return out


# ---------------------------------------------------------------------------------------
# transport and statistics


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


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Loader benchmark, {m['cpu']} ({m['cpus']} CPUs), {result['n_windows']} random {PATCH}x{PATCH} "
        f"windows of a {result['scene']}; {result['rounds']} rounds, readers in a new random order each "
        f"round, medians shown; torch threads in the main process: {m['torch_threads_main']}; 1-minute "
        f"load average {m['load_average_start']:.1f} at the start, {m['load_average_end']:.1f} at the end.",
        "",
        "CPU ms/patch is user + system time of this process and its DataLoader workers: the work per",
        "patch whatever else the machine does; patches/s depends on free cores. cold: the files' pages",
        "dropped from the OS page cache (posix_fadvise; at most "
        f"{100 * result['page_cache_left_max']:.0f} % of the pages left resident) and fresh handles; "
        "cached: fresh handles, files in the page cache (every tile decompressed again, as in a new",
        "DataLoader worker); warm: the same handles again (tiles in GDAL's block cache).",
        "",
        "| reader | cold patches/s | cold CPU ms | cached patches/s | cached CPU ms | warm patches/s | warm CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["readers"]:
        cells = []
        for s in STATES:
            st = r[s]
            cells += [fmt(st and st["patches_per_s"], ".0f"), fmt(st and st["cpu_ms"], ".2f")]
        lines.append(f"| {r['reader']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratios: median of the per-round ratios (lowest-highest round), CPU ms/patch unless marked patches/s:",
        "",
        "| ratio | cold | cached | warm |",
        "| --- | ---: | ---: | ---: |",
    ]
    for k, v in result["ratios"].items():
        lines.append(f"| {k} | " + " | ".join(fmt_ratio(v[s]) for s in STATES) + " |")
    same = result.get("same_pixels", {})
    if same:
        lines += [
            "",
            "Same pixels as rasterio: "
            + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items())
            + ".",
        ]
    tr = result.get("training")
    if tr:
        first = next(iter(next(iter(tr["steps"].values())).values()))
        tr.setdefault("rounds", len(first["epoch_s_rounds"]))
        lines += [
            "",
            f"Training epochs, DataLoader workers against in-process loading (medians of "
            f"{tr['rounds']} rounds, workers in a new random order each round; batch {tr['batch']}, "
            f"fresh loader per epoch, non-persistent workers, torch threads {tr['torch_threads']}; "
            f"cpu: U-Net++/ResNet-18 steps on {tr['cpu']['patch']}-px patches, "
            f"{tr['cpu']['batches_per_epoch']} batches; accelerator: {PATCH}-px patches, "
            f"{tr['accelerator']['batches_per_epoch']} batches, the main process sleeps "
            f"{tr['accelerator']['step_ms']:.0f} ms per batch as while a GPU steps):",
            "",
            "The first epoch starts every loader with empty caches; in later epochs in-process loading",
            "keeps its handles and GDAL's cache, while each epoch's new workers start empty again.",
            "",
            "| step | workers | first epoch s | speed vs 0 workers | later epochs s (median) | CPU s | speed vs 0 workers |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for kind, rows in tr["steps"].items():
            for nw, r in rows.items():
                lines.append(
                    f"| {kind} | {nw} | {fmt(r.get('first_epoch_s'), '.2f')} | "
                    f"{fmt(r.get('first_speed_vs_0'), '.2f')} | {r['epoch_s']:.2f} | {r['epoch_cpu_s']:.2f} | "
                    f"{fmt(r.get('speed_vs_0'), '.2f')} |"
                )
    t = result.get("transport")
    if t:
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
    lines += ["", f"Command: `{result['command'].strip()}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workdir", type=Path, default=HERE / ".cache", help="where test scenes are cached")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for loader.json / .md")
    parser.add_argument("--n", type=int, default=300, help="number of random windows per pass")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every reader in every state")
    parser.add_argument("--size", type=int, default=4096, help="edge of the scene read by the loaders")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="TEXT",
        help="run only the readers whose name contains one of these (e.g. plain ScenePatchDataset TorchGeo)",
    )
    parser.add_argument("--no-train", action="store_true", help="skip the training-epoch comparison")
    parser.add_argument(
        "--train-kinds",
        nargs="+",
        choices=("cpu", "accelerator"),
        default=["cpu", "accelerator"],
        help="which training steps to compare",
    )
    parser.add_argument("--train-rounds", type=int, default=4, help="rounds of the training-epoch comparison")
    parser.add_argument("--train-patch", type=int, default=64, help="patch size of the CPU training steps")
    parser.add_argument("--train-batches", type=int, default=2, help="batches per CPU training epoch")
    parser.add_argument(
        "--step-ms", type=float, default=50.0, help="stand-in accelerator step (ms per batch)"
    )
    parser.add_argument("--accel-batches", type=int, default=16, help="batches per accelerator epoch")
    parser.add_argument(
        "--big", action="store_true", help="statistics on a --stats-size scene (default 20000)"
    )
    parser.add_argument("--stats-size", type=int, default=None, help="edge of the statistics scene")
    parser.add_argument("--no-stats", action="store_true", help="skip the statistics benchmark")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads in the main process for the readers (DataLoader workers always "
        "use 1); 1 keeps OpenMP barriers from dominating collation on a small, busy machine. The "
        "training comparison uses torch's default, as geoglacier train does",
    )
    parser.add_argument("--stats-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="recompute ratios and Markdown from a loader.json"
    )
    args = parser.parse_args(argv)
    if args.stats_only:  # child process: a fresh RSS baseline for the statistics
        print("STATS " + json.dumps(bench_stats(args.stats_only)), flush=True)
        return 0
    if args.render:  # the same run's figures, tables rebuilt (no new measurement)
        result = json.loads(args.render.read_text())
        workers = sorted(
            int(r["reader"].split(", ")[-1].split()[0])
            for r in result["readers"]
            if "worker(s)" in r["reader"]
        )
        result["ratios"] = compute_ratios(result["readers"], workers)
        write_results(result, args.out)
        return 0
    import rasterio
    import torch

    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.torch_threads)
    stats_size = args.stats_size or (20000 if args.big else 8192)
    if stats_size >= 20000 and not args.big:
        parser.error("--stats-size >= 20000 needs --big (it writes a multi-GB scene once)")
    load_start = os.getloadavg()[0]
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
    same = same_pixels(scene, mask, windows)
    print("  same pixels as rasterio: " + ", ".join(f"{k} {v}" for k, v in same.items()), flush=True)
    readers = build_readers(scene, mask, windows, args.workers)
    if args.only:
        readers = [r for r in readers if any(t in r.name for t in args.only)]
    rows, residency = run_rounds(readers, [scene, mask], args.rounds, args.seed)
    print(f"\n  {'reader':52s}" + "".join(f" {s + '/s':>9s} {'cpu ms':>7s}" for s in STATES))
    for r in rows:
        cells = "".join(
            f" {fmt(r[s] and r[s]['patches_per_s'], '9.1f'):>9s} {fmt(r[s] and r[s]['cpu_ms'], '7.2f'):>7s}"
            for s in STATES
        )
        print(f"  {r['reader']:52s}{cells}")
    ratios = compute_ratios(rows, args.workers)
    print()
    for k, v in ratios.items():
        print(f"  {k:60s} " + "  ".join(f"{s} {fmt_ratio(v[s])}" for s in STATES))
    transport = bench_transport()
    training = None
    if not args.no_train:
        torch.set_num_threads(default_threads)
        training = bench_training(
            scene,
            mask,
            args.workers,
            args.train_rounds,
            args.train_patch,
            args.train_batches,
            args.step_ms,
            args.accel_batches,
            args.seed,
            tuple(args.train_kinds),
        )
        torch.set_num_threads(args.torch_threads)
    stats = None
    if not args.no_stats:
        big, _ = ensure_scene(args.workdir, stats_size, args.seed + 1)
        stats = stats_in_child(big)
    result = {
        "machine": {
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__,
            "torch_threads_main": args.torch_threads,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg()[0],
        },
        "command": " ".join(["python benchmarks/bench_loader.py", *(sys.argv[1:] if argv is None else argv)]),
        "scene": f"{args.size} x {args.size} 5-band float32 GeoTIFF (deflate, 512-px tiles)",
        "n_windows": args.n,
        "rounds": args.rounds,
        "patch": PATCH,
        "page_cache_left_max": max(residency, default=float("nan")),
        "same_pixels": same,
        "readers": rows,
        "ratios": ratios,
        "training": training,
        "transport": transport,
        "stats": stats,
    }
    write_results(result, args.out)
    return 0


def write_results(result: dict, out: Path) -> None:
    from geoglacier.io.atomic import atomic_output

    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "loader.json", overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    with atomic_output(out / "loader.md", overwrite=True) as tmp:
        Path(tmp).write_text(markdown(result))
    print(f"wrote {out / 'loader.json'} and {out / 'loader.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
