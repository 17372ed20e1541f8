"""``geoglacier export``: a checkpoint as ONNX or OpenVINO IR, with its metadata."""

from __future__ import annotations

import click

from geoglacier.cli.options import overwrite_opt


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "openvino"]),
    default="onnx",
    show_default=True,
    help="onnx (for --engine onnxruntime or openvino) or openvino (IR .xml/.bin plus a .json sidecar).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="File to write (.onnx or .xml).  [default: beside CHECKPOINT]",
)
@overwrite_opt
def export(checkpoint: str, fmt: str, out: str | None, overwrite: bool) -> None:
    """Export CHECKPOINT for the onnxruntime or OpenVINO engine.

    The exported model carries the checkpoint's bands, normalisation, threshold,
    temperature and patch size, so segment-scene --model accepts it as it is.
    """
    from geoglacier.inference.export import export_model

    path = export_model(checkpoint, fmt, out, overwrite)
    click.echo(f"wrote {path}")
