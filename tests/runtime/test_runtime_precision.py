"""Precision lives in the artifact: an FP32 file runs in FP32 on every backend and every CPU (OpenVINO's CPU
plugin would pick BF16 on AVX-512 BF16 / AMX CPUs); BF16 only when asked, with its own verdict on real data."""

from __future__ import annotations

import numpy as np
import pytest

import dnx
from dnx.core.compare import Tolerance
from dnx.core.errors import DnxError
from dnx.runtime.artifact import UnverifiedArtifact
from dnx.runtime.backends.base import UnavailableBackend

pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'dnx[openvino]'")

from dnx.runtime.backends.openvino_runner import OpenVINORunner, cpu_capabilities  # noqa: E402

HAS_BF16 = "BF16" in cpu_capabilities()
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no BF16 (AVX-512 BF16 or AMX)")


def _batch(n: int = 64) -> np.ndarray:
    from dnx.data.datasets import shipped_fashion_mnist_test
    from dnx.data.preprocess import preprocess_array
    from dnx.models.registry import get_config

    return preprocess_array(shipped_fashion_mnist_test().images[:n], get_config("densenet_bc22_fmnist").preprocess)


def test_fp32_artifact_runs_fp32_on_every_backend_by_default(fmnist_onnx):
    x = _batch()
    with dnx.load(fmnist_onnx, backend="onnxruntime") as ort:
        want = ort.logits(x)
        assert ort.info()["inference_precision"] == "fp32"
    for backend in ("auto", "openvino"):
        with dnx.load(fmnist_onnx, backend=backend) as clf:
            info = clf.info()
            assert info["backend"] == "openvino" and info["inference_precision"] == "fp32"
            assert "precision_verdict" not in info  # the certificate covers what runs
            np.testing.assert_allclose(clf.logits(x), want, rtol=0, atol=1e-4)  # FP32 tolerance, any CPU
    with OpenVINORunner(fmnist_onnx) as runner:  # the runner's own default too
        assert runner.inference_precision == "fp32"


@needs_bf16
def test_bf16_when_asked_earns_its_own_verdict_on_real_data(fmnist_onnx):
    with dnx.load(fmnist_onnx, precision="bf16") as clf:
        info = clf.info()
        verdict = info["precision_verdict"]
        assert info["inference_precision"] == "bf16" and info["backend"] == "openvino"
        assert verdict["verdict"] == "passed" and verdict["precision"] == "bf16"
        assert verdict["data"]["images"] == 1000 and verdict["data"]["labelled"]
        assert verdict["thresholds"]["min_top1_agreement"] == 0.995
        assert verdict["metrics"]["decisive_flips"] <= verdict["metrics"]["decisive_samples"] // 200
        assert "near-ties" in verdict["summary"]


@needs_bf16
def test_a_failed_bf16_verdict_is_refused_unless_allowed(fmnist_onnx, monkeypatch):
    import dnx.runtime.runtime_precision as rp

    monkeypatch.setattr(rp, "tolerance_for", lambda precision, manifest: Tolerance(max_abs_diff=0.0))
    with pytest.raises(UnverifiedArtifact, match="in bf16 on openvino-cpu is refused"):
        dnx.load(fmnist_onnx, precision="bf16")
    with dnx.load(fmnist_onnx, precision="bf16", allow_unverified=True) as clf:
        assert clf.info()["precision_verdict"]["verdict"] == "failed"


@pytest.mark.skipif(HAS_BF16, reason="checks a CPU without BF16")
def test_bf16_is_unavailable_without_cpu_support(fmnist_onnx):
    with pytest.raises(UnavailableBackend, match="no BF16 support"):
        dnx.load(fmnist_onnx, precision="bf16")


def test_bf16_requests_that_cannot_be_honoured(fmnist_onnx):
    with pytest.raises(DnxError, match="OpenVINO's CPU plugin only"):
        dnx.load(fmnist_onnx, precision="bf16", backend="onnxruntime")
    with pytest.raises(DnxError, match="precision must be one of fp32, bf16"):
        dnx.load(fmnist_onnx, precision="fp16")
    with dnx.load(fmnist_onnx, precision="fp32") as clf:  # fp32 = as written
        assert clf.info()["inference_precision"] == "fp32"


def test_serve_has_a_precision_option(fmnist_onnx):
    from click.testing import CliRunner

    from dnx.cli import cli

    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--precision [fp32|bf16]" in out
    bad = CliRunner().invoke(cli, ["serve", str(fmnist_onnx), "--precision", "fp16"])
    assert bad.exit_code == 2 and "fp16" in bad.output


@needs_bf16
def test_serve_bf16_reports_its_verdict(fmnist_onnx):
    httpx = pytest.importorskip("httpx", reason="httpx is a test dependency (pip install 'dnx[test]')")
    pytest.importorskip("fastapi", reason="dnx serve needs pip install 'dnx[serve]'")
    from dnx.runtime.serve.process import ServeProcess

    with ServeProcess(fmnist_onnx, "--precision", "bf16") as server:
        model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
    assert model["inference_precision"] == "bf16" and model["precision_verdict"]["verdict"] == "passed"
