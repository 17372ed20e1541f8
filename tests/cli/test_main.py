"""The command group: errors become one line, -v shows the traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import rasterio
from click.testing import CliRunner

from geoglacier.cli.main import cli
from geoglacier.errors import ConfigError


@cli.command("_raise-for-test", hidden=True)
def _raise_for_test() -> None:
    raise ConfigError("--window 33 is not a multiple of 32; use 32")


def test_library_error_is_one_line_without_traceback() -> None:
    result = CliRunner().invoke(cli, ["_raise-for-test"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --window 33 is not a multiple of 32; use 32"
    assert "Traceback" not in result.output


def test_verbose_shows_the_exception() -> None:
    result = CliRunner().invoke(cli, ["-v", "_raise-for-test"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)


def test_version_and_help() -> None:
    runner = CliRunner()
    assert "geoglacier, version" in runner.invoke(cli, ["--version"]).output
    assert isinstance(cli, click.Group)
    assert runner.invoke(cli, ["--help"]).exit_code == 0


def test_a_raster_without_georeferencing_gives_our_message_not_rasterio_s(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[:8] = 1
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8") as ds:
        ds.write(mask, 1)
    run = [str(Path(sys.executable).with_name("geoglacier")), "summarize", str(path)]
    refused = subprocess.run(run, capture_output=True, text=True, check=False)
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"Error: {path} has no CRS; pass --pixel-size METRES to compute areas"
    ]
    result = subprocess.run([*run, "--pixel-size", "30"], capture_output=True, text=True, check=False)
    assert "NotGeoreferencedWarning" not in result.stderr and "identity matrix" not in result.stderr
    assert result.returncode == 0 and "n/a (no CRS)" in result.stdout, (result.stdout, result.stderr)
