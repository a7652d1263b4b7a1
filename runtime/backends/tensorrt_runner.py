"""TensorRT engines behind the Runner interface.

Device memory, streams, events, pinned host memory and CUDA graphs come from PyTorch: torch is
already a base dependency of dnx and the CUDA build of torch provides all of them, so the runner needs
no cuda-python and no hand-written error-code checks for every CUDA call (torch raises with the
CUDA error in the message). TensorRT only ever sees raw device pointers (``tensor.data_ptr()``) and
the stream handle (``stream.cuda_stream``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from dnx.core.errors import DnxError
from dnx.runtime.backends.base import Runner, TensorMeta
from dnx.runtime.backends.tensorrt_compat import (
    dtype_name, import_tensorrt, make_logger, require_cuda_device, TensorRTError)
from dnx.schemas.engine_manifest import (
    EngineManifest, check_engine_compatible, check_engine_digest, machine_facts, read_engine_manifest,
    rebuild_command_with, rebuild_hint)

if TYPE_CHECKING:
    import tensorrt as trt

# dtypes the numpy interface of Runner can carry; other engine I/O types (bf16, fp8) are refused.
_NUMPY_IO = ("float32", "float16", "int8", "uint8", "int32", "int64", "bool")


@dataclass
class LoadedEngine:
    runtime: Any
    engine: Any
    logger: Any
    io: list[dict[str, Any]]
    manifest: EngineManifest | None
    warnings: list[str]


def io_tensors(trt, engine: trt.ICudaEngine) -> list[dict[str, Any]]:
    """Name, mode, shape (-1: dynamic), dtype and, for inputs, profile 0's min/opt/max of every I/O tensor."""

    tensors = []
    for i in range(engine.num_io_tensors):
        name = str(engine.get_tensor_name(i))
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        entry: dict[str, Any] = {"name": name, "mode": "input" if is_input else "output",
                                 "shape": [int(d) for d in engine.get_tensor_shape(name)],
                                 "dtype": dtype_name(engine.get_tensor_dtype(name))}
        if is_input:
            low, opt, high = engine.get_tensor_profile_shape(name, 0)
            entry["profile"] = {"min": [int(d) for d in low], "opt": [int(d) for d in opt],
                                "max": [int(d) for d in high]}
        tensors.append(entry)
    return tensors


def load_engine(trt, path: str | Path, manifest: EngineManifest | None, device: int = 0) -> LoadedEngine:
    """Check ``manifest`` against this machine and the file's bytes, then deserialize.

    Nothing is deserialized when the TensorRT version or GPU does not match: TensorRT's own errors
    for that case are cryptic, and the manifest can name the rebuild command.
    """

    path = Path(path)
    warnings = check_engine_compatible(manifest, machine_facts(trt, device), path) if manifest else []
    data = path.read_bytes()
    if manifest:
        check_engine_digest(manifest, hashlib.sha256(data).hexdigest(), path)
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    if manifest and manifest.version_compat:
        # A version-compatible plan carries its own lean runtime: host code TensorRT must be allowed to run.
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        details = "; ".join(logger.errors()[-3:]) or "no details given"
        hint = rebuild_hint(manifest) if manifest else "rebuild it with `dnx build MODEL.onnx`"
        raise TensorRTError("deserialize", f"TensorRT could not load {path}: {details}; {hint}")
    return LoadedEngine(runtime, engine, logger, io_tensors(trt, engine), manifest, warnings)


@contextlib.contextmanager
def _cuda_errors(step: str) -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:
        if "CUDA" not in str(exc):
            raise
        raise TensorRTError("cuda", f"CUDA failed during {step}: {str(exc).splitlines()[0]}") from exc


