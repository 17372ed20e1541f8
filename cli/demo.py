"""``geoglacier demo``: the whole path on a synthetic example."""

from __future__ import annotations

import click

from geoglacier.cli.options import overwrite_opt


@click.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, help="Folder for every output.")
@click.option(
    "--size", default=384, show_default=True, type=click.IntRange(64, 4096), help="Scene size (px)."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the synthetic scenes.")
@click.option("--quick", is_flag=True, help="A much shorter training run (for smoke tests).")
@overwrite_opt
def demo(out_dir: str, size: int, seed: int, quick: bool, overwrite: bool) -> None:
    """Run the whole path on a synthetic example scene and say where the outputs are."""
    from geoglacier.demo import run_demo

    run_demo(out_dir, size=size, seed=seed, quick=quick, overwrite=overwrite, log=click.echo)
