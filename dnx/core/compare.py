"""Comparing a backend's logits with a reference's: the metrics export, eval and bench all report.

A :class:`Comparison` is truthy when it passes its tolerance and says what tolerance would have been
needed when it does not (Polygraphy's comparator style).

Top-1 agreement judges the precision, not the data's ambiguity: a flip counts against it only on an image
where the reference (FP32) is sure, i.e. its top-1 probability exceeds its runner-up's by at least
:data:`DECISIVE_MARGIN`. Flips on near-ties are counted and reported apart (``near_tie_flips``). Where a set
has fewer than :data:`MIN_DECISIVE` sure images, every flip counts (the verdict never rests on a handful).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# FP32's top-1 minus top-2 softmax probability from which an image counts as "FP32 is sure". Chosen from
# data (python -m dnx.benchmarks.experiments.parity_margin -> benchmarks/results/parity_margin.json;
# docs/verification.md):
# healthy INT8 files (EfficientNet-Lite0 pretrained on ImageNet, dnx's DenseNet-BC on Fashion-MNIST) flip only
# images FP32 decides by < 0.15 (INT8 moves the margin by < 0.2 for >= 95% of the images), while broken files
# (weight scales x10, one corrupted weight tensor) flip nearly every image FP32 decides by 0.2 or more.
DECISIVE_MARGIN = 0.2
# Fewer sure images than this and the top-1 verdict counts every flip instead.
MIN_DECISIVE = 32


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
    decisive_margin: float | None = None  # FP32 top-1 minus top-2 probability from which FP32 counts as sure
    decisive_samples: int | None = None  # images where it is sure
    decisive_flips: int | None = None  # top-1 flips on those: the ones judged
    near_tie_flips: int | None = None  # top-1 flips where FP32 itself hesitates: reported, not judged

    def __bool__(self) -> bool:
        return bool(self.passed)

    @property
    def top1_flips(self) -> int:
        """Images whose top-1 differs from the reference's: the count a top-1 threshold really judges
        (n images at threshold t allow floor(n * (1 - t)) flips; 64 images at 99% allow none)."""
        return round((1 - self.top1_agreement) * self.samples)

    @property
    def top1_text(self) -> str:
        """Agreement with its flips and set size, e.g. '99.80% 2/1000 (0 sure + 2 near-tie)'."""
        text = f"{self.top1_agreement:.2%} {self.top1_flips}/{self.samples}"
        if self.decisive_flips is not None and self.top1_flips:
            text += f" ({self.decisive_flips} sure + {self.near_tie_flips} near-tie)"
        return text

    @property
    def judges_decisive(self) -> bool:
        """Whether top-1 is judged on the sure images only (enough of them), not on all."""
        return self.decisive_samples is not None and self.decisive_samples >= MIN_DECISIVE

    def to_dict(self) -> dict:
        return asdict(self)


def _topk(logits: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def reference_margins(reference: np.ndarray) -> np.ndarray:
    """Per image: the reference's top-1 minus top-2 softmax probability (1.0 for a single output)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if ref.shape[1] < 2:
        return np.ones(len(ref))
    z = np.exp(ref - ref.max(axis=1, keepdims=True))
    p = np.sort(z / z.sum(axis=1, keepdims=True), axis=1)
    return p[:, -1] - p[:, -2]


def compare_logits(reference: np.ndarray, test: np.ndarray, labels: np.ndarray | None = None,
                   margin: float = DECISIVE_MARGIN) -> Comparison:
    """Metrics of ``test`` against ``reference`` logits, both (N, classes); ``margin``: see DECISIVE_MARGIN."""
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
    flipped = top1_ref != out.argmax(1)
    sure = reference_margins(ref) >= margin
    top5_ref = _topk(ref, 5)
    top5_out = _topk(out, 5)
    top5 = float(np.mean([set(a) == set(b) for a, b in zip(top5_ref, top5_out)]))
    result = Comparison(
        samples=len(ref), max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        max_rel_diff=float((diff / scale).max()), cosine=float(cos.mean()), min_cosine=float(cos.min()),
        top1_agreement=float((top1_ref == out.argmax(1)).mean()), top5_agreement=top5,
        decisive_margin=float(margin), decisive_samples=int(sure.sum()), decisive_flips=int((flipped & sure).sum()),
        near_tie_flips=int((flipped & ~sure).sum()))
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
            if c.judges_decisive:
                agreement = 1 - c.decisive_flips / c.decisive_samples
                where = f"where FP32 is sure (margin >= {c.decisive_margin:g}: {c.decisive_samples} images)"
                parts.append(f"top-1 agreement >= {self.min_top1_agreement:.2%} {where}")
                if not agreement >= self.min_top1_agreement:
                    failures.append(f"top-1 agreement {agreement:.2%} ({c.decisive_flips} flips) {where} "
                                    f"< {self.min_top1_agreement:.2%}")
            else:
                few = "" if c.decisive_samples is None else \
                    f" (FP32 sure of only {c.decisive_samples} images: every flip counts)"
                parts.append(f"top-1 agreement >= {self.min_top1_agreement:.2%}{few}")
                if not c.top1_agreement >= self.min_top1_agreement:
                    failures.append(f"top-1 agreement {c.top1_agreement:.2%} < {self.min_top1_agreement:.2%}{few}")
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
    "bf16": Tolerance(min_top1_agreement=0.995),  # a reduced float precision of a runtime: judged as FP16 is
    "int8": Tolerance(min_top1_agreement=0.99),
    "best": Tolerance(min_top1_agreement=0.99),
}
