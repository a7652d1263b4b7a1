"""`dnx bench`: latency of every backend and its accuracy parity with PyTorch, in one run.

(The backends are rows of the backend table, ``dnx.runtime.backends.table``; bench's defaults and how
each row's runner gets its prepared file live in ``backends.py``.)

A run has one target (a registered model name, an ONNX file, and/or a TensorRT engine), prepares
what each backend needs (FP32 ONNX, INT8 QDQ ONNX, FP16 ONNX) in a work folder, computes the
reference logits once with PyTorch FP32 on the CPU, feeds every backend the same inputs, and times
each backend at each batch size. A backend that cannot run here (no GPU, no TensorRT, a provider
missing) is reported as unavailable with the reason; it never stops the others.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from dnx.benchmarks.artifacts import Artifacts
from dnx.benchmarks.backends import default_backends, make_runner
from dnx.runtime.backends.latency import DEFAULT_WARMUP_S, LatencyMeasurement, measure_latency
from dnx.core.machine import cuda_available, machine_info
from dnx.benchmarks.parity_data import ParityInput, parity_inputs
from dnx.core.compare import Comparison, Tolerance, compare_logits
from dnx.core.errors import DnxError, MissingDependencyError
from dnx.runtime.backends.base import Runner, UnavailableBackend, run_in_batches
from dnx.runtime.backends.table import Backend, known, resolve_name, TABLE, unknown_name_error
from dnx.runtime.backends.torch_runner import TorchRunner
from dnx.calibration.parity import tolerance_for

DEFAULT_SAMPLES = 100  # top-1 agreement over 100 images resolves the 99% / 99.5% thresholds

Progress = Callable[[str, int, int], None]  # (what is running, steps done, steps in all)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one `dnx bench` run does; the CLI maps its options onto these fields."""

    target: str | None = None  # a registered model name or an ONNX file
    engine: str | None = None  # a TensorRT engine (the trt backend)
    backends: tuple[str, ...] = ()  # rows of the backend table; empty: default_backends() for this machine
    batches: tuple[int, ...] = (1, 8)
    iterations: int | None = None  # timed inferences per batch; or
    duration_s: float | None = None  # timed seconds per batch (3 s when neither is given)
    warmup_s: float = DEFAULT_WARMUP_S
    threads: int = 0  # intra-op threads of torch, onnxruntime and OpenVINO (0: their defaults)
    # OpenVINO's float precision: fp32 (the file's), bf16, or auto (bf16 where the CPU has it)
    ov_precision: str = "fp32"
    data: str | None = None  # parity images (default: the bundled photos), and calibration images
    calib_data: str | None = None  # INT8 calibration images, when they should differ from ``data``
    samples: int = DEFAULT_SAMPLES  # parity images per input set, and calibration images
    # per-precision overrides; others follow dnx.calibration.parity.tolerance_for (DEFAULT_TOLERANCES, and
    # cosine instead of top-1 for the reduced precisions of a random-initialised model)
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    seed: int = 0
    cuda_graphs: bool = False
    no_data_transfers: bool = False
    workdir: str | None = None  # keep and reuse prepared files here (default: a temporary folder)

    def validate(self) -> None:
        if not self.target and not self.engine:
            raise DnxError("nothing to benchmark: give a model name, an ONNX file, or --engine PATH")
        unknown = [b for b in self.backends if not known(b)]
        if unknown:
            raise unknown_name_error(unknown)
        if not self.batches or any(b < 1 for b in self.batches):
            raise DnxError(f"batch sizes must be positive integers, got {list(self.batches)}")
        if self.iterations is not None and self.duration_s is not None:
            raise DnxError("give --iterations or --duration, not both")
        if self.iterations is not None and self.iterations < 1:
            raise DnxError(f"--iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise DnxError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.warmup_s < 0:
            raise DnxError(f"--warmup must be >= 0 seconds, got {self.warmup_s}")
        if self.samples < 1:
            raise DnxError(f"--samples must be >= 1, got {self.samples}")
        if self.threads < 0:
            raise DnxError(f"--threads must be >= 0, got {self.threads}")
        if self.ov_precision not in ("auto", "fp32", "bf16"):
            raise DnxError(f"--ov-precision must be fp32, bf16 or auto, got {self.ov_precision!r}")

    def tolerance(self, precision: str, weights: str = "") -> Tolerance:
        return self.tolerances.get(precision) or tolerance_for(precision, weights)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["backends"], d["batches"] = list(self.backends), list(self.batches)
        d["tolerances"] = {k: asdict(v) for k, v in self.tolerances.items()}
        return d


# -- results ----------------------------------------------------------------------------------

@dataclass
class BatchLatency:
    batch: int
    measurement: LatencyMeasurement | None = None
    error: str | None = None  # why this batch size could not be timed (e.g. outside an engine's profile)


@dataclass
class BackendResult:
    backend: str
    status: str = "ok"  # "ok", "unavailable" or "error"
    reason: str = ""
    precision: str | None = None
    device: str | None = None
    artifact: str | None = None  # the file run, when it outlives the run
    artifact_sha256: str | None = None
    tolerance: Tolerance | None = None
    parity: list[tuple[str, Comparison]] = field(default_factory=list)
    latency: list[BatchLatency] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.status == "ok"

    @property
    def parity_passed(self) -> bool | None:
        """None when nothing was judged (no parity, or numeric-only cases alone)."""
        judged = [c for _, c in self.parity if c.passed is not None]
        return all(bool(c) for c in judged) if judged else None

    def median_ms(self, batch: int) -> float | None:
        for entry in self.latency:
            if entry.batch == batch and entry.measurement is not None:
                return entry.measurement.end_to_end.median_ms
        return None


@dataclass
class BenchResult:
    config: BenchConfig
    machine: dict
    model: dict  # name, weights, input, output, source artifact
    inputs: list[dict]  # the parity input sets: name, samples, labelled, source
    backends: list[BackendResult]
    created: str
    seconds: float

    def backend(self, name: str) -> BackendResult | None:
        return next((b for b in self.backends if b.backend == name), None)

    def speedup(self, name: str, batch: int) -> float | None:
        """Median latency of PyTorch eager FP32 (``torch-cuda``, else ``torch-cpu``) over that of ``name``
        at ``batch`` (same run, same machine)."""
        base = self.backend("torch-cuda") or self.backend("torch-cpu")
        other = self.backend(name)
        if base is None or other is None:
            return None
        b, o = base.median_ms(batch), other.median_ms(batch)
        return b / o if b and o else None

    @property
    def ran(self) -> list[BackendResult]:
        return [b for b in self.backends if b.ran]


def _strip_prefix(message: str, backend: str) -> str:
    for prefix in (f"{backend} unavailable: ", "unavailable: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


# -- the run ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _workdir(config: BenchConfig) -> Iterator[tuple[Path, bool]]:
    if config.workdir:
        path = Path(config.workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve(), False
    else:
        with tempfile.TemporaryDirectory(prefix="dnx-bench-") as tmp:
            yield Path(tmp).resolve(), True


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's thread count is process-wide: set it for the run, restore it after."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Steps:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, what: str) -> None:
        if self.progress is not None:
            self.progress(what, self.done, self.total)
        self.done += 1

    def finish(self) -> None:
        if self.progress is not None:
            self.progress("done", self.total, self.total)


def _batch_range(runner: Runner, art: Artifacts, row: Backend) -> tuple[int | None, int | None]:
    """(smallest, largest) batch the backend takes: a fixed batch dimension, or an engine's profile."""
    fixed = runner.input_metadata()[art.input_name].shape[0]
    if isinstance(fixed, int) and fixed > 0:  # None (or -1) marks a dynamic batch
        return fixed, fixed
    return art.engine_batches() if row.takes == "engine" else (None, None)


def _check_parity(runner: Runner, art: Artifacts, inputs: list[ParityInput], reference: dict[str, np.ndarray],
                  batch: int, tolerance: Tolerance, precision: str) -> list[tuple[str, Comparison]]:
    cases = []
    for case in inputs:
        out = run_in_batches(runner, case.images, batch, pad=True, output_name=art.output_name)
        c = compare_logits(reference[case.name], out, case.labels)
        if precision not in ("fp32", "unknown") and not case.decides_reduced:
            c.criterion = (f"numeric only: random inputs do not decide {precision.upper()} (off the model's data, "
                           "rounding flips its noise-level top-1 margins)")
        else:
            tolerance.apply(c)
        cases.append((case.name, c))
    return cases


def _time_batch(runner: Runner, feed: dict[str, np.ndarray], config: BenchConfig) -> BatchLatency:
    batch = int(next(iter(feed.values())).shape[0])
    try:
        runner.infer(feed)  # checked once (shapes, dtypes); the timed calls skip the checks
        return BatchLatency(batch, measure_latency(runner, feed, config.warmup_s, config.iterations,
                                                   config.duration_s, cuda_events=runner.uses_cuda,
                                                   no_data_transfers=config.no_data_transfers))
    except Exception as exc:
        if not isinstance(exc, DnxError) and not _backend_library_failure(exc):
            raise
        return BatchLatency(batch, error=str(exc) if isinstance(exc, DnxError) else f"{type(exc).__name__}: {exc}")


def _bench_backend(row: Backend, art: Artifacts, config: BenchConfig,
                   inputs: list[ParityInput], reference: dict[str, np.ndarray], parity_batch: int,
                   step: _Steps) -> BackendResult:
    """Parity, then latency at each batch size, of one backend; whatever stops it is reported."""
    result = BackendResult(row.name)
    step(f"{row.name}: preparing and checking parity")
    try:
        runner, result.precision, result.device, path = make_runner(row, art, config)
        if path is not None:
            result.artifact, result.artifact_sha256 = art.describe(path)
        if result.precision == "unknown":
            result.notes.append("precision unknown (no manifest): parity checked with the fp32 tolerance")
        with runner:
            if runner.inference_precision == "bf16":
                # OpenVINO ran the float parts in bf16: a reduced precision, checked as FP16 is
                result.notes.append(f"OpenVINO inference precision bf16 on a {result.precision} file")
                result.precision = "bf16" if result.precision == "fp32" else result.precision
            elif runner.inference_precision == "tf32" and result.precision == "fp32":
                result.notes.append("onnxruntime's TensorRT provider ran FP32 layers in TF32 (no option turns it off)")
                result.precision = "tf32"
            # float reduced by the backend: bf16 has its own tolerance (FP16's), tf32 is checked as FP16 is
            judged_as = "fp16" if result.precision == "tf32" else result.precision
            result.tolerance = config.tolerance(judged_as, art.model().weights)
            low, high = _batch_range(runner, art, row)
            batch = min(max(parity_batch, low or 1), high or parity_batch)
            result.parity = _check_parity(runner, art, inputs, reference, batch, result.tolerance, result.precision)
            rng = np.random.default_rng(config.seed + 1)
            shape = inputs[0].images.shape[1:]
            for batch in config.batches:
                step(f"{row.name}: timing batch {batch}")
                if (low and batch < low) or (high and batch > high):
                    takes = f"a fixed batch of {low}" if low == high else f"batches {low}..{high} (engine profile)"
                    result.latency.append(BatchLatency(batch, error=f"the model takes {takes}"))
                    continue
                feed = {art.input_name: rng.standard_normal((batch, *shape), dtype=np.float32)}
                result.latency.append(_time_batch(runner, feed, config))
            if isinstance(runner, TorchRunner) and runner.graph_error:
                result.notes.append(runner.graph_error)
        graphs = row.takes == "engine" or (isinstance(runner, TorchRunner) and runner.cuda_graphs)
        if config.cuda_graphs and not graphs:
            result.notes.append("ran without CUDA graphs (--cuda-graphs applies to the torch CUDA backends and "
                                "tensorrt-cuda)")
    except (UnavailableBackend, MissingDependencyError) as exc:
        result.status, result.reason = "unavailable", _strip_prefix(str(exc), row.name)
    except DnxError as exc:
        result.status, result.reason = "error", str(exc)
    except Exception as exc:
        if not _backend_library_failure(exc):
            raise  # a bug in dnx: keep its traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result.status, result.reason = "error", f"{type(exc).__name__}: {first}"
    return result


def _backend_library_failure(exc: Exception) -> bool:
    """A backend library failing at run time (an onnxruntime kernel or provider, torch.compile's
    compiler, a CUDA error): reported for that backend while the run goes on."""
    root = type(exc).__module__.split(".")[0]
    return isinstance(exc, (ImportError, RuntimeError)) or root in ("onnxruntime", "tensorrt")


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    """Benchmark every backend of ``config`` and check each against PyTorch FP32 on the CPU.

    ``progress(what, done, total)`` is called as the run advances. Raises DnxError for a bad target
    or config; a backend that cannot run is reported in the result, never raised.
    """
    config.validate()
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    has_cuda = cuda_available()
    # Old names (ort-cpu, torch...) become their rows here, so results and reports carry the table's names.
    config = replace(config, backends=tuple(dict.fromkeys(resolve_name(b, has_cuda) for b in config.backends)))
    with _workdir(config) as (workdir, temporary):
        art = Artifacts(config, workdir, temporary)
        names = config.backends or default_backends(has_cuda, art.engine is not None, art.onnx_precision or "fp32",
                                                    not has_cuda and TABLE["openvino-cpu"].available()[0])
        rows = [TABLE[n] for n in names]
        step = _Steps(progress, 1 + len(rows) * (1 + len(config.batches)))
        step("PyTorch FP32 reference")
        loaded = art.model()
        pre = loaded.config.preprocess
        inputs = parity_inputs(pre, config.samples, config.seed, config.data, loaded.config.labels)
        parity_batch = max(config.batches)
        with _torch_threads(config.threads):
            with TorchRunner(loaded.model, art.input_name, art.output_name, pre.in_channels) as ref_runner:
                reference = {c.name: run_in_batches(ref_runner, c.images, parity_batch, pad=True,
                                                     output_name=art.output_name) for c in inputs}
            backends = []
            for row in rows:
                backends.append(_bench_backend(row, art, config, inputs, reference, parity_batch, step))
                # A backend that did not run skips its timing steps; keep the bar's arithmetic honest.
                step.done = 1 + len(backends) * (1 + len(config.batches))
            machine = machine_info(config.threads)
        step.finish()
        source = art.onnx or art.engine
        model = {"name": loaded.config.name, "weights": loaded.weights, "weights_path": loaded.weights_path,
                 "input": {"name": art.input_name, "shape": ["N", pre.in_channels, pre.image_size, pre.image_size],
                           "dtype": "float32"},
                 "output": art.output_name,
                 "source": (art.describe(source)[0] if source else None) or config.target,
                 "reference": "PyTorch FP32 eager on the CPU, torchvision forward"}
    inputs_info = [{"name": c.name, "samples": int(len(c.images)), "labelled": c.labels is not None,
                    "source": c.source} for c in inputs]
    return BenchResult(config, machine, model, inputs_info, backends, started, time.perf_counter() - clock)
