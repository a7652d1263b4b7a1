"""benchmarks/gpu_check: on this CPU machine every path is reported as skipped with its reason; the
path machinery (parity, latency, skip/fail classification) runs for real on onnxruntime's CPU provider.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dnx.benchmarks import gpu_check
from dnx.benchmarks.gpu_check_trt import CHECKS
from dnx.core.errors import DnxError
from dnx.runtime.backends.base import UnavailableBackend
from dnx.runtime.backends.table import TABLE

needs_no_gpu = pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks the no-GPU mode")


@needs_no_gpu
def test_nothing_to_run_mode_reports_every_path_skipped_with_a_reason(tmp_path):
    gpu_check.main(["--out", str(tmp_path / "check")])
    summary = json.loads((tmp_path / "check.json").read_text())
    names = [*CHECKS, *gpu_check.PATHS]
    assert [p["name"] for p in summary["paths"]] == names
    for path in summary["paths"]:
        assert path["status"] == "skipped" and path["reason"].startswith("no CUDA device")
        assert path["parity"] is None and path["latency"] == {}
    # every latency path is a row of the backend table, reported under the row's name
    rows = [p["backend"] for p in summary["paths"] if p["backend"]]
    assert rows == [p.backend for p in gpu_check.PATHS.values()] and set(rows) <= set(TABLE)
    assert summary["machine"]["cpu"] and summary["machine"]["gpu"] is None
    table = (tmp_path / "check.md").read_text()
    assert all(f"| {name} | skipped |" in table for name in names)


def conv_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((10, 3, 224, 224)).astype(np.float32) / 1000
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["conv"]),
                               helper.make_node("Flatten", ["conv"], ["logits"])], "conv",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture
def cpu_context(tmp_path, monkeypatch):
    """A Context with one more path, the table's onnxruntime-cpu row, and a 1-second-free latency setting."""
    from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner

    path = conv_onnx(tmp_path / "conv.onnx")
    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    with OnnxRuntimeRunner(path) as runner:
        reference = runner.infer({"input": x})["logits"]
    monkeypatch.setitem(gpu_check.PATHS, "onnxruntime-cpu", gpu_check.GpuPath("onnxruntime-cpu"))
    monkeypatch.setitem(gpu_check.LATENCY, "duration_s", 0.0)
    monkeypatch.setitem(gpu_check.LATENCY, "min_iterations", 2)
    return gpu_check.Context(None, path, tmp_path, x, reference, gpu_check.Budget(60))


def test_a_path_that_runs_gets_parity_and_latency_at_each_batch(cpu_context):
    result = gpu_check.run_path("onnxruntime-cpu", cpu_context, None)
    assert result.status == "ran" and result.reason == "" and result.backend == "onnxruntime-cpu"
    assert result.parity["passed"] and result.parity["max_abs_diff"] <= 1e-5
    assert sorted(result.latency) == list(gpu_check.BATCHES)
    assert all(lat["median_ms"] > 0 for lat in result.latency.values())


@pytest.mark.parametrize("error, status", [(UnavailableBackend("onnxruntime-cuda unavailable: fell back"), "skipped"),
                                           (DnxError("engine refused"), "failed"),
                                           (RuntimeError("CUDA error: boom"), "failed")])
def test_skips_and_failures_are_told_apart(cpu_context, monkeypatch, error, status):
    def broken(path, ctx):
        raise error

    monkeypatch.setattr(gpu_check, "_runner", broken)
    result = gpu_check.run_path("onnxruntime-cpu", cpu_context, None)
    assert (result.status, result.reason.split(": ")[-1]) == (status, str(error).split(": ")[-1])


def test_a_path_that_cannot_finish_in_the_budget_is_skipped(cpu_context):
    cpu_context.budget = gpu_check.Budget(10)
    result = gpu_check.run_path("torch-cuda-compile", cpu_context, None)
    assert result.status == "skipped" and result.reason.startswith("time budget: ")


# -- the TensorRT checks (benchmarks/gpu_check_trt.py): their control flow here, NOT TensorRT --------

def test_trt_checks_skip_with_their_reason_without_a_gpu(cpu_context, monkeypatch, tmp_path):
    from dnx.benchmarks import gpu_check_trt

    monkeypatch.setenv(gpu_check_trt.PROBE_ENV, str(tmp_path / "no-probe"))
    reasons = {name: gpu_check_trt.run_check(name, cpu_context, None) for name in CHECKS}
    assert all(r.status == "skipped" for r in reasons.values()), reasons
    assert "needs two" in reasons["two-gpus-python"].reason and "needs two" in reasons["two-gpus-cpp"].reason
    assert "libdnx_runtime was not built with TensorRT" in reasons["version-compat-cpp"].reason
    assert reasons["version-compat-python"].reason.startswith("no CUDA device")
    assert reasons["inspect-trt11"].reason.startswith("no CUDA device")


def _fake_probe(tmp_path, logits, restored=True):
    """A stand-in for tests/dnx-tensorrt-probe that prints what the real one prints."""
    report = {"backend": "tensorrt-cuda:0", "device": 0, "caller_device": 1, "device_restored": restored,
              "logits": [float(v) for v in np.ravel(logits)]}
    probe = tmp_path / "probe.sh"
    probe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(report)}\nEOF\n")
    probe.chmod(0o755)
    return probe


@pytest.mark.parametrize("restored, shift, status, reason", [
    (True, 0.0, "ran", ""),
    (False, 0.0, "failed", "left the calling thread on another device"),
    (True, 0.5, "failed", "parity failed"),
])
def test_cpp_check_compares_the_probe_with_python(cpu_context, monkeypatch, tmp_path, restored, shift, status, reason):
    from dnx.benchmarks import gpu_check_trt

    python = cpu_context.reference
    cpu_context.engines["version-compat"] = tmp_path / "m.engine"  # not built: the probe is a stand-in too
    cpu_context.outputs["python-0"] = python
    monkeypatch.setenv(gpu_check_trt.PROBE_ENV, str(_fake_probe(tmp_path, python + shift, restored)))
    result = gpu_check_trt.run_check("version-compat-cpp", cpu_context, None)
    assert (result.status, reason in result.reason) == (status, True), result
    if status == "ran":
        assert result.parity["passed"] and result.notes == ["tensorrt-cuda:0, caller on device 1, restored"]
