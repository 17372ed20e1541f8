"""Benchmark true-area summaries: throughput on a large mask and interpolation error.

Writes a synthetic ``size`` x ``size`` uint8 mask (random blobs, nodata border; tiled,
deflate, as ``segment-scene`` writes them) on a UTM, an EPSG:3413 and an EPSG:4326
grid, and times

* ``read``: reading every block with rasterio (the floor for any file-based summary),
* ``summarize_mask``: the whole file-based summary,
* ``accumulate``: :class:`~geoglacier.measure.areas.AreaAccumulator` on in-memory 512 x 512
  blocks (what ``segment-scene`` pays, since it already holds each block).

It also measures the largest relative error of the interpolated pixel areas against
the exact per-pixel evaluation at random pixels of 20000 x 20000 grids.

Usage::

    python benchmarks/bench_areas.py [--size 8192] [--repeat 2] [--out benchmarks/results/areas.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.windows import Window

from geoglacier.measure.areas import AreaAccumulator, pixel_area_at, pixel_area_grid, summarize_mask

GRIDS = {
    # name: (crs, lon, lat, pixel size in CRS units)
    "UTM 45N (Everest)": ("EPSG:32645", 86.9, 28.0, 30.0),
    "EPSG:3413 (Greenland)": ("EPSG:3413", -45.0, 70.0, 30.0),
    "EPSG:4326": ("EPSG:4326", -45.0, 61.0, 0.0003),
}

ERROR_GRIDS = {
    "EPSG:3413, 100 m": ("EPSG:3413", Affine(100.0, 0, -1.0e6, 0, -100.0, -0.5e6)),
    "EPSG:3857, 250 m, 27-62 N": ("EPSG:3857", Affine(250.0, 0, -5.0e6, 0, -250.0, 8.9e6)),
    "EPSG:3857, 30 m, 61 N": ("EPSG:3857", Affine(30.0, 0, -5.0e6, 0, -30.0, 8.9e6)),
    "UTM 45N, 30 m": ("EPSG:32645", Affine(30.0, 0, 200000.0, 0, -30.0, 3400000.0)),
    "EPSG:4326 rotated 10 deg": (
        "EPSG:4326",
        Affine.rotation(10.0) * Affine(0.0003, 0, -45.0, 0, -0.0003, 61.0),
    ),
}


def synthetic_mask(size: int, seed: int = 0) -> np.ndarray:
    """Random blobs (thresholded, upsampled noise) with a 5 % nodata border."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 64 + 1, size // 64 + 1))
    mask = (np.kron(coarse, np.ones((64, 64)))[:size, :size] > 0.6).astype(np.uint8)
    border = size // 20
    mask[:border] = 255
    mask[:, -border:] = 255
    return mask


def write(path: Path, mask: np.ndarray, crs: str, lon: float, lat: float, res: float) -> None:
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    half = mask.shape[0] * res / 2
    transform = Affine(res, 0, x - half, 0, -res, y + half)
    profile = dict(driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1, dtype="uint8")
    profile.update(crs=crs, transform=transform, nodata=255, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", compress="deflate", **profile) as ds:
        for r in range(0, mask.shape[0], 1024):
            ds.write(mask[r : r + 1024], 1, window=Window(0, r, mask.shape[1], min(1024, mask.shape[0] - r)))


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def read_all(path: Path) -> None:
    with rasterio.open(path) as ds:
        for _, window in ds.block_windows(1):
            ds.read(1, window=window)


def accumulate(path: Path, mask: np.ndarray) -> None:
    with rasterio.open(path) as ds:
        acc = AreaAccumulator(ds.transform, ds.crs, ds.height, ds.width)
    for r in range(0, mask.shape[0], 512):
        for c in range(0, mask.shape[1], 512):
            acc.add(mask[r : r + 512, c : c + 512], r, c)
    acc.result()


def max_interpolation_error(crs: str, transform: Affine, n_windows: int = 12, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for r0, c0 in rng.integers(0, 20000 - 32, size=(n_windows, 2)):
        approx = pixel_area_grid(transform, crs, 20000, 20000, window=Window(int(c0), int(r0), 32, 32))
        rows, cols = np.mgrid[r0 : r0 + 32, c0 : c0 + 32]
        exact = pixel_area_at(transform, crs, rows, cols)
        worst = max(worst, float(np.max(np.abs(approx / exact - 1))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "areas.json")
    args = parser.parse_args()

    mask = synthetic_mask(args.size)
    mpx = mask.size / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (crs, lon, lat, res) in GRIDS.items():
            path = Path(tmp) / "mask.tif"
            write(path, mask, crs, lon, lat, res)
            t_read, _ = best_of(args.repeat, lambda p=path: read_all(p))
            t_sum, summary = best_of(args.repeat, lambda p=path: summarize_mask(p))
            t_acc, _ = best_of(args.repeat, lambda p=path: accumulate(p, mask))
            rows.append(
                {
                    "grid": name,
                    "crs": crs,
                    "megapixels": mpx,
                    "read_s": t_read,
                    "summarize_s": t_sum,
                    "summarize_mpx_per_s": mpx / t_sum,
                    "accumulate_s": t_acc,
                    "accumulate_mpx_per_s": mpx / t_acc,
                    "glacier_area_km2": summary.glacier_area_km2,
                    "method": summary.method,
                }
            )
    errors = {name: max_interpolation_error(crs, tr) for name, (crs, tr) in ERROR_GRIDS.items()}

    print(f"summarize_mask on a {args.size} x {args.size} mask ({mpx:.0f} Mpx), best of {args.repeat}")
    print(f"{'grid':<24} {'read s':>8} {'summ. s':>8} {'Mpx/s':>8} {'accum. s':>9} {'Mpx/s':>8}")
    for r in rows:
        print(
            f"{r['grid']:<24} {r['read_s']:>8.2f} {r['summarize_s']:>8.2f} {r['summarize_mpx_per_s']:>8.0f} "
            f"{r['accumulate_s']:>9.2f} {r['accumulate_mpx_per_s']:>8.0f}"
        )
    print("\nmax relative error of interpolated pixel areas vs exact (20000 x 20000 grids, random pixels)")
    for name, err in errors.items():
        print(f"{name:<28} {err:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "size": args.size,
                "repeat": args.repeat,
                "machine": platform.platform(),
                "python": platform.python_version(),
                "throughput": rows,
                "max_interpolation_error": errors,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
