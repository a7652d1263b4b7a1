"""TorchRunner keeps FP32 on CUDA out of TF32 while active, and restores torch's settings after.

No GPU here: torch reports one and the model is a stand-in that stays on the CPU; the settings
checked are torch's real global ones.
"""

from __future__ import annotations

import pytest

from dnx.runtime.backends.torch_runner import TorchRunner, _strict_fp32_settings


class StandInModel:
    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self


def current(torch):
    return [getattr(owner, name) for owner, name, _ in _strict_fp32_settings(torch)]


@pytest.fixture
def torch_sees_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return torch


def test_fp32_cuda_runner_turns_tf32_off_while_active(torch_sees_a_gpu):
    torch = torch_sees_a_gpu
    before = current(torch)
    runner = TorchRunner(StandInModel(), device="cuda")
    with runner:
        assert current(torch) == [value for _, _, value in _strict_fp32_settings(torch)]
    assert current(torch) == before


@pytest.mark.parametrize("kwargs", [{"device": "cuda", "fp16": True}, {"device": "cpu"}])
def test_fp16_and_cpu_runners_leave_the_settings_alone(torch_sees_a_gpu, kwargs):
    torch = torch_sees_a_gpu
    before = current(torch)
    with TorchRunner(StandInModel(), **kwargs):
        assert current(torch) == before


def test_the_settings_use_one_torch_api_only():
    """Mixing ``allow_tf32`` with ``fp32_precision`` makes torch raise; this torch has the new API."""
    import torch

    names = {name for _, name, _ in _strict_fp32_settings(torch)}
    assert names == ({"fp32_precision"} if hasattr(torch.backends.cudnn, "conv") else {"allow_tf32"})
