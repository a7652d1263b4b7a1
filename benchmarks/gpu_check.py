"""One short check of every CUDA and TensorRT path dnx has, with parity: densenet121 at batch 1, 8 and 64.

    python -m dnx.benchmarks.gpu_check [--out STEM] [--budget 420] [--model densenet121]
    benchmarks/gpu_check.sh            (the same from a checkout, killed at 8 minutes whatever happens)

Paths, each a row of the backend table (``dnx.runtime.backends.table``, whose name the report uses):
torch-cuda (FP32, TF32 off), torch-cuda-fp16 (autocast, channels_last), torch-cuda-compile (FP32),
onnxruntime-cuda and onnxruntime-cuda-tensorrt (onnxruntime's CUDA and TensorRT providers on the FP32
ONNX file), tensorrt-cuda on the FP32 and FP16 engines from ``dnx build``'s library call (paths
``tensorrt-cuda[fp32]``, ``tensorrt-cuda[fp16]``) and on the FP16 engine replayed as a CUDA graph
(``tensorrt-cuda[fp16,cuda-graph]``). Before them, the TensorRT checks of :mod:`dnx.benchmarks.gpu_check_trt`
(a version-compatible engine in Python and C++, ``dnx inspect`` on TensorRT 10/11, two GPUs): the
latency paths alone would spend the budget. Each path that can run here gets parity against PyTorch FP32 on
the CPU (8 inputs: the bundled photos plus noise) and CUDA-event latency at each batch; each path
that cannot is reported as skipped with the reason (no CUDA device, provider not loadable,
TensorRT missing, time budget). Weights are random (no pretrained DenseNet exists offline), so
reduced precisions are judged by cosine, not by top-1 agreement on tiny logit margins.

Then the whole request on the GPU (benchmarks/gpu_request.py): real photos re-encoded at 2 and 12 MP,
decoded by nvJPEG in one batched call, preprocessed on the GPU and inferred from device memory.

Writes ``STEM.json`` (machine facts, every path, every number) and ``STEM.md`` (one table); STEM
defaults to ``benchmarks/results/gpu_check`` on a GPU machine and ``..._cpu`` without one, where
nothing runs. The budget (default 420 s of the 8-minute limit) is checked before each path, and
a TensorRT build stops through its progress monitor when the budget runs out.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dnx.core.compare import compare_logits
from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError
from dnx.runtime.backends.base import Runner, run_in_batches, UnavailableBackend
from dnx.benchmarks.e2e import reencoded_photos
from dnx.benchmarks.gpu_check_trt import CHECKS, run_check
from dnx.benchmarks.gpu_common import (BATCHES, DEFAULT_BUDGET_S, ESTIMATE_S, LATENCY, PARITY_BATCH, TOLERANCES, Budget,
                                       Context, PathResult, Skip)
from dnx.benchmarks.gpu_request import markdown as request_markdown, request_path
from dnx.benchmarks.scripts import RESULTS
from dnx.core.fileio import write_bytes_atomic, write_json_atomic
from dnx.core.machine import cuda_available, machine_info
from dnx.data.preprocess import photo_batch
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.models.registry import get_config
from dnx.runtime.backends.latency import measure_latency
from dnx.runtime.backends.table import NO_CUDA, RunOptions, TABLE, TorchModel
from dnx.runtime.backends.tensorrt_compat import import_tensorrt
from dnx.runtime.tensorrt.builder import build_engine, BuildOptions


@dataclass(frozen=True)
class GpuPath:
    """One path: a row of the backend table at a precision (an engine's, for tensorrt-cuda)."""

    backend: str
    precision: str = "fp32"
    cuda_graphs: bool = False

    @property
    def name(self) -> str:
        """The row's name; engine paths add the engine's precision (one row runs several engines)."""
        if TABLE[self.backend].takes != "engine":
            return self.backend
        return f"{self.backend}[{self.precision}{',cuda-graph' if self.cuda_graphs else ''}]"


PATHS: dict[str, GpuPath] = {p.name: p for p in (
    GpuPath("torch-cuda"), GpuPath("torch-cuda-fp16", "fp16"), GpuPath("torch-cuda-compile"),
    GpuPath("onnxruntime-cuda"), GpuPath("onnxruntime-cuda-tensorrt"),
    GpuPath("tensorrt-cuda", "fp32"), GpuPath("tensorrt-cuda", "fp16"), GpuPath("tensorrt-cuda", "fp16", True),
)}


def _engine(ctx: Context, precision: str) -> Path:
    """Build (once) the engine of ``precision``, as ``dnx build`` does; Skip when TensorRT is missing."""

    if precision not in ctx.engines:
        try:
            import_tensorrt(0)
        except MissingDependencyError as exc:
            raise Skip(str(exc)) from None
        options = BuildOptions(precision=precision, min_batch=1, opt_batch=PARITY_BATCH, max_batch=max(BATCHES),
                               timing_cache=ctx.workdir / "timing.cache")
        path = ctx.workdir / f"model.{precision}.engine"
        build_engine(ctx.onnx, path, options, progress=ctx.budget.check, workdir=ctx.workdir)
        ctx.engines[precision] = path
    return ctx.engines[precision]


def _runner(path: GpuPath, ctx: Context) -> Runner:
    """The path's Runner, made by its table row (which raises UnavailableBackend where it cannot run)."""
    row = TABLE[path.backend].require()
    extra = {}
    if row.runner_options.get("provider") == "trt":
        shapes = {k: f"input:{b}x3x224x224" for k, b in (("min", 1), ("opt", PARITY_BATCH), ("max", max(BATCHES)))}
        extra["trt_options"] = {f"trt_profile_{k}_shapes": v for k, v in shapes.items()}
    options = RunOptions(cuda_graphs=path.cuda_graphs, cache_dir=str(ctx.workdir / "ort-trt-cache"), extra=extra)
    if row.takes == "model":
        # A copy: the runner moves its module to the GPU; the CPU reference model stays where it is.
        return row.runner(TorchModel(copy.deepcopy(ctx.model)), options)
    return row.runner(_engine(ctx, path.precision) if row.takes == "engine" else ctx.onnx, options)


def _measure(runner: Runner, precision: str, ctx: Context, result: PathResult) -> None:
    with runner:
        if runner.inference_precision == "tf32" and precision == "fp32":
            precision = "tf32"
            result.notes.append("FP32 layers ran in TF32 (TensorRT's default; onnxruntime cannot turn it off)")
        result.precision = precision
        out = run_in_batches(runner, ctx.x, PARITY_BATCH, pad=True)
        comparison = TOLERANCES[precision].apply(compare_logits(ctx.reference, out))
        result.parity = {**asdict(comparison), "passed": bool(comparison)}
        rng = np.random.default_rng(0)
        for batch in BATCHES:
            ctx.budget.check()
            feed = {"input": rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)}
            runner.infer(feed)  # checked once; the timed calls skip the checks
            m = measure_latency(runner, feed, LATENCY["warmup_s"], duration_s=LATENCY["duration_s"], cuda_events=True,
                                min_iterations=LATENCY["min_iterations"])
            result.latency[batch] = {"timer": m.timer, "median_ms": m.end_to_end.median_ms,
                                     "p90_ms": m.end_to_end.p90_ms, "throughput": m.end_to_end.throughput,
                                     "compute_median_ms": m.compute.median_ms if m.compute else None}
            result.notes.extend(n for n in m.notes if n not in result.notes)


