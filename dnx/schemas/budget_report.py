"""The accuracy-budget report (``dnx calibrate --max-accuracy-drop/--max-agreement-loss``).

Written by :func:`dnx.calibration.budget.calibrate_with_budget` into the chosen graph's manifest
(``calibration.budget``) and returned to the caller; read by the Pareto plot, ``dnx calibrate``'s summary
and ``dnx tune``'s variant reuse. Fields that older dnx versions did not write (``images``, the
standard error, ``pareto_optimal``...) are optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dnx.core.documents import doc_field, read_document, to_json


@dataclass(frozen=True, kw_only=True)
class BudgetLimits:
    max_accuracy_drop_pt: float | None = doc_field(description="Top-1 accuracy drop vs FP32, points; null: not set.")
    max_agreement_loss_pt: float | None = doc_field(description="Top-1 agreement loss vs FP32, points; null: not set.")
    search_margin_standard_errors: float | None = doc_field(None, minimum=0)
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class BudgetMetrics:
    """INT8 against FP32 on one half of the labelled data."""

    accuracy: float = doc_field(minimum=0, maximum=1)
    reference_accuracy: float = doc_field(minimum=0, maximum=1)
    agreement: float = doc_field(minimum=0, maximum=1)
    cosine: float
    accuracy_drop_pt: float
    agreement_loss_pt: float
    nmse: float | None = doc_field(None, minimum=0, description="Mean normalised squared error of the logits.")
    images: int | None = doc_field(None, minimum=1)
    standard_error_pt: float | None = doc_field(None, minimum=0)
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Sensitivity(BudgetMetrics):
    """One unit quantized alone, every other unit in float."""

    unit: str
    nodes: int = doc_field(minimum=0)


@dataclass(frozen=True, kw_only=True)
class Halves:
    search: BudgetMetrics
    held_apart: BudgetMetrics
    held_apart_meets_budget: bool | None = None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Latency:
    median_ms: float = doc_field(minimum=0)
    p90_ms: float | None = doc_field(None, minimum=0)
    min_ms: float | None = doc_field(None, minimum=0)
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class ParetoPoint:
    float_units: int = doc_field(minimum=0)
    added: str | None = doc_field(description="The unit this point adds to the float set; null for plain INT8.")
    accuracy: float = doc_field(minimum=0, maximum=1)
    agreement: float = doc_field(minimum=0, maximum=1)
    accuracy_drop_pt: float
    meets_budget: bool
    latency: Latency
    agreement_loss_pt: float | None = None
    transposes: int | None = doc_field(None, minimum=0)
    pareto_optimal: bool | None = None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Pareto:
    backend: str
    batch: int = doc_field(minimum=1)
    threads: int = doc_field(minimum=0)
    fp32_latency: Latency
    points: tuple[ParetoPoint, ...]
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class BudgetReport:
    """The search for the fewest float units that keep an INT8 graph within a top-1 budget."""

    budget: BudgetLimits
    met: bool
    target: Literal["tensorrt", "onnxruntime", "openvino"]
    units: Literal["densenet-modules", "node-names"]
    unit_count: int = doc_field(minimum=1)
    eval_data: dict[str, Any]
    search: dict[str, Any]
    sensitivity: tuple[Sensitivity, ...]
    float_units: tuple[str, ...]
    float_nodes: tuple[str, ...]
    plain_int8: Halves
    result: Halves
    pareto: Pareto
    machine: dict[str, Any]
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = doc_field({})

    @classmethod
    def from_dict(cls, data: Any, where: str = "the budget report", hint: str = "") -> BudgetReport:
        return read_document(cls, data, where, hint)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)
