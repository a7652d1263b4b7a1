"""PyTorch backends (eager, torch.compile; CUDA with FP16 autocast, channels_last and CUDA graphs)."""

from __future__ import annotations

import numpy as np

from dnx.core.errors import DnxError
from dnx.runtime.backends.base import Runner, TensorMeta, UnavailableBackend


def _strict_fp32_settings(torch) -> list[tuple[object, str, object]]:
    """(owner, attribute, value) pairs that keep FP32 convolutions and matmuls out of TF32.

    cuDNN convolutions default to TF32 on Ampere and newer, which breaks FP32 parity at 1e-4.
    torch >= 2.9 has per-backend ``fp32_precision``; torch raises once the legacy ``allow_tf32``
    flags and that API are mixed, so only the newest API this torch has is used.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "ieee"), (torch.backends.cuda.matmul, "fp32_precision", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", False), (torch.backends.cuda.matmul, "allow_tf32", False)]


class TorchRunner(Runner):
    """Runs an ``nn.Module`` taking one NCHW float32 input named ``input_name``.

    Outputs are copied to host numpy arrays (float32). Not thread-safe: one runner per thread.
    An FP32 runner on CUDA turns TF32 off (process-wide, torch's settings are global) while it is
    active and restores the previous settings when deactivated.

    Device side (the base's interface): ``load_inputs`` keeps the input as a tensor on the device,
    ``infer_device`` queues the forward pass on torch's current stream (``cuda_stream``) and returns
    None. ``cuda_graphs=True`` (CUDA only) captures the forward pass on that input as a CUDA graph
    and replays it, in ``infer_device`` and in ``infer`` while the input shape stays the same; a
    capture that fails leaves ``cuda_graphs`` off and the reason in ``graph_error`` (it runs eagerly).
    """

    device_resident = True

    def __init__(self, model, input_name: str = "input", output_name: str = "logits",
                 in_channels: int = 3, device: str = "cpu", fp16: bool = False,
                 channels_last: bool = False, compile: bool = False, threads: int = 0,
                 cuda_graphs: bool = False) -> None:
        super().__init__()
        self.model = model
        self.input_name, self.output_name = input_name, output_name
        self.in_channels = in_channels
        self.device, self.fp16, self.channels_last, self.compile = device, fp16, channels_last, compile
        self.threads = threads
        self.cuda_graphs = cuda_graphs and device == "cuda"
        self.graph_error: str | None = None
        self.name = f"torch-{device}" + ("-compile" if compile else "") + ("-fp16" if fp16 else "")
        self._fn = None
        self._restore: list[tuple[object, str, object]] = []
        self._static_in = self._static_out = self._graph = None

    def _activate(self) -> None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise UnavailableBackend(f"{self.name} unavailable: no CUDA device found")
        if self.fp16 and self.device != "cuda":
            raise UnavailableBackend(f"{self.name} unavailable: FP16 autocast is measured on CUDA only")
        if self.threads:
            torch.set_num_threads(self.threads)
        model = self.model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            try:
                model = torch.compile(model)
            except Exception as exc:  # backend/compiler missing on this machine
                raise UnavailableBackend(f"{self.name} unavailable: torch.compile failed: {exc}") from None
        # Last, so a failed activation leaves nothing to restore; torch.compile reads it at the first call.
        if self.device == "cuda" and not self.fp16:
            settings = _strict_fp32_settings(torch)
            self._restore = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
            for owner, name, value in settings:
                setattr(owner, name, value)
        self._fn = model

    def _deactivate(self) -> None:
        self._static_in = self._static_out = self._graph = None
        self._fn = None
        for owner, name, value in self._restore:
            setattr(owner, name, value)
        self._restore = []

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {self.input_name: TensorMeta(self.input_name, (None, self.in_channels, None, None),
                                            np.dtype(np.float32))}

    def output_names(self) -> list[str]:
        return [self.output_name]

    def _to_input(self, array: np.ndarray):
        """The input tensor on the runner's device, in its memory format."""
        import torch

        x = torch.from_numpy(array).to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _forward(self, x):
        import torch

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            return self._fn(x)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.cuda_graphs:
            y = self._forward(self._to_input(feed[self.input_name]))
            return {self.output_name: y.float().cpu().numpy()}
        import torch

        x = feed[self.input_name]
        if self._graph is None or tuple(self._static_in.shape) != x.shape:
            self.load_inputs(feed, check=False)
            if self._graph is None:  # the capture failed: eager from now on
                return self._infer(feed)
        else:
            self._static_in.copy_(torch.from_numpy(x))
        self._graph.replay()
        return {self.output_name: self._static_out.float().cpu().numpy()}

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    # -- device side ---------------------------------------------------------------------------
    @property
    def uses_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def cuda_stream(self):
        if self.device != "cuda":
            return None
        import torch

        return torch.cuda.current_stream()

    def load_inputs(self, feed: dict[str, np.ndarray], check: bool = True) -> None:
        if check:
            self._check_feed(feed)
        self._static_in, self._static_out, self._graph = self._to_input(feed[self.input_name]), None, None
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

    def infer_device(self) -> float | None:
        if self._static_in is None:
            raise DnxError(f"{self.name}: call load_inputs(feed) before infer_device()")
        if self._graph is not None:
            self._graph.replay()
        else:
            self._static_out = self._forward(self._static_in)
        return None

    def fetch_outputs(self) -> dict[str, np.ndarray]:
        if self._static_out is None:
            raise DnxError(f"{self.name}: nothing has run yet; call load_inputs(feed) and infer_device() first")
        return {self.output_name: self._static_out.float().cpu().numpy()}

