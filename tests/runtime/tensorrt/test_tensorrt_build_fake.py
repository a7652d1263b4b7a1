"""dnx's build-time decisions against a fake tensorrt module (conftest.fake_tensorrt): NOT TensorRT.

These prove which TensorRT names dnx reads on which release and what it does with TensorRT's
answers (None, False, -1); that TensorRT accepts the result needs a GPU (test_tensorrt_gpu.py).
"""

from __future__ import annotations

import json
import sys
import types

import pytest

from dnx.core.errors import DnxError
from dnx.runtime.backends import tensorrt_compat as compat
from dnx.runtime.tensorrt import builder
from dnx.runtime.tensorrt.builder import BuildOptions, build_engine
from dnx.runtime.backends.tensorrt_compat import TensorRTError
from dnx.runtime.tensorrt.timing_cache import attach_timing_cache, write_timing_cache


@pytest.mark.parametrize("version", ["10.0.1", "10.8.0.43"])
@pytest.mark.parametrize("choice, level", [("none", "NONE"), ("ampere+", "AMPERE_PLUS")])
def test_levels_that_exist_work_on_releases_without_same_compute_capability(fake_trt, version, choice, level):
    trt = fake_trt(version)
    assert not hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")
    assert compat.hardware_compatibility_level(trt, choice) is trt.HardwareCompatibilityLevel[level]


@pytest.mark.parametrize("version", ["10.0.1", "10.8.0.43"])
def test_same_cc_is_refused_clearly_before_10_9(fake_trt, version):
    with pytest.raises(DnxError, match=rf"same-cc needs TensorRT 10\.9 or newer; this machine has TensorRT "
                                       rf"{version}: upgrade TensorRT, or use --hardware-compat ampere\+") as info:
        compat.hardware_compatibility_level(fake_trt(version), "same-cc")
    assert info.value.exit_code == 1


@pytest.mark.parametrize("version", ["10.9.0.34", "10.16.1.11", "11.4.0.106"])
def test_same_cc_from_10_9(fake_trt, version):
    trt = fake_trt(version)
    assert compat.hardware_compatibility_level(trt, "same-cc") is trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY


def test_trt_version_reads_every_part():
    assert compat.trt_version(types.SimpleNamespace(__version__="10.8.0.43")) == (10, 8, 0, 43)
    assert compat.trt_version(types.SimpleNamespace(__version__="10.0.1")) >= compat.MIN_VERSION


