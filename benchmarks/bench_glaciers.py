"""Benchmark per-glacier areas against exactextract (zonal sums of the same mask over the same polygons).

Writes, once per size, a synthetic ``size`` x ``size`` uint8 mask (random blobs, 5 %
nodata border; tiled, deflate, UTM 45N, 30 m) and ``n`` non-overlapping irregular
outlines (buffered, jittered polygons on a grid, not aligned with the pixels) as a
GeoPackage, then runs each method in a fresh process and records its wall time and
peak resident memory (``ru_maxrss``):

* ``geoglacier``: :func:`geoglacier.glaciers.areas.glacier_areas` (zones, rings, true
  areas, coverage, buffer uncertainty; windows of 1024 px);
* ``exactextract``: ``exact_extract(mask, outlines, ["sum", "count"])`` with the
  raster-sequential strategy (``sum`` of the 0/1 mask weighted by each cell's covered
  fraction, nodata excluded), the fastest zonal-statistics tool we know of.

Agreement: exactextract's glacier cell sum times each glacier's true pixel area against
geoglacier's mapped area. They differ by design on the pixels an outline crosses
(fractional coverage vs. the pixel-centre rule), so the difference is reported as a
median and 95th percentile of ``|a - b| / buffer uncertainty`` and as a relative
difference of the totals.

Usage::

    python benchmarks/bench_glaciers.py [--sizes 4096 8192] [--n 2000] [--big]
        [--out benchmarks/results/glaciers.json]

``--big`` adds the 20000 x 20000 scene with 10 000 outlines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CRS = "EPSG:32645"
PX = 30.0
X0, Y0 = 400000.0, 3200000.0


def make_inputs(folder: Path, size: int, n: int, seed: int = 0) -> tuple[Path, Path]:
    """The mask and outline files for one case (reused when already there)."""
    import fiona
    import rasterio
    import shapely
    from affine import Affine
    from rasterio.windows import Window
    from shapely.geometry import mapping

    mask_path = folder / f"mask_{size}.tif"
    inv_path = folder / f"outlines_{size}_{n}.gpkg"
    rng = np.random.default_rng(seed)
    if not mask_path.exists():
        transform = Affine(PX, 0, X0, 0, -PX, Y0)
        profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint8", crs=CRS)
        profile.update(transform=transform, nodata=255, tiled=True, blockxsize=512, blockysize=512)
        coarse = rng.random((size // 32 + 1, size // 32 + 1))
        border = size // 20
        tmp = mask_path.with_suffix(".part.tif")
        with rasterio.open(tmp, "w", compress="deflate", **profile) as ds:
            for r in range(0, size, 1024):
                h = min(1024, size - r)
                rows = np.arange(r, r + h) // 32
                block = (coarse[rows][:, np.arange(size) // 32] > 0.55).astype(np.uint8)
                block[:, size - border :] = 255
                if r < border:
                    block[: border - r] = 255
                ds.write(block, 1, window=Window(0, r, size, h))
        tmp.rename(mask_path)
    if not inv_path.exists():
        side = int(np.ceil(np.sqrt(n)))
        cell = size * PX / side
        polys = []
        for i in range(n):
            r, c = divmod(i, side)
            cx = X0 + (c + 0.5) * cell
            cy = Y0 - (r + 0.5) * cell
            k = 12
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = cell * rng.uniform(0.15, 0.45, k)
            ring = np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
            polys.append(shapely.make_valid(shapely.Polygon(ring)).buffer(0))
        schema = {"geometry": "Unknown", "properties": {"RGIId": "str", "Area": "float"}}
        tmp = inv_path.with_suffix(".part.gpkg")
        with fiona.open(tmp, "w", driver="GPKG", schema=schema, crs=CRS, layer="glaciers") as sink:
            for i, p in enumerate(polys):
                props = {"RGIId": f"B-{i:06d}", "Area": p.area / 1e6}
                sink.write(fiona.Feature.from_dict({"geometry": mapping(p), "properties": props}))
        tmp.rename(inv_path)
    return mask_path, inv_path


def run_one(method: str, mask: str, inventory: str, out: str) -> None:
    """Run one method in this (fresh) process; write its areas and figures to ``out`` (JSON)."""
    t0 = time.perf_counter()
    if method == "geoglacier":
        from geoglacier.glaciers.areas import glacier_areas

        res = glacier_areas(mask, inventory)
        table = res.table
        result = {
            "ids": table["glacier_id"].tolist(),
            "area_km2": table["mapped_area_km2"].tolist(),
            "pixel_m2": (table["pixel_size_m"] ** 2).tolist(),
            "buffer_km2": table["uncertainty_buffer_km2"].tolist(),
        }
    elif method == "exactextract":
        from exactextract import exact_extract

        df = exact_extract(
            mask,
            inventory,
            ["sum", "count"],
            include_cols=["RGIId"],
            output="pandas",
            strategy="raster-sequential",
        )
        result = {"ids": df["RGIId"].tolist(), "cells": df["sum"].tolist()}
    else:
        raise SystemExit(f"unknown method {method}")
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(result))


def in_fresh_process(method: str, mask: Path, inventory: Path, folder: Path) -> dict:
    out = folder / f"{method}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    subprocess.run(
        [sys.executable, __file__, "--one", method, str(mask), str(inventory), str(out)], check=True, env=env
    )
    return json.loads(out.read_text())


def compare(ours: dict, ext: dict) -> dict:
    ext_cells = dict(zip(ext["ids"], ext["cells"], strict=True))
    a = np.array(ours["area_km2"])
    b = np.array([ext_cells.get(i, 0.0) for i in ours["ids"]]) * np.array(ours["pixel_m2"]) / 1e6
    buf = np.array(ours["buffer_km2"])
    ratio = np.abs(a - b) / buf
    return {
        "glaciers": len(a),
        "median_abs_diff_over_buffer": float(np.median(ratio)),
        "p95_abs_diff_over_buffer": float(np.percentile(ratio, 95)),
        "within_buffer": float(np.mean(ratio <= 1.0)),
        "total_geoglacier_km2": float(a.sum()),
        "total_exactextract_km2": float(b.sum()),
        "total_rel_diff": float((a.sum() - b.sum()) / b.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--big", action="store_true", help="also 20000 x 20000 with 10 000 outlines")
    parser.add_argument("--workdir", type=Path, default=HERE / ".cache" / "glaciers")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "glaciers.json")
    parser.add_argument(
        "--one", nargs=4, metavar=("METHOD", "MASK", "INVENTORY", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        run_one(*args.one)
        return
    cases = [(s, args.n) for s in args.sizes] + ([(20000, 10000)] if args.big else [])
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        import exactextract

        ext_version = exactextract.__version__
    except ImportError:
        ext_version = None
    rows = []
    for size, n in cases:
        t0 = time.perf_counter()
        mask, inv = make_inputs(args.workdir, size, n)
        print(f"{size} x {size}, {n} outlines: inputs ready in {time.perf_counter() - t0:.0f} s", flush=True)
        ours = in_fresh_process("geoglacier", mask, inv, args.workdir)
        row = {"size": size, "outlines": n, "geoglacier": {k: ours[k] for k in ("seconds", "peak_rss_mb")}}
        if ext_version is not None:
            ext = in_fresh_process("exactextract", mask, inv, args.workdir)
            row["exactextract"] = {k: ext[k] for k in ("seconds", "peak_rss_mb")}
            row["agreement"] = compare(ours, ext)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    header = f"{'mask':>13} {'outlines':>8} | {'geoglacier s':>12} {'MB':>6} | {'exactextract s':>14} {'MB':>6} | {'p95 |diff|/buffer':>17} {'total diff':>10}"
    print(header)
    for r in rows:
        e = r.get("exactextract", {})
        g = r.get("agreement", {})
        print(
            f"{r['size']:>6} x {r['size']:<6} {r['outlines']:>8} | {r['geoglacier']['seconds']:>12.1f} "
            f"{r['geoglacier']['peak_rss_mb']:>6.0f} | {e.get('seconds', float('nan')):>14.1f} "
            f"{e.get('peak_rss_mb', float('nan')):>6.0f} | {g.get('p95_abs_diff_over_buffer', float('nan')):>17.3f} "
            f"{100 * g.get('total_rel_diff', float('nan')):>9.3f}%"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "exactextract": ext_version,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps({"meta": meta, "cases": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
