"""PyTorch backends (eager, torch.compile; CUDA with FP16 autocast and channels_last)."""

from __future__ import annotations

import numpy as np

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
    """

    def __init__(self, model, input_name: str = "input", output_name: str = "logits",
                 in_channels: int = 3, device: str = "cpu", fp16: bool = False,
                 channels_last: bool = False, compile: bool = False, threads: int = 0) -> None:
        super().__init__()
        self.model = model
        self.input_name, self.output_name = input_name, output_name
        self.in_channels = in_channels
        self.device, self.fp16, self.channels_last, self.compile = device, fp16, channels_last, compile
        self.threads = threads
        suffix = ("-compile" if compile else "") + ("-fp16" if fp16 else "") + ("-cuda" if device == "cuda" else "")
        self.name = "torch" + suffix
        self._fn = None
        self._restore: list[tuple[object, str, object]] = []

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
        self._fn = None
        for owner, name, value in self._restore:
            setattr(owner, name, value)
        self._restore = []

    def input_metadata(self) -> dict[str, TensorMeta]:
        return {self.input_name: TensorMeta(self.input_name, (None, self.in_channels, None, None), np.dtype(np.float32))}

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
        y = self._forward(self._to_input(feed[self.input_name]))
        return {self.output_name: y.float().cpu().numpy()}

    def synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

