"""Shared fixtures and the gpu/trt skip rules (skips are printed by `-rs`)."""

from __future__ import annotations

import importlib.util

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    cuda = _has_cuda()
    # find_spec only: importing tensorrt (or creating a Runtime) without a driver can crash.
    trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none on this machine"))
        if "trt" in item.keywords and not (cuda and trt):
            why = "TensorRT is not installed" if not trt else "no CUDA device"
            item.add_marker(pytest.mark.skip(reason=f"needs real TensorRT and a CUDA device: {why}"))
