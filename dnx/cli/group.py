"""The root click group; each command group module registers its commands on it."""

from __future__ import annotations

import click

from dnx import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnx")
def cli() -> None:
    """DenseNet from the paper to a deployed NVIDIA engine.

    \b
    build (PyTorch) -> export (ONNX) -> precision (FP16 / INT8 QDQ) -> engine (TensorRT)
                    -> bench (latency + parity vs PyTorch) -> serve
    """
