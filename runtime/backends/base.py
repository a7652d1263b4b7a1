"""One Runner contract for every backend (torch, onnxruntime, OpenVINO, TensorRT).

Subclasses implement ``_activate``, ``_deactivate``, ``input_metadata``, ``output_names`` and ``_infer``;
the base class adds the context manager, input checks and the wall-clock time of the last inference.
Benchmarks and parity only talk to Runners.

The device side is one optional interface, declared here with "not supported" defaults and overridden
by the runners that can keep inputs on a CUDA device (torch, onnxruntime, TensorRT), with the same
signatures everywhere, so the latency code asks instead of probing:

``uses_cuda``
    the runner's work runs on a CUDA device (time it with CUDA events).
``device_resident`` (class attribute)
    ``load_inputs``, ``infer_device`` and ``fetch_outputs`` work.
``load_inputs(feed, check=True)``
    copy host inputs into the runner's device buffers, once.
``infer_device() -> float | None``
    one inference on those inputs, nothing copied back. Returns the GPU seconds of that run where the
    runner times its own stream (TensorRT, with CUDA events; it has then waited for the run); otherwise
    None, and the caller times it with events on ``cuda_stream``.
``fetch_outputs()``
    the outputs of the last ``infer_device``, copied to host arrays.
``cuda_stream``
    the ``torch.cuda.Stream`` (or a raw ``cudaStream_t`` int) the runner queues its work on; None where
    that stream is the backend's own and each call returns once the GPU is done (onnxruntime).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dnx.core.errors import DnxError, MissingDependencyError


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int | None, ...]  # None marks a dynamic dimension
    dtype: np.dtype


class Runner(ABC):
    """Base of all backends. ``name`` is the backend's name in the backend table (``table.py``), shown
    in reports. ``inference_precision`` is the float precision the backend runs the file's float
    operations in where it differs from the file ("bf16" on OpenVINO, "tf32" on onnxruntime's TensorRT
    provider), once activated; None: as the file is written (or fixed when an engine was built)."""

    name: str = "runner"
    inference_precision: str | None = None
    device_resident: ClassVar[bool] = False

    def __init__(self) -> None:
        self.is_active = False
        self.last_inference_time: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference ---------------------------------------------------------------------------
    def infer(self, feed: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run one inference. Inputs and outputs are host numpy arrays keyed by tensor name."""
        if not self.is_active:
            raise DnxError(f"{self.name}: activate the runner (or use it as a context manager) before infer()")
        if check:
            self._check_feed(feed)
        start = time.perf_counter()
        out = self._infer(feed)
        self.last_inference_time = time.perf_counter() - start
        return out

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        meta = self.input_metadata()
        missing = [n for n in meta if n not in feed]
        extra = [n for n in feed if n not in meta]
        if missing or extra:
            raise DnxError(f"{self.name}: inputs {sorted(feed)} do not match the model's {sorted(meta)}")
        for name, m in meta.items():
            arr = feed[name]
            if arr.dtype != m.dtype:
                raise DnxError(f"{self.name}: input {name} has dtype {arr.dtype}, the model takes {m.dtype}")
            if len(arr.shape) != len(m.shape) or any(
                    want is not None and want != got for want, got in zip(m.shape, arr.shape)):
                want = tuple("N" if d is None else d for d in m.shape)
                raise DnxError(f"{self.name}: input {name} has shape {arr.shape}, the model takes {want}")

    # -- backend hooks -----------------------------------------------------------------------
    def _activate(self) -> None:  # pragma: no cover - trivial default
        pass

    def _deactivate(self) -> None:  # pragma: no cover - trivial default
        pass

    @abstractmethod
    def input_metadata(self) -> dict[str, TensorMeta]:
        """Name -> TensorMeta for every input, in the model's order."""

    @abstractmethod
    def output_names(self) -> list[str]:
        """The model's output tensor names, in its order (the keys ``infer`` returns)."""

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU backends)."""

    # -- device side (see the module doc); the defaults say "not supported" ------------------
    @property
    def uses_cuda(self) -> bool:
        return False

    @property
    def cuda_stream(self):
        return None

    def load_inputs(self, feed: dict[str, np.ndarray], check: bool = True) -> None:
        raise self._no_device_path("load_inputs")

    def infer_device(self) -> float | None:
        raise self._no_device_path("infer_device")

    def fetch_outputs(self) -> dict[str, np.ndarray]:
        raise self._no_device_path("fetch_outputs")

    def _no_device_path(self, method: str) -> DnxError:
        return DnxError(f"{self.name} cannot keep inputs on a device ({method}); use infer()")


def run_in_batches(runner: Runner, x: np.ndarray, batch_size: int = 16, pad: bool = False,
                   output_name: str | None = None) -> np.ndarray:
    """Logits of a single-input model over ``x`` in chunks (``output_name``, else its first output).

    A model exported with a fixed batch gets chunks of exactly that size; ``pad=True`` does the same
    for ``batch_size`` (so engines and captured graphs see one shape). A short last chunk is padded
    by repeating its final image, and the padding's outputs are dropped."""
    (name, meta), = runner.input_metadata().items()
    fixed = meta.shape[0]
    step = fixed or batch_size
    outputs = []
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        n = len(chunk)
        if (fixed or pad) and n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        result = runner.infer({name: np.ascontiguousarray(chunk)})
        out = result[output_name] if output_name in result else next(iter(result.values()))
        outputs.append(out[:n])
    return np.concatenate(outputs)


class UnavailableBackend(MissingDependencyError):
    """A backend that cannot run on this machine (no GPU, no provider, no TensorRT): CLI exit code 2."""
