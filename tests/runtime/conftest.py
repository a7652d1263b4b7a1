"""Stand-ins for dnx's TensorRT control-flow tests (test_tensorrt_*.py): NOT TensorRT, NOT CUDA.

``fake_trt(version)`` builds just enough of a tensorrt module for dnx's branching; it mimics which
names exist in which release (``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` only from 10.9,
as in the bindings lists) so version handling can be tested. ``fake_cuda`` makes torch report one
or more CUDA devices and records which device was current (``fake_cuda.current``) without calling CUDA.
``engine_manifest(**changes)`` is a dnx engine manifest (an ``EngineManifest``) built on an L4 with TensorRT 10.16;
``fake_engine(path, **changes)`` writes junk engine bytes with such a manifest beside them.
"""

from __future__ import annotations

import contextlib
import enum
import sys
import types

import pytest


class _Untouchable(types.ModuleType):
    """A ``tensorrt`` entry in sys.modules that fails the test if dnx touches it in any way."""

    def __getattr__(self, name):
        raise AssertionError(f"dnx touched tensorrt.{name} before checking for a device")


def fake_tensorrt(version: str = "10.16.1.11") -> types.ModuleType:
    """NOT TensorRT: just enough module for dnx's control flow; creating a Runtime or Builder fails."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    release = tuple(int(p) for p in version.split(".")[:2])

    def refuse(*args, **kwargs):
        raise AssertionError("dnx created a TensorRT object where it should have refused first")

    trt.Runtime = trt.Builder = refuse
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    trt.DataType = enum.Enum("DataType", "FLOAT HALF INT8 BF16 INT4")
    levels = ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if release >= (10, 9) else [])
    trt.HardwareCompatibilityLevel = enum.Enum("HardwareCompatibilityLevel", levels)
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    trt.BuilderFlag = enum.Enum("BuilderFlag", "TF32 VERSION_COMPATIBLE")
    trt.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", "LAYER_NAMES_ONLY DETAILED")

    class ILogger:
        Severity = enum.IntEnum("Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3})

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    trt.ILogger, trt.IProgressMonitor = ILogger, IProgressMonitor
    return trt


@pytest.fixture
def fake_trt():
    """The :func:`fake_tensorrt` factory."""
    return fake_tensorrt


@pytest.fixture
def untouchable_trt():
    return _Untouchable("tensorrt")


@pytest.fixture
def no_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "tensorrt", _Untouchable("tensorrt"))


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports two CUDA devices; ``torch.cuda.device(i)`` only records ``i`` as current."""
    import torch

    state = types.SimpleNamespace(current=None, entered=[])

    @contextlib.contextmanager
    def device(index):
        previous, state.current = state.current, index
        state.entered.append(index)
        try:
            yield
        finally:
            state.current = previous

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "device", device)
    return state


def _engine_manifest_json(**changes) -> dict:
    from dnx.schemas.engine_manifest import ENGINE_SCHEMA

    manifest = {"schema": ENGINE_SCHEMA, "tensorrt_version": "10.16.1.11", "precision": "fp16",
                "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"}, "hardware_compat": "none",
                "version_compat": False, "build_command": "dnx build m.onnx --precision fp16 -o m.fp16.engine"}
    return {**manifest, **changes}


def _engine_manifest(**changes):
    from dnx.schemas.engine_manifest import EngineManifest

    return EngineManifest.from_dict(_engine_manifest_json(**changes))


@pytest.fixture
def engine_manifest():
    return _engine_manifest


@pytest.fixture
def fake_engine():
    from dnx.schemas.engine_manifest import write_engine_manifest

    def write(path, **changes) -> dict:
        path.write_bytes(b"not a real engine")
        return write_engine_manifest(path, _engine_manifest_json(**changes))

    return write
