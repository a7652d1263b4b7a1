"""The ``dnx`` command line. The only module that imports click.

Each command maps its options onto library calls; heavy packages are imported inside the callbacks
so ``dnx --help`` works with none of torch's optional companions installed. ``DnxError``s become one
line on stderr and exit code 1 (2 for a missing dependency or device); other exceptions are bugs and
keep their traceback.
"""

from __future__ import annotations

import json
import sys

import click

from dnx import __version__
from dnx.errors import DnxError


def _console():
    from rich.console import Console

    # Rich assumes 80 columns when piped; tables of numbers read better unwrapped.
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _err(message: str) -> None:
    click.echo(f"dnx: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnx")
def cli() -> None:
    """DenseNet from the paper to a deployed NVIDIA engine.

    \b
    build (PyTorch) -> export (ONNX) -> precision (FP16 / INT8 QDQ) -> engine (TensorRT)
                    -> bench (latency + parity vs PyTorch) -> serve
    """


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def models_cmd(as_json: bool) -> None:
    """List the registered DenseNet variants."""
    from dnx.models.registry import get_config, list_models, model_stats

    rows = []
    for name in list_models():
        cfg = get_config(name)
        params, macs = model_stats(cfg)
        rows.append({**cfg.to_dict(), "params": params, "macs": macs})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from dnx.tables import new_table

    table = new_table("DenseNet variants",
                      ("name", "depth", "k", "blocks", "params", "paper params", "GMACs", "input", "reference"),
                      left=("name", "blocks", "input", "reference"))
    for r in rows:
        paper = f"{r['paper_params'] / 1e6:.1f}M" if r["paper_params"] else "-"
        table.add_row(r["name"], str(r["depth"]), str(r["growth_rate"]),
                      "-".join(map(str, r["block_config"])), f"{r['params']:,}", paper,
                      f"{r['macs'] / 1e9:.3f}", f"{r['in_channels']}x{r['image_size']}x{r['image_size']}",
                      r["reference"].rsplit(", ", 1)[-1] if "Table" in r["reference"] else "dnx")
    _console().print(table)


def _parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        raise DnxError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    return batch  # ExportOptions.validate refuses batch < 1


def _comparison_table(title: str, rows: list[tuple[str, object]]):
    from dnx.tables import new_table, verdict

    table = new_table(title, ("case", "samples", "max|diff|", "mean|diff|", "max rel", "cosine", "top-1", "top-5",
                              "result"), left=("case", "result"))
    for name, c in rows:
        table.add_row(name, str(c.samples), f"{c.max_abs_diff:.2e}", f"{c.mean_abs_diff:.2e}",
                      f"{c.max_rel_diff:.2e}", f"{c.cosine:.6f}", f"{c.top1_agreement:.1%}",
                      f"{c.top5_agreement:.1%}", verdict(c))
    return table


@cli.command("export")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(), help="Output file (default: MODEL.onnx).")
@click.option("--weights", type=click.Path(), help="torchvision-format state dict (.pth/.pt/.safetensors).")
@click.option("--num-classes", type=int, help="Classifier outputs (default: the variant's).")
@click.option("--image-size", type=int, help="Input height/width (default: the variant's).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset (13-20).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the file against PyTorch in onnxruntime.")
@click.option("--simplify", is_flag=True, help="Run onnxslim on the graph (pip install 'dnx[simplify]').")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of a random initialisation.")
def export_cmd(model, output, weights, num_classes, image_size, batch, opset, verify, simplify, seed) -> None:
    """Export a registered DenseNet to ONNX and prove it equals PyTorch."""
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.fileio import check_writable
    from dnx.models import create_model, get_config

    cfg = get_config(model)
    options = ExportOptions(batch=_parse_batch(batch), opset=opset, verify=verify, simplify=simplify)
    options.validate()
    output = check_writable(output or f"{cfg.name}.onnx")
    loaded = create_model(cfg, weights=weights, seed=seed, num_classes=num_classes, image_size=image_size)
    console = _console()
    try:
        result = export_onnx(loaded, output, options)
    except DnxError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            console.print(_comparison_table("ONNX (onnxruntime CPU) vs PyTorch", report.cases))
        raise
    if result.verification is not None:
        console.print(_comparison_table("ONNX (onnxruntime CPU) vs PyTorch", result.verification.cases))
    status = "verified" if result.verification else "not verified (--no-verify)"
    console.print(f"wrote {result.path} ({loaded.weights if loaded.weights_path is None else 'weights ' + loaded.weights[:12]}), "
                  f"{status}; export {result.export_seconds:.1f} s, verify {result.verify_seconds:.1f} s")


