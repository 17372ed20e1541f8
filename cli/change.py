"""``geoglacier change``: where and how much glaciers changed between two masks."""

from __future__ import annotations

import click

from geoglacier.cli.options import id_column_opt, layer_opt, overwrite_opt, progress_opt

_out_path = click.Path(dir_okay=False, path_type=str)


@click.command("change")
@click.argument("mask_t0", type=click.Path(path_type=str))
@click.argument("mask_t1", type=click.Path(path_type=str))
@click.option(
    "--out",
    required=True,
    type=_out_path,
    help="Change map COG: 0 stable non-ice, 1 stable ice, 2 ice lost, 3 ice gained, 255 nodata.",
)
@click.option(
    "--inventory", type=click.Path(path_type=str), default=None, help="Glacier outlines (RGI, GLIMS ...)."
)
@click.option("--glaciers", type=_out_path, default=None, help="Per-glacier change table (.gpkg or .csv).")
@click.option("--summary", type=_out_path, default=None, help="Also write areas and totals as JSON.")
@click.option("--quicklook", type=_out_path, default=None, help="Also write a PNG of the change map.")
@click.option(
    "--t0-date", default=None, help="Date of MASK_T0 (YYYY-MM-DD); overrides its ACQUISITION_DATE tag."
)
@click.option(
    "--t1-date", default=None, help="Date of MASK_T1 (YYYY-MM-DD); overrides its ACQUISITION_DATE tag."
)
@id_column_opt
@layer_opt
@click.option(
    "--min-coverage",
    type=float,
    default=0.9,
    show_default=True,
    help="Flag glaciers valid at both dates over less of their outline; left out of totals.",
)
@click.option(
    "--min-snr",
    type=float,
    default=1.0,
    show_default=True,
    help="Flag glaciers whose |change| is below this many sigmas; left out of totals.",
)
@click.option(
    "--resampling",
    type=click.Choice(["nearest", "mode"]),
    default="nearest",
    show_default=True,
    help="How MASK_T1 is put on MASK_T0's grid (mode: majority, for a much finer MASK_T1).",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Checkpoint that made the masks: its error model's per-date model error enters "
    "sigma_change_km2, snr and within_uncertainty.",
)
@click.option(
    "--model-t1",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Checkpoint that made MASK_T1, when another than --model made MASK_T0.",
)
@click.option(
    "--model-error-correlation",
    type=float,
    default=0.0,
    show_default=True,
    help="Correlation (0-1) of the two maps' model errors; 0 (independent) is the conservative choice.",
)
@progress_opt
@overwrite_opt
def change(
    mask_t0: str,
    mask_t1: str,
    out: str,
    inventory: str | None,
    glaciers: str | None,
    summary: str | None,
    quicklook: str | None,
    t0_date: str | None,
    t1_date: str | None,
    id_column: str | None,
    layer: str | None,
    min_coverage: float,
    min_snr: float,
    resampling: str,
    model: str | None,
    model_t1: str | None,
    model_error_correlation: float,
    progress: bool,
    overwrite: bool,
) -> None:
    """Map glacier change from MASK_T0 (earlier) to MASK_T1 (later) and measure it.

    MASK_T1 may be on another grid or CRS: it is resampled onto MASK_T0's grid (nearest
    by default). Areas are true areas over pixels valid at both dates. With --inventory,
    each glacier's change comes with its uncertainty; rates need dates.
    """
    from geoglacier.glaciers.change import format_change, glacier_change
    from geoglacier.glaciers.error_model import read_error_model

    error_model = None if model is None else read_error_model(model)
    error_model_t1 = None if model_t1 is None else read_error_model(model_t1)

    result = glacier_change(
        mask_t0,
        mask_t1,
        out,
        inventory=inventory,
        glaciers=glaciers,
        summary=summary,
        quicklook=quicklook,
        id_column=id_column,
        layer=layer,
        min_coverage=min_coverage,
        min_snr=min_snr,
        t0_date=t0_date,
        t1_date=t1_date,
        resampling=resampling,  # type: ignore[arg-type]
        overwrite=overwrite,
        progress=progress,
        error_model=error_model,
        error_model_t1=error_model_t1,
        model_error_correlation=model_error_correlation,
    )
    click.echo(format_change(result))
    for path in result.outputs.values():
        click.echo(f"wrote {path}")
