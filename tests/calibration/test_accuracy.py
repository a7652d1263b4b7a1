"""Accuracy of every precision on dnx's trained DenseNet-BC over the shipped Fashion-MNIST 5k test subset."""

from __future__ import annotations

import pytest

from dnx.benchmarks.accuracy import evaluate_precisions
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.models import ASSETS, bundled_weights, create_model


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    assert bundled_weights("densenet_bc22_fmnist") is not None, "the trained checkpoint ships in dnx/assets"
    loaded = create_model("densenet_bc22_fmnist")
    return evaluate_precisions(loaded, shipped_fashion_mnist_test(), tmp_path_factory.mktemp("acc"),
                               ASSETS / "fashion_mnist_calib512.npz", samples=512)


def _row(report, label):
    return next(r.comparison for r in report.rows if r.label == label)


@pytest.mark.slow
def test_fp32_accuracy_at_least_91_percent(report):
    assert report.images == 5000
    assert _row(report, "PyTorch FP32").accuracy >= 0.91
    onnx32 = _row(report, "ONNX FP32")
    assert onnx32.max_abs_diff <= 1e-4 and onnx32.top1_agreement == 1.0


@pytest.mark.slow
def test_fp16_within_0_1_points_and_99_9_agreement(report):
    base = _row(report, "PyTorch FP32").accuracy
    c = _row(report, "ONNX FP16")
    assert abs(base - c.accuracy) <= 0.001 and c.top1_agreement >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_int8_within_0_5_points_and_99_agreement(report, target):
    base = _row(report, "PyTorch FP32").accuracy
    c = _row(report, f"ONNX INT8 QDQ ({target})")
    assert abs(base - c.accuracy) <= 0.005 and c.top1_agreement >= 0.99