def _manual_preprocess(mean, std, image_size):
    """Preprocessing from --mean/--std/--image-size, for ONNX files without a dnx manifest."""
    if not (mean or std or image_size):
        return None
    if not (mean and std and image_size):
        raise DnxError("give all of --mean, --std and --image-size (e.g. --mean 0.485,0.456,0.406 "
                       "--std 0.229,0.224,0.225 --image-size 224)")
    from dnx.models.registry import Preprocess

    try:
        m, s = tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(","))
    except ValueError:
        raise DnxError("--mean and --std take comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if len(m) != len(s) or len(m) not in (1, 3):
        raise DnxError("--mean and --std need 1 or 3 values each, the same count")
    return Preprocess(image_size, round(image_size * 256 / 224) if image_size >= 64 else image_size, m, s, len(m))


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        click.echo(f"dnx: note: {note}", err=True)


@cli.command("calibrate")
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="Image folder (recursive), .npy/.npz array, or IDX file/folder.")
@click.option("--target", type=click.Choice(["tensorrt", "onnxruntime"]), default="tensorrt", show_default=True,
              help="Place Q/DQ for the engine that will run the file.")
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]),
              help="Range statistic (default: entropy for --target tensorrt, percentile for onnxruntime).")
@click.option("--samples", default=512, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--exclude", multiple=True, help="Node name or op type to leave in float (repeatable).")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of the unquantized ops (fp16: TensorRT's 'best' mode).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--cache", "cache_path", type=click.Path(), help="Calibration cache (default: OUT.calib.json).")
@click.option("--mean", help="Per-channel mean, for ONNX files without a dnx manifest.")
@click.option("--std", help="Per-channel std, for ONNX files without a dnx manifest.")
@click.option("--image-size", type=int, help="Input size, for ONNX files without a dnx manifest.")
@click.option("-o", "--output", type=click.Path(),
              help="Output (default: MODEL.int8.onnx for --target tensorrt, the file `dnx build --precision int8` "
                   "makes; MODEL.int8-onnxruntime.onnx for onnxruntime; .best instead of .int8 with "
                   "--high-precision fp16).")
def calibrate_cmd(model, data_path, target, method, samples, seed, exclude, high_precision, batch_size,
                  cache_path, mean, std, image_size, output) -> None:
    """Calibrate INT8 and write a Q/DQ ONNX graph."""
    from pathlib import Path

    from dnx.calibration.qdq import calibrate_qdq

    src = Path(model)
    suffix = ("best" if high_precision == "fp16" else "int8") + ("-onnxruntime" if target == "onnxruntime" else "")
    output = output or str(src.with_name(f"{src.stem}.{suffix}.onnx"))
    with _console().status("calibrating..."):
        result = calibrate_qdq(src, output, data_path, target=target, method=method, samples=samples, seed=seed,
                               exclude=exclude, high_precision=high_precision,
                               cache_path=cache_path, batch_size=batch_size,
                               preprocess=_manual_preprocess(mean, std, image_size))
    _print_notes(result.notes)
    how = f"reused calibration cache {result.cache_path}" if result.cache_hit else f"ranges cached in {result.cache_path}"
    click.echo(f"wrote {result.path}: INT8 Q/DQ for {target}, {result.manifest['calibration']['method']} on {result.samples} samples, "
               f"{result.seconds:.1f} s ({how})")


