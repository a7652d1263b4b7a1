"""dnx's own TensorRT control flow, on CPU: graph selection, batch profiles, option checks, inspect,
the CLI and the refusals that must happen before any TensorRT object exists (engine manifests and
the runner's refusals: test_tensorrt_manifest.py).

Where a tensorrt module is needed to reach a code path, ``fake_trt`` (tests/runtime/conftest.py)
stands in. It is NOT TensorRT and none of these tests is TensorRT coverage: they prove what dnx
decides and in which order, never that TensorRT accepts it (that is ``test_tensorrt_gpu.py``, which
needs a GPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError
from dnx.runtime.backends import tensorrt_compat as compat
from dnx.runtime.tensorrt import builder
from dnx.runtime.tensorrt.builder import (
    BuildOptions, build_command, build_engine, graph_precision, parse_size, plan_graph, profile_shapes, select_graph)
from dnx.runtime.tensorrt.inspect import inspect_engine, inspect_onnx, summarize_layers

TRT_MODULES = ["dnx.runtime.backends.tensorrt_compat", "dnx.runtime.tensorrt.builder",
               "dnx.runtime.backends.tensorrt_runner",
               "dnx.runtime.tensorrt.inspect", "dnx.schemas.engine_manifest",
               "dnx.runtime.tensorrt.timing_cache"]


# -- files ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    """A real dnx export (densenet40_k12, 32x32, dynamic batch, random weights): 1-2 s."""
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    path = tmp_path_factory.mktemp("onnx") / "d40.onnx"
    export_onnx(create_model("densenet40_k12", use_bundled=False), path, ExportOptions(verify=False))
    return path


def tiny_onnx(path, qdq: bool = False, fp16: bool = False, batch="N"):
    """A hand-made Conv graph, optionally with Q/DQ on its input and an FP16 section."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")]
    nodes, x = [], "input"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "zero")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xdq"])]
        x = "xdq"
    nodes.append(helper.make_node("Conv", [x, "w"], ["conv" if fp16 else "logits"]))
    if fp16:
        inits.append(numpy_helper.from_array(np.ones((1,), np.float16), "b16"))
        nodes += [helper.make_node("Cast", ["conv"], ["c16"], to=TensorProto.FLOAT16),
                  helper.make_node("Add", ["c16", "b16"], ["a16"]),
                  helper.make_node("Cast", ["a16"], ["logits"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4, 6, 6])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def recorded_calibration(monkeypatch):
    """Replace convert_fp16/calibrate_qdq by recorders (their real work is tested in tests/calibration)."""
    calls = []

    def convert_fp16(source, output):
        calls.append(("convert_fp16", source, output, {}))
        return types.SimpleNamespace(path=output, manifest={"precision": "fp16"})

    def calibrate_qdq(source, output, data, **kwargs):
        calls.append(("calibrate_qdq", source, output, {"data": data, **kwargs}))
        return types.SimpleNamespace(path=output, manifest={"precision": "int8"}, notes=["recorded"])

    # the builder's own references: it imports both at module top
    monkeypatch.setattr(builder, "convert_fp16", convert_fp16)
    monkeypatch.setattr(builder, "calibrate_qdq", calibrate_qdq)
    return calls


# -- options and profiles -------------------------------------------------------------------------

@pytest.mark.parametrize("options, params", [
    (BuildOptions(precision="int4"), ("precision",)),
    (BuildOptions(opt_level=6), ("opt_level",)),
    (BuildOptions(opt_level=-1), ("opt_level",)),
    (BuildOptions(hardware_compat="turing+"), ("hardware_compat",)),
    (BuildOptions(workspace=0), ("workspace",)),
    (BuildOptions(min_batch=0), ("min_batch",)),
    (BuildOptions(min_batch=8, opt_batch=4), ("min_batch", "opt_batch", "max_batch")),
    (BuildOptions(opt_batch=16, max_batch=8), ("min_batch", "opt_batch", "max_batch")),
])
def test_bad_options_name_the_option(options, params):
    """Each error names the fields it is about (the CLI writes its flags in their place)."""
    with pytest.raises(DnxError) as info:
        options.validate()
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    assert info.value.params == params and all(p in str(info.value) for p in params)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, (1, 8, 32)),
    ({"max_batch": 4}, (1, 4, 4)),
    ({"opt_batch": 64}, (1, 64, 64)),
    ({"min_batch": 16}, (16, 16, 32)),
    ({"min_batch": 2, "opt_batch": 3, "max_batch": 5}, (2, 3, 5)),
])
def test_batch_range_defaults_follow_the_given_bounds(kwargs, expected):
    assert BuildOptions(**kwargs).batch_range() == expected


