"""The list of commands registered on the ``geoglacier`` group."""

from __future__ import annotations

import click

from geoglacier.cli.demo import demo

ALL: list[click.Command] = [demo]
