"""Real TensorRT on a real GPU: densenet121 engines at FP32, FP16 and INT8, their parity with PyTorch,
reloading from disk, the runner's batch/CUDA-graph paths and the refusal of mismatched engines.

Marked ``trt``: tests/conftest.py skips them, with the reason, where TensorRT or a CUDA device is
missing; ``tensorrt_loads`` below also skips where ``tensorrt`` is found but does not import (PyPI's
placeholder wheels). The build of the engines takes a few minutes; it happens once per module.

INT8 is judged without coin flips: densenet121 here has random weights (tiny logit margins), so its
INT8 engine is compared with the same Q/DQ graph run by onnxruntime (cosine), and INT8's own accuracy
is checked on dnx's shipped trained model over 5,000 real Fashion-MNIST test images.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dnx.core.compare import DEFAULT_TOLERANCES, compare_logits
from dnx.core.errors import DnxError

pytestmark = pytest.mark.trt

PRECISIONS = ("fp32", "fp16", "int8")
MIN_BATCH, OPT_BATCH, MAX_BATCH = 1, 4, 8


@pytest.fixture(scope="module", autouse=True)
def tensorrt_loads():
    """conftest skips on ``find_spec``; a placeholder wheel is found, then fails to import: skip, not fail."""
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"needs real TensorRT: `import tensorrt` fails ({str(exc).splitlines()[0]})")


@pytest.fixture(scope="module")
def densenet121(tmp_path_factory):
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    folder = tmp_path_factory.mktemp("trt")
    loaded = create_model("densenet121", use_bundled=False)
    export_onnx(loaded, folder / "densenet121.onnx", ExportOptions(verify=False))
    return folder, folder / "densenet121.onnx", loaded


@pytest.fixture(scope="module")
def engines(densenet121):
    from dnx.data.preprocess import bundled_photos
    from dnx.runtime.tensorrt.builder import BuildOptions, build_engine

    folder, onnx_path, _ = densenet121
    built = {}
    for precision in PRECISIONS:
        options = BuildOptions(precision=precision, min_batch=MIN_BATCH, opt_batch=OPT_BATCH, max_batch=MAX_BATCH,
                               workspace=4 * 2**30, timing_cache=folder / "timing.cache")
        calib = bundled_photos()[0].parent if precision == "int8" else None
        built[precision] = build_engine(onnx_path, folder / f"densenet121.{precision}.engine", options,
                                        calib_data=calib)
    return built


@pytest.fixture(scope="module")
def inputs_and_reference(densenet121):
    """The bundled photos plus random images (8 = the profile's max batch) and PyTorch's logits."""
    import torch

    from dnx.data.preprocess import photo_batch

    _, _, loaded = densenet121
    photos = photo_batch(loaded.config.preprocess)
    noise = np.random.default_rng(0).standard_normal((MAX_BATCH - len(photos), 3, 224, 224), dtype=np.float32)
    x = np.concatenate([photos, noise])
    model = loaded.model.set_forward_form("torchvision")  # the independent reference form
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    model.set_forward_form("incremental")
    return x, reference


def run_engine(path, x, **kwargs):
    from dnx.runtime.backends.tensorrt_runner import TensorRTRunner

    with TensorRTRunner(path, **kwargs) as runner:
        return runner.infer({"input": x})["logits"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_engine_and_manifest_are_written(engines, precision):
    import tensorrt as trt
    import torch

    result = engines[precision]
    m = json.loads(result.path.with_name(result.path.name + ".json").read_text())
    props = torch.cuda.get_device_properties(0)
    assert m["tensorrt_version"] == trt.__version__
    assert m["gpu"]["compute_capability"] == f"{props.major}.{props.minor}"
    assert m["precision"] == m["built_graph"]["precision"] == precision
    assert m["built_graph"]["action"] == {"fp32": "as-is", "fp16": "convert-fp16", "int8": "calibrate"}[precision]
    assert (m["batch_profile"]["min_batch"], m["batch_profile"]["opt_batch"], m["batch_profile"]["max_batch"]) == \
        (MIN_BATCH, OPT_BATCH, MAX_BATCH)
    assert m["inputs"] == [{"name": "input", "shape": [-1, 3, 224, 224], "dtype": "float32"}]
    assert m["outputs"] == [{"name": "logits", "shape": [-1, 1000], "dtype": "float32"}]
    assert m["source_onnx"]["manifest"]["model"]["name"] == "densenet121"
    assert m["engine_bytes"] == result.path.stat().st_size
    assert m["build_command"].startswith(f"dnx build {result.graph.source}")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_parity_with_pytorch(engines, inputs_and_reference, precision):
    x, reference = inputs_and_reference
    comparison = DEFAULT_TOLERANCES[precision].apply(compare_logits(reference, run_engine(engines[precision].path, x)))
    assert comparison, comparison.criterion


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_executes_the_graph_it_was_built_from(engines, inputs_and_reference, precision):
    """TensorRT vs onnxruntime on the same FP16 / Q/DQ file: separates engine faithfulness from the
    precision's own error (which the parity test above bounds)."""
    from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner

    x, _ = inputs_and_reference
    with OnnxRuntimeRunner(engines[precision].graph.path) as ort:
        graph_logits = ort.infer({"input": x})["logits"]
    comparison = compare_logits(graph_logits, run_engine(engines[precision].path, x))
    # No top-1 criterion: random weights leave margins that a last-bit difference can flip.
    assert comparison.min_cosine >= 0.999, comparison


@pytest.fixture(scope="module")
def trained_int8_engine(tmp_path_factory):
    """dnx's shipped trained DenseNet-BC (Fashion-MNIST) as an INT8 engine, calibrated on 512 shipped images."""
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import ASSETS, create_model
    from dnx.runtime.tensorrt.builder import BuildOptions, build_engine

    folder = tmp_path_factory.mktemp("trained")
    loaded = create_model("densenet_bc22_fmnist")
    export_onnx(loaded, folder / "fmnist.onnx", ExportOptions(verify=False))
    options = BuildOptions(precision="int8", min_batch=1, opt_batch=250, max_batch=250)
    result = build_engine(folder / "fmnist.onnx", folder / "fmnist.int8.engine", options,
                          calib_data=ASSETS / "fashion_mnist_calib512.npz")
    return loaded, result


def test_trained_model_int8_engine_keeps_its_accuracy(trained_int8_engine):
    import torch

    from dnx.data.datasets import shipped_fashion_mnist_test
    from dnx.data.preprocess import preprocess_array
    from dnx.runtime.backends.base import run_in_batches
    from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
    from dnx.runtime.backends.tensorrt_runner import TensorRTRunner

    loaded, result = trained_int8_engine
    data = shipped_fashion_mnist_test()
    x = preprocess_array(data.images, loaded.config.preprocess)
    with torch.inference_mode():
        reference = np.concatenate([loaded.model.eval()(torch.from_numpy(x[i:i + 500])).numpy()
                                    for i in range(0, len(x), 500)])
    with TensorRTRunner(result.path) as runner:
        engine = run_in_batches(runner, x, 250, pad=True)
    with OnnxRuntimeRunner(result.graph.path) as ort:
        graph = run_in_batches(ort, x, 250)
    vs_pytorch = compare_logits(reference, engine, data.labels)
    assert vs_pytorch.top1_agreement >= 0.99, vs_pytorch
    assert vs_pytorch.accuracy >= vs_pytorch.reference_accuracy - 0.01, vs_pytorch
    assert compare_logits(graph, engine).min_cosine >= 0.99  # TensorRT executes the graph it was given


def test_reload_from_disk_and_batches(engines, inputs_and_reference):
    from dnx.runtime.backends.tensorrt_runner import TensorRTRunner

    x, _ = inputs_and_reference
    path = engines["fp32"].path
    first = run_engine(path, x)
    with TensorRTRunner(path) as runner:
        assert runner.name == "tensorrt-cuda" and runner.warnings == []
        assert runner.profile()["input"] == {"min": [1, 3, 224, 224], "opt": [4, 3, 224, 224], "max": [8, 3, 224, 224]}
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], first, rtol=0, atol=1e-5)
        for batch in (1, 3, MAX_BATCH):  # smaller batches use the first rows of the same buffers
            out = runner.infer({"input": x[:batch]})["logits"]
            np.testing.assert_allclose(out, first[:batch], rtol=0, atol=1e-4)
        with pytest.raises(DnxError, match="batch 1..8.*--max-batch"):
            runner.infer({"input": np.zeros((MAX_BATCH + 1, 3, 224, 224), np.float32)})


