"""What is inside an artifact: an ONNX file's graph and precision mix (CPU), an engine's layers (GPU).

``inspect_onnx`` answers, before any engine is built, the question TensorRT will answer by building
it: which precision does this graph ask for (FP32, FP16, INT8 Q/DQ, INT8 Q/DQ + FP16)?
``inspect_engine`` reads the engine's own per-layer report (TensorRT's engine inspector), which says
which precision each fused layer really runs in.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnx.core.onnx_graph import has_qdq, load_onnx, op_counts, QDQ_OPS
from dnx.core.hashing import sha256_file
from dnx.runtime.backends.tensorrt_compat import import_tensorrt
from dnx.runtime.backends.tensorrt_runner import load_engine
from dnx.schemas.certificate import check_certificate
from dnx.schemas.engine_manifest import read_engine_manifest
from dnx.schemas.manifest import manifest_of

if TYPE_CHECKING:
    import tensorrt as trt

FLOAT16 = 10  # onnx.TensorProto.FLOAT16; a literal so onnx_precision can take any proto without importing onnx


def _dtype_name(elem_type: int) -> str:
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        return str(tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _cast_targets(proto) -> Counter:
    targets: Counter = Counter()
    for node in proto.graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    targets[attr.i] += 1
    return targets


def onnx_precision(proto) -> str:
    """The precision a graph asks a strongly typed builder for: fp32, fp16, int8 (Q/DQ) or best (Q/DQ + FP16)."""
    has_fp16 = any(t.data_type == FLOAT16 for t in proto.graph.initializer) or FLOAT16 in _cast_targets(proto)
    if has_qdq(proto):
        return "best" if has_fp16 else "int8"
    return "fp16" if has_fp16 else "fp32"


def _value_info(value) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": _dtype_name(tensor.elem_type)}


def inspect_onnx(path: str | Path) -> dict[str, Any]:
    """Summary of an ONNX file: operators, initializer and Cast types, Q/DQ count, precision, manifest."""
    import math

    path = Path(path)
    proto = load_onnx(path, load_external_data=False)
    by_dtype: dict[str, dict[str, int]] = {}
    for init in proto.graph.initializer:
        entry = by_dtype.setdefault(_dtype_name(init.data_type), {"tensors": 0, "elements": 0})
        entry["tensors"] += 1
        entry["elements"] += math.prod(init.dims)
    ops = op_counts(proto)
    manifest = manifest_of(proto, path, required=False)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "opset": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "producer": proto.producer_name,
        "inputs": [_value_info(v) for v in proto.graph.input],
        "outputs": [_value_info(v) for v in proto.graph.output],
        "nodes": len(proto.graph.node),
        "ops": ops,
        "initializers": by_dtype,
        "casts_to": {_dtype_name(t): n for t, n in _cast_targets(proto).items()},
        "qdq_nodes": sum(ops.get(op, 0) for op in QDQ_OPS),
        "precision": onnx_precision(proto),
        "manifest_precision": manifest.precision if manifest else None,
        "manifest": manifest.to_dict() if manifest else None,
        # what dnx.load would say of it: None when its parity certificate holds
        "unverified": check_certificate(manifest, proto),
    }


def _precision_of(format_text: str) -> str:
    text = format_text.lower()
    for key, name in (("int8", "int8"), ("fp8", "fp8"), ("bf16", "bf16"), ("bfloat16", "bf16"), ("fp16", "fp16"),
                      ("half", "fp16"),
                      ("fp32", "fp32"), ("float", "fp32"), ("int32", "int32"), ("int64", "int64")):
        if key in text:
            return name
    return "other"


def tensor_precision(tensor: Any) -> str:
    """Precision of one tensor record of the engine inspector's layer JSON.

    TensorRT 10 writes one ``"Format/Datatype"`` text ("Row major linear FP16 format"); TensorRT 11
    split it into ``"DataType"`` ("Half") and ``"Format"`` (migration guide, IEngineInspector JSON
    output), so the data type is read first and the format text only when it is all there is.
    """
    if not isinstance(tensor, dict):
        return "other"
    if "Format/Datatype" in tensor:
        return _precision_of(str(tensor["Format/Datatype"]))
    dtype = next((tensor[k] for k in ("DataType", "Datatype") if k in tensor), None)
    return _precision_of(str(dtype if dtype is not None else tensor.get("Format", "")))


def summarize_layers(layers: list) -> dict[str, Any]:
    """Counts from the engine inspector's JSON ``Layers`` list: layer types and output precisions.

    Engines built by dnx use detailed profiling verbosity, so each layer is a dict; an engine built
    with names only gives strings, and only the count is known.
    """
    detailed = [layer for layer in layers if isinstance(layer, dict)]
    types = Counter(str(layer.get("LayerType", "?")) for layer in detailed)
    precisions = Counter(tensor_precision(out) for layer in detailed for out in layer.get("Outputs", [])[:1])
    return {"count": len(layers), "detailed": len(detailed) == len(layers) and bool(layers),
            "types": dict(types.most_common()), "output_precision": dict(precisions.most_common())}


def engine_layers(trt, engine: trt.ICudaEngine) -> list:
    """The engine inspector's per-layer JSON records."""
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(str(text)).get("Layers", [])


def inspect_engine(path: str | Path, layers: bool = True, device: int = 0) -> dict[str, Any]:
    """An engine's manifest and file facts; with ``layers`` (needs a GPU and TensorRT) its I/O and layers."""

    path = Path(path)
    manifest = read_engine_manifest(path, required=False)
    sha = sha256_file(path)
    info: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha,
                            "manifest": manifest.to_dict() if manifest else None,
                            # without TensorRT only the sidecar says the bytes are the engine it describes
                            "digest_problem": manifest.digest_problem(sha) if manifest else None}
    if not layers:
        return info

    import torch

    trt = import_tensorrt(device)
    with torch.cuda.device(device):  # the engine is deserialized and inspected on ``device``, not device 0
        loaded = load_engine(trt, path, manifest, device)
        records = engine_layers(trt, loaded.engine)
    info.update(io=loaded.io, warnings=loaded.warnings, layers=summarize_layers(records), layer_records=records)
    return info
