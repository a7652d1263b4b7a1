"""Accuracy of every precision over a labelled set: PyTorch FP32, ONNX FP32, FP16 and INT8 QDQ.

Each precision's artifact is the file a deployment would use (the INT8 file is the QDQ graph that
TensorRT builds, and optionally onnxruntime's own placement), run in onnxruntime on CPU, and
compared against PyTorch FP32 logits on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from dnx.core.compare import DEFAULT_TOLERANCES, Comparison, compare_logits
from dnx.data.datasets import LabelledImages
from dnx.models import LoadedModel
from dnx.calibration.budget import BudgetNotMetError, calibrate_with_budget
from dnx.calibration.fp16 import convert_fp16
from dnx.calibration.qdq import calibrate_qdq
from dnx.data.preprocess import preprocess_array
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.runtime.backends.torch_runner import TorchRunner


@dataclass
class AccuracyRow:
    label: str
    precision: str
    artifact: str
    comparison: Comparison

    def to_dict(self) -> dict:
        return {"label": self.label, "precision": self.precision, "artifact": self.artifact,
                **self.comparison.to_dict()}


@dataclass
class AccuracyReport:
    model: str
    images: int
    rows: list[AccuracyRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(bool(r.comparison) for r in self.rows)

    def to_dict(self) -> dict:
        return {"model": self.model, "images": self.images, "passed": self.passed,
                "rows": [r.to_dict() for r in self.rows], "notes": self.notes}


def evaluate_precisions(loaded: LoadedModel, data: LabelledImages, workdir: str | Path,
                        calib_data, *, samples: int = 512, method: str | None = None,
                        targets: tuple[str, ...] = ("tensorrt", "onnxruntime"), threads: int = 0,
                        progress: Callable[[str], None] | None = None, budget: dict | None = None) -> AccuracyReport:
    """Export, convert and calibrate ``loaded`` into ``workdir``, then score each precision on ``data``.

    ``budget`` (``max_accuracy_drop``, ``max_agreement_loss``, ``target``) adds the row of
    :func:`dnx.calibration.budget.calibrate_with_budget`'s graph ("int8 + N float units"), searched on
    half of ``data`` and scored here on all of it like the other rows."""

    step = progress or (lambda _msg: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = loaded.config
    x = preprocess_array(data.images, cfg.preprocess)
    labels = data.labels
    report = AccuracyReport(cfg.name, len(labels))

    step("PyTorch FP32")
    with TorchRunner(loaded.model, in_channels=cfg.in_channels, threads=threads) as runner:
        reference = run_in_batches(runner, x, 250)
    report.rows.append(AccuracyRow("PyTorch FP32", "fp32", "torch", compare_logits(reference, reference, labels)))
    DEFAULT_TOLERANCES["fp32"].apply(report.rows[0].comparison)

    step("export FP32 ONNX")
    fp32 = export_onnx(loaded, workdir / f"{cfg.name}.onnx", ExportOptions(verify=False)).path
    step("convert FP16")
    fp16 = convert_fp16(fp32, workdir / f"{cfg.name}.fp16.onnx", check=False).path
    artifacts = [("ONNX FP32", "fp32", fp32), ("ONNX FP16", "fp16", fp16)]
    for target in targets:
        step(f"calibrate INT8 ({target} placement)")
        result = calibrate_qdq(fp32, workdir / f"{cfg.name}.int8-{target}.onnx", calib_data, target=target,
                               method=method, samples=samples)
        report.notes += result.notes
        if result.cache_hit:
            report.notes.append(f"reused calibration cache {result.cache_path}")
        artifacts.append((f"ONNX INT8 QDQ ({target})", "int8", result.path))
    if budget:
        artifacts.append(_budget_artifact(fp32, workdir / f"{cfg.name}.int8-budget-{budget['target']}.onnx",
                                          calib_data, data, budget, samples, method, report.notes, step))

    for label, precision, path in artifacts:
        step(f"evaluate {label}")
        with OnnxRuntimeRunner(path, threads=threads) as runner:
            logits = run_in_batches(runner, x, 250)
        comparison = DEFAULT_TOLERANCES[precision].apply(compare_logits(reference, logits, labels))
        report.rows.append(AccuracyRow(label, precision, str(path), comparison))
    return report


def _budget_artifact(fp32: Path, output: Path, calib_data, data: LabelledImages, budget: dict, samples: int,
                     method: str | None, notes: list[str], step) -> tuple[str, str, Path]:
    """The accuracy-budgeted graph's row; a budget it could not meet still gets its best graph's row."""

    step(f"accuracy budget search ({budget['target']} placement)")
    try:
        report = calibrate_with_budget(fp32, output, calib_data, data,
                                       max_accuracy_drop=budget.get("max_accuracy_drop"),
                                       max_agreement_loss=budget.get("max_agreement_loss"), target=budget["target"],
                                       method=method, samples=samples, progress=step)
    except BudgetNotMetError as exc:
        report = exc.report
        notes.append(f"budget not met; the row is the best graph found: {exc}")
    notes.append(f"budget row: {len(report['float_units'])} float unit(s) "
                 f"({', '.join(report['float_units']) or 'none'}) "
                 f"searched on {report['eval_data']['search']} of the images in {report['search']['evaluations']} "
                 "evaluations; held-apart half "
                 f"{'meets' if report['result']['held_apart_meets_budget'] else 'misses'} it")
    return f"ONNX INT8 + {len(report['float_units'])} float units ({budget['target']})", "int8", output
