"""`dnx paper tables` and `dnx paper reuse`: the paper's Tables 1-2 and Figure 5, computed by dnx."""

from __future__ import annotations

import json

import click
import numpy as np

from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import json_file_option, json_print_option, markdown_print_option, output_file_option
from dnx.core.fileio import write_json_atomic
from dnx.core.tables import new_table
from dnx.paper.plot import plot_format, plot_reuse
from dnx.paper.reuse import feature_reuse_report
from dnx.paper.tables import table1, table2, table2_markdown


@cli.group("paper")
def paper_group() -> None:
    """The paper's tables and Figure 5 (Huang et al, CVPR 2017), computed from dnx's models."""


@paper_group.command("tables")
@click.option("--models", "table1_models", default="densenet121,densenet169,densenet201,densenet264",
              show_default=True, help="Comma-separated models for Table 1's columns.")
@json_print_option()
@markdown_print_option()
def tables_cmd(table1_models: str, as_json: bool, as_markdown: bool) -> None:
    """Table 1 (architectures) and Table 2 (parameters: the paper's printed counts beside dnx's)."""

    t1 = table1([m.strip() for m in table1_models.split(",") if m.strip()])
    t2 = table2()
    if as_json:
        click.echo(json.dumps({"table1": t1.to_dict(), "table2": [r.to_dict() for r in t2]}, indent=2))
        return
    if as_markdown:
        click.echo("Table 1: architectures (computed from dnx's modules)\n\n" + t1.markdown())
        click.echo("Table 2: parameters, the paper's printed count beside dnx's\n\n" + table2_markdown(t2), nl=False)
        return

    console = make_console()
    first = new_table("Table 1: architectures (computed from dnx's modules)",
                      ("Layers", "Output Size", *(f"{m} (k={k})" for m, k in zip(t1.models, t1.growth_rates))),
                      left=("Layers", *(f"{m} (k={k})" for m, k in zip(t1.models, t1.growth_rates))))
    for name, size, specs in t1.rows:
        first.add_row(name, size, *specs)
    console.print(first)
    second = new_table("Table 2: parameters (paper prints millions to one decimal)",
                       ("Method", "dnx model", "paper", "dnx", "dnx - paper", "within rounding"),
                       left=("Method", "dnx model"))
    for r in t2:
        second.add_row(r.label, r.model, f"{r.paper_params / 1e6:.1f}M", f"{r.dnx_params:,}",
                       f"{r.difference:+,} ({r.difference / r.paper_params:+.1%})",
                       "[green]yes[/]" if r.within_rounding else "[red]no[/]")
    console.print(second)


@paper_group.command("reuse")
@click.argument("checkpoint", type=click.Path())
@click.option("--model", help="Registered model of CHECKPOINT (default: from its .json sidecar).")
@click.option("--onnx", "onnx_path", type=click.Path(),
              help="ONNX file made from CHECKPOINT (Q/DQ INT8, FP16 or FP32): its map and the difference.")
@output_file_option("--plot", "plot_path", "Write the heat maps (.png, .pdf, .svg).")
@json_file_option("Write the matrices as JSON.")
def reuse_cmd(checkpoint, model, onnx_path, plot_path, json_path) -> None:
    """Figure 5: mean |w| each layer of a dense block gives each earlier layer's feature maps."""
    if plot_path:
        plot_format(plot_path)  # a missing matplotlib or an unknown suffix fails before the work
    report = feature_reuse_report(checkpoint, model=model, onnx_path=onnx_path)
    diffs = report.difference() if report.onnx_blocks is not None else None
    columns = ["block", "layers", "weights read", "last column", "mean |w| min", "max"]
    if diffs is not None:
        columns.append(f"max |{(report.onnx_precision or 'onnx').upper()} - FP32| / FP32")
    table = new_table(f"{report.model}: feature reuse (Figure 5)", columns, left=("weights read", "last column"))
    for i, block in enumerate(report.fp32):
        cells = [str(block.block), str(block.layers), block.layer_read, block.last_target,
                 f"{np.nanmin(block.matrix):.4f}", f"{np.nanmax(block.matrix):.4f}"]
        if diffs is not None:
            cells.append(f"{np.nanmax(np.abs(diffs[i] / block.matrix)):.3%}")
        table.add_row(*cells)
    make_console().print(table)
    print_notes(report.notes)
    if json_path:
        write_json_atomic(json_path, report.to_dict())
        click.echo(f"wrote {json_path}")
    if plot_path:
        click.echo(f"wrote {plot_reuse(report, plot_path)}")


@cli.command("reuse", hidden=True, params=list(reuse_cmd.params), help="Deprecated: `dnx paper reuse`.")
def reuse_alias(**kwargs) -> None:
    print_notes(["`dnx reuse` is now `dnx paper reuse`; the old name will be removed"])
    reuse_cmd.callback(**kwargs)
