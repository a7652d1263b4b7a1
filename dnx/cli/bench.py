"""`dnx bench`: latency and parity of every backend, side by side."""

from __future__ import annotations

import click

from dnx.cli.common import LateProgress, make_console, parse_batches
from dnx.cli.group import cli
from dnx.core.errors import DnxError, MissingDependencyError, require
from dnx.benchmarks import report
from dnx.benchmarks.e2e import markdown, run_e2e, user_images
from dnx.benchmarks.harness import BenchConfig, run_bench
from dnx.core.fileio import check_writable, write_bytes_atomic, write_json_atomic
from dnx.runtime.backends.table import TABLE
from dnx.schemas.manifest import read_manifest


@cli.command("bench")
@click.argument("target", required=False)
@click.option("--engine", type=click.Path(), help="TensorRT engine for the tensorrt-cuda backend.")
@click.option("--backends", help="Comma-separated rows of the backend table: " + ", ".join(TABLE) + ". Default "
              "without a GPU: torch-cpu,onnxruntime-cpu,onnxruntime-cpu-int8 (and openvino-cpu,openvino-cpu-int8 "
              "where OpenVINO is installed); with one: torch-cuda,torch-cuda-fp16,onnxruntime-cuda (and "
              "tensorrt-cuda with --engine). Old names (ort-cpu, trt...) still work, with a note.")
@click.option("--batch", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iterations", type=click.IntRange(min=1), help="Timed inferences per batch size.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Timed seconds per batch size (default 3, at least 10 inferences).")
@click.option("--warmup", default=0.2, show_default=True, type=click.FloatRange(min=0),
              help="Warm-up seconds before each timing.")
@click.option("--threads", default=0, type=click.IntRange(min=0),
              help="Intra-op threads of torch, onnxruntime and OpenVINO (0: their defaults).")
@click.option("--ov-precision", type=click.Choice(["fp32", "bf16", "auto"]), default="fp32", show_default=True,
              help="Float precision of the OpenVINO backends (fp32: as the file is written; auto: bf16 where "
                   "the CPU has it, else fp32).")
@click.option("--data", "data_path", type=click.Path(),
              help="Parity and INT8 calibration images: IDX folder, .npz, class folders (labelled) or an image "
                   "folder. Default: the photos bundled with dnx.")
@click.option("--samples", default=100, show_default=True, type=click.IntRange(min=1),
              help="Images per parity input set, and INT8 calibration images.")
@click.option("--calib-data", type=click.Path(),
              help="INT8 calibration images when they should differ from --data (keep test images out).")
@click.option("--cuda-graphs", is_flag=True, help="Replay the torch CUDA backends from captured CUDA graphs.")
@click.option("--no-data-transfers", is_flag=True,
              help="On CUDA backends, time compute on inputs already on the device (trtexec --noDataTransfers).")
@click.option("--json", "json_path", type=click.Path(), help="Write the result as JSON (schema dnx.bench/1).")
@click.option("--csv", "csv_path", type=click.Path(), help="Write one CSV row per backend and batch.")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write the tables as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(),
              help="Latency, throughput and parity figure (.png/.svg/.pdf; pip install 'dnx[plot]').")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Keep the prepared ONNX files here and reuse them (default: a temporary folder).")
@click.option("--e2e", "e2e_images", type=click.Path(),
              help="End to end instead: TARGET is an artifact; time JPEG bytes -> top-5 on these images (a file or "
                   "folder) per path (dnx exact/fast, PIL, torchvision.io, DALI CPU if installed, C++ if built).")
