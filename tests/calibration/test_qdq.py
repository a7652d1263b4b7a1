"""INT8 Q/DQ graphs: placement per target, accuracy on real photos, the calibration cache."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dnx.calibration.fp16 import compare_onnx_files, convert_fp16
from dnx.calibration.qdq import calibrate_qdq, qdq_summary
from dnx.core.compare import compare_logits
from dnx.core.errors import DnxError
from dnx.schemas.manifest import preprocess_from_manifest, read_manifest
from dnx.export.onnx_export import ExportOptions, export_onnx
from dnx.models import create_model
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


@pytest.fixture(scope="module")
def d121(tmp_path_factory):
    """densenet121 (random init, 224x224) and 64 + 16 distinct crops of real photos."""
    from dnx.data.photos import make_photo_folder

    root = tmp_path_factory.mktemp("d121q")
    onnx_path = export_onnx(create_model("densenet121"), root / "densenet121.onnx", ExportOptions(verify=False)).path
    make_photo_folder(root / "calib", 64, seed=0)
    make_photo_folder(root / "eval", 16, seed=123)
    return root, onnx_path


def _logits(path, x):
    with OnnxRuntimeRunner(path) as runner:
        return run_in_batches(runner, x, 8)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_densenet121_qdq_keeps_logits_on_real_photos(d121, target):
    from dnx.calibration.data import open_calibration_data

    root, fp32 = d121
    result = calibrate_qdq(fp32, root / f"q_{target}.onnx", root / "calib", target=target, samples=64)
    assert result.samples == 64 and not result.cache_hit
    pre = preprocess_from_manifest(read_manifest(fp32))
    photos = np.concatenate(list(open_calibration_data(root / "eval", pre, samples=None).batches(16)))
    c = compare_logits(_logits(fp32, photos), _logits(result.path, photos))
    assert c.min_cosine >= 0.99, c
    summary = qdq_summary(onnx.load(str(result.path)))
    if target == "tensorrt":
        # NVIDIA's placement: every Conv input is dequantized, no Concat output is re-quantized
        assert summary["conv_inputs_dequantized"] == summary["conv"] == 120
        assert summary["quantize_reading_concat"] == []
        zero_points = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(result.path)).graph.initializer
                       if t.name.endswith("_zero_point")]
        assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    else:
        assert summary["quantize_reading_concat"]  # onnxruntime's full placement quantizes Concat too
        assert result.manifest["calibration"]["graph_rewrites"] == {
            "BatchNormalization->depthwise Conv": 62, "AveragePool->depthwise Conv": 3}
        # what the rewrites are for: onnxruntime fuses every Conv, BN and pool included, into an
        # integer QLinearConv, with no float Conv/BatchNormalization/AveragePool left between them
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.optimized_model_filepath = str(root / "optimized.onnx")
        ort.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
        fused = {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}
        assert "QLinearConv" in fused and not fused & {"Conv", "BatchNormalization", "AveragePool"}
    manifest = read_manifest(result.path).to_dict()
    assert manifest["precision"] == "int8" and manifest["calibration"]["samples"] == 64
    assert manifest["calibration"]["target"] == target
    assert manifest["source"]["sha256"] and manifest["calibration"]["data_fingerprint"]


@pytest.fixture()
def small(tmp_path):
    onnx_path = export_onnx(create_model("densenet_bc22_fmnist", use_bundled=False), tmp_path / "m.onnx",
                            ExportOptions(verify=False)).path
    return tmp_path, onnx_path


CALIB = "dnx/assets/fashion_mnist_calib512.npz"


def test_cache_reused_for_same_key_and_recomputed_for_another(small):
    root, src = small
    first = calibrate_qdq(src, root / "q.onnx", CALIB, samples=64)
    second = calibrate_qdq(src, root / "q2.onnx", CALIB, samples=64, cache_path=first.cache_path)
    assert not first.cache_hit and second.cache_hit
    a, b = onnx.load(str(first.path)), onnx.load(str(second.path))
    assert {t.name: t.raw_data for t in a.graph.initializer} == {t.name: t.raw_data for t in b.graph.initializer}
    third = calibrate_qdq(src, root / "q3.onnx", CALIB, samples=64, method="minmax", cache_path=first.cache_path)
    assert not third.cache_hit
    fourth = calibrate_qdq(src, root / "q4.onnx", CALIB, samples=32, method="minmax", cache_path=first.cache_path)
    assert not fourth.cache_hit


def test_exclude_by_op_type_and_node_name(small):
    root, src = small
    proto = onnx.load(str(src))
    first_conv = next(n.name for n in proto.graph.node if n.op_type == "Conv")
    result = calibrate_qdq(src, root / "q.onnx", CALIB, samples=16, exclude=["Gemm", first_conv])
    q = onnx.load(str(result.path))
    producers = {o: n for n in q.graph.node for o in n.output}
    for node in q.graph.node:
        if node.op_type in ("Gemm",) or node.name == first_conv:
            assert producers.get(node.input[0]) is None or producers[node.input[0]].op_type != "DequantizeLinear"
    with pytest.raises(DnxError, match="no such node name or op type"):
        calibrate_qdq(src, root / "q5.onnx", CALIB, samples=16, exclude=["NoSuchThing"])
    with pytest.raises(DnxError, match="leaves nothing to quantize"):
        calibrate_qdq(src, root / "q6.onnx", CALIB, samples=16, exclude=["Conv", "Gemm"])
    assert not (root / "q6.onnx").exists()
    # every Conv excluded by name: the op types remain, but nothing gets Q/DQ
    convs = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    with pytest.raises(DnxError, match="nothing .* was quantized"):
        calibrate_qdq(src, root / "q7.onnx", CALIB, samples=16, exclude=convs)
    assert not (root / "q7.onnx").exists()


def test_best_mode_runs_non_quantized_ops_in_fp16(small):
    root, src = small
    result = calibrate_qdq(src, root / "best.onnx", CALIB, samples=32, high_precision="fp16")
    q = onnx.load(str(result.path))
    bn_types = {i.type.tensor_type.elem_type for i in onnx.shape_inference.infer_shapes(q).graph.value_info
                if any(n.op_type == "BatchNormalization" and i.name == n.output[0] for n in q.graph.node)}
    assert bn_types == {onnx.TensorProto.FLOAT16}
    assert result.manifest["precision"] == "best"
    c = compare_onnx_files(src, result.path, preprocess_from_manifest(read_manifest(src)))
    assert c.min_cosine > 0.98


def test_refuses_qdq_source_and_overwrite(small):
    root, src = small
    result = calibrate_qdq(src, root / "q.onnx", CALIB, samples=16)
    with pytest.raises(DnxError, match="already"):
        calibrate_qdq(result.path, root / "qq.onnx", CALIB, samples=16)
    with pytest.raises(DnxError, match="overwrite"):
        calibrate_qdq(src, src, CALIB, samples=16)


def test_model_without_manifest_needs_preprocessing(small):
    root, src = small
    proto = onnx.load(str(src))
    del proto.metadata_props[:]
    bare = root / "bare.onnx"
    onnx.save(proto, str(bare))
    (root / "m.onnx.json").rename(root / "elsewhere.json")
    with pytest.raises(DnxError, match="--mean/--std/--image-size"):
        calibrate_qdq(bare, root / "q.onnx", CALIB, samples=16)
    from dnx.models import get_config

    result = calibrate_qdq(bare, root / "q.onnx", CALIB, samples=16,
                           preprocess=get_config("densenet_bc22_fmnist").preprocess)
    assert read_manifest(result.path).preprocess.image_size == 28


def test_fp16_conversion_keeps_float32_io_and_agrees(small):
    root, src = small
    result = convert_fp16(src, root / "h.onnx")
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert result.comparison and result.comparison.top1_agreement == 1.0
    assert read_manifest(result.path).precision == "fp16"
