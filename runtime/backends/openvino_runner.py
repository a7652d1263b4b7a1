"""OpenVINO CPU backend behind the Runner interface: dnx's FP32/FP16/INT8 ONNX files (or OpenVINO IR)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError, require
from dnx.runtime.backends.base import Runner, TensorMeta, UnavailableBackend

PRECISIONS = ("fp32", "bf16", "auto")
HINTS = ("latency", "throughput")
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def import_openvino():
    return require("openvino", "openvino", "the OpenVINO backend")


def openvino_available() -> tuple[bool, str]:
    """Whether OpenVINO can run on this machine's CPU, and why not."""
    try:
        ov = import_openvino()
    except DnxError as exc:
        return False, str(exc)
    try:
        devices = ov.Core().available_devices
    except RuntimeError as exc:
        return False, f"OpenVINO {ov.__version__} cannot list devices: {str(exc).splitlines()[0]}"
    if "CPU" not in devices:
        return False, f"OpenVINO {ov.__version__} has no CPU plugin here (devices: {', '.join(devices) or 'none'})"
    return True, ""


def cpu_capabilities() -> list[str]:
    """OpenVINO's CPU optimisation capabilities here (``FP32``, ``INT8``, ``BF16`` where AVX-512 BF16/AMX exist)."""
    return list(import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _ov_dtype(element_type) -> np.dtype:
    return np.dtype(element_type.to_dtype())


class OpenVINORunner(Runner):
    """Runs an ONNX file (or an OpenVINO IR ``.xml``) on the CPU with OpenVINO.

    ``threads`` sets ``INFERENCE_NUM_THREADS`` (0: OpenVINO's default); ``hint`` is OpenVINO's
    performance hint (latency: one stream; throughput: several). ``precision`` is the inference
    precision of the float parts of the graph: ``fp32`` (the default: the file's own precision,
    set explicitly because OpenVINO's CPU plugin would otherwise pick bf16 on CPUs with AVX-512 BF16
    or AMX), ``bf16`` (only where the CPU has it; otherwise UnavailableBackend) or ``auto`` (bf16
    where the CPU has it, else fp32). Quantized (Q/DQ) parts of an INT8 file run in INT8 either way.
    After ``activate``, ``inference_precision`` says which float precision the compiled model really
    uses.

    Shapes: the file keeps its dynamic batch (``input_metadata`` reports it), but each input shape
    is compiled as a static model on first use and kept (at most ``MAX_SHAPES``, oldest dropped).
    OpenVINO 2026.4 mis-computes Q/DQ graphs whose float Conv output feeds both a Concat and a
    quantized branch (dnx's TensorRT placement: cosine 0.19-0.88 vs FP32) when the batch is
    dynamic, and computes them correctly with static shapes
    (``benchmarks/experiments/openvino_repro/conv_concat_qdq.py``).

    Thread safety: ``infer`` may be called from many threads at once. Each compiled shape is one
    CompiledModel with a pool (a ``queue.Queue``) of ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``
    InferRequests; each call borrows a request, runs it synchronously and returns it, so no two
    calls ever share a request, and a caller that finds the pool empty waits for one to come back.
    Compiling a new shape happens under a lock. Outputs are copies the caller owns.
    """

    MAX_SHAPES = 8

    def __init__(self, path: str | Path, threads: int = 0, precision: str = "fp32", hint: str = "latency") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise DnxError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if hint not in HINTS:
            raise DnxError(f"OpenVINO performance hint must be one of {', '.join(HINTS)}, got {hint!r}")
        if threads < 0:
            raise DnxError(f"threads must be >= 0, got {threads}")
        self.path = Path(path)
        self.threads, self.precision, self.hint = threads, precision, hint
        self.name = "openvino-cpu"
        self.inference_precision: str | None = None  # "fp32" or "bf16", once activated
        self._core = self._model = None
        self._config: dict = {}
        self._compiled: dict[tuple, queue.Queue] = {}  # input shapes -> pool of InferRequests
        self._lock = threading.Lock()
        self._inputs: dict[str, TensorMeta] = {}
        self._outputs: list[str] = []

    def _float_precision(self) -> str:
        has_bf16 = "BF16" in cpu_capabilities()
        if self.precision == "bf16" and not has_bf16:
            raise UnavailableBackend(f"{self.name} unavailable: bf16 asked for, but this CPU has no BF16 support "
                                     "(AVX-512 BF16 or AMX); use fp32")
        if self.precision == "auto":
            return "bf16" if has_bf16 else "fp32"
        return self.precision

    def _activate(self) -> None:
        ok, why = openvino_available()
        if not ok:
            raise UnavailableBackend(f"{self.name} unavailable: {why}")
        ov = import_openvino()
        if not self.path.is_file():
            raise DnxError(f"model file {self.path} does not exist")
        precision = self._float_precision()
        self._config = {"PERFORMANCE_HINT": self.hint.upper(), "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision]}
        if self.threads:
            self._config["INFERENCE_NUM_THREADS"] = self.threads
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(self.path))
        except RuntimeError as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise DnxError(f"OpenVINO cannot read {self.path}: {str(exc).strip().splitlines()[0]}") from None
        self._inputs = {
            i.any_name: TensorMeta(i.any_name, tuple(d.get_length() if d.is_static else None for d in i.partial_shape),
                                   _ov_dtype(i.element_type))
            for i in self._model.inputs}
        self._outputs = [o.any_name for o in self._model.outputs]
        # Compile one shape now (batch 1 where the batch is dynamic): load errors surface here, and
        # the compiled model says which float precision OpenVINO really chose.
        first = tuple(tuple(d or 1 for d in m.shape) for m in self._inputs.values())
        pool = self._pool_for(first)
        request = pool.get()
        actual = request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").to_string()
        pool.put(request)
        self.inference_precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(actual, actual)

    def _pool_for(self, shapes: tuple) -> queue.Queue:
        pool = self._compiled.get(shapes)
        if pool is not None:
            return pool
        with self._lock:
            if shapes not in self._compiled:
                model = self._model.clone()
                model.reshape(dict(zip(self._inputs, shapes)))
                try:
                    compiled = self._core.compile_model(model, "CPU", self._config)
                except RuntimeError as exc:
                    raise DnxError(f"OpenVINO cannot compile {self.path} for input shapes {list(shapes)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
                pool = queue.Queue()
                for _ in range(max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))):
                    pool.put(compiled.create_infer_request())
                if len(self._compiled) >= self.MAX_SHAPES:
                    # a caller still holding a request of the dropped shape keeps its model alive
                    self._compiled.pop(next(iter(self._compiled)))
                self._compiled[shapes] = pool
            return self._compiled[shapes]

    def _deactivate(self) -> None:
        self._compiled = {}
        self._core = self._model = None

    def input_metadata(self) -> dict[str, TensorMeta]:
        if self._model is None:
            raise DnxError(f"{self.name}: activate the runner first")
        return dict(self._inputs)

    def output_names(self) -> list[str]:
        if self._model is None:
            raise DnxError(f"{self.name}: activate the runner first")
        return list(self._outputs)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [np.ascontiguousarray(feed[name]) for name in self._inputs]
        pool = self._pool_for(tuple(a.shape for a in arrays))
        request = pool.get()
        try:
            # share_inputs: the request reads the caller's arrays in place (it finishes before we return);
            # outputs are copied out of the request's buffers, which the next borrower overwrites.
            result = request.infer(arrays, share_inputs=True, share_outputs=False)
            return {name: np.asarray(result[i]) for i, name in enumerate(self._outputs)}
        finally:
            pool.put(request)
