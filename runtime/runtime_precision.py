"""A precision the runtime applies below the artifact's own (BF16 on OpenVINO) earns its own verdict.

Precision lives in the artifact (design principle 1): an FP32 file runs in FP32 on every backend unless
the caller asks for BF16 (``dnx.load(..., precision="bf16")``, ``dnx serve --precision bf16``, the C++
``Options::inference_precision = "bf16"``). The artifact's certificate covers the file as written, not a
BF16 run of it, so :func:`check_runtime_precision` checks that run at load: the same file in onnxruntime
CPU (the certificate's backend) against the BF16 runner, on the real data the certificate used
(:func:`dnx.calibration.parity.reference_set`), judged as FP16 is (top-1 on the images FP32 is sure of;
cosine for a random-initialised model). The verdict is in ``Classifier.info()["precision_verdict"]``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dnx.calibration.parity import labels_source, reference_set, summary, tolerance_for, weights_id
from dnx.core.errors import DnxError
from dnx.runtime.artifact import Artifact
from dnx.runtime.backends.base import Runner, run_in_batches
from dnx.core.compare import compare_logits
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner

# What a caller may ask for: None/"fp32" = the artifact's own precision; "bf16" = float ops in BF16.
RUNTIME_PRECISIONS = ("fp32", "bf16")
_BATCH = 32


def check_precision_request(precision: str | None, artifact: Artifact) -> str | None:
    """The reduced precision asked for ("bf16"), or None to run the artifact as written."""
    if precision is None or precision == "fp32":
        return None
    if precision not in RUNTIME_PRECISIONS:
        raise DnxError(f"precision must be one of {', '.join(RUNTIME_PRECISIONS)} (fp32: the artifact as "
                       f"written), got {precision!r}")
    if artifact.kind == "engine":
        raise DnxError(f"{artifact.path} is a TensorRT engine: its precision was fixed when it was built; "
                       f"build a {precision} engine with `dnx build` instead")
    return precision


def check_runtime_precision(artifact: Artifact, runner: Runner, precision: str) -> dict[str, Any]:
    """Parity of ``runner`` (activated, running ``artifact`` at ``precision``) with the artifact as
    written, on real data; a dict for ``info()``."""
    import onnxruntime

    data = reference_set(artifact.preprocess, labels_source(artifact.onnx_manifest))
    fixed = artifact.input_shape[0]
    batch, pad = (fixed, True) if fixed else (_BATCH, False)
    with OnnxRuntimeRunner(artifact.path) as reference_runner:
        reference = run_in_batches(reference_runner, data.images, batch, pad=pad)
    got = run_in_batches(runner, data.images, batch, pad=pad)
    tolerance = tolerance_for(precision, weights_id(artifact.onnx_manifest))
    comparison = tolerance.apply(compare_logits(reference, got, data.labels))
    return {"precision": precision, "verdict": "passed" if comparison else "failed",
            "summary": summary(comparison),
            "reference": f"the same file in onnxruntime {onnxruntime.__version__} CPU (as its certificate)",
            "backend": runner.name,
            "data": {"what": data.source, "images": int(len(data.images)), "labelled": data.labels is not None},
            "thresholds": asdict(tolerance), "metrics": comparison.to_dict()}
