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
model_opt = click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(path_type=str),
    help="Checkpoint written by 'geoglacier train' (or a model from 'geoglacier export').",
)
bands_opt = click.option(
    "--bands", default=5, show_default=True, type=int, help="Number of bands the scenes must have."
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