def bench_cmd(target, engine, backends, batch, iterations, duration, warmup, threads, ov_precision, data_path,
              samples, calib_data, cuda_graphs, no_data_transfers, json_path, csv_path, markdown_path, plot_path,
              workdir, e2e_images) -> None:
    """Latency and accuracy parity of each backend against PyTorch, side by side.

    TARGET is a registered model name (its ONNX, INT8 and FP16 files are prepared in --workdir) or
    an ONNX file made by `dnx export`. The reference is PyTorch FP32 on the CPU; every backend gets
    the same inputs. Backends that cannot run here are reported as unavailable.

    \b
    Parity data: random tensors (numeric check; decide no reduced precision) and real images: --data,
    else the model's reference set (the shipped Fashion-MNIST test split, or every offline photo whole
    and cropped). Verdicts (dnx.core.compare.DEFAULT_TOLERANCES):
      fp32        max|diff| <= 1e-4 and equal top-1
      fp16, bf16  top-1 agreement >= 99.5%
      int8, best  top-1 agreement >= 99%
    Top-1 is judged on the images FP32 is sure of (top-1 minus top-2 probability >= 0.2; near-tie
    flips reported apart): n such images at threshold t allow floor(n*(1-t)) flips. Random-init
    models' reduced precisions are judged by min per-image cosine (>= 0.999 / 0.99) instead.
    """
    from pathlib import Path

    if e2e_images:
        return _bench_e2e(target, e2e_images, threads, json_path, markdown_path)

    writers = {"json": (json_path, report.write_json), "CSV": (csv_path, report.write_csv),
               "Markdown": (markdown_path, report.write_markdown), "plot": (plot_path, report.plot)}
    for option, path in (("--json", json_path), ("--csv", csv_path), ("--markdown", markdown_path),
                         ("--plot", plot_path)):
        if path:
            check_writable(path, option)  # fail before minutes of benchmarking, not after
    if workdir and Path(workdir).exists() and not Path(workdir).is_dir():
        raise DnxError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
    if target and Path(target).suffix.lower() == ".onnx" and Path(target).is_file():

        if read_manifest(target, required=False) is None:
            # bench's reference is the PyTorch model a dnx manifest names; a foreign ONNX has none
            raise DnxError(f"{target} has no dnx manifest, so there is no PyTorch model to compare it with; "
                           f"bench a registered model by name (dnx bench MODEL) or a file made by `dnx export`")
    if plot_path:
        require("matplotlib", "plot", "--plot")
    names = tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else ()
    config = BenchConfig(target=target, engine=engine, backends=names, batches=parse_batches(batch),
                         iterations=iterations, duration_s=duration, warmup_s=warmup, threads=threads,
                         ov_precision=ov_precision,
                         data=data_path, calib_data=calib_data, samples=samples, cuda_graphs=cuda_graphs,
                         no_data_transfers=no_data_transfers, workdir=workdir)
    with LateProgress() as progress:  # run_bench validates the config before any work
        result = run_bench(config, progress)
    console = make_console()
    console.print(report.latency_table(result))
    console.print(report.parity_table(result))
    for kind, (path, write) in writers.items():
        if path:
            write(result, path)
            console.print(f"wrote {kind} {path}")
    if not result.ran:
        why = "; ".join(f"{b.backend}: {b.reason}" for b in result.backends)
        error = MissingDependencyError if all(b.status == "unavailable" for b in result.backends) else DnxError
        raise error(f"none of the requested backends ran here ({why})")


def _bench_e2e(target, images, threads, json_path, markdown_path) -> None:
    """`dnx bench ARTIFACT --e2e IMAGES`: the request end to end on the user's photos (benchmarks/e2e.py)."""
    from pathlib import Path

    if not target or not Path(target).is_file():
        raise DnxError("--e2e needs TARGET to be an artifact file (an ONNX made by dnx, or an engine)")
    for option, path in (("--json", json_path), ("--markdown", markdown_path)):
        if path:
            check_writable(path, option)
    sets = user_images(images)
    with make_console().status("timing the request end to end..."):
        result = run_e2e(target, sets, threads=threads, rounds=5, cpp_seconds=2.0, serve_size=None)
    text = markdown(result)
    click.echo(text)
    if json_path:
        write_json_atomic(Path(json_path), result, "--json")
    if markdown_path:
        write_bytes_atomic(Path(markdown_path), text.encode(), "--markdown")
