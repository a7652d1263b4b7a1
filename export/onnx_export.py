"""PyTorch -> ONNX for the DenseNet family.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. Measured here on
densenet121 (torch 2.14, 2 cores): 4.3 s and a plain opset-17 graph of Conv/BN/Relu/Concat/Pool/Gemm,
versus 57 s for the dynamo exporter, which emits opset 18 and whose down-conversion to 17 fails
(``axes_input_to_attribute``). Both produce the same operator set; TensorRT 10 and 11 parse either.

Graph form: the incremental forward (two-input Concats) is exported and verified against the
torchvision forward (all-predecessor Concats); see ``dnx.models.densenet`` and ``benchmarks/``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from dnx.core.compare import DEFAULT_TOLERANCES
from dnx.core.errors import DnxError, VerificationError, require
from dnx.schemas.manifest import embed, model_manifest, write_sidecar
from dnx.export.verify import VerificationReport, verify_onnx
from dnx.core.fileio import atomic_path, check_writable
from dnx.models import LoadedModel
from dnx.core.onnx_graph import remove_identities
from dnx.schemas.certificate import make_certificate

# TensorRT 10.x and 11.x parse opsets up to 20 from this exporter; per-channel Q/DQ needs >= 13.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 20, 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@dataclass(frozen=True)
class ExportOptions:
    batch: int | None = None  # None: a symbolic batch dimension
    opset: int = DEFAULT_OPSET
    verify: bool = True
    simplify: bool = False
    threads: int = 0
    forward_form: str = "incremental"  # "torchvision" only to measure the forms (benchmarks/experiments/graph_form.py)

    def validate(self) -> None:
        if self.forward_form not in ("incremental", "torchvision"):
            raise DnxError(f"forward_form must be incremental or torchvision, got {self.forward_form!r}",
                           param="forward_form")
        if self.batch is not None and self.batch < 1:
            raise DnxError(f"batch must be 'dynamic' or a positive integer, got {self.batch}", param="batch")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise DnxError(f"opset {self.opset} is outside what TensorRT 10/11 and INT8 Q/DQ support; "
                           f"use opset between {MIN_OPSET} and {MAX_OPSET} (default {DEFAULT_OPSET})", param="opset")


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    verification: VerificationReport | None
    export_seconds: float
    verify_seconds: float


def _simplify(proto):
    return require("onnxslim", "simplify", "--simplify").slim(proto)


def export_certificate(proto, report: VerificationReport, loaded: LoadedModel) -> dict:
    """The parity certificate of an export: onnxruntime CPU against the PyTorch model (torchvision's form)."""
    import onnxruntime

    cert = make_certificate(
        proto=proto, preprocess=loaded.config.preprocess,
        reference={"what": f"PyTorch {loaded.config.name} (torchvision form)", "weights": loaded.weights},
        data={"what": "seeded N(0,1) tensors and the photos bundled with dnx", "images": report.images,
              "labelled": False, "fingerprint": report.fingerprint, "decode": loaded.config.preprocess.decode},
        cases={name: c.to_dict() for name, c in report.cases}, thresholds=asdict(DEFAULT_TOLERANCES["fp32"]),
        passed=report.passed, backend=f"onnxruntime {onnxruntime.__version__} CPU")
    cert["summary"] = "; ".join(report.failures()) or "every case within max|diff| 1e-4 and equal top-1"
    return cert


def export_onnx(loaded: LoadedModel, output: str | Path, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Export ``loaded`` to a single ONNX file with its manifest; verify it unless told not to.

    On a failed verification the file is still written, its manifest says ``"failed"``, and
    :class:`VerificationError` is raised.
    """
    import onnx
    import torch

    options.validate()
    if options.simplify:
        require("onnxslim", "simplify", "--simplify")  # before minutes of export, not after
    output = check_writable(output, sidecar=True)
    cfg, model = loaded.config, loaded.model.eval()
    example = torch.zeros(options.batch or 1, cfg.in_channels, cfg.image_size, cfg.image_size)
    manifest = model_manifest(cfg, loaded.weights, loaded.weights_path, INPUT_NAME, OUTPUT_NAME,
                              options.batch, options.opset, options.forward_form)
    report = None
    with atomic_path(output) as tmp:
        start = time.perf_counter()
        model.set_forward_form(options.forward_form)
        dynamic = None if options.batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=options.opset,
                              dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        remove_identities(proto)
        if options.simplify:
            proto = _simplify(proto)
        proto.producer_name, proto.doc_string = "dnx", f"{cfg.name} exported by dnx"
        manifest["verification"] = {"status": "pending" if options.verify else "skipped"}
        embed(proto, manifest)
        onnx.save(proto, str(tmp))
        export_seconds = time.perf_counter() - start

        verify_seconds = 0.0
        if options.verify:
            start = time.perf_counter()
            model.set_forward_form("torchvision")  # the independent reference form
            try:
                report = verify_onnx(tmp, model, cfg.preprocess, options.batch, DEFAULT_TOLERANCES["fp32"],
                                     INPUT_NAME, options.threads)
            finally:
                model.set_forward_form(options.forward_form)
            manifest["verification"] = report.to_dict()
            manifest["certificate"] = export_certificate(proto, report, loaded)
            embed(proto, manifest)
            onnx.save(proto, str(tmp))
            verify_seconds = time.perf_counter() - start
    write_sidecar(output, manifest)
    result = ExportResult(output, manifest, report, export_seconds, verify_seconds)
    if report is not None and not report.passed:
        error = VerificationError(f"{output} was written but failed verification and is marked 'failed' in "
                                  f"its manifest: {'; '.join(report.failures())}")
        error.report = report
        raise error
    return result
