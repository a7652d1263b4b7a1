"""The precision variants ``dnx tune`` deploys, made by dnx's own producers from one FP32 export.

- ``fp32``: the export itself. On OpenVINO it runs in BF16 where the CPU has AVX-512 BF16 or AMX
  (the runner's ``precision="auto"``, what ``dnx serve`` uses), so (fp32, openvino) is the BF16 point.
- ``fp16``: ``dnx convert``'s graph, only where a CUDA device runs onnxruntime (no CPU gains from it).
- ``int8-tensorrt`` / ``int8-onnxruntime`` / ``int8-openvino``: ``dnx calibrate --target T``'s Q/DQ
  placements (openvino where OpenVINO and NNCF are installed).
- ``int8-budget``: ``dnx calibrate --max-accuracy-drop/--max-agreement-loss``'s graph (INT8 with the
  fewest float units that meet the budget), where a budget and labelled data are given.

A variant already in the work folder whose manifest names the same FP32 source (sha256) is reused,
so a resumed search measures the same files (and hits the same cache entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dnx.core.errors import DnxError
from dnx.calibration.budget import BudgetNotMetError, calibrate_with_budget
from dnx.calibration.fp16 import convert_fp16
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.hashing import sha256_file
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.schemas.manifest import read_manifest

VARIANTS = ("fp32", "fp16", "int8-tensorrt", "int8-onnxruntime", "int8-openvino", "int8-budget")


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    precision: str  # the manifest's: fp32, fp16, int8


def fp32_source(model_or_path: str, workdir: Path, progress: Callable[[str], None]) -> Path:
    """The FP32 ONNX to tune: the file given, or ``dnx export MODEL`` written once into ``workdir``."""

    given = Path(model_or_path)
    if given.suffix == ".onnx" or given.exists():
        if not given.is_file():
            raise DnxError(f"{given} is not a file; give an FP32 ONNX from `dnx export` or a model name (`dnx models`)")
        manifest = read_manifest(given, required=False)
        if manifest and manifest.precision != "fp32":
            raise DnxError(f"{given} is {manifest.precision}; give its FP32 export: dnx tune derives every precision")
        return given

    out = workdir / f"{model_or_path}.onnx"
    made = read_manifest(out, required=False) if out.is_file() else None
    if made is not None and (made.model or {}).get("name") == model_or_path:
        return out
    progress(f"dnx export {model_or_path}")
    workdir.mkdir(parents=True, exist_ok=True)
    loaded = create_model(model_or_path)  # an unknown name raises the registry's one-line error
    return export_onnx(loaded, out, ExportOptions()).path


def available(requested: tuple[str, ...] | None, *, cuda: bool, openvino: bool,
              budget: bool) -> tuple[list[str], list[str]]:
    """The variants to make here, and a note for each one left out."""
    wanted = list(requested or VARIANTS)
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise DnxError(f"unknown precision variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    why_not = {"fp16": None if cuda else "fp16 left out: FP16 pays only on a GPU and no CUDA device is here",
               "int8-openvino": None if openvino else "int8-openvino left out: OpenVINO/NNCF not installed "
                                                      "(pip install 'dnx[openvino]')",
               "int8-budget": None if budget else "int8-budget left out: it needs an accuracy budget and labelled "
                                                  "data (--max-accuracy-drop/--max-agreement-loss, --eval-data)"}
    keep = [v for v in wanted if why_not.get(v) is None]
    return keep, [why_not[v] for v in wanted if why_not.get(v)]


def _reusable(path: Path, source_sha: str, budget: dict | None = None) -> bool:
    """Made from the same FP32 file (and, for int8-budget, for the same budget on as many images)."""

    if not path.is_file():
        return False
    manifest = read_manifest(path, required=False)
    if manifest is None or manifest.source is None or manifest.source.sha256 != source_sha \
            or manifest.certificate is None:
        return False
    if budget is None:
        return True
    made = manifest.calibration.budget if manifest.calibration else None
    return made is not None and made.budget.max_accuracy_drop_pt == budget["max_accuracy_drop"] and \
        made.budget.max_agreement_loss_pt == budget["max_agreement_loss"] and \
        made.eval_data.get("images") == budget["images"]


def make_variants(fp32: Path, names: list[str], workdir: Path, *, calib_data, labelled=None, budget: dict | None = None,
                  progress: Callable[[str], None] = lambda _m: None) -> tuple[list[Variant], list[str]]:
    """Write (or reuse) each variant of ``fp32`` named in ``names`` under ``workdir``; returns them and notes.
    ``labelled`` (LabelledImages) and ``budget`` (max_accuracy_drop, max_agreement_loss) feed int8-budget."""

    workdir.mkdir(parents=True, exist_ok=True)
    source_sha = sha256_file(fp32)
    variants, notes = [], []
    for name in names:
        if name == "fp32":
            variants.append(Variant("fp32", fp32, "fp32"))
            continue
        out = workdir / f"{fp32.stem}.{name}.onnx"
        wanted = {**budget, "images": len(labelled)} if name == "int8-budget" and budget and labelled is not None \
            else None
        if not _reusable(out, source_sha, wanted):
            progress(f"making {name}")
            try:
                if name == "fp16":
                    convert_fp16(fp32, out)
                elif name == "int8-budget":
                    _budget_graph(fp32, out, calib_data, labelled, budget, notes, progress)
                else:
                    calibrate_qdq(fp32, out, calib_data, target=name.removeprefix("int8-"))
            except DnxError as exc:
                if not out.is_file():  # a failed parity check still writes the file, marked failed
                    notes.append(f"{name} left out: {' '.join(str(exc).split())}")
                    continue
        variants.append(Variant(name, out, "fp16" if name == "fp16" else "int8"))
    return variants, notes


def _budget_graph(fp32: Path, out: Path, calib_data, labelled, budget: dict, notes: list[str], progress) -> None:
    # onnxruntime's placement: each candidate is re-quantized from cached ranges in a second (NNCF's
    # openvino placement re-runs its statistics per candidate, minutes for a DenseNet).
    try:
        report = calibrate_with_budget(fp32, out, calib_data, labelled, target="onnxruntime", progress=progress,
                                       **budget)
    except BudgetNotMetError as exc:
        report = exc.report
        notes.append(f"int8-budget: the budget search did not meet the budget; its best graph is measured: {exc}")
    notes.append(f"int8-budget: {len(report['float_units'])} float unit(s) "
                 f"({', '.join(report['float_units']) or 'none'}), {report['search']['evaluations']} evaluations")
