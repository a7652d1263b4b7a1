"""OpenVINORunner on the shipped Fashion-MNIST DenseNet-BC: equal to onnxruntime, dynamic batch,
thread-safe under concurrent calls, precision reporting, and a clear refusal without openvino."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from dnx.data.preprocess import photo_batch
from dnx.core.errors import DnxError
from dnx.export.onnx_export import ExportOptions, export_onnx
from dnx.models import create_model
from dnx.runtime.backends.base import UnavailableBackend
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.runtime.backends.openvino_runner import OpenVINORunner, cpu_capabilities, openvino_available

pytest.importorskip("openvino", reason="OpenVINO is an optional extra: pip install 'dnx[openvino]'")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    loaded = create_model("densenet_bc22_fmnist")
    path = export_onnx(loaded, tmp_path_factory.mktemp("ov") / "fm.onnx", ExportOptions(verify=False)).path
    return path, loaded.config.preprocess


def _inputs(pre, n: int, seed: int = 0) -> np.ndarray:
    photos = photo_batch(pre)
    noise = np.random.default_rng(seed).standard_normal((n, *photos.shape[1:]), dtype=np.float32)
    return np.concatenate([photos, noise])[:n]


def test_available_here():
    assert openvino_available() == (True, "")


def test_fp32_equals_onnxruntime_at_several_batches(shipped):
    path, pre = shipped
    x = _inputs(pre, 8)
    with OnnxRuntimeRunner(path) as ort, OpenVINORunner(path, threads=1, precision="fp32") as ov:
        assert ov.inference_precision == "fp32"
        assert ov.output_names() == ort.output_names() == ["logits"]
        assert ov.input_metadata()["input"].shape == (None, 1, 28, 28)  # the file's dynamic batch
        for batch in (1, 3, 8):
            want = ort.infer({"input": x[:batch]})["logits"]
            got = ov.infer({"input": x[:batch]})["logits"]
            assert got.shape == (batch, 10)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_concurrent_calls_equal_serial_ones(shipped):
    path, pre = shipped
    inputs = [_inputs(pre, 1 + i % 3, seed=i) for i in range(8)]  # batches 1..3: several compiled shapes
    with OpenVINORunner(path, threads=2, hint="throughput") as ov:
        serial = [ov.infer({"input": x})["logits"] for x in inputs]
        got: dict[int, list[np.ndarray]] = {i: [] for i in range(8)}
        errors = []
        barrier = threading.Barrier(8)

        def worker(i: int) -> None:
            try:
                barrier.wait()
                for _ in range(50):
                    got[i].append(ov.infer({"input": inputs[i]})["logits"])
            except Exception as exc:  # re-raised in the main thread below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for i in range(8):
        assert len(got[i]) == 50
        for out in got[i]:
            np.testing.assert_array_equal(out, serial[i])


def test_reads_openvino_ir_too(shipped, tmp_path):
    import openvino as ov

    path, pre = shipped
    xml = tmp_path / "fm.xml"
    ov.save_model(ov.Core().read_model(str(path)), str(xml), compress_to_fp16=False)  # FP32 weights kept
    x = _inputs(pre, 4)
    with OnnxRuntimeRunner(path) as ort, OpenVINORunner(xml, precision="fp32") as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], ort.infer({"input": x})["logits"],
                                   rtol=0, atol=1e-4)


def test_bf16_only_where_the_cpu_has_it(shipped):
    path, _ = shipped
    has_bf16 = "BF16" in cpu_capabilities()
    with OpenVINORunner(path, precision="auto") as auto:
        assert auto.inference_precision == ("bf16" if has_bf16 else "fp32")
    if has_bf16:
        with OpenVINORunner(path, precision="bf16") as bf16:
            assert bf16.inference_precision == "bf16"
    else:
        with pytest.raises(UnavailableBackend, match="no BF16 support"):
            OpenVINORunner(path, precision="bf16").activate()


def test_bad_options_and_missing_file(tmp_path):
    with pytest.raises(DnxError, match="precision"):
        OpenVINORunner("m.onnx", precision="int4")
    with pytest.raises(DnxError, match="hint"):
        OpenVINORunner("m.onnx", hint="fast")
    with pytest.raises(DnxError, match="does not exist"):
        OpenVINORunner(tmp_path / "missing.onnx").activate()


def test_without_openvino_the_backend_is_unavailable(shipped, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    ok, why = openvino_available()
    assert not ok and "pip install 'dnx[openvino]'" in why
    with pytest.raises(UnavailableBackend, match="dnx\\[openvino\\]"):
        OpenVINORunner(shipped[0]).activate()


def test_runs_dnx_fp16_file(shipped, tmp_path):
    from dnx.calibration.fp16 import convert_fp16
    from dnx.core.compare import compare_logits

    path, pre = shipped
    fp16 = convert_fp16(path, tmp_path / "fm.fp16.onnx", check=False).path
    x = _inputs(pre, 8)
    with OnnxRuntimeRunner(path) as ort, OpenVINORunner(fp16, precision="fp32") as ov:
        assert ov.input_metadata()["input"].dtype == np.float32  # FP32 inputs kept
        assert compare_logits(ort.infer({"input": x})["logits"], ov.infer({"input": x})["logits"]).min_cosine >= 0.999
