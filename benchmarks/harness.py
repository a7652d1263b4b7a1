"""`dnx bench`: latency of every backend and its accuracy parity with PyTorch, in one run.

A run has one target (a registered model name, an ONNX file, and/or a TensorRT engine), prepares
what each backend needs (FP32 ONNX, INT8 QDQ ONNX, FP16 ONNX) in a work folder, computes the
reference logits once with PyTorch FP32 on the CPU, feeds every backend the same inputs, and times
each backend at each batch size. A backend that cannot run here (no GPU, no TensorRT, a provider
missing) is reported as unavailable with the reason; it never stops the others.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from dnx.benchmarks.artifacts import Artifacts
from dnx.benchmarks.latency import DEFAULT_WARMUP_S, LatencyMeasurement, measure_latency, uses_cuda
from dnx.benchmarks.machine import cuda_available, machine_info
from dnx.benchmarks.parity_data import ParityInput, parity_inputs
from dnx.compare import Comparison, Tolerance, compare_logits
from dnx.errors import DnxError, MissingDependencyError
from dnx.runtime.base import Runner, UnavailableBackend, run_in_batches
from dnx.runtime.torch.runner import TorchRunner

DEFAULT_SAMPLES = 100  # top-1 agreement over 100 images resolves the 99% / 99.5% thresholds

Progress = Callable[[str, int, int], None]  # (what is running, steps done, steps in all)


@dataclass(frozen=True)
class BackendSpec:
    name: str
    artifact: str  # what the runner takes: "model", "onnx" (FP32), "int8", "fp16" or "engine"
    cuda_only: bool
    summary: str


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch", "model", False, "PyTorch eager FP32 (CUDA when available, else CPU)"),
    BackendSpec("torch-cuda-fp16", "model", True, "PyTorch eager, FP16 autocast, channels_last, CUDA"),
    BackendSpec("torch-compile", "model", False, "torch.compile (inductor) FP32 (CUDA when available)"),
    BackendSpec("ort-cpu", "onnx", False, "onnxruntime CPU provider, FP32 ONNX"),
    BackendSpec("ort-int8", "int8", False, "onnxruntime CPU provider, INT8 QDQ ONNX calibrated for onnxruntime"),
    BackendSpec("ort-fp16", "fp16", False, "onnxruntime, FP16 ONNX (CUDA provider when available, else CPU)"),
    BackendSpec("ort-cuda", "onnx", True, "onnxruntime CUDA provider, FP32 ONNX"),
    BackendSpec("ort-trt", "onnx", True, "onnxruntime TensorRT provider, FP32 ONNX"),
    BackendSpec("trt", "engine", True, "TensorRT engine (--engine)"),
    BackendSpec("ov-cpu", "onnx", False, "OpenVINO CPU, the target's ONNX (FP32, or the INT8 target as it is)"),
    BackendSpec("ov-int8", "int8-openvino", False, "OpenVINO CPU, INT8 QDQ ONNX calibrated for OpenVINO (NNCF)"),
)}
OPENVINO_BACKENDS = ("ov-cpu", "ov-int8")


def default_backends(has_cuda: bool, has_engine: bool, target_precision: str = "fp32",
                     has_openvino: bool = False) -> tuple[str, ...]:
    """torch, ort-cpu, ort-int8 on a CPU machine, plus ov-cpu and ov-int8 where OpenVINO is installed
    (on CPUs it is the fastest FP32 and INT8 runtime dnx measured); the CUDA backends (and the engine)
    with a GPU.

    A target ONNX file that is already INT8 drops ort-int8 and ov-int8: ort-cpu and ov-cpu run that file.
    """
    names = ["torch", "torch-cuda-fp16", "ort-cuda"] if has_cuda else ["torch", "ort-cpu", "ort-int8"]
    if not has_cuda and has_openvino:
        names += list(OPENVINO_BACKENDS)
    if target_precision == "int8":
        names = [n for n in names if n not in ("ort-int8", "ov-int8")]
    return tuple(names + (["trt"] if has_engine else []))


@dataclass(frozen=True)
class BenchConfig:
    """Everything one `dnx bench` run does; the CLI maps its options onto these fields."""

    target: str | None = None  # a registered model name or an ONNX file
    engine: str | None = None  # a TensorRT engine (the trt backend)
    backends: tuple[str, ...] = ()  # empty: default_backends() for this machine
    batches: tuple[int, ...] = (1, 8)
    iterations: int | None = None  # timed inferences per batch; or
    duration_s: float | None = None  # timed seconds per batch (3 s when neither is given)
    warmup_s: float = DEFAULT_WARMUP_S
    threads: int = 0  # intra-op threads of torch, onnxruntime and OpenVINO (0: their defaults)
    ov_precision: str = "auto"  # OpenVINO's float precision: fp32, bf16, or auto (bf16 where the CPU has it)
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
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            hints = {b: difflib.get_close_matches(b, BACKENDS, n=1) for b in unknown}
            said = ", ".join(f"{b!r}" + (f" (did you mean {h[0]}?)" if h else "") for b, h in hints.items())
            raise DnxError(f"unknown backend {said}; choose from {', '.join(BACKENDS)}")
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
        from dnx.calibration.parity import tolerance_for

        return self.tolerances.get(precision) or tolerance_for(precision, {"weights": {"id": weights}})

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
        """Median latency of ``torch`` over that of ``name`` at ``batch`` (same run, same machine)."""
        base, other = self.backend("torch"), self.backend(name)
        if base is None or other is None:
            return None
        b, o = base.median_ms(batch), other.median_ms(batch)
        return b / o if b and o else None

    @property
    def ran(self) -> list[BackendResult]:
        return [b for b in self.backends if b.ran]


# -- runners ----------------------------------------------------------------------------------

class _BenchTorchRunner(TorchRunner):
    """TorchRunner plus the device hooks :func:`measure_latency` duck-types (``upload`` /
    ``infer_device``) and, with ``cuda_graphs``, inference replayed from a captured CUDA graph."""

    def __init__(self, *args, cuda_graphs: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cuda_graphs = cuda_graphs and self.device == "cuda"
        self.graph_error: str | None = None
        self._static_in = self._static_out = self._graph = None

    @property
    def uses_cuda(self) -> bool:
        return self.device == "cuda"

    def _deactivate(self) -> None:
        self._static_in = self._static_out = self._graph = None
        super()._deactivate()

    def upload(self, feed: dict[str, np.ndarray]) -> None:
        self._static_in, self._graph = self._to_input(feed[self.input_name]), None
        if self.cuda_graphs:
            self._capture()

    def _capture(self) -> None:
        import torch

        try:
            # Warm up on a side stream first (cuDNN autotuning, allocator pools), as torch's docs ask.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._forward(self._static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_out = self._forward(self._static_in)
            self._graph = graph
        except RuntimeError as exc:
            self.cuda_graphs, self.graph_error = False, f"CUDA graph capture failed, ran eagerly: {exc}"

    def infer_device(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._forward(self._static_in)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.cuda_graphs:
            return super()._infer(feed)
        import torch

        x = feed[self.input_name]
        if self._graph is None or tuple(self._static_in.shape) != x.shape:
            self.upload(feed)
            if self._graph is None:
                return super()._infer(feed)
        else:
            self._static_in.copy_(torch.from_numpy(x))
        self._graph.replay()
        return {self.output_name: self._static_out.float().cpu().numpy()}


def _tensorrt_runner(engine: Path, cuda_graphs: bool = False) -> Runner:
    # Never touch TensorRT without a CUDA device: creating its Runtime there can crash the process.
    if not cuda_available():
        raise UnavailableBackend("no CUDA device found")
    try:
        from dnx.runtime.tensorrt.runner import TensorRTRunner
    except ImportError as exc:
        raise UnavailableBackend(f"the TensorRT runner cannot be imported: {exc}") from None
    return TensorRTRunner(engine, cuda_graph=True) if cuda_graphs else TensorRTRunner(engine)


def _make_runner(spec: BackendSpec, art: Artifacts, config: BenchConfig,
                 has_cuda: bool) -> tuple[Runner, str, str, Path | None]:
    """(runner, precision, device, file run) for one backend; raises UnavailableBackend."""
    from dnx.runtime.onnxruntime.runner import OnnxRuntimeRunner, provider_available

    if spec.cuda_only and not has_cuda:
        raise UnavailableBackend("no CUDA device found")
    if spec.artifact == "model":
        loaded = art.model()
        device = "cuda" if has_cuda else "cpu"
        fp16 = spec.name == "torch-cuda-fp16"
        # A copy: the runner moves and reformats its module in place; the reference stays on the CPU.
        runner = _BenchTorchRunner(copy.deepcopy(loaded.model), art.input_name, art.output_name,
                                   loaded.config.in_channels, device=device, fp16=fp16, channels_last=fp16,
                                   compile=spec.name == "torch-compile", threads=config.threads,
                                   cuda_graphs=config.cuda_graphs)
        return runner, "fp16" if fp16 else "fp32", device, None
    if spec.artifact == "engine":
        path, precision = art.path_for("engine")
        return _tensorrt_runner(path, config.cuda_graphs), precision, "cuda", path
    if spec.name in OPENVINO_BACKENDS:
        from dnx.runtime.openvino.runner import OpenVINORunner, openvino_available

        ok, why = openvino_available()
        if not ok:
            raise UnavailableBackend(why)
        path, precision = art.path_for(spec.artifact)
        return OpenVINORunner(path, threads=config.threads, precision=config.ov_precision), precision, "cpu", path
    device = {"ort-cuda": "cuda", "ort-trt": "trt"}.get(spec.name, "cpu")
    if spec.name == "ort-fp16" and has_cuda:
        device = "cuda"
    ok, why = provider_available(device)
    if not ok:
        raise UnavailableBackend(why)
    path, precision = art.path_for(spec.artifact)
    trt_cache = str(art.workdir / "ort-trt-cache") if device == "trt" else None
    return OnnxRuntimeRunner(path, device, threads=config.threads, trt_cache_dir=trt_cache), precision, device, path


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


def _batch_range(runner: Runner, art: Artifacts, spec: BackendSpec) -> tuple[int | None, int | None]:
    """(smallest, largest) batch the backend takes: a fixed batch dimension, or an engine's profile."""
    fixed = runner.input_metadata()[art.input_name].shape[0]
    if isinstance(fixed, int) and fixed > 0:  # None (or -1) marks a dynamic batch
        return fixed, fixed
    return art.engine_batches() if spec.artifact == "engine" else (None, None)


