"""Accuracy-budgeted INT8: the fewest float units that keep a Q/DQ graph within a top-1 budget.

Units are the model's own structure. For a dnx DenseNet (its ONNX has a dnx manifest with a model
config): ``stem``, each dense layer ``features.denseblockB.denselayerL`` (its BN/ReLU/1x1/BN/ReLU/3x3
nodes), each transition ``features.transitionT``, and ``classifier`` (``norm5`` and the Gemm), named
from the exporter's node names (``/features/denseblock1/denselayer1/conv1/Conv``), else from the
weight initializer's name. For a foreign ONNX the units are its named Conv/Gemm nodes. A unit "in
float" is the existing ``exclude`` mechanism applied to all of its nodes, so onnxruntime's quantizer
places every remaining Q/DQ pair itself and no Q or DQ is left dangling; for ``--target onnxruntime``
an excluded BatchNorm also stays a BatchNorm (no depthwise rewrite) and the island runs in float.

Search, on the *search* half of the labelled data (a seeded split; the other half is held apart):

1. FP32 reference logits and plain INT8 (all units quantized). If the budget holds: done.
2. Sensitivity: each unit quantized alone, every other unit in float (U evaluations), ranked by the
   logits' normalised squared error against FP32 (NNCF's accuracy control ranks by such a distance
   too), largest first. Not one-unit-in-float: on the shipped model that missed the stem entirely
   (with the other 12 units quantized, putting the stem in float changed nothing measurable, yet
   with them in float the stem's quantized input alone cost 0.3 points of agreement). Not by top-1
   agreement either: one unit moves it by a few images, and its ranking on one half of the data did
   not repeat on the other, while the error's did within ~5%.
3. Greedy prefixes of that ranking (top-1, top-2, ... units in float) until the budget holds with
   ``margin_se`` standard errors to spare (:attr:`Metrics.standard_error`; 1.645 by default, a
   one-sided 95% bound): k evaluations, at most U - 1 (all units in float is the FP32 graph, not an
   INT8 one). Without a margin, sets that met an agreement budget on the search half by a few lucky
   images missed it on the held-apart half (shipped model: 99.76% vs 99.60% with no margin, 99.88%
   vs 99.64% with one standard error, for a 0.3-point budget).
4. The chosen graph and plain INT8 scored once on the held-apart half.

Cost: 1 + U + k + 2 INT8 evaluations (each = a Q/DQ write from the cached ranges + one onnxruntime
pass over the half) plus 2 FP32 passes; for the shipped Fashion-MNIST model (U = 13) at most 28.
Each Pareto point (0..k float units) is also timed at batch 1 on onnxruntime CPU, with the number of
Transposes onnxruntime's optimized graph holds (float islands inside an NHWC QLinearConv graph cost
layout Transposes). An impossible budget writes the best graph found and raises
:class:`BudgetNotMetError`, whose ``report`` holds everything the manifest stores.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.calibration.budget_pareto import (check_plot_path, count_transposes, latencies as measure_latencies,
                                           mark_pareto, plot_pareto)
from dnx.calibration.data import open_calibration_data
from dnx.calibration.qdq import calibrate_qdq, default_cache_path
from dnx.calibration.source import open_fp32_source
from dnx.core.compare import compare_logits
from dnx.core.fileio import atomic_path, check_writable
from dnx.core.machine import isa_flags, machine_info
from dnx.data.datasets import LabelledImages, load_labelled
from dnx.data.preprocess import preprocess_array
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.schemas.manifest import ArtifactManifest, embed, manifest_of, preprocess_from_manifest, write_sidecar

WEIGHTED_OPS = ("Conv", "Gemm")
_LAYER_OR_TRANSITION = re.compile(r"^features\.(denseblock\d+\.denselayer\d+|transition\d+)(\.|$)")
_STEM = re.compile(r"^features\.(conv0|norm0|relu0|pool0)(\.|$)")
_HEAD = re.compile(r"^(classifier|features\.norm5)(\.|$)")


class BudgetNotMetError(DnxError):
    """No float set tried met the budget; the best graph found was written. ``report`` says what was tried."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    reference_accuracy: float
    agreement: float
    cosine: float
    nmse: float  # mean over images of |INT8 - FP32 logits|^2 / |FP32 logits|^2
    images: int

    @property
    def standard_error(self) -> float:
        """One standard error, in points, of both the agreement loss (binomial) and the accuracy drop
        (paired: only the D images where INT8 and FP32 disagree can move it): 100 * sqrt(D) / n."""
        return 100 * math.sqrt(round((1 - self.agreement) * self.images)) / self.images

    @property
    def accuracy_drop(self) -> float:
        return (self.reference_accuracy - self.accuracy) * 100

    @property
    def agreement_loss(self) -> float:
        return (1 - self.agreement) * 100

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy_drop_pt": round(self.accuracy_drop, 4),
                "agreement_loss_pt": round(self.agreement_loss, 4), "standard_error_pt": round(self.standard_error, 4)}