class TensorRTRunner(Runner):
    """Runs a dnx-built TensorRT engine (``dnx build``).

    Activation checks, in this order: a CUDA device; the engine's manifest ``ENGINE.json`` against
    this machine's TensorRT version and GPU, and the engine's sha256 against the manifest; only then
    is the engine deserialized. ``require_manifest=False`` accepts an engine built elsewhere (TensorRT
    then reports any mismatch itself).

    One execution context on one CUDA stream. Device buffers are allocated once, at the optimization
    profile's largest shapes; a smaller batch uses their first rows, so tensor addresses never change
    (which is also what lets a captured CUDA graph be replayed). Host staging buffers are pinned.

    ``cuda_graph=True`` captures the engine's launch as a CUDA graph and replays it while the input
    shape stays the same (less CPU launch overhead at small batch). A new shape drops the graph, runs
    one plain launch with the new shape and captures again: a graph replays work recorded for the
    context's state at capture, and changing that context afterwards (``set_input_shape``) is outside
    what TensorRT supports (torch-TensorRT re-records on shape changes too). Keeping a graph per
    shape would need an execution context, with its own activation memory, per shape.

    Timing: ``infer`` is the wall-clock path (copies in, compute, copies out; ``last_inference_time``).
    For GPU compute alone (the base's device side), call ``load_inputs(feed)`` once, then
    ``infer_device()`` as often as needed: it runs ``execute()``, waits, and returns the CUDA-event time
    of that run on the runner's stream (``last_device_time``); ``fetch_outputs()`` copies the result.

    Every CUDA call runs with ``self.device`` as torch's current device, so ``device=1`` works when
    the split methods are called directly (the latency code does).

    Thread safety: ``infer`` holds a lock, so threads may share a runner (their calls run one after
    another). The split methods (``load_inputs``, ``execute``, ``fetch_outputs``, ``infer_device``)
    share the runner's buffers unlocked: use them from one thread. For parallel inference, give each
    thread its own runner.
    """

    device_resident = True

    def __init__(self, engine_path: str | Path, device: int = 0, cuda_graph: bool = False,
                 require_manifest: bool = True) -> None:
        super().__init__()
        self.path = Path(engine_path)
        self.device = device
        self.cuda_graph = cuda_graph
        self.require_manifest = require_manifest
        self.name = "tensorrt-cuda"
        self.manifest: EngineManifest | None = None
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._loaded: LoadedEngine | None = None
        self._context = None
        self._stream = None
        self._events = None
        self._inputs: list[dict[str, Any]] = []
        self._outputs: list[dict[str, Any]] = []
        self._device_buffers: dict[str, Any] = {}
        self._host_buffers: dict[str, Any] = {}
        self._graph = None  # the captured launch of the inputs' current shape (cuda_graph=True)
        self._output_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}
        self._shape_key: tuple | None = None
        self._graph_key: tuple | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def _activate(self) -> None:
        import torch

        require_cuda_device(self.device)
        self.manifest = read_engine_manifest(self.path, required=self.require_manifest)
        trt = import_tensorrt(self.device)
        with torch.cuda.device(self.device):
            loaded = load_engine(trt, self.path, self.manifest, self.device)
            try:
                self._setup(torch, loaded)
            except BaseException:
                self._reset()
                raise
        self.warnings = loaded.warnings

    def _setup(self, torch, loaded: LoadedEngine) -> None:
        engine: trt.ICudaEngine = loaded.engine
        context = engine.create_execution_context()
        if context is None:
            raise TensorRTError("context", f"TensorRT could not create an execution context for {self.path} "
                                           "(out of device memory?)")
        self._loaded = loaded
        self._context = context
        self._inputs = [t for t in loaded.io if t["mode"] == "input"]
        self._outputs = [t for t in loaded.io if t["mode"] == "output"]
        for t in loaded.io:
            if t["dtype"] not in _NUMPY_IO:
                raise TensorRTError("io", f"{self.path} has {t['mode']} {t['name']} of type {t['dtype']}, which the "
                                          "numpy interface cannot carry; export with float32 inputs and outputs")
        # Shapes at the profile's maximum give every tensor's largest size: allocate once, never move.
        for t in self._inputs:
            self._set_shape(t["name"], tuple(t["profile"]["max"]))
        largest = {t["name"]: tuple(t["profile"]["max"]) for t in self._inputs}
        largest.update({t["name"]: tuple(int(d) for d in self._context.get_tensor_shape(t["name"]))
                        for t in self._outputs})
        unknown = [name for name, shape in largest.items() if any(d < 0 for d in shape)]
        if unknown:
            raise TensorRTError("io", f"{self.path} has outputs whose size depends on the data ({', '.join(unknown)}); "
                                      "the runner needs shapes known from the inputs")
        with _cuda_errors("allocation"):
            for t in loaded.io:
                dtype = getattr(torch, t["dtype"])
                numel = math.prod(largest[t["name"]])
                self._device_buffers[t["name"]] = torch.empty(numel, dtype=dtype, device=f"cuda:{self.device}")
                self._host_buffers[t["name"]] = torch.empty(numel, dtype=dtype, pin_memory=True)
                if not self._context.set_tensor_address(t["name"], self._device_buffers[t["name"]].data_ptr()):
                    raise TensorRTError("address", f"TensorRT refused the buffer of {t['name']}")
            self._stream = torch.cuda.Stream(device=self.device)
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        self._shape_key = None

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        # The graph uses the buffers and the context; TensorRT objects go before the runtime that made them.
        self._graph = None
        self._context = None
        if self._loaded is not None:
            self._loaded.engine = None
            self._loaded.runtime = None
        self._reset()

    # -- metadata ----------------------------------------------------------------------------
    def _require_active(self) -> None:
        if self._context is None:
            raise DnxError(f"{self.name}: activate the runner (or use it as a context manager) first")

    def input_metadata(self) -> dict[str, TensorMeta]:
        self._require_active()
        return {t["name"]: TensorMeta(t["name"], tuple(None if d < 0 else d for d in t["shape"]),
                                      np.dtype(t["dtype"])) for t in self._inputs}

    def output_names(self) -> list[str]:
        self._require_active()
        return [t["name"] for t in self._outputs]

    def profile(self) -> dict[str, dict[str, list[int]]]:
        """Per input: the min/opt/max shapes the engine accepts."""
        self._require_active()
        return {t["name"]: t["profile"] for t in self._inputs}

    # -- inference ---------------------------------------------------------------------------
    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            raise TensorRTError("shape", f"TensorRT refused shape {shape} for input {name} of {self.path}")

    def _check_profile(self, name: str, shape: tuple[int, ...], profile: dict[str, list[int]]) -> None:
        low, high = profile["min"], profile["max"]
        if len(shape) == len(low) and all(lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            return

        flag, value = ("--max-batch", shape[0]) if shape and shape[0] > high[0] else \
            ("--min-batch", shape[0] if shape else 1)
        command = rebuild_command_with(self.manifest, flag, value)
        raise DnxError(f"{self.name}: input {name} has shape {shape}; {self.path.name} accepts {tuple(low)} to "
                       f"{tuple(high)} (batch {low[0]}..{high[0]}); rebuild it with `{command}`")

    def _on_device(self):
        return _torch().cuda.device(self.device)

    @property
    def uses_cuda(self) -> bool:
        return True

    @property
    def cuda_stream(self):
        """The runner's CUDA stream (``torch.cuda.Stream``): time its work with events recorded there."""
        return self._stream

    def load_inputs(self, feed: dict[str, np.ndarray], check: bool = True) -> None:
        """Copy ``feed`` to the device (asynchronously, on the runner's stream) and set the input shapes."""
        self._require_active()
        if check:
            self._check_feed(feed)
        with self._on_device():
            self._load_inputs(feed)

    def _load_inputs(self, feed: dict[str, np.ndarray]) -> None:
        torch = _torch()
        key = tuple(tuple(feed[t["name"]].shape) for t in self._inputs)
        if key != self._shape_key:
            # _shape_key is only ever set below, after its shapes passed this check against the same profile.
            for t, shape in zip(self._inputs, key):
                self._check_profile(t["name"], shape, t["profile"])
            for t, shape in zip(self._inputs, key):
                self._set_shape(t["name"], shape)
            if key not in self._output_shapes:
                self._output_shapes[key] = {t["name"]: tuple(int(d) for d in self._context.get_tensor_shape(t["name"]))
                                            for t in self._outputs}
            self._shape_key = key
        with _cuda_errors("the input copy"):
            self._stream.synchronize()  # the pinned buffers may still feed the previous copy
            with torch.cuda.stream(self._stream):
                for t, shape in zip(self._inputs, key):
                    numel = math.prod(shape)
                    host = self._host_buffers[t["name"]][:numel]
                    np.copyto(host.numpy().reshape(shape), feed[t["name"]], casting="no")
                    self._device_buffers[t["name"]][:numel].copy_(host, non_blocking=True)

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            details = "; ".join(self._loaded.logger.errors()[-3:]) if self._loaded else ""
            raise TensorRTError("execute", f"TensorRT failed to run {self.path}" + (f": {details}" if details else ""))

    def _graph_for_shape(self, torch):
        """The graph of the current input shape, captured again after any shape change."""
        if self._graph is not None and self._graph_key == self._shape_key:
            return self._graph
        self._graph = None  # recorded for another shape: never replayed once the context has changed
        # One plain launch first: TensorRT applies deferred shape updates then, not during capture.
        self._enqueue()
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
                self._enqueue()
        except Exception as exc:  # CUDA's RuntimeError, or TensorRT refusing the launch during capture
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise TensorRTError("cuda-graph", f"capturing {self.path} as a CUDA graph failed ({why}); "
                                              "run without cuda_graph") from exc
        self._graph, self._graph_key = graph, self._shape_key
        return graph

    def execute(self) -> None:
        """Queue the engine on the loaded inputs, between two CUDA events; returns without waiting."""
        self._require_active()
        if self._shape_key is None:
            raise DnxError(f"{self.name}: call load_inputs(feed) before execute()")
        torch = _torch()
        start, end = self._events
        with self._on_device(), _cuda_errors("execution"):
            graph = self._graph_for_shape(torch) if self.cuda_graph else None
            start.record(self._stream)
            if graph is not None:
                with torch.cuda.stream(self._stream):
                    graph.replay()
            else:
                self._enqueue()
            end.record(self._stream)

    def device_outputs(self) -> dict[str, Any]:
        """The outputs of the last ``execute`` as CUDA tensors (views, overwritten by the next run)."""
        self._require_active()
        if self._shape_key is None:
            raise DnxError(f"{self.name}: nothing has run yet; call load_inputs(feed) and execute() first")
        shapes = self._output_shapes[self._shape_key]
        return {name: self._device_buffers[name][:math.prod(shape)].view(shape) for name, shape in shapes.items()}

    def fetch_outputs(self) -> dict[str, np.ndarray]:
        """Copy the outputs of the last ``execute`` to host numpy arrays (waits for the stream)."""
        torch = _torch()
        outputs = self.device_outputs()
        with self._on_device(), _cuda_errors("the output copy"):
            with torch.cuda.stream(self._stream):
                for name, tensor in outputs.items():
                    self._host_buffers[name][:tensor.numel()].copy_(tensor.view(-1), non_blocking=True)
            self._stream.synchronize()
        return {name: self._host_buffers[name][:t.numel()].numpy().reshape(t.shape).copy()
                for name, t in outputs.items()}

    @property
    def last_device_time(self) -> float | None:
        """Seconds of GPU time of the last ``execute`` (CUDA events; waits for it to finish)."""
        if self._events is None:
            return None
        start, end = self._events
        with self._on_device():
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

    def infer_device(self) -> float | None:
        """GPU seconds of one run on the inputs ``load_inputs`` left on the device, copies excluded."""
        with self._on_device():
            self.execute()
            self.synchronize()
            return self.last_device_time

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
        with self._lock, torch.cuda.device(self.device):
            self.load_inputs(feed, check=False)  # Runner.infer has checked it
            self.execute()
            return self.fetch_outputs()

    def synchronize(self) -> None:
        if self._stream is not None:
            with self._on_device():
                self._stream.synchronize()


def _torch():
    import torch

    return torch
