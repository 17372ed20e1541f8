"""Options shared by several commands, defined once so they mean the same everywhere."""

from __future__ import annotations

import click

overwrite_opt = click.option(
    "--overwrite", is_flag=True, default=False, help="Replace output files that already exist."
)
device_opt = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
)
models_opt = click.option(
    "--model",
    "model_path",
    required=True,
    multiple=True,
    type=click.Path(path_type=str),
    help="Checkpoint written by 'geoglacier train' (or a model from 'geoglacier export'); "
    "give several checkpoints for an ensemble.",
)
recipe_opt = click.option(
    "--bands",
    "bands",
    default="red,green,blue,nir,ndvi",
    show_default=True,
    help="Band recipe: comma-separated names from blue, green, red, nir, swir1, swir2, ndvi, ndsi, ndwi.",
)
date_opt = click.option(
    "--date",
    default=None,
    help="Acquisition date (ISO 8601, e.g. 2023-10-15); replaces the scene's ACQUISITION_DATE tag.",
)

# Glacier inventories (glaciers, change, segment-scene --inventory).
id_column_opt = click.option(
    "--id-column",
    default=None,
    help="Inventory id column.  [default: RGIId, rgi_id, glac_id or anlys_id, if unique]",
)
layer_opt = click.option("--layer", default=None, help="Layer of the inventory (or file in its zip) to read.")
progress_opt = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
engine_opt = click.option(
    "--engine",
    type=click.Choice(["auto", "torch", "onnxruntime", "openvino"]),
    default="auto",
    show_default=True,
    help="What runs the network. auto: the fastest installed on this CPU (torch on CUDA); "
    "onnxruntime and openvino need the geoglacier[onnx] / [openvino] extras.",
)
overlap_px_opt = click.option(
    "--overlap-px",
    type=int,
    default=None,
    help="Overlap in pixels instead of a fraction (wins over --overlap).",
)
