"""``geoglacier segment-scenes``: many scenes as tasks on a dask.distributed cluster."""

from __future__ import annotations

import click

from geoglacier.cli.options import (
    batch_size_opt,
    blend_opt,
    device_opt,
    engine_opt,
    models_opt,
    overlap_opt,
    overlap_px_opt,
    overwrite_opt,
    precision_opt,
    progress_opt,
    tta_opt,
    window_opt,
)


@click.command("segment-scenes")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=str))
@models_opt
@click.option(
    "--uncertainty",
    is_flag=True,
    help="Ensembles: also write NAME_uncertainty.tif, the members' probability spread (std); "
    "with --inventory the glacier tables get uncertainty_ensemble_km2.",
)
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder for all outputs.",
)
@click.option(
    "--workers", default=2, show_default=True, type=int, help="Processes of the LocalCluster started here."
)
@click.option(
    "--scheduler", default=None, help="Address of an existing dask scheduler (tcp://host:8786) instead."
)
@window_opt
@overlap_opt
@batch_size_opt
@blend_opt
@precision_opt
@click.option(
    "--outlines",
    "outlines",
    default=None,
    type=click.Choice(["gpkg", "geojson"]),
    help="Also write outlines.",
)
@click.option(
    "--min-area", default=0.0, show_default=True, type=float, help="Drop outline polygons below this (km²)."
)
@click.option("--pixel-size", default=None, type=float, help="Pixel size (m) for scenes without a CRS.")
@click.option(
    "--inventory",
    type=click.Path(path_type=str),
    default=None,
    help="Glacier outlines: adds NAME_glaciers.csv per scene and glaciers.csv (best-covering scene per glacier).",
)
@click.option("--id-column", default=None, help="Inventory id column.  [default: RGIId, rgi_id, glac_id ...]")
@tta_opt
@device_opt
@engine_opt
@overlap_px_opt
@progress_opt
@overwrite_opt
def segment_scenes(
    scenes: tuple[str, ...],
    model_path: tuple[str, ...],
    uncertainty: bool,
    out_dir: str,
    workers: int,
    scheduler: str | None,
    window: int | None,
    overlap: float,
    batch_size: int,
    blend: str,
    precision: str,
    tta: bool,
    outlines: str | None,
    min_area: float,
    pixel_size: float | None,
    inventory: str | None,
    id_column: str | None,
    device: str,
    engine: str,
    overlap_px: int | None,
    progress: bool,
    overwrite: bool,
) -> None:
    """Segment SCENES on a dask cluster; writes NAME_mask.tif, NAME_summary.json and summary.csv.

    Two or more --model segment each scene as an ensemble (mean of the members' probabilities).
    A rerun skips the scenes whose outputs are complete and were made from the same scene
    file, model(s) and options (recorded in NAME_run.json); outputs made otherwise need
    --overwrite. summary.csv also keeps the scenes of earlier runs still in the folder.
    """
    from geoglacier.inference.batch import segment_scenes as run

    if uncertainty and len(model_path) < 2:
        raise click.UsageError("--uncertainty needs an ensemble: give two or more --model")
    client = None
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
    try:
        result = run(
            scenes,
            model_path,
            out_dir,
            client=client,
            workers=workers,
            device=device,
            outlines=outlines,
            overwrite=overwrite,
            progress=progress,
            log=lambda m: click.echo(m, err=True),
            window=window,
            overlap=overlap,
            batch_size=batch_size,
            blend=blend,
            precision=precision,
            tta=tta,
            engine=engine,
            overlap_px=overlap_px,
            min_area=min_area,
            pixel_size=pixel_size,
            inventory=inventory,
            id_column=id_column,
            uncertainty=uncertainty,
        )
    finally:
        if client is not None:
            client.close()
    counts = f"{len(result.segmented)} segmented, {len(result.skipped)} skipped (already complete)"
    if result.failed:
        counts += f", {len(result.failed)} failed"
    earlier = f", with {len(result.earlier)} scene(s) of earlier runs" if result.earlier else ""
    click.echo(f"{counts}; table: {result.summary_csv}{earlier}")
    if result.glaciers_csv is not None:
        click.echo(f"glacier table (best-covering scene per glacier): {result.glaciers_csv}")
    if result.failed:
        raise click.ClickException(
            f"{len(result.failed)} scene(s) failed: " + ", ".join(r["scene"] for r in result.failed)
        )
