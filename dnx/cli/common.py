"""Helpers shared by the command groups: console, one-line messages, option parsers, tables."""

from __future__ import annotations

import click

from dnx.core.documents import SchemaError
from dnx.core.errors import DnxError
from dnx.core.tables import new_table, verdict
from dnx.schemas.preprocess import manual_preprocess as library_manual_preprocess


def make_console():
    from rich.console import Console

    # Rich assumes 80 columns when piped; tables of numbers read better unwrapped.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def err(message: str) -> None:
    click.echo(f"dnx: {message}", err=True)


def print_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(f"dnx: note: {note}", err=True)


def parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        raise DnxError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    return batch  # ExportOptions.validate refuses batch < 1


def parse_batches(value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}")
    return batches


def manual_preprocess(mean, std, image_size):
    """Preprocessing from --mean/--std/--image-size, for ONNX files without a dnx manifest; the rules are
    the library's (:func:`dnx.schemas.preprocess.manual_preprocess`), reported against the flags."""
    if not (mean or std or image_size):
        return None
    if not (mean and std and image_size):
        raise DnxError("give all of --mean, --std and --image-size (e.g. --mean 0.485,0.456,0.406 "
                       "--std 0.229,0.224,0.225 --image-size 224)")
    try:
        m, s = tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(","))
    except ValueError:
        raise DnxError("--mean and --std take comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    try:
        return library_manual_preprocess(m, s, image_size)
    except SchemaError as exc:
        name, _, item = exc.field.partition("[")
        flag = "--" + name.replace("_", "-")
        where = f" (value {int(item.rstrip(']')) + 1})" if item else ""
        raise DnxError(f"{flag}{where} {exc.problem}; got --mean {mean} --std {std} --image-size {image_size}") \
            from None


def comparison_table(title: str, rows: list[tuple[str, object]]):
    table = new_table(title, ("case", "samples", "max|diff|", "mean|diff|", "max rel", "cosine", "top-1", "top-5",
                              "result"), left=("case", "result"))
    for name, c in rows:
        table.add_row(name, str(c.samples), f"{c.max_abs_diff:.2e}", f"{c.mean_abs_diff:.2e}",
                      f"{c.max_rel_diff:.2e}", f"{c.cosine:.6f}", f"{c.top1_agreement:.1%}",
                      f"{c.top5_agreement:.1%}", verdict(c))
    return table


class LateProgress:
    """A rich progress bar on stderr that appears only once a run has taken a couple of seconds."""

    def __init__(self, after_s: float = 2.0) -> None:
        import time

        self._clock, self._start, self._after = time.monotonic, time.monotonic(), after_s
        self._bar = self._task = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self._bar is None:
            if self._clock() - self._start < self._after:
                return
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(what, total=total)
        self._bar.update(self._task, description=what, completed=done, total=total)

    def __enter__(self) -> "LateProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
