"""`dnx bench`'s backends: the table of names (what file each runs, whether it needs CUDA), the default
list for a machine, and the Runner each is made into (:func:`_make_runner`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dnx.core.machine import cuda_available
from dnx.runtime.backends.base import Runner, UnavailableBackend
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner
from dnx.runtime.backends.torch_runner import TorchRunner
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner, provider_available
from dnx.runtime.backends.openvino_runner import openvino_available, OpenVINORunner

if TYPE_CHECKING:
    from dnx.benchmarks.artifacts import Artifacts
    from dnx.benchmarks.harness import BenchConfig


@dataclass(frozen=True)
class BackendSpec:
    name: str
    artifact: str  # what the runner takes: "model", "onnx" (FP32), "int8", "fp16" or "engine"
    cuda_only: bool
    summary: str


BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("torch", "model", False, "PyTorch eager FP32 (CUDA when available, else CPU)"),
    BackendSpec("torch-cuda-fp16", "model", True, "PyTorch eager, FP16 autocast, channels_last, CUDA"),
    BackendSpec("torch-compile", "model", False, "torch.compile (inductor) FP32 (CUDA when available)"),
    BackendSpec("ort-cpu", "onnx", False, "onnxruntime CPU provider, FP32 ONNX"),
    BackendSpec("ort-int8", "int8", False, "onnxruntime CPU provider, INT8 QDQ ONNX calibrated for onnxruntime"),
    BackendSpec("ort-fp16", "fp16", False, "onnxruntime, FP16 ONNX (CUDA provider when available, else CPU)"),
    BackendSpec("ort-cuda", "onnx", True, "onnxruntime CUDA provider, FP32 ONNX"),
    BackendSpec("ort-trt", "onnx", True, "onnxruntime TensorRT provider, FP32 ONNX"),
    BackendSpec("trt", "engine", True, "TensorRT engine (--engine)"),
    BackendSpec("ov-cpu", "onnx", False, "OpenVINO CPU, the target's ONNX (FP32, or the INT8 target as it is)"),
    BackendSpec("ov-int8", "int8-openvino", False, "OpenVINO CPU, INT8 QDQ ONNX calibrated for OpenVINO (NNCF)"),
)}
OPENVINO_BACKENDS = ("ov-cpu", "ov-int8")


def default_backends(has_cuda: bool, has_engine: bool, target_precision: str = "fp32",
                     has_openvino: bool = False) -> tuple[str, ...]:
    """torch, ort-cpu, ort-int8 on a CPU machine, plus ov-cpu and ov-int8 where OpenVINO is installed
    (on CPUs it is the fastest FP32 and INT8 runtime dnx measured); the CUDA backends (and the engine)
    with a GPU.

    A target ONNX file that is already INT8 drops ort-int8 and ov-int8: ort-cpu and ov-cpu run that file.
    """
    names = ["torch", "torch-cuda-fp16", "ort-cuda"] if has_cuda else ["torch", "ort-cpu", "ort-int8"]
    if not has_cuda and has_openvino:
        names += list(OPENVINO_BACKENDS)
    if target_precision == "int8":
        names = [n for n in names if n not in ("ort-int8", "ov-int8")]
    return tuple(names + (["trt"] if has_engine else []))


# -- runners ----------------------------------------------------------------------------------

class _BenchTorchRunner(TorchRunner):
    """TorchRunner plus the device hooks :func:`measure_latency` duck-types (``upload`` /
    ``infer_device``) and, with ``cuda_graphs``, inference replayed from a captured CUDA graph."""

    def __init__(self, *args, cuda_graphs: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cuda_graphs = cuda_graphs and self.device == "cuda"
        self.graph_error: str | None = None
        self._static_in = self._static_out = self._graph = None

    @property
    def uses_cuda(self) -> bool:
        return self.device == "cuda"

    def _deactivate(self) -> None:
        self._static_in = self._static_out = self._graph = None
        super()._deactivate()

    def upload(self, feed: dict[str, np.ndarray]) -> None:
        self._static_in, self._graph = self._to_input(feed[self.input_name]), None
        if self.cuda_graphs:
            self._capture()

    def _capture(self) -> None:
        import torch

        try:
            # Warm up on a side stream first (cuDNN autotuning, allocator pools), as torch's docs ask.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._forward(self._static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_out = self._forward(self._static_in)
            self._graph = graph
        except RuntimeError as exc:
            self.cuda_graphs, self.graph_error = False, f"CUDA graph capture failed, ran eagerly: {exc}"

    def infer_device(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._forward(self._static_in)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.cuda_graphs:
            return super()._infer(feed)
        import torch

        x = feed[self.input_name]
        if self._graph is None or tuple(self._static_in.shape) != x.shape:
            self.upload(feed)
            if self._graph is None:
                return super()._infer(feed)
        else:
            self._static_in.copy_(torch.from_numpy(x))
        self._graph.replay()
        return {self.output_name: self._static_out.float().cpu().numpy()}


def _tensorrt_runner(engine: Path, cuda_graphs: bool = False) -> Runner:
    # Never touch TensorRT without a CUDA device: creating its Runtime there can crash the process.
    if not cuda_available():
        raise UnavailableBackend("no CUDA device found")
    return TensorRTRunner(engine, cuda_graph=True) if cuda_graphs else TensorRTRunner(engine)


def _make_runner(spec: BackendSpec, art: Artifacts, config: BenchConfig,
                 has_cuda: bool) -> tuple[Runner, str, str, Path | None]:
    """(runner, precision, device, file run) for one backend; raises UnavailableBackend."""

    if spec.cuda_only and not has_cuda:
        raise UnavailableBackend("no CUDA device found")
    if spec.artifact == "model":
        loaded = art.model()
        device = "cuda" if has_cuda else "cpu"
        fp16 = spec.name == "torch-cuda-fp16"
        # A copy: the runner moves and reformats its module in place; the reference stays on the CPU.
        runner = _BenchTorchRunner(copy.deepcopy(loaded.model), art.input_name, art.output_name,
                                   loaded.config.in_channels, device=device, fp16=fp16, channels_last=fp16,
                                   compile=spec.name == "torch-compile", threads=config.threads,
                                   cuda_graphs=config.cuda_graphs)
        return runner, "fp16" if fp16 else "fp32", device, None
    if spec.artifact == "engine":
        path, precision = art.path_for("engine")
        return _tensorrt_runner(path, config.cuda_graphs), precision, "cuda", path
    if spec.name in OPENVINO_BACKENDS:

        ok, why = openvino_available()
        if not ok:
            raise UnavailableBackend(why)
        path, precision = art.path_for(spec.artifact)
        return OpenVINORunner(path, threads=config.threads, precision=config.ov_precision), precision, "cpu", path
    device = {"ort-cuda": "cuda", "ort-trt": "trt"}.get(spec.name, "cpu")
    if spec.name == "ort-fp16" and has_cuda:
        device = "cuda"
    ok, why = provider_available(device)
    if not ok:
        raise UnavailableBackend(why)
    path, precision = art.path_for(spec.artifact)
    trt_cache = str(art.workdir / "ort-trt-cache") if device == "trt" else None
    return OnnxRuntimeRunner(path, device, threads=config.threads, trt_cache_dir=trt_cache), precision, device, path
