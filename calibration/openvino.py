"""INT8 Q/DQ placed for OpenVINO (``dnx calibrate --target openvino``): NNCF's post-training quantization.

Why not the other targets' graphs: OpenVINO's CPU plugin fuses a Q/DQ ONNX file into INT8 kernels
through its low-precision transformations, and those want every Concat input quantized (so the
dense blocks' concatenations stay in INT8) and the transitions' pooling fed quantized tensors.
``nncf.quantize`` (ONNX backend, ``performance`` preset: symmetric INT8, per-channel weights, fast
bias correction) places Q/DQ exactly that way: on the FP32 ONNX export with dnx's calibration
stream it matched OpenVINO+NNCF's speed and accuracy (benchmarks/results/cpu_int8.json). The output
is still a plain Q/DQ ONNX file with dnx's manifest, so onnxruntime and TensorRT read it too.

The cache beside the output is keyed like the other targets (source sha256, data fingerprint,
method, target, samples) plus the excluded nodes (they move Q/DQ). It keeps what NNCF computed
from the data: every Q/DQ scale and zero point and the bias-corrected biases. On a hit, NNCF
re-places Q/DQ from one calibration batch (placement depends on the graph only), and the cached
values replace that batch's numbers.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from dnx.calibration.data import CalibrationData, open_calibration_data
from dnx.calibration.common import (CACHE_SCHEMA, CalibrationResult, cache_key, certify, default_cache_path,
                                    split_exclude)
from dnx.core.errors import DnxError, require
from dnx.calibration.source import open_fp32_source
from dnx.core.fileio import atomic_path, write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import has_qdq
from dnx.schemas.manifest import base_manifest, embed, preprocess_from_manifest, write_sidecar

# NNCF's own default for activations: the mean over calibration batches of each batch's min and max.
METHOD = "mean-minmax"


def _quiet_nncf():
    """NNCF draws progress bars on stdout/stderr and logs advice; library code stays quiet."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    stack.callback(logger.setLevel, level)
    return stack


def _ignored_scope(nncf, proto, exclude: Sequence[str]):
    ops, nodes = split_exclude(proto, exclude)
    if not exclude:
        return None
    return nncf.IgnoredScope(names=nodes, types=[e for e in exclude if e in ops])


def _quantize(nncf, proto, calib: CalibrationData, input_name: str, batch_size: int, batches: int, ignored):
    import onnx

    source = onnx.ModelProto()
    source.CopyFrom(proto)  # NNCF may edit the graph it is given; the caller's stays the FP32 source
    items = [calib.batch(i, batch_size) for i in range(batches)]
    dataset = nncf.Dataset(items, lambda batch: {input_name: batch})
    kwargs = {"ignored_scope": ignored} if ignored is not None else {}
    with _quiet_nncf():
        return nncf.quantize(source, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(items),
                             fast_bias_correction=True, **kwargs)


def _data_dependent(source_proto, qproto) -> dict:
    """Initializers of ``qproto`` that calibration computed: new or changed tensors of at most one
    dimension (Q/DQ scales and zero points, corrected biases). INT8 weights follow from the FP32
    weights alone and are re-made on a cache hit."""
    from onnx import numpy_helper

    before = {t.name: numpy_helper.to_array(t) for t in source_proto.graph.initializer}
    out = {}
    for t in qproto.graph.initializer:
        arr = numpy_helper.to_array(t)
        old = before.get(t.name)
        if arr.ndim <= 1 and (old is None or old.shape != arr.shape or not (old == arr).all()):
            out[t.name] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "values": arr.ravel().tolist()}
    return out


def _apply_cached(qproto, cached: dict) -> bool:
    """Put the cached values in place; False when the graph no longer has those tensors."""
    import numpy as np
    from onnx import numpy_helper

    by_name = {t.name: t for t in qproto.graph.initializer}
    if any(name not in by_name or list(by_name[name].dims) != entry["shape"] for name, entry in cached.items()):
        return False
    for name, entry in cached.items():
        arr = np.array(entry["values"], dtype=entry["dtype"]).reshape(entry["shape"])
        by_name[name].CopyFrom(numpy_helper.from_array(arr, name))
    return True


