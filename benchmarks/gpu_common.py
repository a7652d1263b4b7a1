"""What the GPU check's paths share (:mod:`dnx.benchmarks.gpu_check` and the TensorRT checks in
:mod:`dnx.benchmarks.gpu_check_trt`): batches, budgets, tolerances, a path's result and the context."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnx.core.compare import Tolerance

BATCHES = (1, 8, 64)
PARITY_BATCH = 8
DEFAULT_BUDGET_S = 420.0
LATENCY = {"warmup_s": 0.2, "duration_s": 1.0, "min_iterations": 10}
TOLERANCES = {"fp32": Tolerance(max_abs_diff=1e-4), "fp16": Tolerance(min_cosine=0.999),
              "tf32": Tolerance(min_cosine=0.999)}
# Rough seconds per path on one data-centre GPU, to skip a path that cannot finish in the budget.
ESTIMATE_S = {"torch-cuda": 20, "torch-cuda-fp16": 20, "torch-cuda-compile": 150, "onnxruntime-cuda": 30,
              "onnxruntime-cuda-tensorrt": 150, "tensorrt-cuda[fp32]": 150, "tensorrt-cuda[fp16]": 150,
              "tensorrt-cuda[fp16,cuda-graph]": 20}


class Skip(Exception):
    """A path that cannot run here; the message is the reason shown in the report."""


@dataclass
class PathResult:
    name: str
    backend: str = ""  # the backend table's row a latency path runs ("" for the TensorRT checks)
    status: str = "skipped"  # ran | skipped | failed
    reason: str = ""
    precision: str = "fp32"
    parity: dict | None = None
    latency: dict[int, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, *progress) -> None:
        """Also a build progress callback: raising stops a TensorRT build."""
        if self.left() <= 0:
            raise Skip("time budget ran out during this path")


@dataclass
class Context:
    """What the paths share: the model, its ONNX file, the parity inputs and reference, a work folder."""

    model: object
    onnx: Path
    workdir: Path
    x: np.ndarray
    reference: np.ndarray
    budget: Budget
    engines: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # logits one check hands to another