def _check_parity(runner: Runner, art: Artifacts, inputs: list[ParityInput], reference: dict[str, np.ndarray],
                  batch: int, tolerance: Tolerance, precision: str) -> list[tuple[str, Comparison]]:
    cases = []
    for case in inputs:
        out = run_in_batches(runner, case.images, batch, pad=True, output_name=art.output_name)
        c = compare_logits(reference[case.name], out, case.labels)
        if precision in ("int8", "best") and not case.decides_int8:
            c.criterion = "numeric only: random inputs do not decide INT8 (its ranges come from real images)"
        else:
            tolerance.apply(c)
        cases.append((case.name, c))
    return cases


def _time_batch(runner: Runner, feed: dict[str, np.ndarray], config: BenchConfig) -> BatchLatency:
    batch = int(next(iter(feed.values())).shape[0])
    try:
        runner.infer(feed)  # checked once (shapes, dtypes); the timed calls skip the checks
        return BatchLatency(batch, measure_latency(runner, feed, config.warmup_s, config.iterations,
                                                   config.duration_s, cuda_events=uses_cuda(runner),
                                                   no_data_transfers=config.no_data_transfers))
    except Exception as exc:
        if not isinstance(exc, DnxError) and not _backend_library_failure(exc):
            raise
        return BatchLatency(batch, error=str(exc) if isinstance(exc, DnxError) else f"{type(exc).__name__}: {exc}")


