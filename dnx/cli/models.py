"""`dnx models`: the registered DenseNet variants."""

from __future__ import annotations

import json

import click

from dnx.cli.common import make_console
from dnx.cli.group import cli
from dnx.cli.options import json_print_option
from dnx.core.tables import new_table
from dnx.models.registry import get_config, list_models, model_stats


@cli.command("models")
@json_print_option()
def models_cmd(as_json: bool) -> None:
    """List the registered DenseNet variants."""

    rows = []
    for name in list_models():
        cfg = get_config(name)
        params, macs = model_stats(cfg)
        rows.append({**cfg.to_dict(), "params": params, "macs": macs})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return

    table = new_table("DenseNet variants",
                      ("name", "depth", "k", "blocks", "params", "paper params", "GMACs", "input", "reference"),
                      left=("name", "blocks", "input", "reference"))
    for r in rows:
        paper = f"{r['paper_params'] / 1e6:.1f}M" if r["paper_params"] else "-"
        table.add_row(r["name"], str(r["depth"]), str(r["growth_rate"]),
                      "-".join(map(str, r["block_config"])), f"{r['params']:,}", paper,
                      f"{r['macs'] / 1e9:.3f}", f"{r['in_channels']}x{r['image_size']}x{r['image_size']}",
                      r["reference"].rsplit(", ", 1)[-1] if "Table" in r["reference"] else "dnx")
    make_console().print(table)