@cli.command("convert")
@click.argument("model", type=click.Path())
@click.option("--precision", type=click.Choice(["fp16"]), default="fp16", show_default=True)
@click.option("--check/--no-check", default=True, show_default=True, help="Compare with the FP32 file in onnxruntime.")
@click.option("-o", "--output", type=click.Path(), help="Output (default: MODEL.fp16.onnx).")
def convert_cmd(model, precision, check, output) -> None:
    """Convert an FP32 ONNX file to FP16 (FP32 inputs/outputs kept)."""
    from pathlib import Path

    from dnx.calibration.fp16 import convert_fp16

    src = Path(model)
    result = convert_fp16(src, output or src.with_name(f"{src.stem}.{precision}.onnx"), check=check)
    if result.comparison is not None:
        _console().print(_comparison_table("FP16 vs FP32 (onnxruntime CPU)", [("random + photos", result.comparison)]))
    click.echo(f"wrote {result.path} ({result.seconds:.1f} s)")
    if result.comparison is not None and not result.comparison:
        raise DnxError(f"{result.path} was written but disagrees with FP32: {result.comparison.criterion}")


@cli.command("eval")
@click.argument("model", default="densenet_bc22_fmnist")
@click.option("--weights", type=click.Path(), help="Checkpoint (default: the bundled one, if any).")
@click.option("--data", "data_path", type=click.Path(),
              help="Labelled set: IDX folder, class-folder tree or .npz (default: the shipped Fashion-MNIST 5k).")
@click.option("--calib-data", type=click.Path(), help="Calibration data (default: the shipped 512 training images).")
@click.option("--samples", default=512, show_default=True, type=int)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]),
              help="Range statistic (default: entropy for --target tensorrt, percentile for onnxruntime).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--threads", default=0, type=int)
@click.option("--workdir", type=click.Path(), default="build/eval", show_default=True)
@click.option("--json", "json_path", type=click.Path(), help="Also write the report as JSON.")
def eval_cmd(model, weights, data_path, calib_data, samples, method, limit, threads, workdir, json_path) -> None:
    """Accuracy of PyTorch FP32 vs ONNX FP32 / FP16 / INT8 QDQ over a labelled set."""
    from pathlib import Path

    from dnx.benchmarks.accuracy import evaluate_precisions
    from dnx.data.datasets import LabelledImages, load_labelled, shipped_fashion_mnist_test
    from dnx.fileio import write_json_atomic
    from dnx.models import ASSETS, create_model
    from dnx.tables import new_table, verdict

    loaded = create_model(model, weights=weights)
    if loaded.weights_path is None:
        raise DnxError(f"{model} has random weights: accuracy needs trained weights (--weights PATH)")
    data = load_labelled(data_path, "test") if data_path else shipped_fashion_mnist_test()
    if limit:
        data = LabelledImages(data.images[:limit], data.labels[:limit], data.classes)
    calib = calib_data or ASSETS / "fashion_mnist_calib512.npz"
    console = _console()
    with console.status("evaluating...") as status:
        report = evaluate_precisions(loaded, data, workdir, calib, samples=samples, method=method,
                                     threads=threads, progress=lambda msg: status.update(msg))
    _print_notes(report.notes)
    table = new_table(f"{model}: accuracy on {report.images} labelled images (onnxruntime CPU)",
                      ("precision", "accuracy", "delta", "top-1 agree", "max|diff|", "cosine", "result"),
                      left=("precision", "result"))
    base = report.rows[0].comparison.accuracy
    for row in report.rows:
        c = row.comparison
        table.add_row(row.label, f"{c.accuracy:.2%}", f"{(c.accuracy - base) * 100:+.2f} pt",
                      f"{c.top1_agreement:.2%}", f"{c.max_abs_diff:.2e}", f"{c.cosine:.6f}", verdict(c))
    console.print(table)
    if json_path:
        write_json_atomic(Path(json_path), report.to_dict())
    if not report.passed:
        raise DnxError("some precisions failed their parity tolerance (see the table)")


def _parse_batches(value: str) -> tuple[int, ...]:
    try:
        batches = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise DnxError(f"--batch takes comma-separated positive integers (1,8,32), got {value!r}")
    return batches


class _LateProgress:
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

    def __enter__(self) -> "_LateProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


@cli.command("bench")
@click.argument("target", required=False)
@click.option("--engine", type=click.Path(), help="TensorRT engine for the trt backend.")
@click.option("--backends", help="Comma-separated: torch, torch-cuda-fp16, torch-compile, ort-cpu, ort-int8, "
              "ort-fp16, ort-cuda, ort-trt, trt. Default without a GPU: torch,ort-cpu,ort-int8; with one: "
              "torch,torch-cuda-fp16,ort-cuda (and trt with --engine).")
