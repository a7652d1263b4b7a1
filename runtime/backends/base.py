"""One Runner interface for every backend (torch, onnxruntime, TensorRT).

Subclasses implement ``_activate``, ``_deactivate``, ``input_metadata`` and ``_infer``; the base class
adds the context manager, input checks and the wall-clock time of the last inference. Benchmarks
and parity only talk to Runners.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from dnx.core.errors import DnxError, MissingDependencyError


@dataclass(frozen=True)
class TensorMeta:
    name: str
    shape: tuple[int | None, ...]  # None marks a dynamic dimension
    dtype: np.dtype


class Runner(ABC):
    """Base of all backends. ``name`` is the backend label shown in reports."""

    name: str = "runner"

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
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU backends)."""


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
