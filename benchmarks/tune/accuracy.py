"""Accuracy of each (variant, backend) pair, measured before any load so that a pair breaking the
budget is never timed. Cached per artifact (sha256), backend and data set.

The data: ``--eval-data`` (labelled) when given, else the images the artifact's parity certificate
uses (:func:`dnx.calibration.parity.reference_set`: the labelled Fashion-MNIST test split for dnx's
Fashion-MNIST models, seeded photo crops otherwise, where only agreement with FP32 can be judged).
It is split with the budget search's seeded split (:func:`dnx.calibration.budget.split_halves`): the
search half decides, the held-apart half re-measures the winner. Logits come from ``dnx.load`` on the
backend ``dnx serve`` would use, the same code path the service runs; the reference is the FP32 file on
onnxruntime CPU. The budget is :class:`dnx.calibration.budget.Budget`'s, checked without a margin.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.calibration.budget import _metrics, Metrics, split_halves
from dnx.calibration.parity import labels_source, reference_set
from dnx.core.compare import compare_logits
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.data.datasets import load_labelled, shipped_fashion_mnist_test
from dnx.data.preprocess import preprocess_array
from dnx.schemas.certificate import data_fingerprint
from dnx.schemas.manifest import preprocess_from_manifest, read_manifest
from dnx.runtime.classifier import load as load_classifier


@dataclass
class EvalSet:
    what: str
    x: dict[str, np.ndarray]  # "search" / "held_apart": preprocessed (N, C, H, W) float32
    labels: dict[str, np.ndarray | None]
    fingerprint: str
    raw: object | None  # LabelledImages, for the int8-budget graph's own search

    @property
    def labelled(self) -> bool:
        return self.labels["search"] is not None


def eval_set(fp32: Path, eval_data: str | None, split_seed: int = 0) -> EvalSet:
    manifest = read_manifest(fp32, required=False)
    if manifest is None:
        raise DnxError(f"{fp32} has no dnx manifest; export it with `dnx export` (dnx tune needs its preprocessing)")
    pre = preprocess_from_manifest(manifest)
    raw = None
    if eval_data:
        raw = load_labelled(eval_data, "test")
        x, labels, what = preprocess_array(raw.images, pre), raw.labels, f"{eval_data} ({len(raw.labels)} labelled)"
    else:
        ref = reference_set(pre, labels_source(manifest))
        x, labels, what = ref.images, ref.labels, ref.source
        if labels is not None:  # the shipped split's first N: the same images, raw, for the budget graph
            full = shipped_fashion_mnist_test()
            raw = type(full)(full.images[:len(labels)], full.labels[:len(labels)], full.classes)
    if len(x) < 2:
        raise DnxError(f"the accuracy data has {len(x)} image(s); it needs at least 2 (a search and a held-apart half)")
    search, held = split_halves(len(x), split_seed)
    return EvalSet(what, {"search": x[search], "held_apart": x[held]},
                   {"search": None if labels is None else labels[search],
                    "held_apart": None if labels is None else labels[held]},
                   data_fingerprint(x, labels), raw)


def _logits(path: Path, backend: str, x: np.ndarray, chunk: int) -> np.ndarray:
    name, _, device = backend.partition("-")
    with load_classifier(path, backend=name, device=device or "auto", warmup=False) as clf:
        return np.concatenate([clf.logits(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def logits_of(path: Path, backend: str, x: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Logits through ``dnx.load`` (the service's own classifier) on ``backend`` (``onnxruntime-cuda``:
    onnxruntime on the GPU), in a child process: a backend that crashes on a graph (OpenVINO 2026.4
    segfaults compiling some Q/DQ graphs with float islands) costs that pair, not the search."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(_logits, Path(path), backend, x, chunk).result()
        except BrokenProcessPool:
            raise DnxError(f"{backend} crashed running {Path(path).name} (the process died); "
                           "dnx serve would crash the same way") from None


def metrics(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray | None):
    if labels is not None:
        return _metrics(reference, logits, labels)

    c = compare_logits(reference, logits)
    return Metrics(float("nan"), float("nan"), c.top1_agreement, c.cosine, float("nan"), c.samples)


class AccuracyCache:
    """Metrics per (artifact sha256, backend, data fingerprint, half), in memory and as JSON files."""

    def __init__(self, folder: Path, es: EvalSet, fp32: Path) -> None:
        self.folder, self.es, self.fp32 = folder, es, fp32
        self.reference: dict[str, np.ndarray] = {}
        self.hits = 0

    def _key(self, path: Path, backend: str, half: str) -> str:
        text = json.dumps([sha256_file(path), backend, self.es.fingerprint, half])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def measure(self, path: Path, backend: str, half: str = "search") -> dict:
        """``Metrics.to_dict()`` plus ``error`` (a variant the service would refuse to load)."""

        file = self.folder / f"accuracy-{self._key(path, backend, half)}.json"
        if file.is_file():
            self.hits += 1
            return json.loads(file.read_text())
        if half not in self.reference:
            self.reference[half] = logits_of(self.fp32, "onnxruntime", self.es.x[half])
        try:
            m = metrics(self.reference[half], logits_of(path, backend, self.es.x[half]), self.es.labels[half])
            # unlabelled data has no accuracy: NaN becomes null, which strict JSON can hold
            out = {k: None if isinstance(v, float) and v != v else v for k, v in m.to_dict().items()}
        except DnxError as exc:  # e.g. a failed parity certificate: dnx serve would refuse it too
            out = {"error": " ".join(str(exc).split())}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(file, out, "the tune cache")
        return out


def within(m: dict, budget) -> bool:
    """Whether metrics ``m`` (a dict) keep ``budget`` (a Budget, or None: no budget)."""

    if "error" in m:
        return False
    if budget is None:
        return True
    fields = {k: float("nan") if m[k] is None else m[k]
              for k in ("accuracy", "reference_accuracy", "agreement", "cosine", "nmse", "images")}
    return budget.met(Metrics(**fields))
