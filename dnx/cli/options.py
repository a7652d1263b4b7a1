"""Options several commands take, declared once: backend/device/threads, the preprocessing of a foreign
ONNX file, JPEG decode, INT8 range statistic, and outputs (--json, --markdown, -o).

Choices and example values come from the library's own constants (``dnx.runtime.selection``,
``dnx.models.registry``, ``dnx.calibration.qdq``), so help and parsing follow the library when it grows.
Each factory returns a decorator; stack it among the command's other options where its flags should
appear in ``--help``.
"""

from __future__ import annotations

import functools
from typing import Callable

import click

from dnx.calibration.qdq import DEFAULT_METHOD, METHODS
from dnx.core.errors import DnxError
from dnx.core.fileio import check_writable
from dnx.models.registry import DECODE_MODES, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from dnx.schemas.preprocess import manual_preprocess
from dnx.runtime.selection import BACKENDS, DEVICES

Decorator = Callable[[Callable], Callable]

# Every runner (torch, onnxruntime, OpenVINO) reads threads=0 as "the backend's own default".
THREADS_HELP = "CPU intra-op threads of the backend (0: the backend's own default)."


def _stack(*decorators: Decorator) -> Decorator:
    """Apply ``decorators`` so their options appear in ``--help`` in the order given."""
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


# -- where inference runs ------------------------------------------------------------------------

def threads_option() -> Decorator:
    return click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0), help=THREADS_HELP)


def backend_options() -> Decorator:
    """--backend, --device and --threads of ``dnx.load`` (the names of ``dnx.runtime.selection``)."""
    return _stack(
        click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="Runtime backend (auto: the rule in docs/python.md)."),
        click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                     help="Device (auto: CUDA where the artifact and backend can use it, else the CPU)."),
        threads_option())


# -- the input -----------------------------------------------------------------------------------

def _numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def preprocess_options() -> Decorator:
    """--mean, --std and --image-size, for an ONNX file without a dnx manifest. The command receives
    them as one ``preprocess`` argument: a :class:`Preprocess`, or None when none of them is given."""
    def apply(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args, mean, std, image_size, **kwargs):
            return f(*args, preprocess=foreign_preprocess(mean, std, image_size), **kwargs)

        foreign = "for ONNX files without a dnx manifest"
        return _stack(
            click.option("--mean", help=f"Per-channel mean, {foreign} (e.g. {_numbers(IMAGENET_MEAN)})."),
            click.option("--std", help=f"Per-channel std, {foreign} (e.g. {_numbers(IMAGENET_STD)})."),
            click.option("--image-size", type=int, help=f"Input size, {foreign}."),
        )(command)
    return apply


def foreign_preprocess(mean: str | None, std: str | None, image_size: int | None) -> Preprocess | None:
    """The flags' text parsed; the values are checked by the library's one rule
    (``dnx.runtime.artifact.manual_preprocess``), whose errors name the flags."""
    if not (mean or std or image_size):
        return None
    if not (mean and std and image_size):
        raise DnxError(f"give all of --mean, --std and --image-size (e.g. --mean {_numbers(IMAGENET_MEAN)} "
                       f"--std {_numbers(IMAGENET_STD)} --image-size 224)")
    try:
        m, s = tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(","))
    except ValueError as exc:
        raise DnxError(f"--mean and --std take comma-separated numbers, e.g. {_numbers(IMAGENET_MEAN)}") from exc
    return manual_preprocess(m, s, image_size)


def decode_option(what: str, default: str | None = None, default_text: str | None = None) -> Decorator:
    """--decode: how JPEGs are decoded (``dnx.models.registry.DECODE_MODES``); ``what``: which images."""
    said = f" (default: {default_text})" if default_text else ""
    return click.option("--decode", type=click.Choice(DECODE_MODES), default=default, show_default=default is not None,
                        help=f"JPEG decode of {what}: fast = at the DCT scale the model needs, exact = every "
                             f"pixel{said}.")


def method_option() -> Decorator:
    """--method: the INT8 range statistic (``dnx.calibration.qdq``)."""
    defaults = ", ".join(f"{method} for --target {target}" for target, method in DEFAULT_METHOD.items())
    return click.option("--method", type=click.Choice(METHODS),
                        help=f"Range statistic (default: {defaults}; openvino uses NNCF's own).")


# -- outputs -------------------------------------------------------------------------------------

def _writable(flag: str):
    """Check an output file when the flag is parsed: it fails before the command's work, not after."""
    def check(ctx, param, value):
        if value is not None:
            check_writable(value, flag)
        return value
    return check


def output_file_option(flag: str, dest: str, help: str) -> Decorator:
    """An output file (``--json PATH``, ``--csv PATH``...) whose folder is checked before any work."""
    return click.option(flag, dest, type=click.Path(), callback=_writable(flag), help=help)


def json_file_option(help: str = "Write the result as JSON.") -> Decorator:
    return output_file_option("--json", "json_path", help)


def markdown_file_option(help: str = "Write the tables as Markdown.") -> Decorator:
    return output_file_option("--markdown", "markdown_path", help)


def json_print_option() -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def markdown_print_option() -> Decorator:
    return click.option("--markdown", "as_markdown", is_flag=True, help="Print Markdown tables.")


def output_option(help: str, *, folder: bool = False, default: str | None = None, long: str = "--output",
                  dest: str | None = None, required: bool = False) -> Decorator:
    """-o: the file (or, ``folder``, the folder) a command writes."""
    return click.option("-o", long, *([dest] if dest else []), default=default, required=required,
                        show_default=default is not None, type=click.Path(file_okay=not folder),
                        help=help)
