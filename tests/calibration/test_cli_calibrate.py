"""`dnx calibrate` and `dnx convert` as a user runs them: default names, the cache message, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dnx.export.onnx_export import ExportOptions, export_onnx
from dnx.models import create_model

CALIB = "dnx/assets/fashion_mnist_calib512.npz"


def dnx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnx.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return export_onnx(create_model("densenet_bc22_fmnist", use_bundled=False), root / "m.onnx",
                       ExportOptions(verify=False)).path


def test_default_names_per_target_and_cache_reuse(small):
    first = dnx("calibrate", str(small), "--data", CALIB, "--samples", "16", "--target", "onnxruntime")
    assert first.returncode == 0, first.stderr
    assert (small.parent / "m.int8-onnxruntime.onnx").is_file() and "ranges cached in" in first.stdout
    again = dnx("calibrate", str(small), "--data", CALIB, "--samples", "16", "--target", "onnxruntime")
    assert again.returncode == 0 and "reused calibration cache" in again.stdout
    trt = dnx("calibrate", str(small), "--data", CALIB, "--samples", "16")
    assert trt.returncode == 0, trt.stderr
    # the TensorRT placement takes the name `dnx build --precision int8` uses; the CPU one kept its own
    assert (small.parent / "m.int8.onnx").is_file() and (small.parent / "m.int8-onnxruntime.onnx").is_file()


@pytest.mark.parametrize("args, message", [
    (["--data", "nowhere"], "nowhere"),
    (["--data", CALIB, "--exclude", "Conv", "--exclude", "Gemm"], "leaves nothing to quantize"),
    (["--data", CALIB, "--exclude", "NoSuchOp"], "no such node name or op type"),
])
def test_bad_input_is_one_line_and_writes_nothing(small, tmp_path, args, message):
    out = tmp_path / "q.onnx"
    result = dnx("calibrate", str(small), *args, "--samples", "8", "-o", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
