"""``geoglacier summarize``: true glacier area of a mask on any projection."""

from __future__ import annotations

import click

from geoglacier.cli.options import overwrite_opt


@click.command("summarize")
@click.argument("mask", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--pixel-size",
    type=float,
    default=None,
    help="Pixel side in metres, only for a mask without CRS (areas are then nominal; a CRS gives true areas).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Also write the summary as JSON to this file.",
)
@overwrite_opt
def summarize(mask: str, pixel_size: float | None, json_path: str | None, overwrite: bool) -> None:
    """Print glacier and valid areas of MASK (1 glacier, 0 not glacier, 255 nodata).

    True areas are ellipsoidal ground areas, correct on every projection; nominal
    areas are pixel count times the pixel's map area.
    """
    from geoglacier.measure.areas import format_summary, run_summarize

    summary = run_summarize(mask, pixel_size, json_path, overwrite)
    click.echo(format_summary(summary))
    if json_path is not None:
        click.echo(f"wrote {json_path}")
