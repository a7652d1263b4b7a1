"""Engine manifests, compatibility checks and the runner's refusals before it deserializes anything.

Pure dnx logic on CPU; where a tensorrt module is needed, ``fake_trt`` (tests/runtime/conftest.py)
stands in. It is NOT TensorRT and none of these tests is TensorRT coverage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError
from dnx.schemas import engine_manifest as em
from dnx.schemas.engine_manifest import (
    ENGINE_SCHEMA, EngineMismatchError, check_engine_compatible, check_engine_digest, read_engine_manifest)
from dnx.runtime.backends import tensorrt_runner
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner

# -- engine manifests and compatibility -----------------------------------------------------------

FACTS = {"tensorrt_version": "10.16.1.11", "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}


def test_same_machine_is_compatible(engine_manifest):
    assert check_engine_compatible(engine_manifest(), FACTS) == []


@pytest.mark.parametrize("changes, facts, match", [
    ({}, {"tensorrt_version": "11.4.0.106"}, r"built with TensorRT 10\.16\.1\.11 on sm_89.*this machine has "
                                             r"TensorRT 11\.4\.0\.106.*TensorRT versions differ"),
    ({}, {"tensorrt_version": "10.16.0.1"}, "TensorRT versions differ"),
    ({}, {"compute_capability": "9.0", "gpu_name": "H100"}, "sm_90.*architectures differ.*--hardware-compat ampere\\+"),
    ({"hardware_compat": "same-cc"}, {"compute_capability": "8.6"}, "architectures differ"),
    ({"hardware_compat": "ampere+"}, {"compute_capability": "7.5"}, "Ampere or newer"),
    ({"version_compat": True}, {"tensorrt_version": "10.15.0.1"},
     r"version-compatible only with TensorRT 10\.x from 10\.16\.1\.11 on and TensorRT 11\.x"),
    ({"version_compat": True, "tensorrt_version": "11.4.0.106"}, {"tensorrt_version": "10.16.1.11"},
     r"version-compatible only with TensorRT 11\.x from 11\.4\.0\.106 on;"),
    ({"version_compat": True, "tensorrt_version": "11.0.0.114"}, {"tensorrt_version": "12.0.0.1"},
     "version-compatible only with TensorRT 11.x"),
])
def test_mismatches_are_refused_with_the_rebuild_command(changes, facts, match, engine_manifest):
    with pytest.raises(EngineMismatchError, match=match) as info:
        check_engine_compatible(engine_manifest(**changes), {**FACTS, **facts}, "m.fp16.engine")
    message = str(info.value)
    assert message.startswith("m.fp16.engine was built with") and "\n" not in message
    assert message.endswith("rebuild it on this machine with `dnx build m.onnx --precision fp16 -o m.fp16.engine`")


@pytest.mark.parametrize("changes, facts", [
    ({"hardware_compat": "ampere+"}, {"compute_capability": "9.0", "gpu_name": "H100"}),
    ({"hardware_compat": "ampere+"}, {"compute_capability": "8.0", "gpu_name": "A100"}),
    ({"version_compat": True}, {"tensorrt_version": "10.17.0.3"}),
    ({"version_compat": True}, {"tensorrt_version": "11.4.0.106"}),  # 10 -> 11: NVIDIA supports it
    ({"hardware_compat": "same-cc"}, {"gpu_name": "NVIDIA RTX 4090"}),
])
def test_compatibility_options_widen_what_runs(changes, facts, engine_manifest):
    assert check_engine_compatible(engine_manifest(**changes), {**FACTS, **facts}) == []


# The rule as one table that the C++ test (runtime/cpp/tests/test_manifest.cpp) reads too.
COMPAT_TABLE = json.loads((Path(__file__).with_name("engine_compat_cases.json")).read_text())


def test_across_majors_is_the_shared_table():
    assert [list(p) for p in em.VERSION_COMPAT_ACROSS_MAJORS] == COMPAT_TABLE["across_majors"]


def test_version_compat_help_states_the_rule():
    from dnx.cli.build import build_cmd
    from dnx.runtime.backends.tensorrt_compat import SUPPORTED_MAJORS

    help_text = next(p.help for p in build_cmd.params if p.name == "version_compat")
    assert "same major version" in help_text
    for built, runtime in COMPAT_TABLE["across_majors"]:
        if built in SUPPORTED_MAJORS:  # dnx builds with 10.x and 11.x only
            assert f"{runtime}.x for an engine built with {built}.x" in help_text
    assert "version-compatible=true" in help_text  # what Triton needs for such an engine


@pytest.mark.parametrize("case", COMPAT_TABLE["cases"], ids=lambda c: (f"{c['built']}@{c['cc']}"
                         f"{'+vc' if c.get('version_compat') else ''}"
                         f"{'+' + c['hardware_compat'] if 'hardware_compat' in c else ''}"
                         f"->{c['here']}@{c['here_cc']}"))
def test_compatibility_rule_table(case, engine_manifest):
    manifest = engine_manifest(tensorrt_version=case["built"], gpu={"name": "GPU A", "compute_capability": case["cc"]},
                               version_compat=case.get("version_compat", False),
                               hardware_compat=case.get("hardware_compat", "none"))
    facts = {"tensorrt_version": case["here"], "compute_capability": case["here_cc"], "gpu_name": "GPU A"}
    if case.get("runs"):
        assert check_engine_compatible(manifest, facts) == []
    else:
        with pytest.raises(EngineMismatchError) as info:
            check_engine_compatible(manifest, facts)
        assert case["refused"] in str(info.value)


def test_another_gpu_of_the_same_architecture_runs_with_a_warning(engine_manifest):
    (warning,) = check_engine_compatible(engine_manifest(), {**FACTS, "gpu_name": "NVIDIA RTX 4090"})
    assert "built on NVIDIA L4 and runs on NVIDIA RTX 4090" in warning


def test_manifest_round_trip_and_digest(tmp_path, fake_engine, engine_manifest):
    written = fake_engine(tmp_path / "m.engine")
    assert read_engine_manifest(tmp_path / "m.engine") == written
    assert written.engine_bytes == len(b"not a real engine")
    check_engine_digest(written, written.engine_sha256, tmp_path / "m.engine")
    with pytest.raises(EngineMismatchError, match="does not match its manifest.*dnx build m.onnx"):
        check_engine_digest(written, "0" * 64, tmp_path / "m.engine")


def test_unreadable_or_missing_manifests(tmp_path, engine_manifest):
    engine = tmp_path / "m.engine"
    with pytest.raises(DnxError, match="does not exist"):
        read_engine_manifest(engine)
    engine.write_bytes(b"x")
    with pytest.raises(EngineMismatchError, match="has no manifest m.engine.json"):
        read_engine_manifest(engine)
    assert read_engine_manifest(engine, required=False) is None
    (tmp_path / "m.engine.json").write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(EngineMismatchError, match="not a dnx engine manifest"):
        read_engine_manifest(engine)
    (tmp_path / "m.engine.json").write_text(json.dumps({"schema": ENGINE_SCHEMA}))
    with pytest.raises(EngineMismatchError,
                       match=r"^\S*m.engine.json: tensorrt_version is missing; rebuild the engine"):
        read_engine_manifest(engine)
    (tmp_path / "m.engine.json").write_text(json.dumps({"schema": ENGINE_SCHEMA, "tensorrt_version": "10.8",
                                                        "gpu": {"compute_capability": "eight"}}))
    with pytest.raises(EngineMismatchError, match=r"gpu.compute_capability must match"):
        read_engine_manifest(engine)


# -- the runner refuses before deserializing ------------------------------------------------------

def test_runner_without_cuda(tmp_path, no_cuda, fake_engine):
    fake_engine(tmp_path / "m.engine")
    with pytest.raises(NoDeviceError, match="^no CUDA device found"):
        TensorRTRunner(tmp_path / "m.engine").activate()


def test_runner_without_tensorrt(tmp_path, fake_cuda, monkeypatch, fake_engine):
    fake_engine(tmp_path / "m.engine")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError, match=r"^TensorRT is not installed: pip install 'dnx\[trt\]'$"):
        TensorRTRunner(tmp_path / "m.engine").activate()


def test_runner_without_manifest_refuses_before_importing_tensorrt(tmp_path, fake_cuda, monkeypatch,
                                                                   untouchable_trt):
    (tmp_path / "m.engine").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "tensorrt", untouchable_trt)
    with pytest.raises(EngineMismatchError, match="has no manifest"):
        TensorRTRunner(tmp_path / "m.engine").activate()


@pytest.mark.parametrize("facts, tamper, match", [
    ({"tensorrt_version": "11.4.0.106"}, False, "TensorRT versions differ"),
    ({"compute_capability": "9.0"}, False, "architectures differ"),
    ({}, True, "does not match its manifest"),
])
def test_runner_refuses_a_mismatch_before_creating_a_runtime(tmp_path, fake_cuda, fake_trt, monkeypatch, facts, tamper,
                                                             match, fake_engine):
    fake_engine(tmp_path / "m.engine")
    if tamper:
        (tmp_path / "m.engine").write_bytes(b"another engine")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())  # its Runtime() fails the test
    # the runner's own reference: it imports machine_facts from dnx.schemas.engine_manifest at module top
    monkeypatch.setattr(tensorrt_runner, "machine_facts", lambda trt, device=0: {**FACTS, **facts})
    runner = TensorRTRunner(tmp_path / "m.engine")
    with pytest.raises(EngineMismatchError, match=match):
        runner.activate()
    assert not runner.is_active
