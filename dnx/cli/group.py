"""The root click group; each command group module registers its commands on it."""

from __future__ import annotations

import click

from dnx.core.version import __version__

# Set by --debug (or DNX_DEBUG=1) for main(), which prints tracebacks only then.
options = {"debug": False}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnx")
@click.option("--debug", is_flag=True, envvar="DNX_DEBUG",
              help="Show the full traceback of an error (also: DNX_DEBUG=1).")
def cli(debug: bool) -> None:
    """DenseNet from the paper to a deployed NVIDIA engine.

    \b
    build (PyTorch) -> export (ONNX) -> precision (FP16 / INT8 QDQ) -> engine (TensorRT)
                    -> bench (latency + parity vs PyTorch) -> serve
    """
    options["debug"] = debug
