"""Entry point of the ``geoglacier`` command.

Commands are thin: parse options, call one library function, print the result.
Library errors (:class:`geoglacier.errors.GeoglacierError`) become one-line click
errors here, at the edge; ``-v`` shows the full traceback for a bug report.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from geoglacier._version import __version__


class _Group(click.Group):
    """A group that turns library errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except KeyboardInterrupt as exc:
            from geoglacier.errors import Interrupted

            if isinstance(exc, Interrupted) and str(exc):
                click.echo(str(exc), err=True)
            else:
                click.echo("Interrupted; no output was left behind.", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the edge where errors become messages
            from geoglacier.errors import GeoglacierError

            if ctx.obj and ctx.obj.get("verbose"):
                raise
            if isinstance(exc, GeoglacierError | OSError | ValueError):
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise click.ClickException(message) from None
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks for bug reports.")
@click.version_option(__version__, prog_name="geoglacier")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Map glaciers from 5-band satellite rasters."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    if not verbose:
        _one_line_warnings()


def _one_line_warnings() -> None:
    """Show the library's own warnings as ``Warning: message``, without a source line.

    rasterio's ``NotGeoreferencedWarning`` is dropped: it names no file, and the library
    says which input lacks a CRS or transform and what that means (or fails on it).
    """
    from geoglacier.errors import GeoglacierWarning

    default = warnings.showwarning
    if getattr(default, "_geoglacier", False):
        return

    def show(
        message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if issubclass(category, GeoglacierWarning):
            click.echo(f"Warning: {message}", err=True)
        elif category.__name__ == "NotGeoreferencedWarning":
            pass  # rasterio's, without the file name; ours name the file and the consequence
        else:
            default(message, category, filename, lineno, file, line)

    show._geoglacier = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _register() -> None:
    from geoglacier.cli import commands

    for command in commands.ALL:
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geoglacier")
