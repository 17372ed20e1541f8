"""Seeded stand-ins for the inputs the README and the tutorials name, under the same names.

The documented commands run on these in ``tests/test_docs.py``: Landsat 7 and 8 Collection 2
Level-2 folders and a Sentinel-2 L2A ``.SAFE`` (from :mod:`tests.products_data`), an HLS v2.0
S30 granule's folder (from :mod:`tests.hls_data`), a DEM ``dem.tif`` (a plane
in EPSG:4326 over every grid, from :func:`tests.products_data.write_plane_dem`), training
scenes and masks in ``data/`` (two scenes of ``2 * SIZE`` rows, with the small glaciers of
:func:`small_glaciers` burned in, enough for ``train --error-folds 2``), a classic layout in ``classic/``, scenes in ``scenes/``, a
held-out ``scene.tif`` with its ``reference_mask.tif``, and an inventory ``rgi.gpkg`` with
outlines over both grids.
"""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import rasterio
from rasterio import features
from shapely import affinity
from shapely.geometry import Point, box, mapping

from geoglacier.synthetic import generate_scene, write_classic_layout
from tests.hls_data import write_hls
from tests.products_data import write_landsat, write_plane_dem, write_safe

SIZE = 128  # pixels a side of every scene and product
TRAIN_ROWS = 2 * SIZE  # rows of the training scenes in data/ (SIZE columns)
#: Centres (row, column) of the small glaciers on the synthetic grid: five in each half of the
#: training scenes (the two strips of ``--error-folds 2``), clear of the :func:`_boxes` outlines.
SMALL_CENTRES = [(22, 80), (22, 110), (66, 18), (104, 20), (104, 62)] + [
    (160, 24),
    (160, 64),
    (160, 104),
    (214, 40),
    (214, 92),
]


def _boxes(transform, size: int) -> list:
    """Three outlines on a grid: a pixel box at the top-left, the centre and the bottom-right."""
    cells = [(8, 8, 40, 48), (48, 40, 88, 96), (90, 90, 120, 124)]
    scale = size / SIZE
    out = []
    for r0, c0, r1, c1 in cells:
        x0, y0 = transform * (c0 * scale, r0 * scale)
        x1, y1 = transform * (c1 * scale, r1 * scale)
        out.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return out


def small_glaciers(transform, seed: int = 0) -> list:
    """Ten seeded elliptic outlines of 0.17-0.3 km2 (190-330 px of 30 m) on the synthetic grid."""
    rng = np.random.default_rng(seed)
    out = []
    for row, col in SMALL_CENTRES:
        a, b = rng.uniform(8.0, 10.0), rng.uniform(7.5, 9.5)  # semi-axes in pixels (columns, rows)
        x, y = transform * (col, row)
        out.append(affinity.scale(Point(x, y).buffer(1.0, 32), a * transform.a, b * -transform.e))
    return out


def burn_glaciers(image: Path, mask: Path, outlines: list) -> None:
    """Make the outlines glacier in ``mask`` (1) and ``image`` (the scene's median glacier spectrum)."""
    with rasterio.open(mask, "r+") as m, rasterio.open(image, "r+") as im:
        labels = m.read(1)
        bands = im.read()
        inside = features.rasterize(outlines, out_shape=labels.shape, transform=m.transform).astype(bool)
        ice = np.median(bands[:, labels == 1], axis=1)
        bands[:, inside] = ice[:, None]
        labels[inside] = 1
        m.write(labels, 1)
        im.write(bands)


def write_inventory(path: Path, grids: list[tuple[object, int]], extra: list | None = None) -> Path:
    """An RGI-like GeoPackage (RGIId, Name, Area) with three outlines on each grid and ``extra``, in UTM 45N."""
    schema = {"geometry": "Polygon", "properties": {"RGIId": "str", "Name": "str", "Area": "float"}}
    with fiona.open(path, "w", driver="GPKG", schema=schema, crs="EPSG:32645") as sink:
        n = 0
        for geoms in [*(_boxes(transform, size) for transform, size in grids), extra or []]:
            for geom in geoms:
                n += 1
                props = {
                    "RGIId": f"RGI60-15.{n:05d}",
                    "Name": f"glacier {n}",
                    "Area": round(geom.area / 1e6, 3),
                }
                sink.write(fiona.Feature.from_dict({"geometry": mapping(geom), "properties": props}))
    return path


def write_dem(path: Path, grids: list[tuple[object, int]]) -> Path:
    """A DEM over the union of the grids (UTM 45N): a plane rising to the north-east, slope 15.8 degrees."""
    corners = [t * (c, r) for t, size in grids for c, r in ((0, 0), (size, size))]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    write_plane_dem(path, (min(xs), min(ys), max(xs), max(ys)), slope_e=0.2, slope_n=0.2)
    return path


def make_workspace(root: Path) -> Path:
    """Write every documented input into ``root`` (about a second)."""
    root.mkdir(parents=True, exist_ok=True)
    l7 = write_landsat(root, spacecraft=7, date="2003-09-15", height=SIZE, width=SIZE, seed=3)
    write_landsat(root, spacecraft=8, date="2023-10-15", height=SIZE, width=SIZE, seed=4)
    write_safe(root, height10=SIZE, width10=SIZE)
    write_hls(root, "S30")  # HLS.S30.T45RVL.2023290T050701.v2.0/, 64 x 64 px
    for i, name in enumerate(("valley_a", "valley_b")):
        (root / "data" / "images").mkdir(parents=True, exist_ok=True)
        (root / "data" / "masks").mkdir(parents=True, exist_ok=True)
        generate_scene(
            root / "data/images" / f"{name}.tif",
            root / "data/masks" / f"{name}.tif",
            height=TRAIN_ROWS,
            width=SIZE,
            seed=i,
        )
    write_classic_layout(root / "classic", n=4, size=64, seed=7)
    scene = generate_scene(root / "scene.tif", root / "reference_mask.tif", height=SIZE, width=SIZE, seed=5)
    (root / "scenes").mkdir()
    for i, name in enumerate(("east", "west")):
        generate_scene(
            root / "scenes" / f"{name}.tif",
            root / "scenes" / f"{name}_ref.tif",
            height=SIZE,
            width=SIZE,
            seed=10 + i,
        )
        (root / "scenes" / f"{name}_ref.tif").rename(root / f"{name}_reference_mask.tif")
    generate_scene(root / "big_scene.tif", root / "big_scene_mask.tif", height=SIZE, width=2 * SIZE, seed=20)
    with rasterio.open(scene.scene_path) as ds:
        synthetic_grid = (ds.transform, SIZE)
    small = small_glaciers(ds.transform)
    for name in ("valley_a", "valley_b"):
        burn_glaciers(root / "data/images" / f"{name}.tif", root / "data/masks" / f"{name}.tif", small)
    write_inventory(root / "rgi.gpkg", [(l7.transform, SIZE), synthetic_grid], extra=small)
    write_dem(root / "dem.tif", [(l7.transform, SIZE), (ds.transform, TRAIN_ROWS)])
    return root
