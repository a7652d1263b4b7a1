"""`dnx bench`'s use of the backend table (:mod:`dnx.runtime.backends.table`): the default rows for a
machine, and each row's Runner on the file bench prepared for it (:func:`make_runner`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from dnx.runtime.backends.base import Runner
from dnx.runtime.backends.table import Backend, RunOptions, TorchModel

if TYPE_CHECKING:
    from dnx.benchmarks.artifacts import Artifacts
    from dnx.benchmarks.harness import BenchConfig

OPENVINO_ROWS = ("openvino-cpu", "openvino-cpu-int8")


def default_backends(has_cuda: bool, has_engine: bool, target_precision: str = "fp32",
                     has_openvino: bool = False) -> tuple[str, ...]:
    """torch-cpu, onnxruntime-cpu, onnxruntime-cpu-int8 on a CPU machine, plus openvino-cpu and
    openvino-cpu-int8 where OpenVINO is installed (on CPUs it is the fastest FP32 and INT8 runtime dnx
    measured); torch-cuda, torch-cuda-fp16 and onnxruntime-cuda (and tensorrt-cuda with an engine) with a GPU.

    A target ONNX file that is already INT8 drops the -int8 rows: onnxruntime-cpu and openvino-cpu run that file.
    """
    if has_cuda:
        names = ["torch-cuda", "torch-cuda-fp16", "onnxruntime-cuda"]
    else:
        names = ["torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-int8"] + (list(OPENVINO_ROWS) if has_openvino else [])
    if target_precision == "int8":
        names = [n for n in names if not n.endswith("-int8")]
    return tuple(names + (["tensorrt-cuda"] if has_engine else []))


def make_runner(row: Backend, art: Artifacts, config: BenchConfig) -> tuple[Runner, str, str, Path | None]:
    """(runner, precision, device, file run) of one row; raises UnavailableBackend."""
    row.require()
    options = RunOptions(threads=config.threads, cuda_graphs=config.cuda_graphs,
                         cache_dir=str(art.workdir / "ort-trt-cache"),
                         extra={"precision": config.ov_precision} if row.backend == "openvino" else {})
    if row.takes == "model":
        loaded = art.model()
        # A copy: the runner moves and reformats its module in place; the reference stays on the CPU.
        model = TorchModel(copy.deepcopy(loaded.model), art.input_name, art.output_name, loaded.config.in_channels)
        return row.runner(model, options), "fp16" if row.runner_options.get("fp16") else "fp32", row.device, None
    path, precision = art.path_for(row.file)
    return row.runner(path, options), precision, row.device, path