def run_path(name: str, ctx: Context | None, why_not: str | None) -> PathResult:
    path = PATHS[name]
    result = PathResult(name, precision=path.precision, backend=path.backend)
    start = time.monotonic()
    try:
        if why_not:  # besides a GPU, what the row lacks (read without importing tensorrt)
            raise Skip("; ".join([why_not, *(m for m in TABLE[path.backend].missing() if m != NO_CUDA)]))
        if ctx.budget.left() < ESTIMATE_S.get(name, 0):
            raise Skip(f"time budget: {ctx.budget.left():.0f} s left, this path needs about {ESTIMATE_S[name]} s")
        _measure(_runner(path, ctx), path.precision, ctx, result)
        result.status = "ran"
    except Skip as exc:
        result.reason = str(exc)
    except (UnavailableBackend, NoDeviceError, MissingDependencyError) as exc:  # e.g. a provider that cannot load
        result.reason = str(exc)
    except DnxError as exc:  # engine or TensorRT refusals: dnx's own path is broken here
        result.status, result.reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken path is reported, and the others still run
        result.status, result.reason = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    result.seconds = round(time.monotonic() - start, 1)
    return result


def _context(model_name: str, workdir: Path, budget: Budget) -> Context:
    import torch

    loaded = create_model(model_name, use_bundled=False)
    onnx_path = workdir / f"{model_name}.onnx"
    export_onnx(loaded, onnx_path, ExportOptions(verify=False))
    photos = photo_batch(loaded.config.preprocess)[:PARITY_BATCH]
    noise = np.random.default_rng(1).standard_normal((PARITY_BATCH - len(photos), *photos.shape[1:]), dtype=np.float32)
    x = np.ascontiguousarray(np.concatenate([photos, noise]))
    model = loaded.model.eval()
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()  # PyTorch FP32 on the CPU
    return Context(model, onnx_path, workdir, x, reference, budget)


