"""Benchmark ``geoglacier labels``: wall time and peak memory against the scene's size.

Writes, once per size, a synthetic ``size`` x ``size`` 5-band uint16 scene (smooth
values, a nodata border of 5 %; tiled 512, deflate, UTM 45N, 30 m) and ``n`` irregular,
non-overlapping outlines (jittered polygons on a grid, not aligned with the pixels, in
longitude/latitude as RGI ships them) as a GeoPackage; then runs
:func:`geoglacier.glaciers.labels.burn_labels` with a 2-pixel edge band in a fresh
process and records its wall time and peak resident memory (``ru_maxrss``), beside what
the scene's bands would take in memory as float32 if read whole.

Usage::

    python benchmarks/bench_labels.py [--sizes 2048 8192 12288] [--n 2000]
        [--out benchmarks/results/labels.json]
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
BANDS = 5


def make_scene(path: Path, size: int) -> None:
    """A 5-band uint16 scene written 512 rows at a time (never whole in memory)."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(driver="GTiff", height=size, width=size, count=BANDS, dtype="uint16", crs=CRS)
    profile.update(transform=Affine(PX, 0, X0, 0, -PX, Y0), nodata=0, tiled=True, blockxsize=512)
    profile.update(blockysize=512, compress="deflate")
    border = size // 20
    cols = np.arange(size)
    tmp = path.with_suffix(".part.tif")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r in range(0, size, 512):
            h = min(512, size - r)
            rows = np.arange(r, r + h)[:, None]
            block = np.empty((BANDS, h, size), dtype=np.uint16)
            for b in range(BANDS):
                block[b] = 1000 + (500 * (1 + np.sin(rows / (40 + b) + cols / 70))).astype(np.uint16)
            block[:, :, size - border :] = 0
            if r < border:
                block[:, : border - r] = 0
            ds.write(block, window=Window(0, r, size, h))
    tmp.rename(path)


def make_outlines(path: Path, size: int, n: int, seed: int = 0) -> None:
    """``n`` jittered polygons on a grid over the scene, written in EPSG:4326."""
    import fiona
    import pyproj
    import shapely
    from shapely.geometry import mapping

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    cell = size * PX / side
    to_ll = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    schema = {"geometry": "Unknown", "properties": {"RGIId": "str", "BgnDate": "str"}}
    tmp = path.with_suffix(".part.gpkg")
    with fiona.open(tmp, "w", driver="GPKG", schema=schema, crs="EPSG:4326", layer="glaciers") as sink:
        for i in range(n):
            r, c = divmod(i, side)
            cx, cy = X0 + (c + 0.5) * cell, Y0 - (r + 0.5) * cell
            ang = np.sort(rng.uniform(0, 2 * np.pi, 12))
            rad = cell * rng.uniform(0.15, 0.45, 12)
            ring = np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)])
            poly = shapely.make_valid(shapely.Polygon(ring)).buffer(0)
            ll = shapely.transform(poly, lambda xy: np.column_stack(to_ll.transform(xy[:, 0], xy[:, 1])))
            props = {"RGIId": f"B-{i:06d}", "BgnDate": "20001030"}
            sink.write(fiona.Feature.from_dict({"geometry": mapping(ll), "properties": props}))
    tmp.rename(path)


def run_one(scene: str, inventory: str, out: str, result_path: str) -> None:
    """Burn the labels in this (fresh) process; write the figures to ``result_path`` (JSON)."""
    from geoglacier.glaciers.labels import burn_labels

    t0 = time.perf_counter()
    res = burn_labels(scene, inventory, out, edge_pixels=2, overwrite=True)
    figures = {
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outlines": res.outlines,
        "glacier_share": res.share(res.glacier_pixels),
        "nodata_share": res.share(res.nodata_pixels),
    }
    Path(result_path).write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 12288])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=HERE / ".cache" / "labels")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "labels.json")
    parser.add_argument("--one", nargs=4, metavar=("SCENE", "INV", "OUT", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(*args.one)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        scene = args.workdir / f"scene_{size}.tif"
        inv = args.workdir / f"outlines_{size}_{args.n}.gpkg"
        t0 = time.perf_counter()
        if not scene.exists():
            make_scene(scene, size)
        if not inv.exists():
            make_outlines(inv, size, args.n)
        print(f"{size} x {size}: inputs ready in {time.perf_counter() - t0:.0f} s", flush=True)
        result = args.workdir / "one.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(scene),
            str(inv),
            str(args.workdir / "labels.tif"),
            str(result),
        ]
        subprocess.run(cmd, check=True, env=env)
        row = {
            "size": size,
            "scene_float32_mb": BANDS * size * size * 4 / 2**20,
            **json.loads(result.read_text()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "| scene (px) | outlines | seconds | Mpx/s | peak RSS (MiB) | bands as float32 (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mpx = r["size"] ** 2 / 1e6 / r["seconds"]
        lines.append(
            f"| {r['size']}² | {r['outlines']} | {r['seconds']:.1f} | {mpx:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['scene_float32_mb']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d"),
        "edge_pixels": 2,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "cases": rows}, indent=2) + "\n")
    load = ", ".join(f"{v:.1f}" for v in meta["load_average"])
    args.out.with_suffix(".md").write_text(
        f"# geoglacier labels: time and memory\n\n{meta['date']}, {meta['cpus']} CPUs, load {load}; "
        f"5-band uint16 scenes, {args.n} outlines in EPSG:4326, edge band 2 px.\n\n{table}\n"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
