"""`dnx convert`: an FP32 ONNX file to FP16, checked against FP32."""

from __future__ import annotations

from pathlib import Path

import click

from dnx.calibration.fp16 import convert_fp16
from dnx.cli.common import comparison_table, make_console, print_notes, report_certificate
from dnx.cli.group import cli
from dnx.cli.options import output_option


@cli.command("convert")
@click.argument("model", type=click.Path())
@click.option("--precision", type=click.Choice(["fp16"]), default="fp16", show_default=True)
@click.option("--check/--no-check", default=True, show_default=True, help="Compare with the FP32 file in onnxruntime.")
@output_option("Output (default: MODEL.fp16.onnx).")
def convert_cmd(model, precision, check, output) -> None:
    """Convert an FP32 ONNX file to FP16 (FP32 inputs/outputs kept)."""
    src = Path(model)
    result = convert_fp16(src, output or src.with_name(f"{src.stem}.{precision}.onnx"), check=check)
    print_notes(result.notes)
    if result.comparison is not None:
        data = result.manifest["certificate"]["data"]["what"]
        make_console().print(comparison_table("FP16 vs FP32 (onnxruntime CPU)", [(data, result.comparison)]))
    click.echo(f"wrote {result.path} ({result.seconds:.1f} s)")
    if result.comparison is not None:
        report_certificate(result.path, result.manifest)
