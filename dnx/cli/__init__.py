"""The ``dnx`` command line: the only package that imports click.

One module per command group registers its commands on the root group. Each command maps its
options onto library calls; heavy packages are imported inside the callbacks so ``dnx --help``
works with none of torch's optional companions installed. ``DnxError``s become one line on stderr
and exit code 1 (2 for a missing dependency or device); other exceptions are bugs and keep their
traceback.
"""

from __future__ import annotations

import sys

import click

from dnx.cli import bench, engine, export, models, precision  # noqa: F401  (register the commands)
from dnx.cli.common import err
from dnx.cli.group import cli
from dnx.errors import DnxError

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="dnx", standalone_mode=False)
    except click.exceptions.Abort:
        err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DnxError as exc:
        err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err("interrupted; no partial artifact was left under its final name")
        sys.exit(130)
