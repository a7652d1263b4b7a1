"""The TensorRT checks of ``make gpu-check`` besides latency: version-compatible engines, ``dnx inspect``, two GPUs.

    version-compat-python   densenet121 built with --version-compat, loaded by TensorRTRunner (host code
                            allowed), parity against PyTorch FP32 on the CPU
    version-compat-cpp      the same engine through libdnx_runtime (tests/dnx-tensorrt-probe, built where
                            CMake finds TensorRT), parity against the Python runner on the same inputs
    inspect-trt10/11        dnx inspect's per-layer summary on the installed TensorRT (the other major is
                            skipped, naming it: one machine has one TensorRT)
    two-gpus-python/cpp     the engine on device 1, the caller's device unchanged afterwards

Each check is a :class:`~dnx.benchmarks.gpu_common.PathResult` (status ran / skipped with the reason /
failed), reported in the same table as the latency paths. A version-compatible engine's promise (built
with 10.x, runs on 11.x) needs two TensorRT versions: here it is built and loaded with one, which
checks the opt-in (host code) and dnx's own rule, not NVIDIA's across-version support.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dnx.benchmarks.gpu_common import PARITY_BATCH, TOLERANCES, Context, PathResult, Skip
from dnx.core.compare import Tolerance, compare_logits
from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError
from dnx.core.fileio import atomic_path
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.tensorrt_compat import import_tensorrt, trt_major_version
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner
from dnx.runtime.tensorrt.builder import build_engine, BuildOptions
from dnx.runtime.tensorrt.inspect import inspect_engine

CHECKS = ("version-compat-python", "version-compat-cpp", "inspect-trt10", "inspect-trt11", "two-gpus-python",
          "two-gpus-cpp")
# The same engine, the same inputs: C++ and Python run the same kernels.
SAME_ENGINE = Tolerance(max_abs_diff=1e-3, min_cosine=0.99999)
ESTIMATE_S = 60  # builder optimization level 0 keeps the one extra build short
PROBE_ENV = "DNX_TENSORRT_PROBE"
PROBE_DEFAULT = Path(__file__).resolve().parents[1] / "build" / "cpp" / "tests" / "dnx-tensorrt-probe"


def _trt():
    try:
        return import_tensorrt(0)
    except MissingDependencyError as exc:
        raise Skip(str(exc)) from None


def _version_compat_engine(ctx: Context) -> Path:
    if "version-compat" not in ctx.engines:
        _trt()
        if ctx.budget.left() < ESTIMATE_S:
            raise Skip(f"time budget: {ctx.budget.left():.0f} s left, the engine build needs about {ESTIMATE_S} s")
        options = BuildOptions(precision="fp32", min_batch=1, opt_batch=PARITY_BATCH, max_batch=PARITY_BATCH,
                               opt_level=0, version_compat=True)
        path = ctx.workdir / "model.version-compat.engine"
        build_engine(ctx.onnx, path, options, progress=ctx.budget.check, workdir=ctx.workdir)
        ctx.engines["version-compat"] = path
    return ctx.engines["version-compat"]


def _python_logits(ctx: Context, device: int) -> np.ndarray:
    import torch

    engine = _version_compat_engine(ctx)
    before = torch.cuda.current_device()
    with TensorRTRunner(engine, device=device) as runner:
        out = run_in_batches(runner, ctx.x, PARITY_BATCH, pad=True)
    if torch.cuda.current_device() != before:
        raise DnxError(f"the runner on device {device} left device {torch.cuda.current_device()} current, not {before}")
    return out


def _probe(ctx: Context, device: int) -> dict:
    probe = Path(os.environ.get(PROBE_ENV) or PROBE_DEFAULT)
    if not probe.is_file():
        raise Skip(f"no {probe}: libdnx_runtime was not built with TensorRT here (runtime/cpp/build_and_test.sh "
                   f"builds it where CMake finds TensorRT and CUDA; or set {PROBE_ENV})")
    inputs = ctx.workdir / "parity_inputs.f32"
    with atomic_path(inputs) as tmp:
        np.ascontiguousarray(ctx.x, dtype=np.float32).tofile(tmp)
    done = subprocess.run([str(probe), str(_version_compat_engine(ctx)), str(device), str(inputs), str(len(ctx.x))],
                          capture_output=True, text=True, timeout=max(10.0, ctx.budget.left()))
    if done.returncode != 0:
        raise DnxError(f"dnx-tensorrt-probe failed: {(done.stderr.strip() or done.stdout.strip())[:300]}")
    report = json.loads(done.stdout)
    if not report["device_restored"]:
        raise DnxError(f"libdnx_runtime left the calling thread on another device than {report['caller_device']}")
    return report


def _parity(result: PathResult, reference: np.ndarray, out: np.ndarray, tolerance: Tolerance) -> None:
    comparison = tolerance.apply(compare_logits(reference, np.asarray(out).reshape(reference.shape)))
    result.parity = {**asdict(comparison), "passed": bool(comparison)}
    if not comparison:
        raise DnxError(f"parity failed: {comparison}")


def _check(name: str, ctx: Context, result: PathResult) -> None:
    import torch

    reference = ctx.reference
    if name.startswith("two-gpus") and torch.cuda.device_count() < 2:
        raise Skip(f"{torch.cuda.device_count()} CUDA device here; this check needs two")
    device = 1 if name.startswith("two-gpus") else 0
    if name.endswith("-python"):
        out = ctx.outputs[f"python-{device}"] = _python_logits(ctx, device)
        _parity(result, reference, out, TOLERANCES["tf32"])  # TensorRT runs FP32 layers in TF32 by default
    elif name.endswith("-cpp"):
        report = _probe(ctx, device)
        python = ctx.outputs.get(f"python-{device}")
        if python is None:
            python = _python_logits(ctx, device)
        _parity(result, python, np.asarray(report["logits"], dtype=np.float32), SAME_ENGINE)
        result.notes.append(f"{report['backend']}, caller on device {report['caller_device']}, restored")
    else:  # inspect-trt10 / inspect-trt11

        trt, wanted = _trt(), int(name.removeprefix("inspect-trt"))
        if trt_major_version(trt) != wanted:
            raise Skip(f"this machine has TensorRT {trt.__version__}; the {wanted}.x check needs TensorRT {wanted}")
        layers = inspect_engine(_version_compat_engine(ctx))["layers"]
        known = {k: v for k, v in layers["output_precision"].items() if k != "other"}
        if not (layers["detailed"] and layers["count"] > 0 and known):
            raise DnxError(f"dnx inspect read no layer precisions from TensorRT {trt.__version__}: {layers}")
        result.notes.append(f"TensorRT {trt.__version__}: {layers['count']} layers, output precisions {known}")


def run_check(name: str, ctx: Context | None, why_not: str | None) -> PathResult:
    result = PathResult(name)
    start = time.monotonic()
    try:
        if why_not:
            raise Skip(why_not)
        _check(name, ctx, result)
        result.status = "ran"
    except (Skip, NoDeviceError, MissingDependencyError) as exc:
        result.reason = str(exc)
    except DnxError as exc:
        result.status, result.reason = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken check is reported, and the others still run
        result.status, result.reason = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    result.seconds = round(time.monotonic() - start, 1)
    return result
