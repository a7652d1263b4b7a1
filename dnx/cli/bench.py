"""`dnx bench`: latency and parity of every backend, side by side."""

from __future__ import annotations

import time
from pathlib import Path

import click

from dnx.benchmarks import report
from dnx.benchmarks.backends import default_backends
from dnx.benchmarks.e2e import markdown, run_e2e, user_images
from dnx.benchmarks.harness import DEFAULT_SAMPLES, BenchConfig, run_bench
from dnx.calibration.parity import RANDOM_INIT_TOLERANCES
from dnx.cli.common import make_console
from dnx.cli.group import cli
from dnx.cli.options import json_file_option, markdown_file_option, output_file_option, threads_option
from dnx.core.compare import DECISIVE_MARGIN, DEFAULT_TOLERANCES, Tolerance
from dnx.core.errors import DnxError, MissingDependencyError, require
from dnx.core.fileio import write_bytes_atomic, write_json_atomic
from dnx.runtime.backends.latency import DEFAULT_DURATION_S, DEFAULT_WARMUP_S, MIN_ITERATIONS
from dnx.runtime.backends.openvino_runner import PRECISIONS as OV_PRECISIONS
from dnx.runtime.backends.table import TABLE
from dnx.schemas.manifest import read_manifest


def _tolerance_text(t: Tolerance) -> str:
    parts = [f"max|diff| <= {t.max_abs_diff:g}"] if t.max_abs_diff is not None else []
    if t.min_top1_agreement == 1:
        parts.append("equal top-1")
    elif t.min_top1_agreement is not None:
        parts.append(f"top-1 agreement >= {t.min_top1_agreement * 100:g}%")
    if t.min_cosine is not None:
        parts.append(f"min per-image cosine >= {t.min_cosine:g}")
    return " and ".join(parts)


def _verdicts() -> str:
    """The verdict lines of the help, from the tolerances the parity checks apply."""
    by_text: dict[str, list[str]] = {}
    for precision, tolerance in DEFAULT_TOLERANCES.items():
        by_text.setdefault(_tolerance_text(tolerance), []).append(precision)
    return "\n".join(f"  {', '.join(names):<12}{text}" for text, names in by_text.items())


def _backends_help() -> str:
    cpu, gpu = default_backends(False, False), default_backends(True, False)
    openvino = [b for b in default_backends(False, False, has_openvino=True) if b not in cpu]
    engine = [b for b in default_backends(True, True) if b not in gpu]
    return (f"Comma-separated rows of the backend table: {', '.join(TABLE)}. Default without a GPU: "
            f"{','.join(cpu)} (and {','.join(openvino)} where OpenVINO is installed); with one: {','.join(gpu)} "
            f"(and {','.join(engine)} with --engine). Old names (ort-cpu, trt...) still work, with a note.")


_COSINES = " / ".join(dict.fromkeys(f"{t.min_cosine:g}" for t in RANDOM_INIT_TOLERANCES.values()))
BENCH_HELP = f"""Latency and accuracy parity of each backend against PyTorch, side by side.

TARGET is a registered model name (its ONNX, INT8 and FP16 files are prepared in --workdir) or
an ONNX file made by `dnx export`. The reference is PyTorch FP32 on the CPU; every backend gets
the same inputs. Backends that cannot run here are reported as unavailable.

\b
Parity data: random tensors (numeric check; decide no reduced precision) and real images: --data,
else the model's reference set (the shipped Fashion-MNIST test split, or every offline photo whole
and cropped). Verdicts (dnx.core.compare.DEFAULT_TOLERANCES):
{_verdicts()}
Top-1 is judged on the images FP32 is sure of (top-1 minus top-2 probability >= {DECISIVE_MARGIN:g}; near-tie
flips reported apart): n such images at threshold t allow floor(n*(1-t)) flips. Random-init
models' reduced precisions are judged by min per-image cosine (>= {_COSINES}) instead.
"""


