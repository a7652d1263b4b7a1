"""Minimal reproducer: OpenVINO's CPU plugin mis-computes a valid Q/DQ ONNX graph (no dnx needed).

The graph (5 compute nodes, DenseNet's dense-block pattern under TensorRT's Q/DQ placement)::

    x -> Q/DQ -> Conv A -> a ----------------------------> Concat(a, b) -> y
                           a -> Relu -> Q/DQ -> Conv B -> b ---^

Conv A's output ``a`` is left in float (Q/DQ only at Conv inputs) and feeds both the Concat and
the quantized branch, and the batch dimension is dynamic (``N``). onnxruntime reads the graph as
ONNX defines it; OpenVINO 2026.4.1 returns the right ``a`` channels but wrong ``b`` channels (max
|diff| ~8 on outputs of at most ~8). It is exact when any one of these changes: a static batch
(``model.reshape`` to [2, 3, 8, 8] before compiling), its low-precision transformations off
(``LP_TRANSFORMS_MODE: NO``), ``b``'s branch not reading ``a``, or ``a`` quantized before the
Concat. So the defect is in OpenVINO's low-precision pass on dynamic shapes, where a float
tensor with a quantized consumer also enters a Concat: an OpenVINO bug, not a wrong graph.
On dnx's TensorRT-placed DenseNet files it costs cosine 0.19 (Fashion-MNIST DenseNet-BC) to 0.88
(densenet121) vs FP32; dnx's OpenVINORunner compiles static shapes and is not affected.

Run: python benchmarks/experiments/openvino_repro/conv_concat_qdq.py  (exit 1 while the defect is present: any row off).
"""

import sys

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
inits, nodes = [], []


def weight(name, cout, cin):
    w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.3
    scale = (np.abs(w).reshape(cout, -1).max(1) / 127).astype(np.float32)  # symmetric, per channel
    q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits.extend([numpy_helper.from_array(q, name + "_q"), numpy_helper.from_array(scale, name + "_s"),
                  numpy_helper.from_array(np.zeros(cout, np.int8), name + "_z")])
    nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"], [name], axis=0))


def qdq(src, dst, scale):  # symmetric int8 activations, zero point 0 (TensorRT's placement)
    inits.extend([numpy_helper.from_array(np.array(scale, np.float32), dst + "_s"),
                  numpy_helper.from_array(np.array(0, np.int8), dst + "_z")])
    nodes.append(helper.make_node("QuantizeLinear", [src, dst + "_s", dst + "_z"], [dst + "_q"]))
    nodes.append(helper.make_node("DequantizeLinear", [dst + "_q", dst + "_s", dst + "_z"], [dst]))


qdq("x", "xd", 4 / 127)
weight("wa", 8, 3)
weight("wb", 4, 8)
nodes.append(helper.make_node("Conv", ["xd", "wa"], ["a"], pads=[1] * 4))
nodes.append(helper.make_node("Relu", ["a"], ["ar"]))
qdq("ar", "ard", 4 / 127)
nodes.append(helper.make_node("Conv", ["ard", "wb"], ["b"], pads=[1] * 4))
nodes.append(helper.make_node("Concat", ["a", "b"], ["y"], axis=1))
graph = helper.make_graph(nodes, "conv_concat_qdq",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 12, 8, 8])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
blob = model.SerializeToString()

x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
want = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
core = ov.Core()
print(f"OpenVINO {ov.__version__}, onnxruntime {ort.__version__}, CPU {core.get_property('CPU', 'FULL_DEVICE_NAME')}")
failed = False
for label, config, static in (("dynamic batch", {}, False), ("static batch", {}, True),
                              ("dynamic, LPT off", {"LP_TRANSFORMS_MODE": "NO"}, False)):
    ov_model = core.read_model(blob, b"")
    if static:
        ov_model.reshape([2, 3, 8, 8])
    got = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", **config})({"x": x})[0]
    a_err, b_err = np.abs(got[:, :8] - want[:, :8]).max(), np.abs(got[:, 8:] - want[:, 8:]).max()
    print(f"{label:22s} max|diff| vs onnxruntime: a channels {a_err:.4f}, b channels {b_err:.4f} "
          f"(|y| max {np.abs(want).max():.1f})")
    failed |= max(a_err, b_err) > 1e-3
sys.exit(1 if failed else 0)
