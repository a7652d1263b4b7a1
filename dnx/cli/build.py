"""`dnx build`: a TensorRT engine from an ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import output_option
from dnx.runtime.tensorrt.builder import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MIN_BATCH,
    DEFAULT_OPT_BATCH,
    MAX_OPT_LEVEL,
    PRECISIONS,
    build_engine,
    BuildOptions,
    graph_precision,
    parse_size,
)
from dnx.schemas.engine_manifest import HARDWARE_COMPAT


@cli.command("build")
@click.argument("model", type=click.Path())
@click.option("--precision", metavar=f"[{'|'.join(PRECISIONS)}]",
              help="fp16 converts the graph to FP16; int8 calibrates a Q/DQ graph from --calib-data; best is int8 "
                   "with the other ops in FP16. Default: the ONNX file's own (fp32 for a plain export).")
@click.option("--calib-data", type=click.Path(), help="Calibration images for int8/best: folder, .npy/.npz or IDX.")
@click.option("--calib-cache", type=click.Path(),
              help="Calibration range cache to reuse or write, with --calib-data (default: GRAPH.calib.json).")
@click.option("--min-batch", type=int, help=f"Smallest batch the engine accepts (default {DEFAULT_MIN_BATCH}).")
@click.option("--opt-batch", type=int, help=f"Batch TensorRT tunes its kernels for (default {DEFAULT_OPT_BATCH}).")
@click.option("--max-batch", type=int, help=f"Largest batch the engine accepts (default {DEFAULT_MAX_BATCH}).")
@click.option("--workspace", metavar="SIZE", help="Builder scratch memory limit, e.g. 4GiB (default: TensorRT's).")
@click.option("--timing-cache", type=click.Path(), help="Timing cache to reuse and update (faster rebuilds).")
@click.option("--opt-level", type=int, default=BuildOptions.opt_level, show_default=True,
              help=f"Builder optimization level 0-{MAX_OPT_LEVEL} (higher: longer build, possibly faster engine).")
@click.option("--hardware-compat", default=BuildOptions.hardware_compat, show_default=True,
              metavar=f"[{'|'.join(HARDWARE_COMPAT)}]",
              help="Also run on other GPUs: ampere+ any Ampere or newer, same-cc those of this compute capability.")
@click.option("--version-compat", is_flag=True,
              help="Also run with later TensorRT releases: of the same major version, and 11.x for an engine built "
                   "with 10.x (Triton then needs --backend-config=tensorrt,version-compatible=true).")
@output_option("Engine file (default: MODEL.PRECISION.engine beside MODEL).")
def build_cmd(model, precision, calib_data, calib_cache, min_batch, opt_batch, max_batch, workspace, timing_cache,
              opt_level, hardware_compat, version_compat, output) -> None:
    """Build a TensorRT engine from an ONNX file (needs an NVIDIA GPU and TensorRT)."""
    from rich.progress import Progress

    src = Path(model)
    precision = precision or graph_precision(src)
    options = BuildOptions(precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                           workspace=parse_size(workspace) if workspace else None,
                           timing_cache=Path(timing_cache) if timing_cache else None, opt_level=opt_level,
                           hardware_compat=hardware_compat, version_compat=version_compat).validate()
    stem = src.name.removesuffix(".onnx")
    stem = stem if stem.endswith(f".{precision}") else f"{stem}.{precision}"
    output = Path(output) if output else src.with_name(f"{stem}.engine")
    console = make_console()
    with Progress(console=console, transient=True) as bar:
        tasks = {None: bar.add_task("preparing the graph", total=None)}

        def on_progress(phase: str, step: int, steps: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=steps or None)
            bar.update(tasks[phase], completed=step, total=steps or None)

        result = build_engine(src, output, options, on_progress, calib_data=calib_data, calib_cache=calib_cache)
    print_notes(result.notes + [f"TensorRT warning: {w}" for w in result.warnings[:5]])
    m = result.manifest
    batch = m["batch_profile"]
    graph = "" if result.graph.action == "as-is" else f"; built graph {result.graph.path} ({result.graph.action})"
    click.echo(f"wrote {result.path}: {m['precision']}, batch {batch['min_batch']}..{batch['max_batch']} "
               f"(opt {batch['opt_batch']}), TensorRT {m['tensorrt_version']} on {m['gpu']['name']} "
               f"(compute capability {m['gpu']['compute_capability']}), {result.build_seconds:.1f} s{graph}")
