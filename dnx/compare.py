"""Comparing a backend's logits with a reference's: the metrics export, eval and bench all report.

A :class:`Comparison` is truthy when it passes its tolerance and says what tolerance would have been
needed when it does not (Polygraphy's comparator style).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Comparison:
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    max_rel_diff: float
    cosine: float  # mean over samples of the per-sample cosine similarity
    min_cosine: float
    top1_agreement: float
    top5_agreement: float
    accuracy: float | None = None  # of the tested logits, when labels are given
    reference_accuracy: float | None = None
    passed: bool | None = None
    criterion: str = ""

    def __bool__(self) -> bool:
        return bool(self.passed)

    @property
    def top1_flips(self) -> int:
        """Images whose top-1 differs from the reference's: the count a top-1 threshold really judges
        (n images at threshold t allow floor(n * (1 - t)) flips; 64 images at 99% allow none)."""
        return round((1 - self.top1_agreement) * self.samples)

    @property
    def top1_text(self) -> str:
        """Agreement with its flips and set size, e.g. '99.80% 2/1000'."""
        return f"{self.top1_agreement:.2%} {self.top1_flips}/{self.samples}"

    def to_dict(self) -> dict:
        return asdict(self)


def _topk(logits: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def compare_logits(reference: np.ndarray, test: np.ndarray, labels: np.ndarray | None = None) -> Comparison:
    """Metrics of ``test`` against ``reference`` logits, both (N, classes)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(test, dtype=np.float64).reshape(len(test), -1)
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs test {out.shape}")
    diff = np.abs(ref - out)
    # Relative error against the largest reference magnitude of each sample: elementwise relative
    # error explodes on logits that happen to be ~0 and says nothing useful.
    scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1e-12)
    num = (ref * out).sum(axis=1)
    den = np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1), 1e-30)
    cos = num / den
    top1_ref = ref.argmax(1)
    top5_ref = _topk(ref, 5)
    top5_out = _topk(out, 5)
    top5 = float(np.mean([set(a) == set(b) for a, b in zip(top5_ref, top5_out)]))
    result = Comparison(
        samples=len(ref), max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        max_rel_diff=float((diff / scale).max()), cosine=float(cos.mean()), min_cosine=float(cos.min()),
        top1_agreement=float((top1_ref == out.argmax(1)).mean()), top5_agreement=top5)
    if labels is not None:
        labels = np.asarray(labels)
        result.accuracy = float((out.argmax(1) == labels).mean())
        result.reference_accuracy = float((top1_ref == labels).mean())
    return result


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria; ``None`` fields are not checked."""

    max_abs_diff: float | None = None
    min_top1_agreement: float | None = None
    min_cosine: float | None = None

    def apply(self, c: Comparison) -> Comparison:
        failures, parts = [], []
        if self.max_abs_diff is not None:
            parts.append(f"max|diff| <= {self.max_abs_diff:g}")
            if not c.max_abs_diff <= self.max_abs_diff:
                failures.append(f"max|diff| {c.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_top1_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_top1_agreement:.2%}")
            if not c.top1_agreement >= self.min_top1_agreement:
                failures.append(f"top-1 agreement {c.top1_agreement:.2%} < {self.min_top1_agreement:.2%}")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
            if not c.min_cosine >= self.min_cosine:
                failures.append(f"min cosine {c.min_cosine:.5f} < {self.min_cosine:g}")
        c.passed = not failures
        c.criterion = "; ".join(failures) if failures else ", ".join(parts)
        return c


# Defaults per precision (issue #5): FP32 must match closely, reduced precisions must agree on top-1.
DEFAULT_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4, min_top1_agreement=1.0),
    "fp16": Tolerance(min_top1_agreement=0.995),
    "int8": Tolerance(min_top1_agreement=0.99),
    "best": Tolerance(min_top1_agreement=0.99),
}
