"""Proving an ONNX file computes what PyTorch computes.

The check runs the file in onnxruntime (CPU provider) and the PyTorch model on the same inputs:
random tensors at batch 1 and at a batch > 1 (exercising the dynamic dimension), and the bundled
real photos preprocessed as the manifest says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dnx.core.compare import Comparison, Tolerance, compare_logits
from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess
from dnx.data.preprocess import photo_batch
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.schemas.certificate import data_fingerprint


@dataclass
class VerificationReport:
    cases: list[tuple[str, Comparison]] = field(default_factory=list)
    checker: str = "onnx.checker full_check passed"
    images: int = 0
    fingerprint: str = ""  # of every input the check ran on

    @property
    def passed(self) -> bool:
        return all(bool(c) for _, c in self.cases)

    def to_dict(self) -> dict:
        return {"status": "passed" if self.passed else "failed", "checker": self.checker,
                "cases": {name: c.to_dict() for name, c in self.cases}}

    def failures(self) -> list[str]:
        return [f"{name}: {c.criterion}" for name, c in self.cases if not c]


def check_onnx(path: str | Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DnxError(f"{path} fails onnx.checker: {str(exc).splitlines()[0]}") from None


def verification_inputs(pre: Preprocess, batch: int | None, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Named input batches: random at batch 1 and 3 (or the fixed batch) and the bundled photos."""

    rng = np.random.default_rng(seed)
    shape = (pre.in_channels, pre.image_size, pre.image_size)
    sizes = [1, 3] if batch is None else [batch]
    cases = [(f"random b{n}", rng.standard_normal((n, *shape), dtype=np.float32)) for n in sizes]
    photos = photo_batch(pre)
    if batch is not None:
        photos = np.resize(photos, (batch, *shape)).astype(np.float32)
    cases.append((f"photos b{len(photos)}", photos))
    return cases


def verify_onnx(path: str | Path, reference, pre: Preprocess, batch: int | None,
                tolerance: Tolerance, input_name: str = "input", threads: int = 0) -> VerificationReport:
    """Compare the ONNX file at ``path`` with the PyTorch ``reference`` module."""
    import torch

    check_onnx(path)
    report = VerificationReport()

    inputs = verification_inputs(pre, batch)
    report.images, report.fingerprint = sum(len(x) for _, x in inputs), data_fingerprint(*(x for _, x in inputs))
    with OnnxRuntimeRunner(path, "cpu", threads=threads) as runner:
        for name, x in inputs:
            with torch.inference_mode():
                ref = reference(torch.from_numpy(x)).numpy()
            out = next(iter(runner.infer({input_name: x}).values()))
            report.cases.append((name, _degenerate(tolerance.apply(compare_logits(ref, out)), ref, out)))
    return report


# Agreement with PyTorch proves nothing when both are degenerate (e.g. integer weights cast to zeros:
# every logit 0, differences 0, cosine 0). A real classifier's logits vary and point the same way.
MIN_COSINE = 0.999


def _degenerate(c, ref: np.ndarray, out: np.ndarray):
    problems = []
    if not c.min_cosine >= MIN_COSINE:
        problems.append(f"min cosine {c.min_cosine:.6f} < {MIN_COSINE}")
    for what, logits in (("PyTorch", ref), ("ONNX", out)):
        if not np.isfinite(logits).all():
            problems.append(f"{what} outputs are not finite")
        elif np.ptp(logits) == 0:
            problems.append(f"{what} outputs are constant ({float(logits.flat[0]):g}): check the weights")
    if problems:
        earlier = [] if c.passed else [c.criterion]  # the tolerance's own failures, if any
        c.passed, c.criterion = False, "; ".join(problems + earlier)
    return c
