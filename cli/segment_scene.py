"""``geoglacier segment-scene``: map glaciers over a whole scene into a COG mask."""

from __future__ import annotations

from typing import Any

import click

from geoglacier.cli.options import (
    batch_size_opt,
    blend_opt,
    date_opt,
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

_out_path = click.Path(dir_okay=False, path_type=str)


@click.command("segment-scene")
@click.argument("scene", type=click.Path(path_type=str))
@models_opt
@click.option(
    "--uncertainty",
    type=_out_path,
    default=None,
    help="Ensembles: also write the members' probability spread (std) as a COG; with --glaciers, "
    "the table gets its uncertainty_ensemble_km2.",
)
@click.option(
    "--out", required=True, type=_out_path, help="Mask COG to write (1 glacier, 0 not, 255 nodata)."
)
@window_opt
@overlap_opt
@batch_size_opt
@blend_opt
@device_opt
@engine_opt
@overlap_px_opt
@precision_opt
@tta_opt
@click.option("--probabilities", type=_out_path, default=None, help="Also write the blended probability COG.")
@click.option("--summary", type=_out_path, default=None, help="Also write the area summary as JSON.")
@click.option(
    "--outlines", type=_out_path, default=None, help="Also write glacier polygons (.gpkg or .geojson)."
)
@click.option(
    "--min-area",
    type=float,
    default=0.0,
    show_default=True,
    help="Drop outline polygons smaller than this (km2).",
)
@click.option(
    "--pixel-size",
    type=float,
    default=None,
    help="Pixel side in metres, only for areas of a scene without CRS (a CRS gives true areas).",
)
@click.option(
    "--inventory",
    type=click.Path(path_type=str),
    default=None,
    help="Glacier outlines (RGI/GLIMS: .gpkg, .shp, .zip, .geojson) for --glaciers and the ids of --outlines.",
)
@click.option("--glaciers", type=_out_path, default=None, help="Per-glacier table to write (.gpkg or .csv).")
@click.option("--id-column", default=None, help="Inventory id column.  [default: RGIId, rgi_id, glac_id ...]")
@date_opt
@click.option(
    "--resume",
    is_flag=True,
    default=False,
    help="Continue a run of this command that was interrupted, from the output tiles it kept.",
)
@progress_opt
@overwrite_opt
def segment_scene(
    scene: str,
    model_path: tuple[str, ...],
    uncertainty: str | None,
    out: str,
    window: int | None,
    overlap: float,
    batch_size: int,
    blend: str,
    device: str,
    engine: str,
    overlap_px: int | None,
    precision: str,
    tta: bool,
    probabilities: str | None,
    summary: str | None,
    outlines: str | None,
    min_area: float,
    pixel_size: float | None,
    inventory: str | None,
    glaciers: str | None,
    id_column: str | None,
    date: str | None,
    resume: bool,
    progress: bool,
    overwrite: bool,
) -> None:
    """Segment SCENE with sliding windows and write a georeferenced glacier mask.

    Overlapping windows are blended, memory stays bounded whatever the scene height,
    and every output appears only when complete.
    """
    from geoglacier.inference.segment import segment_scene as run

    if len(model_path) > 1 or uncertainty is not None:
        if resume and len(model_path) > 1:
            raise click.UsageError("--resume works with one --model; an ensemble run starts over")
        if resume:
            raise click.UsageError(
                "--resume: --uncertainty needs an ensemble, and an ensemble run starts over"
            )
        _run_ensemble(
            scene, model_path, out, probabilities=probabilities, uncertainty=uncertainty, summary=summary,
            overwrite=overwrite, window=window, overlap=overlap, batch_size=batch_size, blend=blend,
            device=device, precision=precision, tta=tta, engine=engine, overlap_px=overlap_px,
            pixel_size=pixel_size, progress=progress, date=date, inventory=inventory, glaciers=glaciers,
            id_column=id_column, outlines=outlines, min_area=min_area,
        )  # fmt: skip
        return
    result = run(
        scene,
        model_path[0],
        out,
        window=window,
        overlap=overlap,
        batch_size=batch_size,
        blend=blend,
        device=device,
        precision=precision,
        tta=tta,
        engine=engine,
        overlap_px=overlap_px,
        probabilities=probabilities,
        summary=summary,
        outlines=outlines,
        min_area=min_area,
        pixel_size=pixel_size,
        overwrite=overwrite,
        progress=progress,
        inventory=inventory,
        glaciers=glaciers,
        id_column=id_column,
        date=date,
        resume=resume,
    )
    _echo_result(result)


def _run_ensemble(scene: str, model_path: tuple[str, ...], out: str, **kwargs: Any) -> None:
    """Segment SCENE with an ensemble of checkpoints and print what it wrote."""
    from geoglacier.measure.areas import format_summary

    if len(model_path) < 2:
        raise click.UsageError("--uncertainty needs an ensemble: give two or more --model")
    from geoglacier.inference.ensemble import segment_ensemble

    ens = segment_ensemble(scene, model_path, out, **kwargs)
    if ens.summary is not None:
        click.echo(format_summary(ens.summary))
    click.echo(f"ensemble of {len(ens.members)} members, threshold {ens.threshold:.3f} (their mean)")
    if ens.glacier_totals is not None:
        from geoglacier.glaciers.areas import format_totals

        click.echo(format_totals(ens.glacier_totals))
    for path in (ens.mask, ens.probabilities, ens.uncertainty, ens.summary_path, ens.outlines, ens.glaciers):
        if path is not None:
            extra = f" ({ens.outline_count} polygons)" if path == ens.outlines else ""
            click.echo(f"wrote {path}{extra}")


def _echo_result(result: Any) -> None:
    """Print a single-model run's areas, timings and the files it wrote."""
    from geoglacier.measure.areas import format_summary

    if result.summary is not None:
        click.echo(format_summary(result.summary))
    else:
        click.echo("areas not computed: the scene has no CRS (pass --pixel-size METRES)")
    click.echo(
        f"{result.windows_run} windows run, {result.windows_skipped} skipped (nodata) in "
        f"{result.seconds:.1f} s on {result.device} ({result.precision}, engine {result.engine}: "
        f"{result.engine_reason})"
    )
    if "glacier_totals" in result.extra:
        from geoglacier.glaciers.areas import format_totals

        click.echo(format_totals(result.extra["glacier_totals"]))
    for label, path in (
        ("mask", result.mask),
        ("probabilities", result.probabilities),
        ("summary", result.summary_path),
        ("outlines", result.outlines),
        ("glaciers", result.extra.get("glaciers")),
    ):
        if path is not None:
            extra = f" ({result.outline_count} polygons)" if label == "outlines" else ""
            click.echo(f"wrote {path}{extra}")
