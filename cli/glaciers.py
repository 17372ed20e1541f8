"""``geoglacier glaciers``: per-glacier mapped areas of a mask against an inventory."""

from __future__ import annotations

import click

from geoglacier.cli.options import id_column_opt, layer_opt, overwrite_opt, progress_opt

_out_path = click.Path(dir_okay=False, path_type=str)


@click.command("glaciers")
@click.argument("mask", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--inventory",
    required=True,
    type=click.Path(path_type=str),
    help="Glacier outlines: GeoPackage, shapefile (or its .zip, as RGI ships it), GeoJSON; any CRS.",
)
@click.option("--out", required=True, type=_out_path, help="Table to write: .gpkg (with outlines) or .csv.")
@click.option("--summary", type=_out_path, default=None, help="Also write the totals as JSON.")
@click.option(
    "--quicklook",
    type=_out_path,
    default=None,
    help="Also write a PNG of the outlines over the mask, coloured by mapped / outline area.",
)
@id_column_opt
@layer_opt
@click.option(
    "--min-coverage",
    type=float,
    default=0.9,
    show_default=True,
    help="Glaciers whose outline the mask covers less than this (valid pixels) are flagged, not totalled.",
)
@click.option(
    "--ring-pixels",
    type=int,
    default=3,
    show_default=True,
    help="Width of the ring outside each outline in which mapped glacier is counted.",
)
@click.option(
    "--probabilities",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Probability raster on the mask's grid: adds the model spread between p >= 0.4 and 0.6.",
)
@click.option(
    "--uncertainty",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Ensemble spread raster written by 'segment-scene --uncertainty' (std of the members' "
    "probabilities, on the mask's grid): adds uncertainty_ensemble_km2.",
)
@click.option(
    "--model",
    "model",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Checkpoint that made MASK: its error model adds area_low_km2, area_high_km2 and "
    "beyond_calibration (the model's own error, at the level it was calibrated for).",
)
@progress_opt
@overwrite_opt
def glaciers(
    mask: str,
    inventory: str,
    out: str,
    summary: str | None,
    quicklook: str | None,
    id_column: str | None,
    layer: str | None,
    min_coverage: float,
    ring_pixels: int,
    probabilities: str | None,
    uncertainty: str | None,
    model: str | None,
    progress: bool,
    overwrite: bool,
) -> None:
    """Mapped area of each inventory glacier in MASK, with uncertainty, and totals.

    Each pixel belongs to at most one glacier; areas are true (ellipsoidal) areas. With
    --model (the checkpoint that made MASK, trained with --error-folds) each glacier gets
    the interval its true area lies in at the checkpoint's stated level.
    """
    from geoglacier.glaciers.areas import format_totals, run_glaciers
    from geoglacier.glaciers.error_model import read_error_model

    error_model = None if model is None else read_error_model(model)

    result = run_glaciers(
        mask,
        inventory,
        out,
        summary=summary,
        quicklook=quicklook,
        probabilities=probabilities,
        spread=uncertainty,
        id_column=id_column,
        layer=layer,
        min_coverage=min_coverage,
        ring_pixels=ring_pixels,
        overwrite=overwrite,
        progress=progress,
        error_model=error_model,
    )

    click.echo(format_totals(result.totals))
    for path in (out, summary, quicklook):
        if path is not None:
            click.echo(f"wrote {path}")
