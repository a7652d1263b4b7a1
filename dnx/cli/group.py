"""The root click group, the state its commands share, and the flags a library error is about.

The state lives on the click context (``ctx.obj``, a :class:`CliState` that ``main()`` creates and
reads back after the command ended), not in a module-level dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import click

from dnx.core.errors import DnxError
from dnx.core.version import __version__


@dataclass
class CliState:
    """What one run of ``dnx`` shares between the root group, its commands and ``main()``."""

    debug: bool = False  # --debug: main() prints the traceback of an error
    command: click.Command | None = None  # the command that ran: its flags name a library error's parameters


class Command(click.Command):
    """A dnx command: records itself on the state, so that an error of the library call it makes can be
    told with the command's flags (:func:`error_message`)."""

    def invoke(self, ctx: click.Context):
        ctx.ensure_object(CliState).command = self
        return super().invoke(ctx)


class Group(click.Group):
    command_class = Command
    group_class = type  # subgroups (dnx paper, dnx triton...) are Groups too, so their commands are Commands


def flag_for(command: click.Command, name: str) -> str | None:
    """The flag (``--threads``) or argument (``ARTIFACT``) by which ``command`` takes the library
    parameter ``name``; None when it has none."""
    for param in command.params:
        if param.name == name:
            if isinstance(param, click.Option):
                return next((o for o in param.opts if o.startswith("--")), param.opts[0])
            return param.human_readable_name
    return None


def error_message(exc: DnxError, command: click.Command | None) -> str:
    """``exc``'s message with each parameter it is about written as ``command``'s flag."""
    message = str(exc)
    flags = {name: flag_for(command, name) for name in exc.params} if command is not None else {}
    flags = {name: flag for name, flag in flags.items() if flag}
    if not flags:
        return message
    told = message
    for name, flag in flags.items():
        told = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flag, told)
    # a message that does not spell the parameter's name: say which flag it is about
    return told if told != message else f"{', '.join(flags.values())}: {message}"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnx")
@click.option("--debug", is_flag=True, envvar="DNX_DEBUG",
              help="Show the full traceback of an error (also: DNX_DEBUG=1).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """DenseNet from the paper to a deployed NVIDIA engine.

    \b
    export (ONNX) -> calibrate / convert (INT8 Q/DQ, FP16) -> build (TensorRT engine)
                  -> bench (latency + parity vs PyTorch) -> serve
    """
    ctx.ensure_object(CliState).debug = debug
