"""The command group: errors become one line, -v shows the traceback."""

from __future__ import annotations

import click
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