@dataclass(frozen=True)
class Budget:
    """Top-1 budget in percentage points: accuracy drop vs FP32 and/or top-1 agreement loss."""

    max_accuracy_drop: float | None = None
    max_agreement_loss: float | None = None

    def __post_init__(self) -> None:
        if self.max_accuracy_drop is None and self.max_agreement_loss is None:
            raise DnxError("give a budget: --max-accuracy-drop POINTS and/or --max-agreement-loss POINTS")

    def met(self, m: Metrics, margin_se: float = 0.0) -> bool:
        """Within budget with ``margin_se`` standard errors to spare (a hair of slack so float
        rounding of equal counts cannot flip a tie)."""
        margin = margin_se * m.standard_error - 1e-9
        return (self.max_accuracy_drop is None or m.accuracy_drop + margin <= self.max_accuracy_drop) and (
            self.max_agreement_loss is None or m.agreement_loss + margin <= self.max_agreement_loss)

    def describe(self) -> str:
        parts = [] if self.max_accuracy_drop is None else [f"accuracy drop <= {self.max_accuracy_drop:g} pt"]
        if self.max_agreement_loss is not None:
            parts.append(f"agreement loss <= {self.max_agreement_loss:g} pt")
        return " and ".join(parts)


def _module_path(name: str) -> str:
    """"/features/denseblock1/denselayer1/conv1/Conv" -> "features.denseblock1.denselayer1.conv1"."""
    return ".".join(name.strip("/").split("/")[:-1])


def _densenet_unit(module: str) -> str | None:
    if match := _LAYER_OR_TRANSITION.match(module):
        return f"features.{match.group(1)}"
    if _STEM.match(module):
        return "stem"
    if _HEAD.match(module):
        return "classifier"
    return None


def _weight_name(node, producers: dict) -> str | None:
    """The initializer a Conv/Gemm reads as weights (through Identity nodes), or None for activations."""
    name = node.input[1] if len(node.input) > 1 else ""
    while name in producers and producers[name].op_type == "Identity":
        name = producers[name].input[0]
    return None if name in producers else name


