"""INT8 Q/DQ graphs with calibrated scales, placed for the engine that will run them.

Statistics and Q/DQ insertion are onnxruntime.quantization's (``quantize_static``); dnx chooses the
placement, streams the data, and keys the calibration cache.

* ``target="tensorrt"``: symmetric INT8 (zero point 0), per-channel weights, per-tensor activations,
  Q/DQ only at the inputs of Conv/Gemm (``OpTypesToExcludeOutputQuantization``), biases left float.
  Concat/BN/ReLU/Pool stay unquantized so TensorRT fuses BN+ReLU+Quantize and never re-quantizes
  the concatenated feature maps. ``high_precision="fp16"`` (the "best" mode) turns the
  unquantized ops to FP16.
* ``target="openvino"``: NNCF's placement for OpenVINO (Conv outputs quantized before each Concat),
  made by :func:`dnx.calibration.openvino.calibrate_openvino`.
* ``target="onnxruntime"``: onnxruntime's full QDQ placement (Conv outputs, Concat, pooling
  quantized too; uint8 activations, int8 weights), which its CPU kernels fuse into QLinearConv.
  DenseNet's pre-activation BatchNorms and the transitions' average pools are first rewritten as
  the equal depthwise Convs so they quantize and fuse too, instead of leaving float islands
  between quantized tensors (``dnx.core.onnx_graph.depthwise_rewrites``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from dnx.calibration.common import (CACHE_SCHEMA, CalibrationResult, cache_key, certify, default_cache_path,
                                    split_exclude)
from dnx.calibration.data import CalibrationData, open_calibration_data
from dnx.core.errors import DnxError
from dnx.calibration.fp16 import to_fp16_proto
from dnx.calibration.openvino import calibrate_openvino
from dnx.calibration.source import check_input_shape, open_fp32_source
from dnx.core.fileio import atomic_path, check_writable, write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.machine import isa_flags
from dnx.core.onnx_graph import depthwise_rewrites, has_qdq
from dnx.schemas.manifest import base_manifest, embed, preprocess_from_manifest, write_sidecar

TARGETS = ("tensorrt", "onnxruntime", "openvino")
METHODS = ("entropy", "percentile", "minmax")
# Per-target default statistic. Entropy (KL) is TensorRT's classic calibrator. For onnxruntime's full
# placement (uint8 activations, quantized Concat outputs too) percentile clips less aggressively and
# kept more top-1 agreement on the shipped Fashion-MNIST DenseNet-BC: 99.08% vs 98.78% for entropy
# (5,000 test images, 512 calibration images; benchmarks/RESULTS.md).
DEFAULT_METHOD = {"tensorrt": "entropy", "onnxruntime": "percentile"}
# Each collect_data call keeps only this many batches of intermediate tensors in memory before they
# are folded into histograms (onnxruntime's default keeps them all: ~7 GB for 32 images of densenet121).
STRIDE_BATCHES = 2


class _Reader:
    """onnxruntime CalibrationDataReader protocol (get_next, __len__, set_range) over our batches."""

    def __init__(self, data: CalibrationData, input_name: str, batch_size: int) -> None:
        self.data, self.input_name, self.batch_size = data, input_name, batch_size
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return self.data.num_batches(self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self):
        if self._next >= self._end:
            return None
        batch = self.data.batch(self._next, self.batch_size)
        self._next += 1
        return {self.input_name: batch}


@contextlib.contextmanager
def _quiet_logging():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[name]


def cpu_has_vnni() -> bool:
    """Whether this x86 CPU has 8-bit dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""

    flags = isa_flags()
    return True if flags is None else ("avx512_vnni" in flags or "avx_vnni" in flags)  # unknown: full 8-bit weights


