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
    help="Band recipe: comma-separated names from blue, green, red, nir, swir1, swir2, ndvi, ndsi, ndwi "
    "and, from a DEM (stack --dem), elevation, slope, northness, eastness.",
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

# Sliding-window inference (segment-scene, segment-scenes).
window_opt = click.option(
    "--window",
    type=int,
    default=None,
    help="Window edge in pixels, a multiple of 32.  [default: the checkpoint's patch size]",
)
overlap_opt = click.option(
    "--overlap",
    type=float,
    default=0.25,
    show_default=True,
    help="Fraction of a window shared with the next.",
)
batch_size_opt = click.option(
    "--batch-size", type=int, default=4, show_default=True, help="Windows per forward pass."
)
blend_opt = click.option(
    "--blend",
    type=click.Choice(["gaussian", "cosine", "none"]),
    default="gaussian",
    show_default=True,
    help="Weights for blending overlapping windows.",
)
precision_opt = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 (or fp16) autocast on CUDA; on a CPU bf16 with the openvino engine where the CPU "
    "has native bf16 (AVX512-BF16, AMX), else fp32. bf16 on a CPU: torch or openvino engine.",
)
tta_opt = click.option(
    "--tta", is_flag=True, default=False, help="Average the four flips of each window (4x slower)."
)