@pytest.mark.parametrize("shape", [["N", 3, 224, 224], (-1, 3, 224, 224), [None, 3, 224, 224]])
def test_profile_of_a_dynamic_batch_input(shape):
    p = profile_shapes(shape, BuildOptions(min_batch=2, max_batch=16))
    assert (p.min, p.opt, p.max) == ((2, 3, 224, 224), (8, 3, 224, 224), (16, 3, 224, 224))


def test_profile_of_a_fixed_batch_input_is_that_batch():
    p = profile_shapes([4, 1, 28, 28], BuildOptions())
    assert p.min == p.opt == p.max == (4, 1, 28, 28)
    assert profile_shapes([4, 1, 28, 28], BuildOptions(max_batch=4)).max == (4, 1, 28, 28)
    with pytest.raises(DnxError, match=r"fixed batch of 4.*max_batch 8.*--batch dynamic"):
        profile_shapes([4, 1, 28, 28], BuildOptions(max_batch=8))


def test_profile_refuses_dynamic_image_sizes():
    with pytest.raises(DnxError, match="fixed --image-size"):
        profile_shapes(["N", 3, "H", "W"], BuildOptions())


@pytest.mark.parametrize("text, size", [("4GiB", 4 * 2**30), ("512MiB", 512 * 2**20), ("2GB", 2 * 10**9),
                                        ("1.5GiB", 3 * 2**29), ("1000", 1000), ("64 kib", 65536)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["4 gigs", "GiB", "-1GiB", ""])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(DnxError, match="^workspace must be a size"):
        parse_size(text)


def test_build_command_reproduces_the_options():
    options = BuildOptions(precision="int8", max_batch=16, opt_level=5, hardware_compat="ampere+",
                           version_compat=True)
    command = build_command("m.onnx", "m.int8.engine", options, calib_data="imgs dir")
    assert command == ("dnx build m.onnx --precision int8 --max-batch 16 --opt-level 5 --hardware-compat ampere+ "
                       "--version-compat --calib-data 'imgs dir' -o m.int8.engine")


# -- which graph is built -------------------------------------------------------------------------

def test_graph_precision_reads_the_types(small_onnx, tmp_path):
    assert graph_precision(small_onnx) == "fp32"
    assert graph_precision(tiny_onnx(tmp_path / "fp16.onnx", fp16=True)) == "fp16"
    assert graph_precision(tiny_onnx(tmp_path / "q.onnx", qdq=True)) == "int8"
    assert graph_precision(tiny_onnx(tmp_path / "b.onnx", qdq=True, fp16=True)) == "best"


def test_fp32_builds_the_file_itself(small_onnx, tmp_path, recorded_calibration):
    graph = select_graph(small_onnx, "fp32", workdir=tmp_path)
    assert (graph.path, graph.action) == (small_onnx, "as-is") and not recorded_calibration


def test_fp16_converts(small_onnx, tmp_path, recorded_calibration):
    graph = select_graph(small_onnx, "fp16", workdir=tmp_path)
    assert graph.path == tmp_path / "d40.fp16.onnx" and graph.action == "convert-fp16"
    assert recorded_calibration == [("convert_fp16", small_onnx, tmp_path / "d40.fp16.onnx", {})]


@pytest.mark.parametrize("precision, high", [("int8", None), ("best", "fp16")])
def test_int8_and_best_calibrate_for_tensorrt(small_onnx, tmp_path, recorded_calibration, precision, high):
    graph = select_graph(small_onnx, precision, calib_data=tmp_path, calib_cache=tmp_path / "c.json", workdir=tmp_path)
    assert graph.path == tmp_path / f"d40.{precision}.onnx" and graph.action == "calibrate"
    assert graph.notes == ["recorded"]
    ((name, source, output, kwargs),) = recorded_calibration
    assert (name, source, output) == ("calibrate_qdq", small_onnx, graph.path)
    assert kwargs == {"data": tmp_path, "target": "tensorrt", "method": "entropy", "high_precision": high,
                      "cache_path": tmp_path / "c.json"}


@pytest.mark.parametrize("precision, qdq, fp16", [("int8", True, False), ("best", True, True), ("fp16", False, True)])
def test_a_graph_already_in_the_precision_is_built_as_is(tmp_path, recorded_calibration, precision, qdq, fp16):
    source = tiny_onnx(tmp_path / "m.onnx", qdq=qdq, fp16=fp16)
    graph = select_graph(source, precision, workdir=tmp_path)
    assert (graph.path, graph.action) == (source, "as-is") and not recorded_calibration


def test_calibration_options_on_a_calibrated_graph_are_noted(tmp_path):
    source = tiny_onnx(tmp_path / "m.onnx", qdq=True)
    plan = plan_graph(source, "int8", calib_data=tmp_path)
    assert plan.action == "as-is" and "already calibrated" in plan.notes[0]


@pytest.mark.parametrize("precision, qdq, fp16, match", [
    ("fp32", True, False, "already a int8 graph.*--precision int8"),
    ("fp16", True, False, "already a int8 graph"),
    ("best", True, False, "already a int8 graph.*FP32 export"),
    ("int8", True, True, "already a best graph.*--precision best"),
    ("int8", False, True, "already a fp16 graph"),
])
def test_precision_disagreeing_with_the_graph_is_refused(tmp_path, precision, qdq, fp16, match):
    with pytest.raises(DnxError, match=match):
        plan_graph(tiny_onnx(tmp_path / "m.onnx", qdq=qdq, fp16=fp16), precision)


def test_int8_needs_calibration_data(small_onnx, tmp_path):
    with pytest.raises(DnxError, match="precision int8 needs calibration images.*calib_data"):
        plan_graph(small_onnx, "int8", workdir=tmp_path)
    with pytest.raises(DnxError, match="calib_cache alone.*pass calib_data too"):
        plan_graph(small_onnx, "best", calib_cache=tmp_path / "c.json", workdir=tmp_path)
    with pytest.raises(DnxError, match="calibration data .*nowhere does not exist"):
        plan_graph(small_onnx, "int8", calib_data=tmp_path / "nowhere", workdir=tmp_path)


def test_calibration_data_without_int8_is_refused(small_onnx, tmp_path):
    with pytest.raises(DnxError, match="use them with precision int8 or best"):
        plan_graph(small_onnx, "fp16", calib_data=tmp_path, workdir=tmp_path)


def test_missing_or_unreadable_onnx(tmp_path):
    with pytest.raises(DnxError, match="does not exist"):
        plan_graph(tmp_path / "none.onnx", "fp32")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx")
    with pytest.raises(DnxError, match="not a readable ONNX file"):
        plan_graph(tmp_path / "junk.onnx", "fp32")


@pytest.fixture(scope="module")
def real_graphs(small_onnx, tmp_path_factory):
    """The real FP16 conversion and INT8 calibration (on the 5 bundled photos) of the small export."""
    pytest.importorskip("dnx.calibration.qdq", reason="dnx.calibration is not in this tree")
    from dnx.data.preprocess import bundled_photos

    workdir = tmp_path_factory.mktemp("graphs")
    photos = bundled_photos()[0].parent
    return {p: select_graph(small_onnx, p, calib_data=photos if p in ("int8", "best") else None, workdir=workdir)
            for p in ("fp16", "int8", "best")}


@pytest.mark.parametrize("precision", ["fp16", "int8", "best"])
def test_real_converted_graphs_have_the_precision_asked_for(real_graphs, precision):
    info = inspect_onnx(real_graphs[precision].path)
    assert info["precision"] == info["manifest_precision"] == precision
    assert (info["qdq_nodes"] > 0) == (precision != "fp16")
    assert info["inputs"][0]["dtype"] == info["outputs"][0]["dtype"] == "float32"


# -- refusals before any TensorRT object exists --------------------------------------------------

def test_build_without_cuda_says_so_before_touching_tensorrt(small_onnx, tmp_path, no_cuda, recorded_calibration):
    with pytest.raises(NoDeviceError, match="^no CUDA device found") as info:
        build_engine(small_onnx, tmp_path / "m.engine", BuildOptions(precision="fp16"), workdir=tmp_path)
    assert info.value.exit_code == 2
    assert not recorded_calibration and not list(tmp_path.iterdir())  # nothing converted, nothing written


def test_build_checks_options_before_the_device(small_onnx, tmp_path, no_cuda):
    with pytest.raises(DnxError, match="opt_level") as info:
        build_engine(small_onnx, tmp_path / "m.engine", BuildOptions(opt_level=7))
    assert info.value.exit_code == 1
    with pytest.raises(DnxError, match="needs calibration images") as info:
        build_engine(small_onnx, tmp_path / "m.engine", BuildOptions(precision="int8"))
    assert info.value.exit_code == 1
    with pytest.raises(DnxError, match="folder .* does not exist"):
        build_engine(small_onnx, tmp_path / "no" / "m.engine", BuildOptions())


def test_build_without_tensorrt_names_the_extra(small_onnx, tmp_path, fake_cuda, monkeypatch, recorded_calibration):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingDependencyError) as info:
        build_engine(small_onnx, tmp_path / "m.engine", BuildOptions(precision="fp16"), workdir=tmp_path)
    assert str(info.value) == "TensorRT is not installed: pip install 'dnx[trt]'" and info.value.exit_code == 2
    assert not recorded_calibration


