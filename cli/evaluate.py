"""``geoglacier evaluate``: score a predicted mask against a reference mask."""

from __future__ import annotations

import click

from geoglacier.cli.options import overwrite_opt


@click.command("evaluate")
@click.argument("pred", type=click.Path(dir_okay=False, path_type=str))
@click.argument("ref", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--pixel-size",
    type=float,
    default=None,
    help="Pixel side in metres for the area error, only for masks without CRS.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Also write the metrics as JSON to this file.",
)
@overwrite_opt
def evaluate(pred: str, ref: str, pixel_size: float | None, json_path: str | None, overwrite: bool) -> None:
    """Print MCC, IoU, F1, precision, recall and area error of PRED against REF.

    Both masks must be on the same grid; pixels that are nodata in either are left out.
    """
    from geoglacier.measure.evaluate import format_metrics, run_evaluate

    metrics = run_evaluate(pred, ref, pixel_size, json_path, overwrite)
    click.echo(format_metrics(metrics))
    if json_path is not None:
        click.echo(f"wrote {json_path}")