@cli.command("bench", help=BENCH_HELP)
@click.argument("target", required=False)
@click.option("--engine", type=click.Path(), help="TensorRT engine for the tensorrt-cuda backend.")
@click.option("--backends", help=_backends_help())
@click.option("--batch", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iterations", type=click.IntRange(min=1), help="Timed inferences per batch size.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help=f"Timed seconds per batch size (default {DEFAULT_DURATION_S:g}, "
                   f"at least {MIN_ITERATIONS} inferences).")
@click.option("--warmup", default=DEFAULT_WARMUP_S, show_default=True, type=click.FloatRange(min=0),
              help="Warm-up seconds before each timing.")
@threads_option()
@click.option("--ov-precision", type=click.Choice(OV_PRECISIONS), default="fp32", show_default=True,
              help="Float precision of the OpenVINO backends (fp32: as the file is written; auto: bf16 where "
                   "the CPU has it, else fp32).")
@click.option("--data", "data_path", type=click.Path(),
              help="Parity and INT8 calibration images: IDX folder, .npz, class folders (labelled) or an image "
                   "folder. Default: the photos bundled with dnx.")
@click.option("--samples", default=DEFAULT_SAMPLES, show_default=True, type=click.IntRange(min=1),
              help="Images per parity input set, and INT8 calibration images.")
@click.option("--calib-data", type=click.Path(),
              help="INT8 calibration images when they should differ from --data (keep test images out).")
@click.option("--cuda-graphs", is_flag=True, help="Replay the torch CUDA backends from captured CUDA graphs.")
@click.option("--no-data-transfers", is_flag=True,
              help="On CUDA backends, time compute on inputs already on the device (trtexec --noDataTransfers).")
@json_file_option("Write the result as JSON (schema dnx.bench/1).")
@output_file_option("--csv", "csv_path", "Write one CSV row per backend and batch.")
@markdown_file_option()
@output_file_option("--plot", "plot_path",
                    "Latency, throughput and parity figure (.png/.svg/.pdf; pip install 'dnx[plot]').")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Keep the prepared ONNX files here and reuse them (default: a temporary folder).")
@click.option("--e2e", "e2e_images", type=click.Path(),
              help="End to end instead: TARGET is an artifact; time JPEG bytes -> top-5 on these images (a file or "
                   "folder) per path (dnx exact/fast, PIL, torchvision.io, DALI CPU if installed, C++ if built).")
def bench_cmd(target, engine, backends, batch, iterations, duration, warmup, threads, ov_precision, data_path,
              samples, calib_data, cuda_graphs, no_data_transfers, json_path, csv_path, markdown_path, plot_path,
              workdir, e2e_images) -> None:
    if e2e_images:
        return _bench_e2e(target, e2e_images, threads, json_path, markdown_path)

    writers = {"json": (json_path, report.write_json), "CSV": (csv_path, report.write_csv),
               "Markdown": (markdown_path, report.write_markdown), "plot": (plot_path, report.plot)}
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
    if not target or not Path(target).is_file():
        raise DnxError("--e2e needs TARGET to be an artifact file (an ONNX made by dnx, or an engine)")
    sets = user_images(images)
    with make_console().status("timing the request end to end..."):
        result = run_e2e(target, sets, threads=threads, rounds=5, cpp_seconds=2.0, serve_size=None)
    text = markdown(result)
    click.echo(text)
    if json_path:
        write_json_atomic(Path(json_path), result, "--json")
    if markdown_path:
        write_bytes_atomic(Path(markdown_path), text.encode(), "--markdown")


def parse_batches(value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}") from exc
    if not batches or any(b < 1 for b in batches):
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}")
    return batches


class LateProgress:
    """A rich progress bar on stderr that appears only once a run has taken a couple of seconds."""

    def __init__(self, after_s: float = 2.0) -> None:
        self._start, self._after = time.monotonic(), after_s
        self._bar = self._task = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self._bar is None:
            if time.monotonic() - self._start < self._after:
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