def fp32_onnx(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_build_refuses_same_cc_on_10_8_before_converting(tmp_path, fake_cuda, fake_trt, monkeypatch):
    """The refusal comes right after TensorRT is found: no FP16 conversion, no Builder, nothing written."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("10.8.0.43"))  # its Builder() fails the test
    monkeypatch.setattr(builder, "run_plan", lambda plan: pytest.fail("converted before refusing same-cc"))
    source = fp32_onnx(tmp_path / "m.onnx")
    with pytest.raises(DnxError, match="same-cc needs TensorRT 10.9"):
        build_engine(source, tmp_path / "m.engine", BuildOptions(precision="fp16", hardware_compat="same-cc"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


class RecordingConfig:
    """A builder config that records what dnx sets and answers like TensorRT would."""

    def __init__(self, accepts_cache=True, creates_cache=True, profile_index=0):
        self.calls = []
        self.accepts_cache, self.creates_cache, self.profile_index = accepts_cache, creates_cache, profile_index

    def __setattr__(self, name, value):
        if name not in ("calls", "accepts_cache", "creates_cache", "profile_index"):
            self.calls.append(("set", name, value))
        object.__setattr__(self, name, value)

    def set_memory_pool_limit(self, pool, size):
        self.calls.append(("pool", pool, size))

    def set_flag(self, flag):
        self.calls.append(("set_flag", flag))

    def clear_flag(self, flag):
        self.calls.append(("clear_flag", flag))

    def create_timing_cache(self, data):
        self.calls.append(("create_timing_cache", bytes(data)))
        if not self.creates_cache:
            return None
        return types.SimpleNamespace(data=bytes(data), serialize=lambda: b"timings:" + bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.calls.append(("set_timing_cache", cache.data, ignore_mismatch))
        return self.accepts_cache or not cache.data

    def add_optimization_profile(self, profile):
        return self.profile_index


@pytest.mark.parametrize("precision, tf32_cleared", [("fp32", True), ("fp16", False), ("int8", False)])
def test_configure_sets_the_level_asked_for_and_clears_tf32_for_fp32(fake_trt, precision, tf32_cleared):
    trt = fake_trt("10.0.1")
    config = RecordingConfig()
    level = compat.hardware_compatibility_level(trt, "none")
    builder._configure(trt, config, BuildOptions(precision=precision, workspace=2**30), level)
    assert ("set", "hardware_compatibility_level", trt.HardwareCompatibilityLevel.NONE) in config.calls
    assert ("pool", trt.MemoryPoolType.WORKSPACE, 2**30) in config.calls
    assert (("clear_flag", trt.BuilderFlag.TF32) in config.calls) == tf32_cleared


FACTS = {"tensorrt_version": "10.16.1.11", "gpu_name": "NVIDIA H200", "compute_capability": "9.0"}


def test_timing_cache_round_trip_writes_a_sidecar_and_is_reused(tmp_path):
    path = tmp_path / "timing.cache"
    notes = []
    cache = attach_timing_cache(RecordingConfig(), path, FACTS, notes)  # no file yet: an empty cache
    assert cache.data == b"" and notes == []
    write_timing_cache(path, cache, FACTS)
    assert json.loads((tmp_path / "timing.cache.json").read_text()) == FACTS
    config = RecordingConfig()
    assert attach_timing_cache(config, path, FACTS, notes).data == b"timings:" and notes == []


@pytest.mark.parametrize("sidecar", [None, {**FACTS, "tensorrt_version": "10.8.0.43"},
                                     {**FACTS, "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}])
def test_a_cache_from_another_tensorrt_or_gpu_is_not_fed_to_tensorrt_and_the_rebuild_is_noted(tmp_path, sidecar):
    path = tmp_path / "timing.cache"
    path.write_bytes(b"old timings")
    if sidecar is not None:
        (tmp_path / "timing.cache.json").write_text(json.dumps(sidecar))
    config, notes = RecordingConfig(), []
    assert attach_timing_cache(config, path, FACTS, notes).data == b""
    assert ("create_timing_cache", b"old timings") not in config.calls
    (note,) = notes
    assert note.startswith(f"timing cache {path} was not made with TensorRT 10.16.1.11 on NVIDIA H200")


def test_a_cache_tensorrt_refuses_is_rebuilt_with_a_note(tmp_path):
    path = tmp_path / "timing.cache"
    write_timing_cache(path, types.SimpleNamespace(serialize=lambda: b"damaged"), FACTS)
    config, notes = RecordingConfig(accepts_cache=False), []
    assert attach_timing_cache(config, path, FACTS, notes).data == b""
    assert notes == [f"TensorRT could not use timing cache {path}; it was rebuilt"]


def test_create_timing_cache_returning_none_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(TensorRTError,
                       match=r"could not create a timing cache.*without --timing-cache \[trt-timing-cache\]"):
        attach_timing_cache(RecordingConfig(creates_cache=False), tmp_path / "t.cache", FACTS, [])


def test_an_invalid_optimization_profile_is_refused(tmp_path, fake_trt):
    """``add_optimization_profile`` answers -1 for a profile TensorRT finds invalid: dnx stops there."""
    trt = fake_trt("10.0.1")
    tensor = types.SimpleNamespace(name="input", shape=(-1, 3, 8, 8), dtype=trt.DataType.FLOAT)
    network = types.SimpleNamespace(num_inputs=1, num_outputs=0, get_input=lambda i: tensor)
    config = RecordingConfig(profile_index=-1)
    trt.Builder = lambda logger: types.SimpleNamespace(
        create_network=lambda flags: network, create_builder_config=lambda: config,
        create_optimization_profile=lambda: types.SimpleNamespace(set_shape=lambda *shape: None),
        build_serialized_network=lambda *a: pytest.fail("built with an invalid profile"))
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda path: True)
    with pytest.raises(TensorRTError, match=r"refused the optimization profile .*--max-batch \[trt-profile\]"):
        builder._build_serialized(trt, tmp_path / "m.onnx", BuildOptions(), None, [], FACTS)
    assert not any(call[0] == "create_timing_cache" for call in config.calls)
