"""What several commands print the same way: the console, notes, the parity table and verdict."""

from __future__ import annotations

import click

from dnx.core.errors import DnxError
from dnx.core.tables import new_table, verdict


def make_console():
    from rich.console import Console

    # Rich assumes 80 columns when piped; tables of numbers read better unwrapped.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(f"dnx: note: {note}", err=True)


def comparison_table(title: str, rows: list[tuple[str, object]]):
    table = new_table(title, ("case", "samples", "max|diff|", "mean|diff|", "max rel", "cosine", "top-1", "top-5",
                              "result"), left=("case", "result"))
    for name, c in rows:
        table.add_row(name, str(c.samples), f"{c.max_abs_diff:.2e}", f"{c.mean_abs_diff:.2e}",
                      f"{c.max_rel_diff:.2e}", f"{c.cosine:.6f}", f"{c.top1_agreement:.1%}",
                      f"{c.top5_agreement:.1%}", verdict(c))
    return table


def report_certificate(path, manifest: dict) -> None:
    """One line with the parity verdict of a derived file; a failed one exits 1 (the file is kept, marked)."""
    cert = manifest.get("certificate") or {}
    data = cert.get("data") or {}
    line = f"parity vs FP32 on {data.get('images', '?')} images ({data.get('what', '?')}): {cert.get('summary', '?')}"
    if cert.get("verdict") != "passed":
        raise DnxError(f"{path} was written but failed its parity check and is marked 'failed' (dnx.load refuses "
                       f"it without --allow-unverified): {line}")
    click.echo(line)