def test_unsupported_tensorrt_version_is_refused(fake_cuda, monkeypatch, fake_trt):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("8.6.1"))
    with pytest.raises(MissingDependencyError, match="TensorRT 8.6.1 is not supported.*10.x and 11.x"):
        compat.import_tensorrt()


def test_trt_modules_import_without_tensorrt_or_torch():
    code = ("import sys\nsys.modules['tensorrt'] = None\n"
            + "".join(f"import {m}\n" for m in TRT_MODULES)
            + "print(sorted(m for m in ('tensorrt', 'torch', 'onnx') if sys.modules.get(m) is not None))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- compat helpers with fake_tensorrt (dnx's branching only) -------------------------------------

def test_network_flags_and_versions(fake_trt):
    assert compat.trt_major_version(fake_trt("10.16.1.11")) == 10
    assert compat.network_creation_flags(fake_trt("10.16.1.11")) == 1 << 1  # STRONGLY_TYPED
    assert compat.network_creation_flags(fake_trt("11.4.0.106")) == 0  # always strongly typed
    assert compat.is_trt11(fake_trt("11.4.0.106")) and not compat.is_trt11(fake_trt("10.0.0"))


def test_dtype_names(fake_trt):
    trt = fake_trt()
    assert [compat.dtype_name(trt.DataType[n]) for n in ("FLOAT", "HALF", "INT8", "BF16")] == \
        ["float32", "float16", "int8", "bfloat16"]


def test_logger_records_warnings_and_errors_only(fake_trt):
    trt = fake_trt()
    logger = compat.make_logger(trt)
    for severity, message in (("INFO", "chatter"), ("WARNING", "careful"), ("ERROR", "broken")):
        logger.log(trt.ILogger.Severity[severity], message)
    assert logger.warnings() == ["careful"] and logger.errors() == ["broken"]


def test_progress_monitor_reports_nested_phases_and_stops_on_errors(fake_trt):
    trt = fake_trt()
    events = []
    monitor = compat.make_progress_monitor(trt, lambda *e: events.append(e))
    monitor.phase_start("Building", None, 2)
    monitor.phase_start("Tactics", "Building", 3)
    assert monitor.step_complete("Tactics", 0) is True
    monitor.phase_finish("Tactics")
    assert events == [("Building", 0, 2), ("Building/Tactics", 0, 3), ("Building/Tactics", 1, 3),
                      ("Building/Tactics", 3, 3)]

    def boom(*event):
        raise KeyboardInterrupt

    stopping = compat.make_progress_monitor(trt, boom)
    stopping.phase_start("Building", None, 1)
    assert stopping.step_complete("Building", 0) is False  # TensorRT cancels the build
    with pytest.raises(KeyboardInterrupt):
        stopping.check()
    del trt.IProgressMonitor
    assert compat.make_progress_monitor(trt, boom) is None


# -- inspect ---------------------------------------------------------------------------------------

def test_inspect_onnx(small_onnx):
    info = inspect_onnx(small_onnx)
    assert info["precision"] == "fp32" and info["qdq_nodes"] == 0
    assert info["ops"]["Conv"] == 39 and info["ops"]["Concat"] == 36
    assert info["inputs"] == [{"name": "input", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert info["initializers"]["float32"]["elements"] > 1_000_000
    assert info["manifest"]["model"]["name"] == "densenet40_k12"


def test_inspect_engine_manifest_only_on_cpu_and_layers_need_a_device(tmp_path, no_cuda, fake_engine):
    written = fake_engine(tmp_path / "m.engine")
    info = inspect_engine(tmp_path / "m.engine", layers=False)
    assert info["manifest"] == written.to_dict() and info["sha256"] == written.engine_sha256
    assert info["digest_problem"] is None
    with pytest.raises(NoDeviceError):
        inspect_engine(tmp_path / "m.engine")


def test_summarize_layers():
    layers = [{"Name": "conv1", "LayerType": "CaskConvolution",
               "Outputs": [{"Format/Datatype": "Channel major INT8 format where channel % 32 == 0"}]},
              {"Name": "pool", "LayerType": "CaskPooling", "Outputs": [{"Format/Datatype": "Row major linear FP16"}]},
              {"Name": "fc", "LayerType": "CaskGemm", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
              {"Name": "conv2", "LayerType": "CaskConvolution", "Outputs": [{"Format/Datatype": "Int8 NC/32HW32"}]}]
    assert summarize_layers(layers) == {"count": 4, "detailed": True,
                                        "types": {"CaskConvolution": 2, "CaskPooling": 1, "CaskGemm": 1},
                                        "output_precision": {"int8": 2, "fp16": 1, "fp32": 1}}
    assert summarize_layers(["a", "b"])["detailed"] is False


def test_summarize_layers_reads_tensorrt_11s_split_format_and_data_type():
    # TensorRT 11 split "Format/Datatype" into "DataType" and "Format" (10.x -> 11.x migration guide)
    layers = [{"Name": "conv1", "LayerType": "CaskConvolution",
               "Outputs": [{"Name": "a", "DataType": "Int8",
                            "Format": "Channel major format where channel % 32 == 0"}]},
              {"Name": "pool", "LayerType": "CaskPooling",
               "Outputs": [{"Name": "b", "DataType": "Half", "Format": "Row major linear format (kLINEAR)"}]},
              {"Name": "fc", "LayerType": "CaskGemm",
               "Outputs": [{"Name": "c", "DataType": "Float", "Format": "Row major linear FP32 format (kLINEAR)"}]},
              {"Name": "cast", "LayerType": "Reformat", "Outputs": [{"Name": "d", "DataType": "BFloat16"}]},
              {"Name": "only", "LayerType": "Reformat", "Outputs": [{"Name": "e", "Format": "Int8 NC/32HW32"}]}]
    assert summarize_layers(layers)["output_precision"] == {"int8": 2, "fp16": 1, "fp32": 1, "bf16": 1}


# -- the CLI ---------------------------------------------------------------------------------------

def run_cli(capsys, *args):
    from dnx.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code, capsys.readouterr()


def test_cli_build_without_cuda_exits_2(small_onnx, tmp_path, no_cuda, capsys):
    code, out = run_cli(capsys, "build", str(small_onnx), "-o", str(tmp_path / "m.engine"))
    assert code == 2 and out.err.startswith("dnx: no CUDA device found")


def test_cli_build_without_tensorrt_exits_2(small_onnx, tmp_path, fake_cuda, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, out = run_cli(capsys, "build", str(small_onnx), "-o", str(tmp_path / "m.engine"))
    assert code == 2 and out.err == "dnx: TensorRT is not installed: pip install 'dnx[trt]'\n"


@pytest.mark.parametrize("args, match", [
    (["--precision", "fp8"], "--precision must be one of fp32, fp16, int8, best"),
    (["--workspace", "lots"], "--workspace must be a size like 4GiB"),
    (["--hardware-compat", "all"], "--hardware-compat must be one of none, ampere\\+, same-cc"),
    (["--min-batch", "4", "--max-batch", "2"], "min <= opt <= max"),
    (["--precision", "int8"], "--precision int8 needs calibration images.*--calib-data PATH"),
    (["--precision", "fp16", "--calib-cache", "c.json"], "--calib-data/--calib-cache calibrate INT8; use them with "
                                                        "--precision int8"),
    (["--opt-level", "9"], "^dnx: --opt-level must be between 0 and 5, got 9$"),
    (["--max-batch", "0"], "^dnx: --max-batch must be a positive integer, got 0$"),
])
def test_cli_build_bad_options_exit_1_even_without_a_device(small_onnx, tmp_path, no_cuda, capsys, args, match):
    code, out = run_cli(capsys, "build", str(small_onnx), *args, "-o", str(tmp_path / "m.engine"))
    assert code == 1, out.err
    assert len(out.err.splitlines()) == 1 and __import__("re").search(match, out.err)


def test_cli_inspect_onnx_json(small_onnx, capsys):
    from dnx.cli import main

    main(["inspect", str(small_onnx), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["precision"] == "fp32" and info["ops"]["Conv"] == 39


def test_cli_inspect_refuses_unknown_files(tmp_path, capsys):
    code, out = run_cli(capsys, "inspect", str(tmp_path / "model.bin"))
    assert code == 1 and "expected an .onnx file or an engine (.engine/.plan/.trt)" in out.err


def test_cli_inspect_engine_without_cuda_points_to_no_layers(tmp_path, no_cuda, capsys, fake_engine):
    fake_engine(tmp_path / "m.engine")
    code, out = run_cli(capsys, "inspect", str(tmp_path / "m.engine"))
    assert code == 2 and out.err.startswith("dnx: no CUDA device found") and "--no-layers" in out.err
    from dnx.cli import main

    main(["inspect", str(tmp_path / "m.engine"), "--no-layers", "--json"])
    assert json.loads(capsys.readouterr().out)["manifest"]["tensorrt_version"] == "10.16.1.11"
