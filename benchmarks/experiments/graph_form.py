"""Which DenseNet graph form runs fastest once quantized (`python -m dnx.benchmarks.experiments.graph_form`).

densenet121 at batch 1 on one onnxruntime CPU thread: the torchvision form (each layer concatenates
all predecessors; transitions convolve, then pool) vs the incremental form dnx exports (running
feature map + k new channels; transitions pool first), in FP32 and as onnxruntime-placed INT8 QDQ,
plus the incremental INT8 without calibrate's depthwise rewrites (BNs and average pools left as
they are). Runs are interleaved so machine noise hits all five alike.
Writes benchmarks/results/graph_form.json.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from dnx.benchmarks.scripts import both_forms, run_script, save_result, time_interleaved
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.machine import machine_info
from dnx.models import create_model
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


def main(rounds: int = 15, per_round: int = 4, samples: int = 32) -> dict:
    loaded = create_model("densenet121")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = both_forms(loaded, tmp, samples, "onnxruntime", method="minmax")
        # what dnx's depthwise rewrites of the BNs and average pools buy (calibrate_qdq's default)
        files["incremental int8 (float BN)"] = calibrate_qdq(
            files["incremental fp32"], tmp / "incremental.int8-bn.onnx", tmp / "photos", target="onnxruntime",
            method="minmax", samples=samples, depthwise=False).path
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        runners = {k: OnnxRuntimeRunner(p, threads=1).activate() for k, p in files.items()}
        rows = time_interleaved(runners, x, rounds, per_round, warmup=3)
    for k, v in rows.items():
        print(f"{k:28s} median {v['median_ms']:7.2f} ms  p90 {v['p90_ms']:7.2f} ms", file=sys.stderr)
    out = {"benchmark": "graph_form", "model": "densenet121", "batch": 1, "threads": 1,
           "machine": machine_info(threads=1), "rows": rows}
    return save_result("graph_form", out)


if __name__ == "__main__":
    run_script("graph_form", __doc__, main)
