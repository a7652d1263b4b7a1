"""The ``dnx`` command line: the only package that imports click.

One module per command (or command group), named after it, registers it on the root group
(``group.py``); options several commands share are declared once in ``options.py``. Each command
maps its options onto library calls; heavy packages are imported inside the callbacks so
``dnx --help`` works with none of torch's optional companions installed.

The error contract (docs/cli.md "Errors and exit codes"), the same for every command:
  0    success
  1    user error (bad option or input, unwritable output, failed verification): one line ``dnx: ...``
  2    missing optional dependency or device: one line naming what to install
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM, 129 by SIGHUP; no partial or temporary file left
No traceback is shown unless ``--debug`` or ``DNX_DEBUG=1``; an unexpected exception (a bug in dnx)
is one line too, exit 1, saying how to get its traceback. A library error about one of its call's
parameters (``DnxError(param=...)``) is told with the command's flag for it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback

import click

# importing a command's module registers it on the root group
from dnx.cli import bench, build, calibrate, convert, deploy, eval, export, inspect  # noqa: F401
from dnx.cli import models, paper, serve, train, triton, tune  # noqa: F401
from dnx.cli.group import CliState, cli, error_message
from dnx.core.errors import DnxError

__all__ = ["cli", "main"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so that ``finally`` blocks (the atomic writes'
    clean-up of temporary files) run as they do for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def err(message: str) -> None:
    click.echo(f"dnx: {message}", err=True)


def _debug(state: CliState) -> bool:
    return state.debug or os.environ.get("DNX_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_message(exc: click.UsageError, argv: list[str]) -> str:
    command = exc.ctx.command_path if exc.ctx is not None else "dnx"
    if command == "dnx":  # some parse errors carry the root's context; the command is in argv
        command = next((f"dnx {a}" for a in argv if a in cli.commands), command)
    return f"{_one_line(exc.format_message()).rstrip('.')}; see '{command} --help'"


def _run(argv: list[str], state: CliState) -> int:
    """click's Group.main without its standalone handling: click would turn KeyboardInterrupt into a
    bare Abort (and print a blank line) before main() could say what happened."""
    try:
        with cli.make_context("dnx", list(argv), obj=state) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # signal handlers can only be set from the main thread (main() may run elsewhere, e.g. in a test)
    in_main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)} if in_main else {}
    state = CliState()  # the commands' state on the click context, read back here once they ended
    try:
        code = _run(argv, state)
    except Exception as exc:  # noqa: BLE001  (every error ends here, as one line)
        if _debug(state):
            traceback.print_exc()
        if isinstance(exc, click.exceptions.NoArgsIsHelpError):
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        if isinstance(exc, click.exceptions.Abort):
            err("aborted")
            sys.exit(130)
        if isinstance(exc, click.UsageError):
            err(_usage_message(exc, argv))
            sys.exit(1)
        if isinstance(exc, click.ClickException):
            err(_one_line(exc.format_message()))
            sys.exit(1)
        if isinstance(exc, DnxError):
            err(_one_line(error_message(exc, state.command)))
            sys.exit(exc.exit_code)
        if isinstance(exc, OSError) and exc.strerror:  # the machine refused (disk full, permissions)
            err(f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else ""))
            sys.exit(1)
        hint = "" if _debug(state) else "; rerun with --debug for the traceback"
        err(f"internal error (a bug in dnx, please report it): {type(exc).__name__}: "
            f"{_one_line(exc) or 'no message'}{hint}")
        sys.exit(1)
    except KeyboardInterrupt as exc:
        if _debug(state):
            traceback.print_exc()
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        name = signal.Signals(signum).name
        err(f"interrupted ({name}); no partial or temporary file was left")
        sys.exit(128 + signum)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    if code:
        sys.exit(code)
