"""Derived files are judged on what the precision does: a healthy INT8 file passes on the shipped test
split, and broken files (weight scales x10, one corrupted weight tensor) fail there, in the certificate
check and in `dnx bench` with default flags."""

from __future__ import annotations

import pytest

from dnx.benchmarks.harness import BenchConfig, run_bench
from dnx.calibration.parity import check_derived, summary
from dnx.core.onnx_graph import load_onnx
from dnx.schemas.manifest import manifest_of

FAST = dict(batches=(1,), iterations=2, warmup_s=0.0, samples=6)


def _check(reference, candidate):
    manifest = manifest_of(load_onnx(candidate), candidate, required=False)
    return check_derived(reference, candidate, "int8", manifest, manifest.preprocess)


def test_healthy_int8_passes_on_the_images_fp32_is_sure_of(fmnist_onnx, fmnist_int8_onnx):
    c, data = _check(fmnist_onnx, fmnist_int8_onnx)
    assert data.labels is not None and len(data.images) == 1000
    assert c and c.judges_decisive and c.decisive_samples >= 900  # the trained model is sure of most images
    assert c.decisive_flips <= c.decisive_samples // 100
    assert "near-ties" in summary(c)


@pytest.mark.parametrize("broken", ["broken_int8_onnx", "corrupted_int8_onnx"])
def test_broken_files_fail_everywhere(broken, fmnist_onnx, request):
    path = request.getfixturevalue(broken)
    c, _ = _check(fmnist_onnx, path)
    # most images flip, and most of them where FP32 is sure: no margin rule can excuse that
    assert not c and c.decisive_flips > c.decisive_samples // 2, summary(c)
    (b,) = run_bench(BenchConfig(target=str(path), backends=("ort-cpu",), **FAST)).backends
    assert b.parity_passed is False
    assert "where FP32 is sure" in dict(b.parity)["fashion-mnist test 1000"].criterion
