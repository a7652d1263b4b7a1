"""FP16 ONNX graphs (FP32 inputs/outputs kept), checked numerically in onnxruntime.

The conversion is onnxruntime's own ``onnxruntime.transformers.float16`` (the maintained copy of
onnxconverter-common's converter, shipped inside the onnxruntime wheel dnx already depends on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dnx.core.compare import compare_logits, Comparison, DEFAULT_TOLERANCES
from dnx.calibration.parity import certify_derived
from dnx.calibration.source import open_fp32_source
from dnx.core.fileio import atomic_path
from dnx.core.hashing import sha256_file
from dnx.export.verify import verification_inputs
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.schemas.manifest import base_manifest, embed, preprocess_from_manifest, write_sidecar


@dataclass
class ConversionResult:
    path: Path
    manifest: dict
    comparison: Comparison | None
    seconds: float
    notes: list[str] = field(default_factory=list)


def to_fp16_proto(model_proto, keep_float32_ops: Sequence[str] = ()):
    """FP16 copy of ``model_proto``; graph inputs/outputs stay float32, ``keep_float32_ops`` stay FP32
    (Casts are inserted around them)."""
    import warnings

    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "values truncated to fp16 range" notices for tiny weights
        return convert_float_to_float16(model_proto, keep_io_types=True,
                                        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(keep_float32_ops))


def convert_fp16(source: str | Path, output: str | Path, *, check: bool = True, seed: int = 0) -> ConversionResult:
    """Write an FP16 copy of ``source`` to ``output`` and check it against ``source`` in onnxruntime on
    real images (:mod:`dnx.calibration.parity`); the verdict goes into the manifest's certificate."""
    import onnx

    start = time.perf_counter()
    source, output, source_manifest, proto = open_fp32_source(
        source, output, action="convert", required=False,
        qdq_message="{source} holds Q/DQ nodes; use `dnx calibrate --high-precision fp16` for INT8+FP16")
    manifest = {**(source_manifest.to_dict() if source_manifest else {}), **base_manifest(with_torch=False),
                "artifact": "onnx-fp16", "precision": "fp16",
                "source": {"path": str(source), "sha256": sha256_file(source)}}
    manifest.pop("verification", None)
    manifest.pop("certificate", None)  # the source's; this file gets its own below
    comparison, notes = None, []
    if check and (source_manifest is None or source_manifest.preprocess is None):
        notes.append(f"not checked against FP32: {source} has no dnx manifest to say how to preprocess its "
                     "inputs (re-export it with `dnx export` to have it checked)")
    with atomic_path(output) as tmp:
        fp16 = to_fp16_proto(proto)
        embed(fp16, manifest)
        onnx.save(fp16, str(tmp))
        if check and source_manifest is not None and source_manifest.preprocess is not None:

            manifest["certificate"], comparison = certify_derived(
                fp16, source, tmp, "fp16", source_manifest, preprocess_from_manifest(source_manifest))
            embed(fp16, manifest)
            onnx.save(fp16, str(tmp))
    write_sidecar(output, manifest)
    return ConversionResult(output, manifest, comparison, time.perf_counter() - start, notes)


def compare_onnx_files(reference: str | Path, test: str | Path, pre, seed: int = 0) -> Comparison:
    """Logits of ``test`` vs ``reference`` in onnxruntime CPU on the export's verification inputs
    (random and the bundled photos)."""
    import numpy as np

    x = np.concatenate([batch for _, batch in verification_inputs(pre, None, seed)])
    outs = []
    for path in (reference, test):
        with OnnxRuntimeRunner(path) as runner:
            outs.append(run_in_batches(runner, x))
    return DEFAULT_TOLERANCES["fp16"].apply(compare_logits(outs[0], outs[1]))