def test_cuda_graph_and_device_timing(engines, inputs_and_reference):
    from dnx.runtime.backends.tensorrt_runner import TensorRTRunner

    x, _ = inputs_and_reference
    path = engines["fp16"].path
    plain = run_engine(path, x)
    with TensorRTRunner(path, cuda_graph=True) as runner:
        for batch in (MAX_BATCH, 2, MAX_BATCH, MAX_BATCH):  # captured again on each shape change, then replayed
            np.testing.assert_allclose(runner.infer({"input": x[:batch]})["logits"], plain[:batch], rtol=0, atol=1e-3)
        runner.load_inputs({"input": x})
        seconds = runner.infer_device()
        assert 0 < seconds < runner.last_inference_time * 10
        assert runner.device_outputs()["logits"].shape == (MAX_BATCH, 1000)


def copy_engine(result, folder):
    engine = folder / result.path.name
    shutil.copy(result.path, engine)
    shutil.copy(result.path.with_name(result.path.name + ".json"), engine.with_name(engine.name + ".json"))
    return engine, engine.with_name(engine.name + ".json")


@pytest.mark.parametrize("field, value, match", [
    ("tensorrt_version", "9.0.0.0", "TensorRT versions differ"),
    ("compute_capability", "5.0", "GPU architectures differ"),
])
def test_mismatched_engine_is_refused_before_deserializing(engines, tmp_path, field, value, match):
    from dnx.schemas.engine_manifest import EngineMismatchError

    engine, sidecar = copy_engine(engines["fp32"], tmp_path)
    manifest = json.loads(sidecar.read_text())
    if field == "compute_capability":
        manifest["gpu"][field] = value
    else:
        manifest[field] = value
    sidecar.write_text(json.dumps(manifest))
    with pytest.raises(EngineMismatchError, match=f"{match}.*rebuild it on this machine with `dnx build"):
        run_engine(engine, np.zeros((1, 3, 224, 224), np.float32))


