"""Rich table pieces shared by the CLI's reports and `dnx bench`'s (rich is imported on use)."""

from __future__ import annotations

from typing import Iterable


def new_table(title: str, columns: Iterable[str], left: Iterable[str] = (), caption: str | None = None):
    """A rich Table with ``columns``, those named in ``left`` left-aligned and the rest right-aligned."""
    from rich.table import Table

    left = set(left)
    table = Table(title=title, caption=caption)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def verdict(comparison) -> str:
    """The result cell of a parity row: pass, FAIL with the criterion that failed, or a numeric-only row."""
    if comparison.passed is None:
        return "[dim]numeric only[/]"
    return "[green]pass[/]" if comparison else f"[red]FAIL[/] {comparison.criterion}"