def quantizable_units(proto, manifest: ArtifactManifest | None) -> dict[str, list[str]]:
    """Unit name -> the node names it keeps in float, in graph order (see the module docstring)."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    inputs = {i.name for i in proto.graph.input}
    weighted = [n for n in proto.graph.node if n.op_type in WEIGHTED_OPS
                and (w := _weight_name(n, producers)) is not None and w not in inputs]
    weighted_ids = {id(n) for n in weighted}
    units: dict[str, list[str]] = {}
    if manifest and manifest.model is not None:
        for node in proto.graph.node:
            unit = _densenet_unit(_module_path(node.name)) if node.name else None
            if unit is None and id(node) in weighted_ids:
                # a node that lost its name: the weight's initializer still carries the module path
                unit = _densenet_unit(_weight_name(node, producers).removesuffix(".weight"))
            if unit is not None and node.name:
                units.setdefault(unit, []).append(node.name)
        covered = {name for names in units.values() for name in names}
        weighted = [n for n in weighted if n.name not in covered]
        # units without a Conv/Gemm have nothing to quantize
        units = {u: names for u, names in units.items()
                 if any(n.name in names for n in proto.graph.node if n.op_type in WEIGHTED_OPS)}
    for node in weighted:  # a foreign graph's units, and any dnx node the patterns did not place
        if node.name:  # --exclude works by name; an unnamed node cannot be kept in float
            units[node.name] = [node.name]
    if not units:
        raise DnxError("found no named Conv/Gemm node to keep in float; name the graph's nodes "
                       "(or re-export it with `dnx export`)")
    return units


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``n`` indices into the search half and the held-apart half."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def _metrics(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> Metrics:
    c = compare_logits(reference, logits, labels)
    ref, out = np.asarray(reference, np.float64), np.asarray(logits, np.float64)
    nmse = float(np.mean(((out - ref) ** 2).sum(1) / np.maximum((ref ** 2).sum(1), 1e-30)))
    return Metrics(c.accuracy, c.reference_accuracy, c.top1_agreement, c.cosine, nmse, len(ref))


@dataclass
class _Search:
    """Writes and scores candidate graphs; every candidate is a float-unit set written once."""

    source: Path
    workdir: Path
    units: dict[str, list[str]]
    quantize: Callable[[Path, list[str]], object]  # (output, exclude) -> CalibrationResult
    x: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    threads: int
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    paths: dict[tuple[str, ...], Path] = field(default_factory=dict)
    evaluations: int = 0

    def logits(self, path: Path, half: str) -> np.ndarray:
        with OnnxRuntimeRunner(path, threads=self.threads) as runner:
            return run_in_batches(runner, self.x[half], 250)

    def path(self, float_units: tuple[str, ...]) -> Path:
        if float_units not in self.paths:
            out = self.workdir / f"candidate{len(self.paths)}.onnx"
            self.quantize(out, [name for u in float_units for name in self.units[u]])
            self.paths[float_units] = out
        return self.paths[float_units]

    def score(self, float_units: tuple[str, ...], half: str = "search") -> Metrics:
        if half not in self.reference:
            self.reference[half] = self.logits(self.source, half)
        self.evaluations += 1
        return _metrics(self.reference[half], self.logits(self.path(float_units), half), self.labels[half])


def calibrate_with_budget(source: str | Path, output: str | Path, data, eval_data, *,
                          max_accuracy_drop: float | None = None,
                          max_agreement_loss: float | None = None, target: str = "tensorrt",
                          method: str | None = None, samples: int | None = 512, seed: int = 0,
                          high_precision: str | None = None, cache_path: str | Path | None = None,
                          batch_size: int = 8, preprocess=None, split_seed: int = 0, threads: int = 1,
                          latency_s: float = 1.0, margin_se: float = 1.645, plot: str | Path | None = None,
                          progress: Callable[[str], None] | None = None) -> dict:
    """Write to ``output`` the INT8 Q/DQ graph of ``source`` with the fewest float units (in the
    sensitivity order) whose top-1 accuracy on the search half of ``eval_data`` (a path
    :func:`dnx.data.datasets.load_labelled` reads, or ``LabelledImages``) is within
    ``max_accuracy_drop`` points of FP32 and/or whose top-1 agreement with FP32 is within
    ``max_agreement_loss`` points of 100% (at least one must be given), with ``margin_se`` standard
    errors to spare on the search half; the held-apart half is then checked without a margin.

    Returns the report, also stored in the output's manifest as ``calibration.budget``; ``plot``
    writes the Pareto plot (matplotlib). Raises :class:`BudgetNotMetError` after writing the best
    graph found when no float set meets the budget.
    """
    import onnx

    step = progress or (lambda _msg: None)
    budget = Budget(max_accuracy_drop, max_agreement_loss)
    if plot is not None:

        check_plot_path(plot)
    source, output, manifest, proto = open_fp32_source(
        source, output, action="calibrate", required=preprocess is None,
        qdq_message="{source} already holds Q/DQ nodes; calibrate the FP32 export",
        hint="pass --mean/--std/--image-size, or re-export it with `dnx export`")
    pre = preprocess or preprocess_from_manifest(manifest)
    units = quantizable_units(proto, manifest)
    labelled = eval_data if isinstance(eval_data, LabelledImages) else load_labelled(eval_data, "test")
    if len(labelled) < 2:
        raise DnxError(f"--eval-data has {len(labelled)} labelled image(s); the search and its check need at least 2")
    x = preprocess_array(labelled.images, pre)
    search_idx, hold_idx = split_halves(len(labelled), split_seed)
    cache_path = check_writable(cache_path, "--cache") if cache_path else default_cache_path(output)
    calib = open_calibration_data(data, pre, samples, seed)
    notes = list(calib.notes)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="dnx-budget-", dir=output.parent) as tmp:
        def quantize(out: Path, exclude: list[str]):
            result = calibrate_qdq(source, out, calib, target=target, method=method, samples=samples, seed=seed,
                                   exclude=exclude, high_precision=high_precision, cache_path=cache_path,
                                   batch_size=batch_size, preprocess=pre)
            if not exclude:
                notes.append(f"reused calibration cache {cache_path}" if result.cache_hit
                             else f"ranges cached in {cache_path}")
            return result

        search = _Search(source, Path(tmp), units, quantize,
                         {"search": x[search_idx], "held_apart": x[hold_idx]},
                         {"search": labelled.labels[search_idx], "held_apart": labelled.labels[hold_idx]}, threads)
        step("calibrating plain INT8")
        plain = search.score(())
        tried: list[tuple[tuple[str, ...], Metrics]] = [((), plain)]
        sensitivity: list[dict] = []
        chosen: tuple[str, ...] | None = () if budget.met(plain, margin_se) else None
        if chosen is None:
            for i, unit in enumerate(units, 1):
                step(f"sensitivity {i}/{len(units)}: {unit} quantized alone")
                m = search.score(tuple(u for u in units if u != unit))
                sensitivity.append({"unit": unit, "nodes": len(units[unit]), **m.to_dict()})
            ranking = [s["unit"] for s in sorted(sensitivity, key=lambda s: -s["nmse"])]
            for k in range(1, len(ranking)):
                step(f"greedy: {k} unit(s) in float")
                float_set = tuple(ranking[:k])
                m = search.score(float_set)
                tried.append((float_set, m))
                if budget.met(m, margin_se):
                    chosen = float_set
                    break
        # best found: the chosen set, else the one closest to the budget (agreement, then accuracy)
        best, best_m = (chosen, next(m for s, m in tried if s == chosen)) if chosen is not None else \
            max(tried, key=lambda t: (t[1].agreement, t[1].accuracy, -len(t[0])))
        step("held-apart half")
        held_plain, held_best = search.score((), "held_apart"), search.score(best, "held_apart")
        search_seconds = time.perf_counter() - started

        step("latency of each Pareto point")
        x1 = x[search_idx[:1]]
        *latencies, fp32_latency = measure_latencies([*(search.path(s) for s, _ in tried), source], x1, threads,
                                                     latency_s)
        pareto = [{"float_units": len(float_set), "added": float_set[-1] if float_set else None,
                   "accuracy": m.accuracy, "agreement": m.agreement, "accuracy_drop_pt": round(m.accuracy_drop, 4),
                   "agreement_loss_pt": round(m.agreement_loss, 4), "meets_budget": budget.met(m, margin_se),
                   "latency": latency, "transposes": count_transposes(search.path(float_set), Path(tmp))}
                  for (float_set, m), latency in zip(tried, latencies)]
        mark_pareto(pareto)
        report = {
            "budget": {"max_accuracy_drop_pt": max_accuracy_drop, "max_agreement_loss_pt": max_agreement_loss,
                       "search_margin_standard_errors": margin_se},
            "met": chosen is not None,
            "target": target,
            "units": "densenet-modules" if manifest and manifest.model is not None else "node-names",
            "unit_count": len(units),
            "eval_data": {"images": len(labelled), "search": len(search_idx), "held_apart": len(hold_idx),
                          "split_seed": split_seed},
            "search": {"method": "sensitivity ranking (normalised logit MSE vs FP32 with the unit quantized alone), "
                                 "then greedy prefixes of the ranking until the budget holds",
                       "evaluations": search.evaluations, "quantizations": len(search.paths),
                       "seconds": round(search_seconds, 1)},
            "sensitivity": sensitivity,
            "float_units": list(best),
            "float_nodes": [name for u in best for name in units[u]],
            "plain_int8": {"search": plain.to_dict(), "held_apart": held_plain.to_dict()},
            "result": {"search": best_m.to_dict(), "held_apart": held_best.to_dict(),
                       "held_apart_meets_budget": budget.met(held_best)},
            "pareto": {"backend": "onnxruntime CPU", "batch": 1, "threads": threads, "fp32_latency": fp32_latency,
                       "points": pareto},
            "machine": {"cpu": machine_info(threads)["cpu"], "isa_flags": isa_flags() or []},
            "notes": notes,
        }
        best_proto = onnx.load(str(search.path(best)))
        best_manifest = manifest_of(best_proto, search.path(best)).to_dict()
        best_manifest["calibration"]["budget"] = report  # embed() checks it with the budget report's reader
        embed(best_proto, best_manifest)
        with atomic_path(output) as out:
            onnx.save(best_proto, str(out))
        write_sidecar(output, best_manifest)
    if plot is not None:
        plot_pareto(report, plot)
    if chosen is None:
        raise BudgetNotMetError(
            f"budget ({budget.describe()}) not met: the best graph found, int8 + {len(best)} float unit(s), has "
            f"accuracy drop {best_m.accuracy_drop:.2f} pt and agreement loss {best_m.agreement_loss:.2f} pt "
            f"(+-{best_m.standard_error:.2f}) on the search half; wrote it to {output} "
            "(loosen the budget, or calibrate with more --samples)", report)
    return report

