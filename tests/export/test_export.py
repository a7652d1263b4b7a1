"""`dnx export`: every variant exports and is proven equal to PyTorch in onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from dnx.core.errors import DnxError, VerificationError
from dnx.schemas.manifest import preprocess_from_manifest, read_manifest, sidecar_path
from dnx.export.onnx_export import ExportOptions, export_onnx
from dnx.models import create_model, get_config, list_models
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


@pytest.mark.parametrize("name", list_models())
def test_every_variant_exports_and_verifies(name, tmp_path):
    cfg = get_config(name)
    size = cfg.min_image_size if cfg.stem == "imagenet" else None  # smallest legal size keeps it fast
    loaded = create_model(name, image_size=size, use_bundled=False)
    result = export_onnx(loaded, tmp_path / f"{name}.onnx")
    assert result.verification.passed
    assert result.manifest["verification"]["status"] == "passed"
    assert {c for c, _ in result.verification.cases} >= {"random b1", "random b3"}


@pytest.fixture(scope="module")
def densenet121_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("d121") / "densenet121.onnx"
    loaded = create_model("densenet121")
    export_onnx(loaded, path, ExportOptions(verify=False))
    return path, loaded


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_densenet121_224_matches_pytorch_at_batches(densenet121_onnx, batch):
    path, loaded = densenet121_onnx
    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    with OnnxRuntimeRunner(path) as runner:
        out = runner.infer({"input": x})["logits"]
    model = loaded.model.set_forward_form("torchvision")
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    model.set_forward_form("incremental")
    assert out.shape == (batch, 1000)
    assert np.abs(out - ref).max() <= 1e-4


def test_graph_is_incremental_single_file_opset17(densenet121_onnx):
    path, _ = densenet121_onnx
    proto = onnx.load(str(path))
    concats = [n for n in proto.graph.node if n.op_type == "Concat"]
    assert len(concats) == 58 and all(len(n.input) == 2 for n in concats)
    assert not any(n.op_type == "Identity" for n in proto.graph.node)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"


def test_manifest_round_trips_to_the_same_preprocessing(densenet121_onnx):
    from dnx.data.preprocess import bundled_photos, load_image, preprocess_image
    from dnx.core.hashing import sha256_file

    path, loaded = densenet121_onnx
    manifest = read_manifest(path)
    pre = preprocess_from_manifest(manifest)
    assert pre == loaded.config.preprocess
    img = load_image(bundled_photos()[0])
    np.testing.assert_array_equal(preprocess_image(img, pre), preprocess_image(img, loaded.config.preprocess))
    assert manifest.weights.id == "random-init:seed=0"
    assert manifest.to_dict()["input"] == {"name": "input", "shape": ["N", 3, 224, 224], "dtype": "float32",
                                           "layout": "NCHW"}
    assert manifest.model["name"] == "densenet121" and manifest.opset == 17
    side = json.loads(sidecar_path(path).read_text())
    assert side["sha256"] == sha256_file(path)
    assert side["model"] == manifest.model


def test_fixed_batch_export(tmp_path):
    result = export_onnx(create_model("densenet40_k12", use_bundled=False), tmp_path / "m.onnx", ExportOptions(batch=2))
    proto = onnx.load(str(result.path))
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 32, 32]
    assert result.manifest["input"]["shape"][0] == 2


def test_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", boom)
    out = tmp_path / "m.onnx"
    with pytest.raises(KeyboardInterrupt):
        export_onnx(create_model("densenet40_k12", use_bundled=False), out)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_keeps_file_marked_failed(tmp_path, monkeypatch):
    import dnx.export.onnx_export as mod
    from dnx.core.compare import Tolerance

    monkeypatch.setitem(mod.DEFAULT_TOLERANCES, "fp32", Tolerance(max_abs_diff=0.0 - 1.0))
    out = tmp_path / "m.onnx"
    with pytest.raises(VerificationError, match="marked 'failed'"):
        export_onnx(create_model("densenet40_k12", use_bundled=False), out)
    assert read_manifest(out).extra["verification"]["status"] == "failed"


@pytest.mark.parametrize("options", [ExportOptions(batch=0), ExportOptions(opset=11), ExportOptions(opset=30)])
def test_bad_options_are_refused(options, tmp_path):
    with pytest.raises(DnxError):
        export_onnx(create_model("densenet40_k12", use_bundled=False), tmp_path / "m.onnx", options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["export", "densenet12"], "did you mean densenet121"),
    (["export", "densenet121", "--batch", "0"], "--batch must be"),
    (["export", "densenet121", "--opset", "9"], "--opset between 13 and 20"),
    (["export", "densenet121", "--image-size", "16"], "too small"),
    (["export", "densenet121", "-o", "/nonexistent-dir/x.onnx"], "does not exist"),
    (["export", "densenet121", "--weights", "/nonexistent.pth"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_1(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "dnx.cli", *args], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_export_writes_file_and_table(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dnx.cli", "export", "densenet40_k12", "--batch", "2"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pass" in result.stdout and (tmp_path / "densenet40_k12.onnx").is_file()
