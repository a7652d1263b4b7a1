"""Graph passes: the depthwise rewrites for onnxruntime's INT8 graphs, and the exported transition order."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dnx.core.onnx_graph import depthwise_rewrites, op_counts
from dnx.export.onnx_export import ExportOptions, export_onnx
from dnx.models import create_model


@pytest.fixture(scope="module")
def fmnist_onnx(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    return export_onnx(create_model("densenet_bc22_fmnist"), root / "m.onnx", ExportOptions(verify=False)).path


def _run(proto, x):
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_transitions_pool_before_their_1x1_conv(fmnist_onnx):
    proto = onnx.load(str(fmnist_onnx))
    consumers = {i: n for n in proto.graph.node for i in n.input}
    pools = [n for n in proto.graph.node if n.op_type == "AveragePool"]
    assert len(pools) == 2 and all(consumers[p.output[0]].op_type == "Conv" for p in pools)


def test_depthwise_rewrites_keep_the_function(fmnist_onnx):
    proto = onnx.load(str(fmnist_onnx))
    before = op_counts(proto)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    reference = _run(proto, x)
    keep = next(n.name for n in proto.graph.node if n.op_type == "BatchNormalization")
    counts = depthwise_rewrites(proto, keep=[keep])
    onnx.checker.check_model(proto, full_check=True)
    after = op_counts(proto)
    assert counts == {"BatchNormalization": before["BatchNormalization"] - 1, "AveragePool": 2}
    assert after.get("BatchNormalization") == 1 and "AveragePool" not in after
    assert after["Conv"] == before["Conv"] + sum(counts.values())
    np.testing.assert_allclose(_run(proto, x), reference, rtol=1e-4, atol=1e-5)
    # the BN parameters went with their nodes; the kept BN keeps its own
    used = {i for n in proto.graph.node for i in n.input}
    assert all(t.name in used for t in proto.graph.initializer)


def test_depthwise_rewrites_leave_non_image_batchnorm_alone():
    c = 3
    params = [numpy_helper.from_array(v.astype(np.float32), name) for name, v in
              (("g", np.ones(c)), ("b", np.zeros(c)), ("m", np.zeros(c)), ("v", np.ones(c)))]
    graph = helper.make_graph([helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"], name="bn")],
                              "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 8])], params)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert depthwise_rewrites(proto) == {"BatchNormalization": 0, "AveragePool": 0}
    assert op_counts(proto) == {"BatchNormalization": 1}
