"""``geoglacier stack``: turn a satellite product into the model's input scene."""

from __future__ import annotations

import click

from geoglacier.cli.options import overwrite_opt, recipe_opt

KINDS = ("landsat", "sentinel2-safe", "sentinel2-cogs", "stac", "hls", "scene")


@click.command("stack")
@click.argument("source", type=click.Path(path_type=str))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="Scene COG to write."
)
@recipe_opt
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Product kind.  [default: detected]")
@click.option(
    "--resolution",
    type=float,
    default=None,
    help="Pixel size in the output CRS's units.  [default: finest band]",
)
@click.option("--crs", default=None, help="Output CRS, e.g. EPSG:32645.  [default: the product's]")
@click.option(
    "--bounds",
    type=float,
    nargs=4,
    default=None,
    metavar="XMIN YMIN XMAX YMAX",
    help="Crop to these bounds, in the output CRS (or in --bounds-crs).",
)
@click.option(
    "--bounds-crs",
    default=None,
    help="CRS of --bounds, e.g. EPSG:4326 for longitudes and latitudes.  [default: the output CRS]",
)
@click.option(
    "--clip",
    type=click.Path(path_type=str),
    default=None,
    help="Crop to the bounds of the features of this vector file (.gpkg, .geojson, .shp).",
)
@click.option(
    "--clip-buffer",
    type=float,
    default=0.0,
    show_default=True,
    help="Margin around the --clip features, in the output CRS's units (metres for UTM).",
)
@click.option(
    "--cloud-buffer", type=int, default=0, show_default=True, help="Grow the cloud mask by N pixels."
)
@click.option(
    "--no-cloud-mask", is_flag=True, default=False, help="Keep clouds and shadows (no quality layer is read)."
)
@click.option(
    "--dem",
    type=click.Path(path_type=str),
    default=None,
    help="DEM for the elevation, slope, northness and eastness bands: any raster GDAL reads "
    "(GeoTIFF, SRTM .hgt, .vrt), any CRS; warped bilinearly onto the output grid.",
)
@click.option(
    "--scene-bands",
    default=None,
    help="Band names of a scene GeoTIFF without band descriptions, in order, e.g. red,green,blue,nir,ndvi "
    "(implies --kind scene).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@overwrite_opt
def stack(
    source: str,
    out: str,
    bands: str,
    kind: str | None,
    resolution: float | None,
    crs: str | None,
    bounds: tuple[float, float, float, float] | None,
    bounds_crs: str | None,
    clip: str | None,
    clip_buffer: float,
    cloud_buffer: int,
    no_cloud_mask: bool,
    dem: str | None,
    scene_bands: str | None,
    progress: bool,
    overwrite: bool,
) -> None:
    """Stack SOURCE into one float32 scene COG whose bands follow --bands.

    SOURCE is a Landsat 7/8/9 Collection 2 Level-2 folder, a Sentinel-2 L2A .SAFE folder,
    a folder of Sentinel-2 L2A COGs (B02.tif ... SCL.tif), a STAC item JSON file, or an
    HLS v2.0 L30/S30 granule (its folder, or one of its HLS.*.v2.0.B04.tif ... files), or an
    existing scene GeoTIFF whose band descriptions (or --scene-bands) name recipe bands.
    With --dem, the recipe may hold elevation (m), slope (degrees), northness, eastness.
    Clouds, cloud shadows and no data become nodata (snow and ice are kept); bands are
    resampled onto the finest band's grid; the acquisition date, sensor and product id
    are written as tags that segment-scene carries into the mask.
    """
    from geoglacier.products.stack import stack as run

    result = run(
        source,
        out,
        bands=bands,
        kind=kind,
        resolution=resolution,
        crs=crs,
        bounds=bounds or None,
        bounds_crs=bounds_crs,
        clip=clip,
        clip_buffer=clip_buffer,
        cloud_buffer=cloud_buffer,
        cloud_mask=not no_cloud_mask,
        dem=dem,
        scene_bands=scene_bands,
        overwrite=overwrite,
        progress=progress,
    )
    tags = result.tags
    click.echo(
        f"{result.kind}: {tags.get('SENSOR', 'unknown sensor')}, {tags.get('ACQUISITION_DATE', 'unknown date')}, "
        f"{tags.get('SOURCE_PRODUCT', '?')}"
    )
    for note in result.notes:
        click.echo(note)
    g = result.grid
    click.echo(
        f"bands: {','.join(result.recipe)}; grid {g.width} x {g.height} px of {g.resolution:g} in {g.crs}"
    )
    click.echo(
        f"masked {100 * result.masked_fraction:.1f} % of pixels as nodata "
        f"({100 * result.cloud_fraction:.1f} % by the cloud mask)"
    )
    if result.no_dem_fraction is not None:
        click.echo(f"no DEM under {100 * result.no_dem_fraction:.1f} % of pixels (nodata there)")
    click.echo(f"wrote {result.path} in {result.seconds:.1f} s")
