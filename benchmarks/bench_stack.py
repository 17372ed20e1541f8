"""Benchmark ``geoglacier stack`` on synthetic Sentinel-2 L2A tiles up to the full 10980 x 10980.

For each size (default: a quarter tile, 2745 px, and a full tile, 10980 px) it writes a
synthetic ``.SAFE`` folder into a temporary folder, block by block (so generating the
tile needs no more memory than stacking it): ``MTD_MSIL2A.xml`` (baseline 05.09, with
``BOA_ADD_OFFSET``), four 10 m bands B02/B03/B04/B08 and the 20 m B11 and SCL (cloud
blobs and snow), as deflate-compressed tiled GeoTIFFs. It then runs
``geoglacier stack SAFE --bands red,green,blue,nir,swir1`` in a fresh process and
reports wall time and peak RSS (``/usr/bin/time -f %M``; psutil polling without it).
Each tile is stacked twice in the same run: without a DEM, and with a synthetic DEM
(``--dem``, recipe plus ``elevation,slope``): a seeded int16 raster in EPSG:4326 at one
arc-second (about 30 m) that covers the tile, with a void block, so the DEM is warped
from another CRS and resolution. The tiles are removed afterwards unless ``--keep``.

A full tile needs about 1.5 GB of input and 2-3 GB of output and staging space: free
disk is checked first.

Usage::

    python benchmarks/bench_stack.py [--sizes 2745 10980] [--workdir /tmp] [--keep]
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

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

ORIGIN = (499980.0, 3100020.0)
STRIP = 1098  # rows written per block while generating (a tenth of a full tile)
RECIPE = "red,green,blue,nir,swir1"
TERRAIN = "elevation,slope"
DEM_RES = 1 / 3600  # degrees: one arc-second
MTD = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2023-10-15T05:07:01.024Z</PRODUCT_START_TIME>
      <PRODUCT_URI>{uri}</PRODUCT_URI>
      <PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>
      <Datatake datatakeIdentifier="GS2A_20231015T050701_043393_N05.09">
        <SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME>
      </Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      <BOA_ADD_OFFSET_VALUES_LIST>
{offsets}
      </BOA_ADD_OFFSET_VALUES_LIST>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def _field(rows: np.ndarray, cols: np.ndarray, seed: int, lo: float, hi: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fy, fx, phase = rng.uniform(0.002, 0.01), rng.uniform(0.002, 0.01), rng.uniform(0, 6.28)
    wave = 0.5 + 0.5 * np.sin(fy * rows[:, None] + phase) * np.cos(fx * cols[None, :])
    noise = np.random.default_rng([seed, int(rows[0])]).normal(0, 40, (rows.size, cols.size))
    return np.clip(lo + (hi - lo) * wave + noise, 1, 65534).astype(np.uint16)


def _scl(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Vegetation (4) with cloud blobs (9), their shadows (3) and snow fields (11) at 20 m."""
    a = np.sin(rows[:, None] * 0.011) * np.cos(cols[None, :] * 0.013)
    b = np.sin(rows[:, None] * 0.007 + 1.0) * np.sin(cols[None, :] * 0.005)
    out = np.full(a.shape, 4, dtype=np.uint8)
    out[a > 0.8] = 9
    out[(a > 0.6) & (a <= 0.8)] = 3
    out[b > 0.7] = 11
    return out


def _write_band(path: Path, size: int, res: int, fill) -> None:
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "count": 1,
        "dtype": "uint8" if "SCL" in path.name else "uint16",
        "crs": "EPSG:32645",
        "transform": Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "bigtiff": "IF_SAFER",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = np.arange(size)
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, size, STRIP):
            rows = np.arange(r0, min(size, r0 + STRIP))
            ds.write(fill(rows, cols), 1, window=Window(0, r0, size, rows.size))


