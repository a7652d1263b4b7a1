"""Which DenseNet graph form runs fastest under OpenVINO (`python -m dnx.benchmarks.experiments.graph_form_openvino`).

The OpenVINO counterpart of ``graph_form`` (whose forms were chosen on onnxruntime): densenet121 at
batch 1 on one OpenVINO CPU thread, the torchvision form (each layer concatenates all predecessors;
transitions convolve, then pool) vs the incremental form dnx exports (running feature map + k new
channels; transitions pool first), in FP32 and as ``--target openvino`` INT8. One more row compiles
the incremental INT8 file with its dynamic batch as OpenVINO reads it, where dnx's runner compiles
each batch size statically (needed for correctness, see ``openvino_repro/``): what that costs or saves.
Runs are interleaved so machine noise hits all rows alike. Writes benchmarks/results/graph_form_openvino.json.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from dnx.benchmarks.scripts import both_forms, run_script, save_result, time_interleaved
from dnx.core.machine import machine_info
from dnx.models import create_model
from dnx.runtime.backends.openvino_runner import cpu_capabilities, OpenVINORunner


class _DynamicCompile:
    """The file compiled once with its dynamic batch (OpenVINO's own default), one request."""

    def __init__(self, path: Path) -> None:
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        self.request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()

    def infer(self, feed: dict, check: bool = True) -> None:
        self.request.infer(feed, share_inputs=True)


def main(rounds: int = 15, per_round: int = 4, samples: int = 32) -> dict:
    loaded = create_model("densenet121")
    with tempfile.TemporaryDirectory() as tmp:
        files = both_forms(loaded, Path(tmp), samples, "openvino")
        runners = {k: OpenVINORunner(p, threads=1, precision="fp32").activate() for k, p in files.items()}
        runners["incremental int8, dynamic-batch compile"] = _DynamicCompile(files["incremental int8"])
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        rows = time_interleaved(runners, x, rounds, per_round, warmup=3)
    for k, v in rows.items():
        print(f"{k:42s} median {v['median_ms']:7.2f} ms  p90 {v['p90_ms']:7.2f} ms", file=sys.stderr)
    machine = {**machine_info(threads=1), "openvino_capabilities": cpu_capabilities()}
    out = {"benchmark": "graph_form_openvino", "model": "densenet121", "batch": 1, "threads": 1,
           "runtime": "OpenVINO CPU, INFERENCE_PRECISION_HINT f32", "machine": machine, "rows": rows}
    return save_result("graph_form_openvino", out)


if __name__ == "__main__":
    run_script("graph_form_openvino", __doc__, main)
