"""onnxruntime backends: CPU, CUDA and TensorRT execution providers, behind the Runner interface."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError, require
from dnx.runtime.backends.base import Runner, TensorMeta, UnavailableBackend

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# FP32 stays FP32 on Ampere and newer: the CUDA provider's cuDNN convolutions and GEMMs default to TF32.
CUDA_OPTIONS = {"use_tf32": 0}

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def import_onnxruntime():
    return require("onnxruntime", "test", "running ONNX files")  # a base dependency; extra is a fallback


def provider_available(device: str) -> tuple[bool, str]:
    """Whether onnxruntime's build has ``device``'s provider and a CUDA device exists, and why not.

    Being in the build is not loading: the provider's libraries (cuDNN, libnvinfer) are only loaded
    when a session is created, which is why :class:`OnnxRuntimeRunner` checks the session's providers too.
    """
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


def _tensorrt_ep_precision() -> str | None:
    """"tf32" where onnxruntime's TensorRT provider runs FP32 layers in TF32 (Ampere or newer, TensorRT's
    default, and onnxruntime 1.31 has no provider option to clear it; only ``NVIDIA_TF32_OVERRIDE=0``)."""
    if os.environ.get("NVIDIA_TF32_OVERRIDE") == "0":
        return None
    import torch

    return "tf32" if torch.cuda.get_device_capability()[0] >= 8 else None


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file with onnxruntime.

    ``threads`` sets intra-op threads (0: onnxruntime's default). One InferenceSession; ``infer``
    may be called from several threads (onnxruntime sessions are thread-safe for ``run``).

    Activation refuses (:class:`UnavailableBackend`) when onnxruntime silently fell back to another
    provider than the one asked for (e.g. cuDNN or libnvinfer could not be loaded): a CPU number
    must never be reported as onnxruntime-cuda. ``inference_precision`` is "tf32" where the TensorRT
    provider rounds FP32 math to TF32 (reports give such rows their own label and tolerance).

    Device-resident inputs (the base's device side; for GPU timing without copies, single thread):
    ``load_inputs(feed)`` binds copies of the inputs on the provider's device through an IOBinding,
    ``infer_device()`` runs on them (onnxruntime returns when the GPU is done, on its own stream, so it
    returns None and ``cuda_stream`` is None), ``fetch_outputs()`` reads the result.
    """

    device_resident = True
    NAMES = {"cpu": "onnxruntime-cpu", "cuda": "onnxruntime-cuda", "trt": "onnxruntime-cuda-tensorrt"}

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 0,
                 trt_cache_dir: str | None = None, trt_options: dict | None = None) -> None:
        super().__init__()
        if device not in PROVIDERS:
            raise DnxError(f"unknown onnxruntime device {device!r}; use one of {sorted(PROVIDERS)}")
        self.path = Path(path)
        self.device = device
        self.threads = threads
        self.trt_cache_dir = trt_cache_dir
        self.trt_options = dict(trt_options or {})  # more TensorRT provider options, e.g. trt_profile_*_shapes
        self.name = self.NAMES[device]
        self.session = None
        self._output_names: list[str] = []
        self._binding = None

    @property
    def uses_cuda(self) -> bool:
        return self.device != "cpu"

    def _providers(self) -> list:
        providers: list = list(PROVIDERS[self.device])
        if self.device != "cpu":
            providers[providers.index("CUDAExecutionProvider")] = ("CUDAExecutionProvider", dict(CUDA_OPTIONS))
        if self.device == "trt":
            trt_opts = {"trt_engine_cache_enable": bool(self.trt_cache_dir)}
            if self.trt_cache_dir:
                trt_opts["trt_engine_cache_path"] = self.trt_cache_dir
            trt_opts.update(self.trt_options)
            providers[0] = (providers[0], trt_opts)
        return providers

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
        try:
            session = ort.InferenceSession(str(self.path), sess_options=opts, providers=self._providers())
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DnxError(f"onnxruntime cannot load {self.path}: {str(exc).splitlines()[0]}") from None
        wanted, got = PROVIDERS[self.device][0], session.get_providers()
        if not got or got[0] != wanted:
            raise UnavailableBackend(f"{self.name} unavailable: onnxruntime could not load {wanted} (its CUDA, "
                                     f"cuDNN or TensorRT libraries are missing or do not match) and fell back to "
                                     f"{got[0] if got else 'no provider'}")
        self.session = session
        self._output_names = [o.name for o in session.get_outputs()]
        self.inference_precision = _tensorrt_ep_precision() if self.device == "trt" else None

    def _deactivate(self) -> None:
        self.session = None
        self._binding = None

    def _require_active(self) -> None:
        if self.session is None:
            raise DnxError(f"{self.name}: activate the runner first")

    def input_metadata(self) -> dict[str, TensorMeta]:
        self._require_active()
        return {i.name: TensorMeta(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                                   np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()}

    def output_names(self) -> list[str]:
        self._require_active()
        return list(self._output_names)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, feed)
        return dict(zip(self._output_names, outputs))

    # -- device-resident inputs (IOBinding) --------------------------------------------------------
    def load_inputs(self, feed: dict[str, np.ndarray], check: bool = True) -> None:
        """Copy ``feed`` to the provider's device once and bind it; outputs stay there too."""
        self._require_active()
        if check:
            self._check_feed(feed)
        ort = import_onnxruntime()
        where = "cpu" if self.device == "cpu" else "cuda"
        binding = self.session.io_binding()
        for name, array in feed.items():
            # On the CPU an OrtValue wraps the numpy buffer itself: bind a copy, as CUDA does.
            value = np.array(array, order="C", copy=True) if where == "cpu" else np.ascontiguousarray(array)
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, where, 0))
        for name in self._output_names:
            binding.bind_output(name, where, 0)
        self._binding = binding

    def infer_device(self) -> float | None:
        """One run on the bound inputs, nothing copied; returns once the outputs are ready."""
        if self._binding is None:
            raise DnxError(f"{self.name}: call load_inputs(feed) before infer_device()")
        self.session.run_with_iobinding(self._binding)
        return None

    def fetch_outputs(self) -> dict[str, np.ndarray]:
        """The outputs of the last ``infer_device`` (copied to the host)."""
        if self._binding is None:
            raise DnxError(f"{self.name}: nothing has run yet; call load_inputs(feed) and infer_device() first")
        return dict(zip(self._output_names, self._binding.copy_outputs_to_cpu()))
