"""Small ONNX graph passes and summaries."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Collection

from dnx.core.errors import DnxError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def load_onnx(path: str | Path, load_external_data: bool = True):
    """The ONNX proto of ``path``, or a one-line DnxError when it is missing or not ONNX."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DnxError(f"ONNX file {path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # onnx raises DecodeError and friends for non-ONNX files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DnxError(f"{path} is not a readable ONNX file: {first}") from None
    # Protobuf parses an empty file (and some foreign bytes) as an empty model without complaint.
    graph = proto.graph
    if not graph.node or not graph.output or not graph_inputs(proto):
        raise DnxError(f"{path} holds no ONNX graph ({len(graph.node)} nodes, {len(graph_inputs(proto))} inputs, "
                       f"{len(graph.output)} outputs); is it the right file?")
    return proto


def graph_inputs(model_proto) -> list:
    """The graph's real inputs (older exporters also list every initializer as an input)."""
    inits = {i.name for i in model_proto.graph.initializer}
    return [i for i in model_proto.graph.input if i.name not in inits]


def has_qdq(model_proto) -> bool:
    """Whether the graph is (partly) quantized: any QuantizeLinear or DequantizeLinear node."""
    return any(n.op_type in QDQ_OPS for n in model_proto.graph.node)


def remove_identities(model_proto) -> int:
    """Drop Identity nodes by rewiring their consumers to their input; returns how many.

    The TorchScript exporter routes every shared weight through an Identity (245 in densenet121);
    they cost nothing at run time but clutter every graph walk and inspect report.
    """
    graph = model_proto.graph
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not rename:
        return 0

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(keep)
    return len(rename)


def _inferred_shapes(model_proto) -> dict[str, list[int]]:
    """Tensor name -> dims (0 where unknown), from onnx shape inference."""
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(model_proto).graph
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.value_info] if v.type.tensor_type.HasField("shape")}


def _replace_nodes(model_proto, replaced: dict, dead_params: set[str]) -> None:
    """Swap nodes for their replacements (``replaced``: old node's index -> (new node, its
    initializers)) in place, and drop initializers in ``dead_params`` that nothing reads any more."""
    graph = model_proto.graph
    nodes = []
    for index, node in enumerate(graph.node):
        new, inits = replaced.get(index, (node, ()))
        nodes.append(new)
        graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input} | {i.name for i in graph.input}
    kept = [i for i in graph.initializer if i.name in used or i.name not in dead_params]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def depthwise_rewrites(model_proto, keep: Collection[str] = (),
                       ops: Collection[str] = ("BatchNormalization", "AveragePool")) -> dict[str, int]:
    """Rewrite inference BatchNormalization and AveragePool nodes (those of ``ops``) as the equal
    depthwise Convs, in place; returns how many of each. Nodes named in ``keep`` are left alone.

    For onnxruntime's CPU QDQ graphs. DenseNet's pre-activation BNs (after each Concat) cannot fold
    into a neighbouring Conv; as float islands between quantized tensors each costs a Dequantize, the
    BN, a Quantize and two NHWC<->NCHW Transposes (over a quarter of densenet121's INT8 run time on
    an AVX2 CPU). As depthwise 1x1 Convs they quantize exactly (per channel, one weight a channel) and
    onnxruntime fuses each with its ReLU into an NHWC QLinearConv. Likewise an unpadded average pool
    as a depthwise Conv of equal weights (exact in INT8) runs faster than onnxruntime's
    QLinearAveragePool. Float results are unchanged up to rounding.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model_proto.graph.initializer}
    shapes = _inferred_shapes(model_proto)
    replaced, dead, counts = {}, set(), {"BatchNormalization": 0, "AveragePool": 0}
    for index, node in enumerate(model_proto.graph.node):
        shape = shapes.get(node.input[0]) if node.input else None
        if node.op_type not in ops or node.name in keep or not shape or len(shape) != 4 or not shape[1]:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        base = node.name or node.output[0]
        if node.op_type == "BatchNormalization" and len(node.output) == 1 \
                and all(name in inits for name in node.input[1:5]):
            gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in node.input[1:5])
            scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
            params = [numpy_helper.from_array(scale.reshape(-1, 1, 1, 1).astype(np.float32), f"{base}.dw_weight"),
                      numpy_helper.from_array((beta - mean * scale).astype(np.float32), f"{base}.dw_bias")]
            conv = helper.make_node("Conv", [node.input[0], *(p.name for p in params)], [node.output[0]],
                                    name=f"{base}_depthwise", group=shape[1], kernel_shape=[1, 1])
            dead.update(node.input[1:5])
        elif node.op_type == "AveragePool" and not any(attrs.get("pads", [])) and not attrs.get("ceil_mode") \
                and all(d == 1 for d in attrs.get("dilations", [])) \
                and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            kernel = list(attrs["kernel_shape"])
            weight = np.full((shape[1], 1, *kernel), 1.0 / np.prod(kernel), np.float32)
            params = [numpy_helper.from_array(weight, f"{base}.dw_weight")]
            conv = helper.make_node("Conv", [node.input[0], params[0].name], [node.output[0]],
                                    name=f"{base}_depthwise", group=shape[1], kernel_shape=kernel,
                                    strides=list(attrs.get("strides", [1] * len(kernel))))
        else:
            continue
        replaced[index] = (conv, params)
        counts[node.op_type] += 1
    if replaced:
        _replace_nodes(model_proto, replaced, dead)
    return counts


def op_counts(model_proto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model_proto.graph.node).most_common())
