"""The backend table drives dnx.load, dnx bench and the GPU check; the Runner contract is one for every runner.

The CPU rows run for real (onnxruntime, OpenVINO where installed, torch) on tiny models; the CUDA and
TensorRT rows are only constructed here (no GPU, no TensorRT): their runner classes and names are
checked, never their runs.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

import numpy as np
import pytest

import dnx
from dnx.benchmarks import backends as bench_backends
from dnx.benchmarks import gpu_check
from dnx.benchmarks.harness import BenchConfig
from dnx.core.errors import DnxError
from dnx.runtime.artifact import open_artifact
from dnx.runtime.backends import table
from dnx.runtime.backends.base import Runner
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.runtime.backends.openvino_runner import OpenVINORunner
from dnx.runtime.backends.table import ALIASES, Backend, RunOptions, TABLE, TorchModel, resolve, resolve_name
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner
from dnx.runtime.backends.torch_runner import TorchRunner
from dnx.runtime.selection import LOAD_ROWS, choose_backend, make_runner

ROOT = Path(__file__).resolve().parents[3]
RUNNERS = (TorchRunner, OnnxRuntimeRunner, OpenVINORunner, TensorRTRunner)
DEVICE_SIDE = ("load_inputs", "infer_device", "fetch_outputs")


def tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["conv"]),
                               helper.make_node("Flatten", ["conv"], ["logits"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 5, 5])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 36])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


# -- the table itself -----------------------------------------------------------------------------

def test_every_row_is_named_backend_device_variant():
    for name, row in TABLE.items():
        assert name == row.name and row.backend in ("torch", "onnxruntime", "openvino", "tensorrt"), row
        assert row.device in ("cpu", "cuda") and re.fullmatch(rf"{row.backend}-{row.device}(-[a-z0-9]+)?", name), row
    # the plain row of each backend and device is what `--backend B --device D` runs
    assert {table.row_for(r.backend, r.device).name for r in TABLE.values()} <= set(TABLE)


def test_the_docstring_documents_every_row():
    documented = re.findall(r"^([a-z0-9-]+) +(torch|onnxruntime|openvino|tensorrt) +(cpu|cuda) +([a-z0-9-]+) ",
                            table.__doc__, re.M)
    assert documented == [(r.name, r.backend, r.device, r.file) for r in TABLE.values()]


def test_old_names_resolve_with_one_deprecation_note(monkeypatch, capsys):
    monkeypatch.setattr(table, "_WARNED", set())
    assert resolve_name("ort-cpu") == "onnxruntime-cpu" and resolve_name("ort-cpu") == "onnxruntime-cpu"
    assert capsys.readouterr().err == "dnx: note: backend name 'ort-cpu' is deprecated; use 'onnxruntime-cpu'\n"
    # bench's device-dependent old names meant CUDA where there was one
    assert (resolve_name("torch", cuda=False), resolve_name("torch", cuda=True)) == ("torch-cpu", "torch-cuda")
    assert (resolve_name("ort-fp16", cuda=False), resolve_name("ort-fp16", cuda=True)) == (
        "onnxruntime-cpu-fp16", "onnxruntime-cuda-fp16")
    capsys.readouterr()
    assert resolve_name("onnxruntime-cuda") == "onnxruntime-cuda" and capsys.readouterr().err == ""
    for old, rows in ALIASES.items():
        assert set(rows) <= set(TABLE), old
    with pytest.raises(DnxError, match=r"unknown backend 'ort-gpu' \(did you mean onnxruntime-cpu\?\)"):
        resolve_name("ort-gpu")


def test_availability_names_what_is_missing():
    assert TABLE["onnxruntime-cpu"].available() == (True, "")
    assert TABLE["torch-cpu"].missing() == []
    if not table.cuda_available():
        assert TABLE["torch-cuda"].missing() == [table.NO_CUDA]
        with pytest.raises(table.UnavailableBackend, match="^tensorrt-cuda unavailable: no CUDA device found"):
            TABLE["tensorrt-cuda"].require()


def test_a_row_refuses_the_wrong_kind_of_source(tmp_path):
    with pytest.raises(DnxError, match="torch-cpu runs a torch model"):
        TABLE["torch-cpu"].runner(tmp_path / "m.onnx")
    with pytest.raises(DnxError, match="onnxruntime-cpu runs a file"):
        TABLE["onnxruntime-cpu"].runner(TorchModel(object()))


# -- the three readers ----------------------------------------------------------------------------

def _fake_bench_artifacts(tmp_path: Path):
    """What bench's make_runner reads of its prepared files: a path per file kind, and the model."""
    import torch

    model = types.SimpleNamespace(model=torch.nn.Conv2d(1, 4, 3), config=types.SimpleNamespace(in_channels=1))
    return types.SimpleNamespace(workdir=tmp_path, input_name="input", output_name="logits", model=lambda: model,
                                 path_for=lambda kind: (tmp_path / f"{kind}.file", "fp32"))