def test_replaced_engine_bytes_are_refused(engines, tmp_path):
    from dnx.schemas.engine_manifest import EngineMismatchError

    engine, _ = copy_engine(engines["fp32"], tmp_path)
    shutil.copy(engines["fp16"].path, engine)
    with pytest.raises(EngineMismatchError, match="does not match its manifest"):
        run_engine(engine, np.zeros((1, 3, 224, 224), np.float32))


def test_inspect_shows_int8_layers(engines):
    from dnx.runtime.tensorrt.inspect import inspect_engine

    info = inspect_engine(engines["int8"].path)
    assert info["layers"]["detailed"] and info["layers"]["count"] > 0
    assert info["layers"]["output_precision"].get("int8", 0) > 0
    assert [t["name"] for t in info["io"]] == ["input", "logits"]


def test_parser_errors_name_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from dnx.runtime.tensorrt.builder import BuildOptions, build_engine
    from dnx.runtime.backends.tensorrt_compat import TensorRTError

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["input"], ["logits"], name="mystery_node")], "bad",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    with pytest.raises(TensorRTError, match="mystery_node.*NoSuchOp") as info:
        build_engine(tmp_path / "bad.onnx", tmp_path / "bad.engine", BuildOptions())
    assert info.value.code == "parse" and not (tmp_path / "bad.engine").exists()
