"""The machine a benchmark ran on: CPU model and cores, GPU and driver, library versions, threads.
:func:`machine_info` is what a result records beside its numbers, so that a measurement can be
read against the hardware and software that produced it; :func:`cuda_available` says whether
torch sees a CUDA device here (False where torch is not installed). Both read the machine only:
nothing here imports tensorrt, which can crash a process where there is no driver.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
from dnx.core.version import __version__


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# The instruction sets that decide which CPU backend and precision win (VNNI: INT8 dot products;
# AVX-512 BF16 / AMX: BF16 and INT8 matrix units).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def isa_flags() -> list[str] | None:
    """Which of :data:`ISA_FLAGS` this CPU has (Linux /proc/cpuinfo); None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return [f for f in ISA_FLAGS if f in flags]


def cpu_model() -> str:
    return _cpu_model()[0]


def _cpu_model() -> tuple[str, int | None]:
    """CPU model name and physical core count from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), None
    name, cores, phys = "", set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not name:
            name = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return name or platform.machine(), len(cores) or None


def _dist_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def machine_info(threads: int = 0) -> dict:
    """What a number was measured on: CPU, cores, GPU, library versions, threads."""
    import torch

    cpu, physical = _cpu_model()
    gpu = None
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        gpu = {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}",
               "driver": _nvidia_driver(), "cuda": torch.version.cuda}
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    # Distribution metadata, not an import: importing tensorrt where there is no driver can crash.
    versions = {"dnx": __version__, "torch": torch.__version__,
                "onnxruntime": _dist_version("onnxruntime-gpu", "onnxruntime"),
                "onnx": _dist_version("onnx"), "numpy": np.__version__,
                "openvino": _dist_version("openvino"), "nncf": _dist_version("nncf"),
                "tensorrt": _dist_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"),
                "python": platform.python_version()}
    return {"cpu": cpu, "isa_flags": isa_flags(), "physical_cores": physical, "logical_cpus": os.cpu_count(),
            "usable_cpus": affinity,
            "gpu": gpu, "os": platform.platform(), "versions": versions,
            "threads": {"requested": threads, "torch": torch.get_num_threads()}}