def test_bench_and_load_make_the_same_runner_for_the_same_name(tmp_path, monkeypatch):
    """Every row, as bench makes it (availability waived: no row runs here) and, for the rows dnx.load
    may pick, as dnx.load makes it: one class, and the runner carries the row's name."""
    monkeypatch.setattr(Backend, "require", lambda self: self)
    art = _fake_bench_artifacts(tmp_path)
    artifact = types.SimpleNamespace(path=tmp_path / "m.onnx", kind="onnx", precision="fp32", calibration_target=None)
    for name, row in TABLE.items():
        runner, _, device, _ = bench_backends.make_runner(row, art, BenchConfig(target="m"))
        assert runner.name == name and device == row.device
        if name in LOAD_ROWS:
            artifact.kind = "engine" if row.takes == "engine" else "onnx"
            choice = choose_backend(artifact, backend=name)
            assert choice.row is row and (choice.backend, choice.device) == (row.backend, row.device)
            loaded = make_runner(artifact, choice)
            assert type(loaded) is type(runner) and loaded.name == name
            by_backend = choose_backend(artifact, backend=row.backend, device=row.device)
            assert by_backend.row is row


def test_bench_names_and_defaults_are_rows():
    for has_cuda in (False, True):
        for engine in (False, True):
            assert set(bench_backends.default_backends(has_cuda, engine, has_openvino=True)) <= set(TABLE)
    BenchConfig(target="m", backends=tuple(TABLE)).validate()
    BenchConfig(target="m", backends=tuple(ALIASES)).validate()  # old names still accepted


def test_gpu_check_paths_are_rows():
    for name, path in gpu_check.PATHS.items():
        assert path.backend in TABLE and name.startswith(path.backend)
    assert set(gpu_check.ESTIMATE_S) == set(gpu_check.PATHS)


def test_load_takes_a_row_name_and_refuses_bench_only_rows(fmnist_onnx, monkeypatch):
    monkeypatch.setattr(table, "_WARNED", set())
    art = open_artifact(fmnist_onnx)
    assert choose_backend(art, backend="onnxruntime-cpu").reason == "asked for"
    with pytest.raises(DnxError, match="onnxruntime-cpu-int8 is a `dnx bench` backend"):
        choose_backend(art, backend="onnxruntime-cpu-int8")
    with pytest.raises(DnxError, match="openvino-cpu runs on cpu, not device='cuda'"):
        choose_backend(art, backend="openvino-cpu", device="cuda")
    with dnx.load(fmnist_onnx, backend="ort-cpu") as clf:  # an old name: its row, with a note
        info = clf.info()
    assert (info["backend"], info["device"], info["runner"]) == ("onnxruntime", "cpu", "onnxruntime-cpu")


# -- one Runner contract --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", RUNNERS, ids=lambda c: c.__name__)
def test_the_device_side_is_declared_once_and_overridden_whole(cls):
    """A runner is device-resident exactly when it overrides all of the device side, with the base's signatures."""
    overridden = [m for m in DEVICE_SIDE if getattr(cls, m) is not getattr(Runner, m)]
    assert overridden == (list(DEVICE_SIDE) if cls.device_resident else []), cls
    for method in (*DEVICE_SIDE, "output_names", "input_metadata"):
        assert str(inspect.signature(getattr(cls, method))) == str(inspect.signature(getattr(Runner, method))), method
    assert isinstance(inspect.getattr_static(cls, "uses_cuda"), property)
    assert cls.device_resident == (cls is not OpenVINORunner)


def test_callers_of_runners_ask_the_contract_instead_of_probing():
    """No hasattr/getattr on a runner in the latency code, bench or the GPU check."""
    for path in ("runtime/backends/latency.py", "benchmarks/harness.py", "benchmarks/gpu_check.py",
                 "runtime/classifier.py"):
        tree = ast.parse((ROOT / path).read_text())
        probes = [node.lineno for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("hasattr", "getattr") and node.args
                  and "runner" in ast.unparse(node.args[0])]
        assert not probes, f"{path}: lines {probes}"


def _cpu_sources(tmp_path: Path) -> dict[str, object]:
    import torch

    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())
    sources = {"onnxruntime-cpu": onnx_path, "torch-cpu": TorchModel(module, in_channels=1)}
    if TABLE["openvino-cpu"].available()[0]:
        sources["openvino-cpu"] = onnx_path
    return sources


def test_every_cpu_runner_has_output_names_and_a_device_side_that_matches_infer(tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    for name, source in _cpu_sources(tmp_path).items():
        with resolve(name).runner(source, RunOptions(threads=1)) as runner:
            out = runner.infer({"input": x})
            assert runner.output_names() == list(out) == ["logits"], name
            assert out["logits"].shape == (2, 36) and runner.uses_cuda is False and runner.name == name
            if runner.device_resident:
                runner.load_inputs({"input": x})
                assert runner.infer_device() is None  # CPU: nobody times a device stream
                np.testing.assert_allclose(runner.fetch_outputs()["logits"], out["logits"], rtol=1e-6, atol=1e-6)
            else:
                with pytest.raises(DnxError, match=f"{name} cannot keep inputs on a device"):
                    runner.load_inputs({"input": x})
