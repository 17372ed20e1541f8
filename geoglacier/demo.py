"""The bundled example: synthetic scenes through the whole geoglacier path.

``geoglacier demo`` (and ``make demo``) calls :func:`run_demo`. Every output goes into
one folder, named at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio

from geoglacier.errors import OutputExistsError, OutputPathError
from geoglacier.io.atomic import writable_folder


@dataclass
class DemoResult:
    """What the demo wrote, by role."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


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
    existing = next(p for p in [root, *root.absolute().parents] if p.exists())
    if not writable_folder(existing):
        raise OutputPathError(f"{root}: folder {existing} is not writable; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _make_scenes(root: Path, size: int, seed: int, overwrite: bool, log: Callable[[str], None]) -> Any:
    """Step 1: a training scene under ``root/train`` and a second scene to segment."""
    from geoglacier.synthetic import generate_scene

    train_dir = root / "train"
    (train_dir / "images").mkdir(parents=True, exist_ok=True)
    (train_dir / "masks").mkdir(parents=True, exist_ok=True)
    log(f"1/5 Generating a {size} x {size} synthetic training scene (seed {seed}) ...")
    train_scene = generate_scene(
        train_dir / "images" / "example.tif",
        train_dir / "masks" / "example.tif",
        height=size,
        width=size,
        seed=seed,
        overwrite=overwrite,
    )
    log(f"    and a second scene to segment (seed {seed + 1}, with a nodata border) ...")
    test = generate_scene(
        root / "scene.tif",
        root / "reference_mask.tif",
        height=size,
        width=size,
        seed=seed + 1,
        nodata_border=True,
        overwrite=overwrite,
    )
    return train_scene, test


def _log_scenes(result: DemoResult, log: Callable[[str], None]) -> None:
    """Describe both scenes and the glacier fraction of the one to segment."""
    for role in ("train_scene", "scene"):
        log(f"    {role}: {_describe(result.files[role])}")
    with rasterio.open(result.files["reference_mask"]) as ds:
        ref = ds.read(1)
    valid = ref != 255
    log(
        f"    glacier fraction of the scene to segment: {float((ref[valid] == 1).mean()):.1%} "
        f"of {int(valid.sum())} valid pixels ({int((~valid).sum())} nodata)"
    )


def _train_model(
    root: Path, quick: bool, seed: int, overwrite: bool, log: Callable[[str], None]
) -> tuple[Path, Any]:
    """Step 2: train the demo recipe (or the quick one) on ``root/train``."""
    from geoglacier.training.loop import train

    recipe = (
        dict(arch="Unet", encoder="resnet18", epochs=1, patch_size=64, patches_per_epoch=16, lr=1e-3)
        if quick
        else dict(
            arch="UnetPlusPlus", encoder="resnet34", epochs=8, patch_size=128, patches_per_epoch=32, lr=1e-3
        )
    )
    log(
        f"2/5 Training {recipe['arch']}/{recipe['encoder']} for {recipe['epochs']} epoch(s) on {recipe['patch_size']} px patches ..."
    )
    model_path = root / "model.pth"
    trained = train(
        root / "train",
        model_path,
        encoder_weights="none",
        batch_size=4,
        num_workers=0,
        device="auto",
        seed=seed,
        overwrite=overwrite,
        log=lambda line: log("    " + line),
        **recipe,
    )
    return model_path, trained


def _segment(
    result: DemoResult, model_path: Path, inventory: Path, overwrite: bool, log: Callable[[str], None]
) -> Any:
    """Step 3: segment the second scene, with summary, outlines and per-glacier areas."""
    from geoglacier.inference.segment import segment_scene

    root = result.out_dir
    log("3/5 Segmenting the second scene (blended sliding windows) and measuring each glacier ...")
    mask_path, summary_path = root / "mask.tif", root / "summary.json"
    segmented = segment_scene(
        result.files["scene"],
        model_path,
        mask_path,
        overlap=0.25,
        summary=summary_path,
        outlines=root / "glaciers.gpkg",
        probabilities=root / "probability.tif",
        overwrite=overwrite,
        progress=False,
        inventory=inventory,
        glaciers=root / "per_glacier.csv",
    )
    result.files.update(
        mask=mask_path,
        probabilities=root / "probability.tif",
        summary=summary_path,
        outlines=root / "glaciers.gpkg",
        per_glacier=root / "per_glacier.csv",
    )
    log(
        f"    {segmented.windows_run} windows through the model, {segmented.windows_skipped} skipped (all nodata), "
        f"{segmented.seconds:.1f} s; {segmented.outline_count} glacier polygons"
    )
    return segmented


def _report_segmentation(
    result: DemoResult, segmented: Any, inventory: Path, overwrite: bool, log: Callable[[str], None]
) -> None:
    """Log the area summary and the per-glacier table, and draw the per-glacier quicklook."""
    root, mask_path = result.out_dir, result.files["mask"]
    if segmented.summary is not None:
        from geoglacier.measure.areas import format_summary

        log(_indent(format_summary(segmented.summary)))
    if "glacier_totals" in segmented.extra:
        import pandas as pd

        from geoglacier.glaciers.areas import format_table, format_totals

        log("    per glacier (largest first; the full table is per_glacier.csv):")
        log(_indent(format_table(pd.read_csv(root / "per_glacier.csv"), rows=8)))
        log(_indent(format_totals(segmented.extra["glacier_totals"])))
        from geoglacier.glaciers.areas import glacier_areas
        from geoglacier.glaciers.quicklook import write_glacier_quicklook

        result.files["glacier_quicklook"] = write_glacier_quicklook(
            mask_path,
            glacier_areas(mask_path, inventory),
            root / "glaciers_quicklook.png",
            overwrite=overwrite,
        )


def _evaluate(result: DemoResult, log: Callable[[str], None]) -> None:
    """Step 4: compare the mask with the reference and write ``evaluation.json``."""
    from geoglacier.measure.evaluate import evaluate_masks, format_metrics

    log("4/5 Evaluating the mask against the reference ...")
    metrics = evaluate_masks(result.files["mask"], result.files["reference_mask"])
    log(_indent(format_metrics(metrics)))
    metrics_path = result.out_dir / "evaluation.json"
    from geoglacier.measure.evaluate import write_metrics_json

    write_metrics_json(metrics, metrics_path, overwrite=True)
    result.files["evaluation"] = metrics_path
    result.metrics = metrics


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    *,
    size: int = 384,
    seed: int = 0,
    quick: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Generate scenes, train briefly, segment a second scene, summarise and evaluate.

    The default run uses the real recipe's network (U-Net++ / ResNet34, no pretrained
    weights: the demo must work offline) for a few short epochs on 128 px patches and
    takes a few minutes on a 2-core CPU; ``quick`` trains a small U-Net for one epoch.
    """
    # Imported up front, as the steps need them, so a missing dependency fails before any output.
    from geoglacier.inference.segment import segment_scene  # noqa: F401
    from geoglacier.measure.evaluate import evaluate_masks, format_metrics  # noqa: F401
    from geoglacier.quicklook import write_quicklook
    from geoglacier.synthetic import generate_scene  # noqa: F401
    from geoglacier.training.loop import train  # noqa: F401

    root = prepare_out_dir(out_dir, overwrite)
    result = DemoResult(root)
    train_scene, test = _make_scenes(root, size, seed, overwrite, log)
    result.files.update(
        train_scene=train_scene.scene_path,
        train_mask=train_scene.mask_path,
        scene=test.scene_path,
        reference_mask=test.mask_path,
    )
    _log_scenes(result, log)

    model_path, trained = _train_model(root, quick, seed, overwrite, log)
    result.files.update(
        model=model_path, metrics_csv=trained.paths.metrics_csv, metrics_png=trained.paths.metrics_png
    )

    inventory = _write_demo_inventory(test.mask_path, root / "inventory.gpkg")
    result.files["inventory"] = inventory
    log(
        f"    an inventory for it: {inventory.name}, outlines of the reference glaciers in lon/lat (as RGI ships them)"
    )

    segmented = _segment(result, model_path, inventory, overwrite, log)
    _report_segmentation(result, segmented, inventory, overwrite, log)
    _evaluate(result, log)

    log("5/5 Writing a quicklook PNG ...")
    result.files["quicklook"] = write_quicklook(
        test.scene_path,
        result.files["mask"],
        root / "quicklook.png",
        reference=test.mask_path,
        overwrite=overwrite,
    )
    log("Outputs:")
    for role, path in result.files.items():
        log(f"    {role:15s} {path}")
    log(f"All outputs are in {root.resolve()}")
    return result


def _write_demo_inventory(mask: Path, out: Path) -> Path:
    """Outlines of a reference mask as a small RGI-like inventory (ids, names, areas; EPSG:4326)."""
    import fiona
    from shapely.geometry import mapping

    from geoglacier.measure.outlines import mask_polygons

    schema = {"geometry": "Polygon", "properties": {"RGIId": "str", "Name": "str", "Area": "float"}}
    polygons = sorted(mask_polygons(mask, min_area_km2=0.05), key=lambda p: -p[2])
    with fiona.open(out, "w", driver="GPKG", schema=schema, crs="EPSG:4326", layer="glaciers") as sink:
        for i, (_, lonlat, area_km2) in enumerate(polygons, start=1):
            props = {"RGIId": f"DEMO-{i:05d}", "Name": f"Synthetic glacier {i}", "Area": round(area_km2, 3)}
            sink.write(fiona.Feature.from_dict({"geometry": mapping(lonlat), "properties": props}))
    return out


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
