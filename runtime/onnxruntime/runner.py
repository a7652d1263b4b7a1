"""onnxruntime backends: CPU, CUDA and TensorRT execution providers, behind the Runner interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.errors import DnxError, require
from dnx.runtime.base import Runner, TensorMeta, UnavailableBackend

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def import_onnxruntime():
    return require("onnxruntime", "test", "running ONNX files")  # a base dependency; extra is a fallback


def provider_available(device: str) -> tuple[bool, str]:
    """Whether onnxruntime can use ``device`` here, and why not."""
    ort = import_onnxruntime()
    wanted = PROVIDERS[device][0]
    if wanted not in ort.get_available_providers():
        return False, f"{wanted} is not in this onnxruntime build ({ort.__version__})"
    if device != "cpu":
        try:
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA device found"
        except ImportError:
            pass
    return True, ""


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file with onnxruntime.

    ``threads`` sets intra-op threads (0: onnxruntime's default). One InferenceSession; ``infer``
    may be called from several threads (onnxruntime sessions are thread-safe for ``run``).
    """

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0,
                 trt_cache_dir: str | None = None) -> None:
        super().__init__()
        if device not in PROVIDERS:
            raise DnxError(f"unknown onnxruntime device {device!r}; use one of {sorted(PROVIDERS)}")
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.trt_cache_dir = trt_cache_dir
        self.name = {"cpu": "ort-cpu", "cuda": "ort-cuda", "trt": "ort-trt"}[device]
        self.session = None

    def _activate(self) -> None:
        ort = import_onnxruntime()
        ok, why = provider_available(self.device)
        if not ok:
            raise UnavailableBackend(f"{self.name} unavailable: {why}")
        if not self.path.is_file():
            raise DnxError(f"ONNX file {self.path} does not exist")
        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        providers: list = list(PROVIDERS[self.device])
        if self.device == "trt":
            trt_opts = {"trt_engine_cache_enable": bool(self.trt_cache_dir)}
            if self.trt_cache_dir:
                trt_opts["trt_engine_cache_path"] = self.trt_cache_dir
            providers[0] = (providers[0], trt_opts)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DnxError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None

    def _deactivate(self) -> None:
        self.session = None

    def input_metadata(self) -> dict[str, TensorMeta]:
        if self.session is None:
            raise DnxError(f"{self.name}: activate the runner first")
        return {i.name: TensorMeta(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                                   np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()}

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names(), outputs))