def _placement(target: str, model_proto, exclude: Sequence[str]):
    """(op types to quantize, nodes to exclude, quantize_static keyword arguments) for a target."""
    from onnxruntime.quantization import QuantType

    ops_in_graph, excluded_nodes = split_exclude(model_proto, exclude)
    excluded_ops = {e for e in exclude if e in ops_in_graph}
    if target == "tensorrt":
        ops = [op for op in ("Conv", "Gemm") if op not in excluded_ops]
        extra = {"ActivationSymmetric": True, "WeightSymmetric": True,
                 "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm"],
                 # TensorRT takes float biases and fuses them itself.
                 "QuantizeBias": False}
        kw = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, reduce_range=False)
    else:
        ops = sorted({"Conv", "Gemm", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool",
                      "Relu", "Flatten"} & ops_in_graph - excluded_ops)
        extra = {"WeightSymmetric": True}
        # onnxruntime's advice for x86 without VNNI: 7-bit weights, so u8 x s8 products cannot
        # saturate (AVX2's vpmaddubsw does). On an AVX2-only EPYC it raised top-1 agreement on the
        # shipped Fashion-MNIST model from 99.08% to 99.24%; speed was the same within noise.
        kw = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=not cpu_has_vnni())
    extra["CalibStridedMinMax"] = STRIDE_BATCHES  # despite the name: chunked collection for every method
    return ops, excluded_nodes, dict(extra_options=extra, **kw)


def _load_cache(path: Path, key: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_bytes())
    except (ValueError, OSError, RecursionError):
        return None  # a damaged cache is recomputed (and then overwritten)
    if not isinstance(cached, dict) or cached.get("schema") != CACHE_SCHEMA or cached.get("key") != key:
        return None
    ranges = cached.get("ranges")
    return ranges if isinstance(ranges, dict) and ranges.get("CLS") == "TensorsData" else None