@click.option("--batch", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--iterations", type=click.IntRange(min=1), help="Timed inferences per batch size.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Timed seconds per batch size (default 3, at least 10 inferences).")
@click.option("--warmup", default=0.2, show_default=True, type=click.FloatRange(min=0),
              help="Warm-up seconds before each timing.")
@click.option("--threads", default=0, type=click.IntRange(min=0),
              help="Intra-op threads of torch and onnxruntime (0: their defaults).")
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
def bench_cmd(target, engine, backends, batch, iterations, duration, warmup, threads, data_path, samples,
              calib_data, cuda_graphs, no_data_transfers, json_path, csv_path, markdown_path, plot_path, workdir) -> None:
    """Latency and accuracy parity of each backend against PyTorch, side by side.

    TARGET is a registered model name (its ONNX, INT8 and FP16 files are prepared in --workdir) or
    an ONNX file made by `dnx export`. The reference is PyTorch FP32 on the CPU; every backend gets
    the same inputs. Backends that cannot run here are reported as unavailable.
    """
    from dnx.benchmarks import report
    from dnx.benchmarks.harness import BenchConfig, run_bench
    from dnx.errors import MissingDependencyError, require
    from dnx.fileio import check_writable

    writers = {"json": (json_path, report.write_json), "CSV": (csv_path, report.write_csv),
               "Markdown": (markdown_path, report.write_markdown), "plot": (plot_path, report.plot)}
    for path, _ in writers.values():
        if path:
            check_writable(path)  # fail before minutes of benchmarking, not after
    if plot_path:
        require("matplotlib", "plot", "--plot")
    names = tuple(b.strip() for b in backends.split(",") if b.strip()) if backends else ()
    config = BenchConfig(target=target, engine=engine, backends=names, batches=_parse_batches(batch),
                         iterations=iterations, duration_s=duration, warmup_s=warmup, threads=threads,
                         data=data_path, calib_data=calib_data, samples=samples, cuda_graphs=cuda_graphs,
                         no_data_transfers=no_data_transfers, workdir=workdir)
    with _LateProgress() as progress:  # run_bench validates the config before any work
        result = run_bench(config, progress)
    console = _console()
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


@cli.command("build")
@click.argument("model", type=click.Path())
@click.option("--precision", metavar="[fp32|fp16|int8|best]",
              help="fp16 converts the graph to FP16; int8 calibrates a Q/DQ graph from --calib-data; best is int8 "
                   "with the other ops in FP16. Default: the ONNX file's own (fp32 for a plain export).")
@click.option("--calib-data", type=click.Path(), help="Calibration images for int8/best: folder, .npy/.npz or IDX.")
@click.option("--calib-cache", type=click.Path(),
              help="Calibration range cache to reuse or write, with --calib-data (default: GRAPH.calib.json).")
@click.option("--min-batch", type=int, help="Smallest batch the engine accepts (default 1).")
@click.option("--opt-batch", type=int, help="Batch TensorRT tunes its kernels for (default 8).")
@click.option("--max-batch", type=int, help="Largest batch the engine accepts (default 32).")
@click.option("--workspace", metavar="SIZE", help="Builder scratch memory limit, e.g. 4GiB (default: TensorRT's).")
@click.option("--timing-cache", type=click.Path(), help="Timing cache to reuse and update (faster rebuilds).")
@click.option("--opt-level", type=int, default=3, show_default=True,
              help="Builder optimization level 0-5 (higher: longer build, possibly faster engine).")
@click.option("--hardware-compat", default="none", show_default=True, metavar="[none|ampere+|same-cc]",
              help="Also run on other GPUs: ampere+ any Ampere or newer, same-cc those of this compute capability.")
@click.option("--version-compat", is_flag=True, help="Also run with later TensorRT releases of the same major version.")
@click.option("-o", "--output", type=click.Path(), help="Engine file (default: MODEL.PRECISION.engine beside MODEL).")
def build_cmd(model, precision, calib_data, calib_cache, min_batch, opt_batch, max_batch, workspace, timing_cache,
              opt_level, hardware_compat, version_compat, output) -> None:
    """Build a TensorRT engine from an ONNX file (needs an NVIDIA GPU and TensorRT)."""
    from pathlib import Path

    from rich.progress import Progress

    from dnx.runtime.tensorrt_builder import BuildOptions, build_engine, graph_precision, parse_size

    src = Path(model)
    precision = precision or graph_precision(src)
    options = BuildOptions(precision=precision, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                           workspace=parse_size(workspace) if workspace else None,
                           timing_cache=Path(timing_cache) if timing_cache else None, opt_level=opt_level,
                           hardware_compat=hardware_compat, version_compat=version_compat).validate()
    stem = src.name.removesuffix(".onnx")
    stem = stem if stem.endswith(f".{precision}") else f"{stem}.{precision}"
    output = Path(output) if output else src.with_name(f"{stem}.engine")
    console = _console()
    with Progress(console=console, transient=True) as bar:
        tasks = {None: bar.add_task("preparing the graph", total=None)}

        def on_progress(phase: str, step: int, steps: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=steps or None)
            bar.update(tasks[phase], completed=step, total=steps or None)

        result = build_engine(src, output, options, on_progress, calib_data=calib_data, calib_cache=calib_cache)
    _print_notes(result.notes + [f"TensorRT warning: {w}" for w in result.warnings[:5]])
    m = result.manifest
    batch = m["batch_profile"]
    graph = "" if result.graph.action == "as-is" else f"; built graph {result.graph.path} ({result.graph.action})"
    click.echo(f"wrote {result.path}: {m['precision']}, batch {batch['min_batch']}..{batch['max_batch']} "
               f"(opt {batch['opt_batch']}), TensorRT {m['tensorrt_version']} on {m['gpu']['name']} "
               f"(compute capability {m['gpu']['compute_capability']}), {result.build_seconds:.1f} s{graph}")


def _print_onnx_summary(info: dict) -> None:
    from dnx.tables import new_table

    def shape(t: dict) -> str:
        return f"{t['name']} [{','.join('N' if d is None else str(d) for d in t['shape'])}] {t['dtype']}"

    click.echo(f"{info['path']}: ONNX, {info['bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]}, opset "
               f"{info['opset'].get('ai.onnx', '?')}, producer {info['producer'] or '?'}")
    click.echo(f"inputs: {'; '.join(map(shape, info['inputs']))}")
    click.echo(f"outputs: {'; '.join(map(shape, info['outputs']))}")
    claimed = f" (manifest says {info['manifest_precision']})" if info["manifest_precision"] else " (no dnx manifest)"
    click.echo(f"precision: {info['precision']}{claimed}; {info['nodes']} nodes, {info['qdq_nodes']} Q/DQ")
    table = new_table("operators", ("op", "count"), left=("op",))
    for op, n in info["ops"].items():
        table.add_row(op, str(n))
    dtypes = new_table("initializers", ("dtype", "tensors", "elements"), left=("dtype",))
    for dtype, d in info["initializers"].items():
        dtypes.add_row(dtype, str(d["tensors"]), f"{d['elements']:,}")
    console = _console()
    console.print(table)
    console.print(dtypes)


def _print_engine_summary(info: dict) -> None:
    m = info["manifest"]
    click.echo(f"{info['path']}: TensorRT engine, {info['bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]}")
    if m is None:
        click.echo("no dnx manifest (not built by `dnx build`, or its .json sidecar is missing)")
    else:
        batch, gpu = m["batch_profile"], m["gpu"]
        click.echo(f"built {m.get('built_at', '?')} with TensorRT {m['tensorrt_version']} on {gpu.get('name')} "
                   f"(compute capability {gpu['compute_capability']}); hardware compat {m['hardware_compat']}, "
                   f"version compat {'yes' if m['version_compat'] else 'no'}")
        click.echo(f"precision {m['precision']}, batch {batch['min_batch']}..{batch['max_batch']} "
                   f"(opt {batch['opt_batch']}); from {m['source_onnx']['path']} "
                   f"(sha256 {m['source_onnx']['sha256'][:12]}) via {m['built_graph']['path']}")
        click.echo(f"rebuild: {m.get('build_command', '?')}")
    for t in info.get("io", []):
        click.echo(f"{t['mode']}: {t['name']} {t['shape']} {t['dtype']}")
    layers = info.get("layers")
    if layers:
        click.echo(f"layers: {layers['count']}; output precision {layers['output_precision']}; "
                   f"types {dict(list(layers['types'].items())[:8])}")
    _print_notes(info.get("warnings", []))


@cli.command("inspect")
@click.argument("artifact", type=click.Path())
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="Engines: TensorRT's per-layer report (needs a GPU and TensorRT); --no-layers reads the manifest only.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def inspect_cmd(artifact, layers, as_json) -> None:
    """Summarize an ONNX file (any machine) or a TensorRT engine (its layers need a GPU and TensorRT)."""
    from pathlib import Path

    from dnx.benchmarks.artifacts import ENGINE_SUFFIXES

    path = Path(artifact)
    if path.suffix == ".onnx":
        from dnx.runtime.tensorrt_inspect import inspect_onnx

        info, show = inspect_onnx(path), _print_onnx_summary
    elif path.suffix in ENGINE_SUFFIXES:
        from dnx.errors import MissingDependencyError
        from dnx.runtime.tensorrt_inspect import inspect_engine

        try:
            info, show = inspect_engine(path, layers=layers), _print_engine_summary
        except MissingDependencyError as exc:
            raise type(exc)(f"{exc}; `dnx inspect {path} --no-layers` shows its manifest on this machine") from None
    else:
        raise DnxError(f"{path}: cannot tell what it is; expected an .onnx file or an .engine/.plan file")
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        show(info)


@cli.command("train")
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="IDX folder (train-*/t10k-* files), image folder with class subfolders, or .npz.")
@click.option("--test-data", type=click.Path(), help="Held-out set (default: the t10k split of --data).")
@click.option("--epochs", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.2, show_default=True, type=float, help="Peak one-cycle learning rate.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=0, type=int, help="torch threads (0: torch's default).")
@click.option("--limit", type=click.IntRange(min=1), help="Train on the first N images only.")
@click.option("-o", "--output", type=click.Path(), help="Checkpoint path (default: MODEL.pth).")
def train_cmd(model, data_path, test_data, epochs, batch_size, lr, seed, threads, limit, output) -> None:
    """Train a registered DenseNet on a small labelled image set."""
    from rich.progress import Progress

    from dnx import __version__ as version
    from dnx.data.datasets import load_labelled
    from dnx.fileio import check_writable
    from dnx.models import get_config
    from dnx.train import TrainConfig, data_fingerprint, save_checkpoint, train

    cfg = get_config(model)
    output = check_writable(output or f"{cfg.name}.pth")
    train_set = load_labelled(data_path, "train")
    test_set = load_labelled(test_data or data_path, "test")
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads, limit=limit)
    with Progress(console=_console(), transient=False) as progress:
        task = progress.add_task("training", total=None)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(task, total=steps * epochs, completed=epoch * steps + step,
                            description=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")

        def on_epoch(record: dict) -> None:
            progress.console.print(f"epoch {record['epoch']}: loss {record['loss']:.4f}, test accuracy "
                                   f"{record.get('test_accuracy', float('nan')):.2%}, {record['seconds']:.0f} s")

        net, history = train(cfg, train_set, test_set, tc, on_step, on_epoch)
    accuracy = history["epochs"][-1]["test_accuracy"]
    manifest = {"model": cfg.to_dict(), "dnx_version": version, "history": history,
                "test_accuracy": accuracy, "test_images": len(test_set),
                "train_data": {"path": str(data_path), "sha256": data_fingerprint(train_set.images, train_set.labels)},
                "command": "dnx train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "dnx train"}
    save_checkpoint(net, output, manifest)
    click.echo(f"wrote {output} (test accuracy {accuracy:.2%} on {len(test_set)} images)")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="dnx", standalone_mode=False)
    except click.exceptions.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DnxError as exc:
        _err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted; no partial artifact was left under its final name")
        sys.exit(130)


if __name__ == "__main__":
    main()
