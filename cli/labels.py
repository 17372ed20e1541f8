"""``geoglacier labels``: training labels from a glacier inventory, on a scene's grid."""

from __future__ import annotations

import click

from geoglacier.cli.options import date_opt, layer_opt, overwrite_opt, progress_opt


@click.command("labels")
@click.argument("scene", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--inventory",
    required=True,
    type=click.Path(path_type=str),
    help="Glacier outlines: GeoPackage, shapefile (or its .zip, as RGI ships it), GeoJSON; any CRS. "
    "GLIMS rock outcrops are cut out.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Label mask to write (.tif): 1 glacier, 0 not glacier, 255 nodata.",
)
@click.option(
    "--edge-pixels",
    type=int,
    default=0,
    show_default=True,
    help="Mark N pixels on each side of every glacier boundary (outlines, rock cut-outs; not the "
    "divide between touching glaciers) as nodata: outlines are least certain at their edges.",
)
@layer_opt
@date_opt
@click.option(
    "--date-tolerance",
    type=float,
    default=2.0,
    show_default=True,
    help="Warn when outlines are dated more than this many years from the scene.",
)
@progress_opt
@overwrite_opt
def labels(
    scene: str,
    inventory: str,
    out: str,
    edge_pixels: int,
    layer: str | None,
    date: str | None,
    date_tolerance: float,
    progress: bool,
    overwrite: bool,
) -> None:
    """Burn the glacier outlines of an inventory onto SCENE's grid as a training mask.

    A pixel is glacier when its centre lies inside an outline; it is nodata (255) where
    SCENE has no data and, with --edge-pixels, near the outlines' boundaries.
    """
    from geoglacier.glaciers.labels import burn_labels, format_labels

    result = burn_labels(
        scene,
        inventory,
        out,
        edge_pixels=edge_pixels,
        layer=layer,
        date=date,
        date_tolerance_years=date_tolerance,
        overwrite=overwrite,
        progress=progress,
    )
    click.echo(format_labels(result))