def calibrate_qdq(source: str | Path, output: str | Path, data: str | Path | CalibrationData, *,
                  target: str = "tensorrt", method: str | None = None, samples: int | None = 512,
                  seed: int = 0, exclude: Sequence[str] = (), high_precision: str | None = None,
                  cache_path: str | Path | None = None, batch_size: int = 8,
                  preprocess=None, depthwise: bool = True, decode: str | None = None) -> CalibrationResult:
    """Write a QDQ copy of ``source`` calibrated on ``data`` to ``output``.

    The ranges are cached beside the output, keyed by the source's sha256, the data fingerprint,
    the method, target and sample count; a rerun with the same key skips calibration.
    ``depthwise=False`` skips the onnxruntime target's depthwise rewrites (for measuring them).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    if target not in TARGETS:
        raise DnxError(f"target must be one of {', '.join(TARGETS)}, got {target!r}", param="target")
    if target == "openvino":

        return calibrate_openvino(source, output, data, method=method, samples=samples, seed=seed, exclude=exclude,
                                  high_precision=high_precision, cache_path=cache_path, batch_size=batch_size,
                                  preprocess=preprocess, decode=decode)
    method = method or DEFAULT_METHOD[target]
    if method not in METHODS:
        raise DnxError(f"method must be one of {', '.join(METHODS)}, got {method!r}", param="method")
    if high_precision not in (None, "fp32", "fp16"):
        raise DnxError(f"--high-precision must be fp32 or fp16, got {high_precision!r}")
    source, output, source_manifest, proto = open_fp32_source(
        source, output, action="calibrate", required=preprocess is None,
        qdq_message="{source} already holds Q/DQ nodes; calibrate the FP32 export",
        hint="pass --mean/--std/--image-size, or re-export it with `dnx export`")
    pre = preprocess or preprocess_from_manifest(source_manifest)
    if decode is not None:  # how calibration images are decoded, and how the output's users decode
        pre = replace(pre, decode=decode)
    check_input_shape(proto, pre, source)
    cache_path = check_writable(cache_path or default_cache_path(output), "--cache")
    input_name = proto.graph.input[0].name
    ops, nodes_excluded, kwargs = _placement(target, proto, exclude)
    if not ops:  # onnxruntime reads an empty list as "every op type"
        raise DnxError(f"--exclude {' '.join(exclude)} leaves nothing to quantize for --target {target}")
    rewrites = {}
    if target == "onnxruntime" and depthwise:

        rewritable = [op for op in ("BatchNormalization", "AveragePool") if op not in exclude]
        rewrites = {f"{op}->depthwise Conv": n
                    for op, n in depthwise_rewrites(proto, keep=exclude, ops=rewritable).items() if n}
    calib = data if isinstance(data, CalibrationData) else open_calibration_data(data, pre, samples, seed)

    source_sha = sha256_file(source)
    key = cache_key(source_sha, calib.fingerprint, method, target, len(calib))
    cached = _load_cache(cache_path, key)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnx-calib-") as tmpdir:
        ort_cache = Path(tmpdir) / "ranges.json"
        reader = None
        if cached is not None:
            ort_cache.write_text(json.dumps(cached))
        else:
            reader = _Reader(calib, input_name, batch_size)
            if len(reader) % STRIDE_BATCHES:
                # onnxruntime wants whole strides; a last short stride becomes a stride of one batch
                kwargs["extra_options"]["CalibStridedMinMax"] = 1
        with atomic_path(output) as tmp:
            # onnxruntime.quantization prints progress to stdout and logs advice; library code stays quiet.
            with contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
                quantize_static(proto, str(tmp), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=ops, per_channel=True,
                                nodes_to_exclude=nodes_excluded, calibrate_method=_method(method),
                                calibration_cache_path=str(ort_cache), **kwargs)
            qproto = onnx.load(str(tmp))
            if not has_qdq(qproto):
                raise DnxError(f"nothing in {source} was quantized (ops to quantize: {', '.join(ops)}); "
                               "check --exclude")
            if high_precision == "fp16":

                qproto = to_fp16_proto(qproto, keep_float32_ops=("QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"))
            manifest = {
                **(source_manifest.to_dict() if source_manifest else {}), **base_manifest(with_torch=False),
                "artifact": "onnx-qdq",
                "precision": "best" if high_precision == "fp16" else "int8",
                "calibration": {"method": method, "target": target, "samples": len(calib), "seed": seed,
                                "data": calib.source, "data_fingerprint": calib.fingerprint,
                                "batch_size": batch_size, "excluded": list(exclude),
                                "reduce_range": kwargs["reduce_range"], "graph_rewrites": rewrites,
                                "high_precision": high_precision or "fp32",
                                "library": "onnxruntime.quantization.quantize_static"},
                "source": {"path": str(source), "sha256": source_sha},
            }
            if not source_manifest or decode is not None:
                manifest["preprocess"] = pre.to_dict()
            manifest.pop("verification", None)
            embed(qproto, manifest)
            onnx.save(qproto, str(tmp))
            certify(qproto, source, tmp, manifest, source_manifest, pre)
        if cached is None:
            write_json_atomic(cache_path, {"schema": CACHE_SCHEMA, "key": key,
                                           "ranges": json.loads(ort_cache.read_text())})
    write_sidecar(output, manifest)
    return CalibrationResult(output, manifest, cache_path, cached is not None, time.perf_counter() - start,
                             len(calib), list(calib.notes))


def qdq_summary(model_proto) -> dict:
    """Counts that say where Q/DQ sits (the tests' check of each target's placement)."""
    producers = {o: n for n in model_proto.graph.node for o in n.output}
    q = [n for n in model_proto.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model_proto.graph.node if n.op_type == "DequantizeLinear"]
    q_after_concat = [n.name for n in q if n.input[0] in producers and producers[n.input[0]].op_type == "Concat"]
    convs = [n for n in model_proto.graph.node if n.op_type == "Conv"]
    conv_inputs_dq = sum(1 for c in convs
                         if c.input[0] in producers and producers[c.input[0]].op_type == "DequantizeLinear")
    return {"quantize": len(q), "dequantize": len(dq), "conv": len(convs),
            "conv_inputs_dequantized": conv_inputs_dq, "quantize_reading_concat": q_after_concat}
