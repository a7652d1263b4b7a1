"""The GPU request path of ``make gpu-check`` (benchmarks/gpu_request.py) run on the CPU: the same code
(batched decode_jpeg, torchvision resize/crop/normalise, onnxruntime IO binding on the tensor's pointer)
with device="cpu", so its plumbing and parity check are tested where no GPU exists. The GPU itself is
exercised only by ``make gpu-check`` on a GPU machine."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dnx.benchmarks.gpu_check import Budget
from dnx.benchmarks.gpu_request import markdown, request_path
from dnx.data.preprocess import bundled_photos
from dnx.runtime.artifact import open_artifact

# torchvision 0.29 deprecates its image decoders for TorchCodec; they still ship and are what gpu-check uses
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_request_path_runs_its_plumbing_on_the_cpu(fmnist_onnx):
    photos = []
    for path in bundled_photos()[:3]:
        buf = io.BytesIO()
        Image.open(path).convert("RGB").resize((640, 480)).save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    pre = open_artifact(fmnist_onnx).preprocess  # a grey model: decode_jpeg's GRAY mode
    section = request_path(fmnist_onnx, pre, {"small": photos}, Budget(300), device="cpu")
    row = section["sizes"]["small"]
    assert section["status"] == "ran" and section["device"] == "cpu"
    assert row["parity_vs_cpu_exact"]["min_cosine"] > 0.99
    assert set(row["batches"][8]) >= {"decode", "preprocess", "inference", "total", "images_per_s"}
    assert "| small | 8 |" in markdown(section)
