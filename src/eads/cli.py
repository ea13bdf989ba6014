"""The ``eads`` command line: a thin face over the library (no logic of its own).

Every user error (:class:`eads.EADSError`) is printed as its one-sentence message on stderr and
the command exits with code 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer

from eads._cli import core

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Simulate, train and evaluate EADS circuits (Liu et al., ICML 2025).",
)
core.register(app)

for _name in ("bench", "cost", "spice", "sweep"):
    try:  # commands of the optional areas register themselves when present
        __import__(f"eads._cli.{_name}", fromlist=["register"]).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != f"eads._cli.{_name}":
            raise


def main() -> None:
    from eads._errors import EADSError

    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:  # typer returns 130 for Ctrl-C in this mode
            if rv == 130:
                typer.echo("interrupted", err=True)
            sys.exit(rv)
    except EADSError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