def _bench_backend(spec: BackendSpec, art: Artifacts, config: BenchConfig, has_cuda: bool,
                   inputs: list[ParityInput], reference: dict[str, np.ndarray], parity_batch: int,
                   step: _Steps) -> BackendResult:
    """Parity, then latency at each batch size, of one backend; whatever stops it is reported."""
    result = BackendResult(spec.name)
    step(f"{spec.name}: preparing and checking parity")
    try:
        runner, result.precision, result.device, path = _make_runner(spec, art, config, has_cuda)
        if path is not None:
            result.artifact, result.artifact_sha256 = art.describe(path)
        if result.precision == "unknown":
            result.notes.append("precision unknown (no manifest): parity checked with the fp32 tolerance")
        with runner:
            if getattr(runner, "inference_precision", None) == "bf16":
                # OpenVINO ran the float parts in bf16: a reduced precision, checked as FP16 is
                result.notes.append(f"OpenVINO inference precision bf16 on a {result.precision} file")
                result.precision = "bf16" if result.precision == "fp32" else result.precision
            elif getattr(runner, "inference_precision", None) == "tf32" and result.precision == "fp32":
                result.notes.append("onnxruntime's TensorRT provider ran FP32 layers in TF32 (no option turns it off)")
                result.precision = "tf32"
            reduced = result.precision in ("bf16", "tf32")  # float reduced by the backend: checked as FP16 is
            result.tolerance = config.tolerance("fp16" if reduced else result.precision, art.model().weights)
            low, high = _batch_range(runner, art, spec)
            batch = min(max(parity_batch, low or 1), high or parity_batch)
            result.parity = _check_parity(runner, art, inputs, reference, batch, result.tolerance, result.precision)
            rng = np.random.default_rng(config.seed + 1)
            shape = inputs[0].images.shape[1:]
            for batch in config.batches:
                step(f"{spec.name}: timing batch {batch}")
                if (low and batch < low) or (high and batch > high):
                    takes = f"a fixed batch of {low}" if low == high else f"batches {low}..{high} (engine profile)"
                    result.latency.append(BatchLatency(batch, error=f"the model takes {takes}"))
                    continue
                feed = {art.input_name: rng.standard_normal((batch, *shape), dtype=np.float32)}
                result.latency.append(_time_batch(runner, feed, config))
            if getattr(runner, "graph_error", None):
                result.notes.append(runner.graph_error)
        if config.cuda_graphs and spec.name != "trt" and not getattr(runner, "cuda_graphs", False):
            result.notes.append("ran without CUDA graphs (--cuda-graphs applies to the torch CUDA backends and trt)")
    except (UnavailableBackend, MissingDependencyError) as exc:
        result.status, result.reason = "unavailable", _strip_prefix(str(exc), spec.name)
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


def _openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    """Benchmark every backend of ``config`` and check each against PyTorch FP32 on the CPU.

    ``progress(what, done, total)`` is called as the run advances. Raises DnxError for a bad target
    or config; a backend that cannot run is reported in the result, never raised.
    """
    config.validate()
    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    has_cuda = cuda_available()
    with _workdir(config) as (workdir, temporary):
        art = Artifacts(config, workdir, temporary)
        names = config.backends or default_backends(has_cuda, art.engine is not None, art.onnx_precision or "fp32",
                                                    _openvino_installed())
        specs = [BACKENDS[n] for n in dict.fromkeys(names)]
        step = _Steps(progress, 1 + len(specs) * (1 + len(config.batches)))
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
            for spec in specs:
                backends.append(_bench_backend(spec, art, config, has_cuda, inputs, reference, parity_batch, step))
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
