"""A click group like ``geoglacier``'s holding only ``train`` (shared by the training CLI tests)."""

from __future__ import annotations

import click

from geoglacier.cli.main import _Group
from geoglacier.cli.train import train as train_command


def train_group() -> click.Group:
    """A group that turns library errors into one-line messages, as ``geoglacier`` does."""

    @click.group(cls=_Group)
    def cli() -> None:
        pass

    cli.add_command(train_command)
    return cli