def write_tile(parent: Path, size10: int) -> Path:
    """A synthetic Sentinel-2 L2A .SAFE folder with a size10 x size10 10 m grid."""
    name = "S2A_MSIL2A_20231015T050701_N0509_R019_T45RVL_20231015T090000.SAFE"
    safe = parent / name
    img = safe / "GRANULE" / "L2A_T45RVL_A043393_20231015T051213" / "IMG_DATA"
    prefix = "T45RVL_20231015T050701"
    for i, band in enumerate(("B02", "B03", "B04", "B08")):
        _write_band(
            img / "R10m" / f"{prefix}_{band}_10m.tif",
            size10,
            10,
            lambda r, c, i=i: _field(r, c, i, 1500 + 300 * i, 6000 + 400 * i),
        )
    size20 = (size10 + 1) // 2
    _write_band(img / "R20m" / f"{prefix}_B11_20m.tif", size20, 20, lambda r, c: _field(r, c, 11, 1200, 4000))
    _write_band(img / "R20m" / f"{prefix}_SCL_20m.tif", size20, 20, _scl)
    offsets = "\n".join(f'        <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(MTD.format(uri=name, offsets=offsets), encoding="utf-8")
    return safe


def write_dem(parent: Path, size10: int) -> Path:
    """A seeded synthetic DEM in EPSG:4326 (int16, nodata -32768, one void block) covering the tile."""
    from rasterio.warp import transform_bounds

    box = transform_bounds(
        "EPSG:32645", "EPSG:4326", ORIGIN[0], ORIGIN[1] - 10 * size10, ORIGIN[0] + 10 * size10, ORIGIN[1]
    )
    west, north = box[0] - 0.01, box[3] + 0.01
    width = int((box[2] + 0.01 - west) / DEM_RES) + 1
    height = int((north - (box[1] - 0.01)) / DEM_RES) + 1
    path = parent / "dem.tif"
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "int16",
        "crs": "EPSG:4326",
        "transform": Affine(DEM_RES, 0, west, 0, -DEM_RES, north),
        "nodata": -32768,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    rng = np.random.default_rng(25)
    fy, fx = rng.uniform(0.002, 0.006, 2)
    cols = np.arange(width)
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, height, STRIP):
            rows = np.arange(r0, min(height, r0 + STRIP))
            z = 3000 + 1500 * np.sin(fy * rows[:, None]) * np.cos(fx * cols[None, :]) + 2.0 * rows[:, None]
            z += np.random.default_rng([25, r0]).normal(0, 3, z.shape)
            z[(rows[:, None] // 500 == 3) & (cols[None, :] // 500 == 3)] = -32768  # a void
            ds.write(z.astype(np.int16), 1, window=Window(0, r0, width, rows.size))
    return path


def peak_rss_run(cmd: list[str], work: Path) -> tuple[float, float, str]:
    """Run ``cmd``; return (seconds, peak RSS in MiB, stdout)."""
    timer = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    report = work / "maxrss.txt"
    full = [timer, "-f", "%M", "-o", str(report), *cmd] if timer else cmd
    start = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode(errors='replace')[-2000:]}")
    rss = int(report.read_text().split()[-1]) / 1024.0 if timer else polled
    return seconds, rss, out.decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2745, 10980])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stack.json"))
    parser.add_argument("--keep", action="store_true", help="Keep the synthetic tiles and outputs.")
    args = parser.parse_args()

    need = max(args.sizes) ** 2 * (4 * 2 + 7 * 4) * 1.3  # inputs (uint16) + output and staging (float32)
    free = shutil.disk_usage(args.workdir).free
    print(f"free disk in {args.workdir}: {free / 2**30:.1f} GiB (need about {need / 2**30:.1f} GiB)")
    if free < need:
        sys.exit(f"not enough free disk in {args.workdir}; pass --workdir or smaller --sizes")

    rows = []
    for size in args.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bench-stack-{size}-", dir=args.workdir))
        try:
            start = time.perf_counter()
            safe = write_tile(work, size)
            gen_s = time.perf_counter() - start
            dem = write_dem(work, size)
            gen_s = time.perf_counter() - start
            for with_dem in (False, True):
                row = _stack_row(safe, dem if with_dem else None, work, size)
                row["generate_s"] = round(gen_s, 1)
                rows.append(row)
                (work / "scene.tif").unlink()
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        row["rss_ratio_to_smallest"] = round(row["peak_rss_mib"] / rows[0]["peak_rss_mib"], 2)
        plain = next(r for r in rows if r["size"] == row["size"] and not r["dem"])
        row["rss_ratio_to_no_dem"] = round(row["peak_rss_mib"] / plain["peak_rss_mib"], 2)
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "recipe": RECIPE,
        "recipe_with_dem": f"{RECIPE},{TERRAIN}",
        "dem": f"synthetic int16 EPSG:4326, {DEM_RES * 3600:g} arc-second",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# geoglacier stack on synthetic Sentinel-2 L2A tiles ({meta['date']}, {meta['cpus']} CPUs, "
        f"load {meta['load_average'][0]:.1f})",
        "",
        f"Recipe {RECIPE}; with DEM: {RECIPE},{TERRAIN} from {meta['dem']} (--dem).",
        "",
        "| tile (10 m px) | DEM | stack s | Mpx/s | peak RSS (MiB) | / smallest | / no DEM | output (MiB) | no DEM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['size']}^2 | {'yes' if r['dem'] else 'no'} | {r['seconds']} | {r['mpix_per_s']} | {r['peak_rss_mib']} | "
        f"{r['rss_ratio_to_smallest']} | {r['rss_ratio_to_no_dem']} | {r['output_mib']} | {r['no_dem'] or '-'} |"
        for r in rows
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _stack_row(safe: Path, dem: Path | None, work: Path, size: int) -> dict:
    """Stack ``safe`` (with ``dem`` when given) in a fresh process; the table row."""
    out = work / "scene.tif"
    cmd = [sys.executable, "-m", "geoglacier", "stack", str(safe), "--out", str(out), "--no-progress"]
    cmd += ["--bands", RECIPE] if dem is None else ["--bands", f"{RECIPE},{TERRAIN}", "--dem", str(dem)]
    seconds, rss, stdout = peak_rss_run(cmd, work)
    lines = stdout.splitlines()
    masked = next((line for line in lines if line.startswith("masked")), "")
    no_dem = next((line for line in lines if line.startswith("no DEM")), "")
    row = {
        "size": size,
        "dem": dem is not None,
        "pixels_m": size * size / 1e6,
        "seconds": round(seconds, 1),
        "mpix_per_s": round(size * size / 1e6 / seconds, 2),
        "peak_rss_mib": round(rss, 1),
        "output_mib": round(out.stat().st_size / 2**20, 1),
        "masked": masked,
        "no_dem": no_dem,
    }
    print(
        f"{size:>6}^2 {'with' if dem else 'without'} DEM: stack {seconds:6.1f} s "
        f"({row['mpix_per_s']} Mpx/s), peak RSS {rss:7.1f} MiB, output {row['output_mib']} MiB; {masked}; {no_dem}"
    )
    return row


if __name__ == "__main__":
    main()
