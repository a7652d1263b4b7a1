"""Shared fixtures and the gpu/trt skip rules (skips are printed by `-rs`)."""

from __future__ import annotations

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    cuda = _has_cuda()
    # find_spec only: importing tensorrt (or creating a Runtime) without a driver can crash.
    trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        # markers, not item.keywords: keywords also hold folder names (a checkout in a folder named trt)
        if item.get_closest_marker("gpu") and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none on this machine"))
        if item.get_closest_marker("trt") and not (cuda and trt):
            why = "TensorRT is not installed" if not trt else "no CUDA device"
            item.add_marker(pytest.mark.skip(reason=f"needs real TensorRT and a CUDA device: {why}"))


# -- artifacts of dnx's shipped Fashion-MNIST model, made once per test session -------------------

@pytest.fixture(scope="session")
def fmnist_onnx(tmp_path_factory):
    """dnx's trained DenseNet-BC exported (FP32, dynamic batch, verified) with its manifest."""
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    path = tmp_path_factory.mktemp("fmnist") / "fmnist.onnx"
    export_onnx(create_model("densenet_bc22_fmnist"), path, ExportOptions())
    return path


@pytest.fixture(scope="session")
def fmnist_int8_onnx(fmnist_onnx):
    """Its INT8 Q/DQ graph placed for onnxruntime, calibrated on 128 shipped training images."""
    from dnx.calibration.qdq import calibrate_qdq
    from dnx.models import ASSETS

    out = fmnist_onnx.with_name("fmnist.int8-onnxruntime.onnx")
    calibrate_qdq(fmnist_onnx, out, ASSETS / "fashion_mnist_calib512.npz", target="onnxruntime", samples=128)
    return out


@pytest.fixture
def broken_int8_onnx(fmnist_int8_onnx, tmp_path):
    """The INT8 file with every weight DequantizeLinear scale multiplied by 10 (its manifest kept): a
    deliberately broken quantization that parity checks must catch."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(fmnist_int8_onnx))
    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = inits[node.input[1]]
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 10, scale.name))
    path = tmp_path / "broken.int8.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def corrupted_int8_onnx(fmnist_int8_onnx, tmp_path):
    """The INT8 file with ONE weight tensor (the middle quantized Conv weight) overwritten by seeded random
    int8 values, its manifest kept: a bad copy or a bit-rotted file that parity checks must catch."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(fmnist_int8_onnx))
    inits = {i.name: i for i in proto.graph.initializer}
    weights = [inits[n.input[0]] for n in proto.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) == 4]
    victim = weights[len(weights) // 2]
    values = numpy_helper.to_array(victim)
    noise = np.random.default_rng(0).integers(-127, 128, values.shape).astype(values.dtype)
    victim.CopyFrom(numpy_helper.from_array(noise, victim.name))
    path = tmp_path / "corrupted.int8.onnx"
    onnx.save(proto, str(path))
    return path