def _load_cache(path: Path, key: dict) -> dict | None:
    import json

    try:
        cached = json.loads(path.read_bytes()) if path.is_file() else None
    except (ValueError, OSError, RecursionError):
        return None  # a damaged cache is recomputed (and then overwritten)
    if not isinstance(cached, dict) or cached.get("schema") != CACHE_SCHEMA or cached.get("key") != key:
        return None
    ranges = cached.get("ranges")
    return ranges if isinstance(ranges, dict) and ranges else None


def calibrate_openvino(source: str | Path, output: str | Path, data: str | Path | CalibrationData, *,
                       method: str | None = None, samples: int | None = 512, seed: int = 0,
                       exclude: Sequence[str] = (), high_precision: str | None = None,
                       cache_path: str | Path | None = None, batch_size: int = 8, preprocess=None,
                       decode: str | None = None):
    """Write an OpenVINO-placed INT8 Q/DQ copy of ``source`` calibrated on ``data`` to ``output``
    (arguments as :func:`dnx.calibration.qdq.calibrate_qdq`'s); returns a CalibrationResult."""
    import onnx

    if method not in (None, METHOD):
        raise DnxError(f"--target openvino takes NNCF's own statistic ({METHOD}); --method {method} applies to "
                       "--target tensorrt or onnxruntime")
    if high_precision not in (None, "fp32"):
        raise DnxError("--high-precision fp16 is TensorRT's 'best' mode; OpenVINO picks its own float precision "
                       "at run time (--ov-precision)")
    nncf = require("nncf", "openvino", "--target openvino")
    source, output, source_manifest, proto = open_fp32_source(
        source, output, action="calibrate", required=preprocess is None,
        qdq_message="{source} already holds Q/DQ nodes; calibrate the FP32 export")
    pre = preprocess or preprocess_from_manifest(source_manifest)
    if decode is not None:  # how calibration images are decoded, and how the output's users decode
        pre = replace(pre, decode=decode)
    ignored = _ignored_scope(nncf, proto, exclude)
    calib = data if isinstance(data, CalibrationData) else open_calibration_data(data, pre, samples, seed)
    input_name = proto.graph.input[0].name

    source_sha = sha256_file(source)
    # --exclude changes where NNCF puts Q/DQ, so it is part of this target's key
    key = {**cache_key(source_sha, calib.fingerprint, METHOD, "openvino", len(calib)), "excluded": sorted(exclude)}
    cache_path = Path(cache_path) if cache_path else default_cache_path(output)
    cached = _load_cache(cache_path, key)
    start = time.perf_counter()
    qproto = None
    if cached is not None:
        qproto = _quantize(nncf, proto, calib, input_name, batch_size, 1, ignored)
        if not _apply_cached(qproto, cached):
            cached = qproto = None
    if qproto is None:
        qproto = _quantize(nncf, proto, calib, input_name, batch_size, calib.num_batches(batch_size), ignored)
    if not has_qdq(qproto):
        raise DnxError(f"nothing in {source} was quantized; check --exclude")
    manifest = {
        **(source_manifest.to_dict() if source_manifest else {}), **base_manifest(with_torch=False),
        "artifact": "onnx-qdq", "precision": "int8",
        "calibration": {"method": METHOD, "target": "openvino", "samples": len(calib), "seed": seed,
                        "data": calib.source, "data_fingerprint": calib.fingerprint, "batch_size": batch_size,
                        "excluded": list(exclude), "graph_rewrites": {}, "high_precision": "fp32",
                        "preset": "performance", "fast_bias_correction": True,
                        "library": f"nncf.quantize (nncf {nncf.__version__}, onnx backend)"},
        "source": {"path": str(source), "sha256": source_sha},
    }
    if not source_manifest or decode is not None:
        manifest["preprocess"] = pre.to_dict()
    manifest.pop("verification", None)
    embed(qproto, manifest)
    with atomic_path(output) as tmp:
        onnx.save(qproto, str(tmp))
        certify(qproto, source, tmp, manifest, source_manifest, pre)
    if cached is None:
        write_json_atomic(cache_path, {"schema": CACHE_SCHEMA, "key": key, "ranges": _data_dependent(proto, qproto)})
    write_sidecar(output, manifest)
    return CalibrationResult(output, manifest, cache_path, cached is not None, time.perf_counter() - start,
                             len(calib), list(calib.notes))
