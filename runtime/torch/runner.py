"""PyTorch backends (eager, torch.compile; CUDA with FP16 autocast and channels_last)."""

from __future__ import annotations

import numpy as np

from dnx.runtime.base import Runner, TensorMeta, UnavailableBackend


class TorchRunner(Runner):
    """Runs an ``nn.Module`` taking one NCHW float32 input named ``input_name``.

    Outputs are copied to host numpy arrays (float32). Not thread-safe: one runner per thread.
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
        self._fn = model

    def _deactivate(self) -> None:
        self._fn = None

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

