"""onnxruntime runner: refuses a silent provider fallback, keeps FP32 out of TF32, binds device inputs.

The fallback and provider-option tests use a stand-in InferenceSession (no GPU here); the IOBinding
path runs on onnxruntime's real CPU provider.
"""

from __future__ import annotations

import numpy as np
import pytest

from dnx.runtime.backends.base import UnavailableBackend
from dnx.runtime.backends import onnxruntime_runner as ort_runner
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


def conv_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"])], "conv",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture
def fake_session(monkeypatch):
    """onnxruntime.InferenceSession replaced by a recorder whose get_providers() the test chooses."""
    import onnxruntime

    state = {"providers_asked": None, "providers_loaded": None, "get_outputs": 0}

    class Session:
        def __init__(self, path, sess_options=None, providers=None):
            state["providers_asked"] = providers

        def get_providers(self):
            return state["providers_loaded"]

        def get_outputs(self):
            state["get_outputs"] += 1
            return [type("Out", (), {"name": "logits"})()]

        def run(self, names, feed):
            return [np.zeros((1, 4), np.float32)]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(ort_runner, "provider_available", lambda device: (True, ""))
    return state


@pytest.mark.parametrize("device, loaded, fell_back_to", [
    ("cuda", ["CPUExecutionProvider"], "CPUExecutionProvider"),
    ("trt", ["CUDAExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider"),
    ("trt", ["CPUExecutionProvider"], "CPUExecutionProvider"),
    ("cuda", [], "no provider"),
])
def test_a_silent_provider_fallback_is_refused(tmp_path, fake_session, device, loaded, fell_back_to):
    fake_session["providers_loaded"] = loaded
    runner = OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx"), device)
    wanted = ort_runner.PROVIDERS[device][0]
    with pytest.raises(UnavailableBackend, match=f"^{runner.name} unavailable: onnxruntime could not load {wanted} "
                                                 f".*fell back to {fell_back_to}$"):
        runner.activate()
    assert not runner.is_active and runner.session is None


def test_cuda_provider_is_asked_for_fp32_math_without_tf32(tmp_path, fake_session):
    fake_session["providers_loaded"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx"), "cuda") as runner:
        assert runner.inference_precision is None
    assert fake_session["providers_asked"] == [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]


@pytest.mark.parametrize("capability, override, label", [((9, 0), None, "tf32"), ((8, 0), None, "tf32"),
                                                         ((7, 5), None, None), ((9, 0), "0", None)])
def test_tensorrt_provider_rows_are_labelled_tf32_where_it_applies(tmp_path, fake_session, monkeypatch,
                                                                   capability, override, label):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    if override is None:
        monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    else:
        monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", override)
    fake_session["providers_loaded"] = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx"), "trt", trt_cache_dir=str(tmp_path)) as runner:
        assert runner.inference_precision == label
    trt, cuda, cpu = fake_session["providers_asked"]
    assert trt == ("TensorrtExecutionProvider",
                   {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path)})
    assert (cuda, cpu) == (("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider")


def test_output_names_are_read_once_not_on_every_run(tmp_path, fake_session):
    fake_session["providers_loaded"] = ["CPUExecutionProvider"]
    with OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx")) as runner:
        calls = fake_session["get_outputs"]
        for _ in range(3):
            assert list(runner._infer({"input": np.zeros((1, 3, 8, 8), np.float32)})) == ["logits"]
        assert fake_session["get_outputs"] == calls == 1


def test_cpu_provider_is_real_and_not_a_cuda_backend(tmp_path):
    with OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx")) as runner:
        assert runner.session.get_providers()[0] == "CPUExecutionProvider"
        assert runner.uses_cuda is False and runner.inference_precision is None
    assert OnnxRuntimeRunner(tmp_path / "m.onnx", "cuda").uses_cuda is True


def test_bound_inputs_give_the_outputs_of_infer(tmp_path):
    """The IOBinding path (device-resident inputs on CUDA) on the real CPU provider."""
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with OnnxRuntimeRunner(conv_onnx(tmp_path / "m.onnx")) as runner:
        expected = runner.infer({"input": x})["logits"]
        runner.load_inputs({"input": x})
        x[:] = 0  # the bound copy is what runs
        for _ in range(2):
            runner.infer_device()
            np.testing.assert_array_equal(runner.fetch_outputs()["logits"], expected)
