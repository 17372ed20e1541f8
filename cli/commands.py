"""The list of commands registered on the ``geoglacier`` group."""

from __future__ import annotations

import click

from geoglacier.cli.change import change
from geoglacier.cli.demo import demo
from geoglacier.cli.evaluate import evaluate
from geoglacier.cli.export import export
from geoglacier.cli.glaciers import glaciers
from geoglacier.cli.labels import labels
from geoglacier.cli.segment_scene import segment_scene
from geoglacier.cli.segment_scenes import segment_scenes
from geoglacier.cli.stack import stack
from geoglacier.cli.summarize import summarize
from geoglacier.cli.train import train

ALL: list[click.Command] = [
    demo,
    stack,
    train,
    segment_scene,
    segment_scenes,
    summarize,
    evaluate,
    glaciers,
    labels,
    change,
    export,
]