def gpu_check(model_name: str = "densenet121", budget_s: float = DEFAULT_BUDGET_S,
              workdir: Path | None = None) -> dict:
    """Run every path that can run here (see the module doc); returns the JSON-ready summary."""
    import tempfile

    start = time.monotonic()
    budget = Budget(budget_s)
    why_not = None if cuda_available() else "no CUDA device (torch.cuda.is_available() is False): nothing to run"
    with tempfile.TemporaryDirectory(prefix="dnx-gpu-check-", dir=workdir) as tmp:
        ctx = None if why_not else _context(model_name, Path(tmp), budget)
        paths = [run_check(name, ctx, why_not) for name in CHECKS] + [run_path(name, ctx, why_not) for name in PATHS]
        request = _request_path(ctx, model_name, why_not)
    return {"schema": "dnx.gpu-check/1", "model": model_name, "weights": "random weights (none pretrained offline)",
            "batches": list(BATCHES), "parity_batch": PARITY_BATCH,
            "tolerances": {k: asdict(v) for k, v in TOLERANCES.items()}, "latency_settings": LATENCY,
            "budget_s": budget_s, "seconds": round(time.monotonic() - start, 1), "machine": machine_info(),
            "paths": [asdict(p) for p in paths], "request_path": request}


def _request_path(ctx: Context | None, model_name: str, why_not: str | None) -> dict:
    """The GPU request path (benchmarks/gpu_request.py), or why it did not run."""
    if why_not:
        return {"status": "skipped", "reason": why_not}

    try:
        sets = {k: v for k, v in reencoded_photos(8).items() if k in ("2MP", "12MP")}
        return request_path(ctx.onnx, get_config(model_name).preprocess, sets, ctx.budget)
    except Skip as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported, like a broken path
        return {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def markdown(summary: dict) -> str:
    m = summary["machine"]
    gpu = m["gpu"] or {}
    lines = [f"# dnx GPU check: {summary['model']} ({summary['weights']})", "",
             f"- GPU: {gpu.get('name', 'none')} (sm {gpu.get('compute_capability', '-')}, driver "
             f"{gpu.get('driver', '-')}, CUDA {gpu.get('cuda', '-')})",
             f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs); versions: "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
             f"- {summary['seconds']} s of a {summary['budget_s']:.0f} s budget; parity on {summary['parity_batch']} "
             "inputs against PyTorch FP32 on the CPU; latency: CUDA-event medians, end to end (compute alone in "
             "brackets where the path has it)", "",
             "| path | status | precision | parity | " + " | ".join(f"batch {b} ms" for b in summary["batches"])
             + " | reason / notes |",
             "|---|---|---|---|" + "---|" * len(summary["batches"]) + "---|"]
    for p in summary["paths"]:
        parity = "-" if not p["parity"] else ("pass" if p["parity"]["passed"] else "FAIL") \
            + f" ({p['parity']['criterion']})"
        cells = []
        for b in summary["batches"]:
            lat = p["latency"].get(b) or p["latency"].get(str(b))
            compute = f" ({lat['compute_median_ms']:.2f})" if lat and lat["compute_median_ms"] is not None else ""
            cells.append(f"{lat['median_ms']:.2f}{compute}" if lat else "-")
        text = "; ".join(([p["reason"]] if p["reason"] else []) + p["notes"]).replace("|", "/")
        lines.append(f"| {p['name']} | {p['status']} | {p['precision']} | {parity} | {' | '.join(cells)} | {text} |")

    return "\n".join(lines) + "\n" + request_markdown(summary.get("request_path") or {"reason": "not measured"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output stem (default: benchmarks/results/gpu_check[_cpu])")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help="seconds for all paths together")
    parser.add_argument("--model", default="densenet121")
    args = parser.parse_args(argv)
    stem = args.out or RESULTS / ("gpu_check" if cuda_available() else "gpu_check_cpu")
    summary = gpu_check(args.model, args.budget)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stem.with_name(stem.name + ".json"), summary)
    write_bytes_atomic(stem.with_name(stem.name + ".md"), markdown(summary).encode())
    ran = sum(p["status"] == "ran" for p in summary["paths"])
    print(f"{ran} of {len(summary['paths'])} paths ran; wrote {stem}.json and {stem}.md")
    for p in summary["paths"]:
        print(f"  {p['name']:<31} {p['status']:<8} {p['reason']}")


if __name__ == "__main__":
    main()
