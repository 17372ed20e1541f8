"""The bundled example: synthetic scenes through the whole geoglacier path.

``geoglacier demo`` (and ``make demo``) calls :func:`run_demo`. Every output goes into
one folder, named at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from geoglacier.errors import OutputExistsError, OutputPathError


@dataclass
class DemoResult:
    """What the demo wrote, by role."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def _describe(path: Path) -> str:
    with rasterio.open(path) as ds:
        first = ds.read(1, masked=True)
        crs = ds.crs.to_string() if ds.crs else "no CRS"
        return (
            f"{ds.width} x {ds.height} px, {ds.count} band(s) {ds.dtypes[0]}, {crs}, "
            f"pixel {abs(ds.transform.a):g} x {abs(ds.transform.e):g}, band 1 mean {float(first.mean()):.3f}"
        )


def prepare_out_dir(out_dir: str | os.PathLike[str], overwrite: bool) -> Path:
    """Create the demo folder; refuse a non-empty one unless ``overwrite``."""
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise OutputPathError(f"{root} is a file; give a folder for the demo outputs")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OutputExistsError(f"{root} is not empty; pass --overwrite to replace the demo outputs there")
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    size: int = 384,
    seed: int = 0,
    quick: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Generate a synthetic training scene and a second scene to segment, and describe them."""
    from geoglacier.synthetic import generate_scene

    root = prepare_out_dir(out_dir, overwrite)
    result = DemoResult(root)
    train_dir = root / "train"
    (train_dir / "images").mkdir(parents=True, exist_ok=True)
    (train_dir / "masks").mkdir(parents=True, exist_ok=True)
    log(f"Generating a {size} x {size} synthetic training scene (seed {seed}) ...")
    train = generate_scene(
        train_dir / "images" / "example.tif",
        train_dir / "masks" / "example.tif",
        height=size,
        width=size,
        seed=seed,
        overwrite=overwrite,
    )
    log(f"Generating a second scene to segment (seed {seed + 1}, nodata border) ...")
    test = generate_scene(
        root / "scene.tif",
        root / "reference_mask.tif",
        height=size,
        width=size,
        seed=seed + 1,
        nodata_border=True,
        overwrite=overwrite,
    )
    result.files.update(
        train_scene=train.scene_path,
        train_mask=train.mask_path,
        scene=test.scene_path,
        reference_mask=test.mask_path,
    )
    for role, path in result.files.items():
        log(f"  {role:15s} {path}: {_describe(path)}")
    with rasterio.open(test.mask_path) as ds:
        mask = ds.read(1)
    valid = mask != 255
    log(
        f"  glacier fraction of the scene to segment: {float((mask[valid] == 1).mean()):.1%} "
        f"of {int(valid.sum())} valid pixels ({int((~valid).sum())} nodata)"
    )
    log(f"All outputs are in {root.resolve()}")
    _ = np  # numpy is used by later stages
    return result
