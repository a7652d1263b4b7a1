"""CPU INT8 side by side (`python -m dnx.benchmarks.experiments.cpu_int8`): dnx's INT8 files on onnxruntime and
OpenVINO against OpenVINO+NNCF, in one process, on the machine at hand.

densenet121 (random weights: speed and parity do not depend on training) at 224x224: FP32 on both
runtimes (and OpenVINO BF16 where the CPU has it), dnx's ``--target onnxruntime``, ``tensorrt`` and
``openvino`` Q/DQ files, and the reference a user gets by taking dnx's FP32 ONNX to OpenVINO and
running ``nncf.quantize`` there (OpenVINO backend, defaults). Latency: batch 1 on 1 and 2 threads,
batch 8 on 2 threads, each backend timed in interleaved rounds so machine noise hits all alike.
Parity: min cosine vs onnxruntime FP32 over 64 photo crops (calibration uses 64 other crops).
Writes benchmarks/results/cpu_int8.json, with the CPU model and ISA flags (machine_info).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dnx.benchmarks.scripts import run_script, save_result, time_interleaved
from dnx.calibration.data import open_calibration_data
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.compare import compare_logits
from dnx.core.machine import machine_info
from dnx.data.photos import make_photo_folder
from dnx.data.preprocess import load_image, preprocess_image
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.runtime.backends.openvino_runner import cpu_capabilities, OpenVINORunner

CONFIGS = ((1, 1), (2, 1), (2, 8))  # (threads, batch)


def _files(tmp: Path, samples: int) -> tuple[dict[str, Path], np.ndarray, dict]:
    import nncf
    import openvino as ov

    loaded = create_model("densenet121")
    pre = loaded.config.preprocess
    make_photo_folder(tmp / "calib", samples, seed=0)
    parity = [preprocess_image(load_image(p), pre) for p in make_photo_folder(tmp / "parity", samples, seed=1)]
    fp32 = export_onnx(loaded, tmp / "densenet121.onnx", ExportOptions(verify=False)).path
    files, seconds = {"fp32": fp32}, {}
    for target in ("onnxruntime", "tensorrt", "openvino"):
        start = time.perf_counter()
        files[target] = calibrate_qdq(fp32, tmp / f"densenet121.int8-{target}.onnx", tmp / "calib", target=target,
                                      samples=samples).path
        seconds[target] = time.perf_counter() - start
    # The user's route: dnx's FP32 ONNX read by OpenVINO, quantized by NNCF with its defaults.
    start = time.perf_counter()
    calib = open_calibration_data(tmp / "calib", pre, samples, 0)
    dataset = nncf.Dataset([calib.batch(i, 1) for i in range(len(calib))])
    ov_model = nncf.quantize(ov.Core().read_model(str(fp32)), dataset, subset_size=len(calib))
    files["nncf"] = tmp / "densenet121.nncf.xml"
    ov.save_model(ov_model, str(files["nncf"]), compress_to_fp16=False)
    seconds["nncf"] = time.perf_counter() - start
    return files, np.stack(parity), seconds


def _rows(files: dict[str, Path], ov_bf16: bool) -> dict[str, tuple[str, Path, str]]:
    """label -> (runtime, file, OpenVINO precision)."""
    rows = {"ort fp32": ("ort", files["fp32"], ""), "ov fp32": ("ov", files["fp32"], "fp32")}
    if ov_bf16:
        rows["ov bf16"] = ("ov", files["fp32"], "bf16")
    rows.update({"ort int8 (dnx --target onnxruntime)": ("ort", files["onnxruntime"], ""),
                 "ort int8 (dnx --target openvino)": ("ort", files["openvino"], ""),
                 "ov int8 (dnx --target onnxruntime)": ("ov", files["onnxruntime"], "fp32"),
                 "ov int8 (dnx --target tensorrt)": ("ov", files["tensorrt"], "fp32"),
                 "ov int8 (dnx --target openvino)": ("ov", files["openvino"], "fp32"),
                 "ov int8 (OpenVINO+NNCF reference)": ("ov", files["nncf"], "fp32")})
    return rows


def _runner(runtime: str, path: Path, precision: str, threads: int):
    if runtime == "ort":
        return OnnxRuntimeRunner(path, threads=threads).activate()
    return OpenVINORunner(path, threads=threads, precision=precision).activate()


def main(samples: int = 64, rounds: int = 10, per_round: int = 3) -> dict:
    ov_bf16 = "BF16" in cpu_capabilities()
    with tempfile.TemporaryDirectory(prefix="dnx-cpu-int8-") as tmp:
        files, parity_images, calib_seconds = _files(Path(tmp), samples)
        rows = _rows(files, ov_bf16)
        out = {"benchmark": "cpu_int8", "model": "densenet121 (random weights), 224x224",
               "machine": {**machine_info(threads=2), "openvino_capabilities": cpu_capabilities()},
               "parity": {"reference": "onnxruntime FP32 on the FP32 ONNX", "images": f"{samples} photo crops"},
               "calibration_seconds": calib_seconds, "latency": {}, "min_cosine": {}, "inference_precision": {}}
        runners = {k: _runner(rt, path, prec, 2) for k, (rt, path, prec) in rows.items()}
        reference = run_in_batches(runners["ort fp32"], parity_images, 8)
        for k, r in runners.items():
            out["min_cosine"][k] = compare_logits(reference, run_in_batches(r, parity_images, 8)).min_cosine
            out["inference_precision"][k] = getattr(r, "inference_precision", None) or "fp32"
            print(f"{k:38s} min cosine {out['min_cosine'][k]:.5f}", file=sys.stderr)
        current = 2
        for threads, batch in CONFIGS:
            if threads != current:
                for r in runners.values():
                    r.deactivate()
                runners = {k: _runner(rt, path, prec, threads) for k, (rt, path, prec) in rows.items()}
                current = threads
            key = f"{threads} thread{'s' if threads > 1 else ''}, batch {batch}"
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
            out["latency"][key] = time_interleaved(runners, x, rounds, per_round if batch == 1 else 1)
            for k, v in out["latency"][key].items():
                print(f"{key:20s} {k:38s} {v['median_ms']:8.2f} ms {v['images_per_s']:8.1f} img/s", file=sys.stderr)
        for r in runners.values():
            r.deactivate()
    return save_result("cpu_int8", out)


if __name__ == "__main__":
    run_script("cpu_int8", __doc__, main)
