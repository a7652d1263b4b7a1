"""The backend table: every way dnx runs a model, one row each, with the one name used everywhere.

A row is one backend on one device, with a precision variant where the row runs a file of its own.
Its name is ``{backend}-{device}[-{variant}]``: ``backend`` is what ``dnx.load(backend=...)`` and
``dnx serve --backend`` take (torch, onnxruntime, openvino, tensorrt) and ``device`` what ``--device``
takes (cpu, cuda), so ``--backend onnxruntime --device cuda`` is the row ``onnxruntime-cuda``.

=============================  ===========  ======  ==============  ==========================================
name                           backend      device  file            runs
=============================  ===========  ======  ==============  ==========================================
torch-cpu                      torch        cpu     model           PyTorch eager FP32
torch-cpu-compile              torch        cpu     model           torch.compile (inductor) FP32
torch-cuda                     torch        cuda    model           PyTorch eager FP32 (TF32 off)
torch-cuda-fp16                torch        cuda    model           eager, FP16 autocast, channels_last
torch-cuda-compile             torch        cuda    model           torch.compile (inductor) FP32
onnxruntime-cpu                onnxruntime  cpu     onnx            CPU provider, the ONNX file as given
onnxruntime-cpu-int8           onnxruntime  cpu     int8            CPU provider, INT8 Q/DQ placed for onnxruntime
onnxruntime-cpu-fp16           onnxruntime  cpu     fp16            CPU provider, FP16 ONNX
onnxruntime-cuda               onnxruntime  cuda    onnx            CUDA provider, the ONNX file as given
onnxruntime-cuda-fp16          onnxruntime  cuda    fp16            CUDA provider, FP16 ONNX
onnxruntime-cuda-tensorrt      onnxruntime  cuda    onnx            TensorRT provider, the ONNX file as given
openvino-cpu                   openvino     cpu     onnx            OpenVINO CPU, the ONNX file as given
openvino-cpu-int8              openvino     cpu     int8-openvino   OpenVINO CPU, INT8 Q/DQ placed for OpenVINO
tensorrt-cuda                  tensorrt     cuda    engine          a ``dnx build`` engine (its own precision)
=============================  ===========  ======  ==============  ==========================================

``file`` is what the row's runner is given: ``model`` (a :class:`TorchModel`), ``onnx`` (the ONNX file
as given: FP32, or an INT8/FP16 file run as it is), ``engine``, or the reduced-precision ONNX file
``dnx bench`` prepares for the row (``int8``, ``int8-openvino``, ``fp16``). Each row has an
availability check (:meth:`Backend.missing`) and a runner factory (:meth:`Backend.runner`); options
that are not a row (threads, CUDA graphs, OpenVINO's bf16) are :class:`RunOptions`.

Readers: ``dnx.load``'s auto rule (:mod:`dnx.runtime.selection`; it may pick the rows marked
``load``), ``dnx bench`` (:mod:`dnx.benchmarks.backends`) and the GPU check
(:mod:`dnx.benchmarks.gpu_check`). Names from before the table (``ort-cpu``, ``ov-int8``, ``trt``,
bench's device-dependent ``torch``...) still resolve, with a one-line deprecation on stderr.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Callable, Mapping

from dnx.core.errors import DnxError
from dnx.core.machine import cuda_available
from dnx.runtime.backends.base import Runner, UnavailableBackend
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner, provider_available
from dnx.runtime.backends.openvino_runner import openvino_available, OpenVINORunner
from dnx.runtime.backends.tensorrt_compat import INSTALL_HINT
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner
from dnx.runtime.backends.torch_runner import TorchRunner

NO_CUDA = "no CUDA device found"


@dataclass(frozen=True)
class TorchModel:
    """What a torch row runs: an ``nn.Module`` taking one NCHW float32 input."""

    module: Any
    input_name: str = "input"
    output_name: str = "logits"
    in_channels: int = 3


@dataclass(frozen=True)
class RunOptions:
    """Options of one run that are not a row of the table."""

    threads: int = 0  # CPU intra-op threads (0: the backend's default; torch's is process-wide)
    cuda_graphs: bool = False  # torch on CUDA and TensorRT: replay the inference from a captured CUDA graph
    cache_dir: str | None = None  # where onnxruntime's TensorRT provider keeps its engines
    extra: Mapping[str, Any] = field(default_factory=dict)  # more constructor options of the row's runner


# -- availability: what this machine lacks for a row (empty: it can run) -------------------------

def _cuda() -> list[str]:
    return [] if cuda_available() else [NO_CUDA]


def _torch_missing(row: "Backend") -> list[str]:
    return _cuda() if row.device == "cuda" else []


def _onnxruntime_missing(row: "Backend") -> list[str]:
    ok, why = provider_available(row.runner_options.get("provider", row.device))
    return [] if ok else [why]


def _openvino_missing(row: "Backend") -> list[str]:
    ok, why = openvino_available()
    return [] if ok else [why]


def _tensorrt_missing(row: "Backend") -> list[str]:
    # Read without importing TensorRT: without a CUDA device, creating its Runtime can crash the process.
    return _cuda() + ([] if find_spec("tensorrt") else [f"TensorRT is not installed: {INSTALL_HINT}"])


# -- runner factories ----------------------------------------------------------------------------

def _torch_runner(row: "Backend", source: TorchModel, options: RunOptions) -> Runner:
    return TorchRunner(source.module, source.input_name, source.output_name, source.in_channels, device=row.device,
                       threads=options.threads, cuda_graphs=options.cuda_graphs, **row.runner_options, **options.extra)


def _onnxruntime_runner(row: "Backend", source: Path, options: RunOptions) -> Runner:
    provider = row.runner_options.get("provider", row.device)
    cache = {"trt_cache_dir": options.cache_dir} if provider == "trt" and options.cache_dir else {}
    return OnnxRuntimeRunner(source, provider, threads=options.threads, **cache, **options.extra)


def _openvino_runner(row: "Backend", source: Path, options: RunOptions) -> Runner:
    return OpenVINORunner(source, threads=options.threads, **options.extra)


def _tensorrt_runner(row: "Backend", source: Path, options: RunOptions) -> Runner:
    return TensorRTRunner(source, cuda_graph=options.cuda_graphs, **options.extra)


# backend -> (runner factory, availability check) of its rows
_BACKENDS: dict[str, tuple[Callable, Callable[["Backend"], list[str]]]] = {
    "torch": (_torch_runner, _torch_missing), "onnxruntime": (_onnxruntime_runner, _onnxruntime_missing),
    "openvino": (_openvino_runner, _openvino_missing), "tensorrt": (_tensorrt_runner, _tensorrt_missing)}


@dataclass(frozen=True)
class Backend:
    """One row of the table (see the module doc)."""

    name: str
    backend: str
    device: str
    file: str  # model | onnx | engine | int8 | int8-openvino | fp16
    summary: str
    runner_options: Mapping[str, Any] = field(default_factory=dict)  # fixed by the row
    load: bool = False  # dnx.load / dnx serve may run an artifact on it

    @property
    def takes(self) -> str:
        """What the runner is given: "model", "onnx" or "engine"."""
        return self.file if self.file in ("model", "engine") else "onnx"

    def missing(self) -> list[str]:
        """What this machine lacks to run the row (no CUDA device, a provider, a package); empty if nothing."""
        return _BACKENDS[self.backend][1](self)

    def available(self) -> tuple[bool, str]:
        missing = self.missing()
        return not missing, "; ".join(missing)

    def runner(self, source: TorchModel | str | Path, options: RunOptions | None = None) -> Runner:
        """The row's Runner (not yet activated) for ``source``: a :class:`TorchModel` for torch rows,
        else the file's path. Named after the row."""
        if (self.takes == "model") != isinstance(source, TorchModel):
            raise DnxError(f"backend {self.name} runs {'a torch model' if self.takes == 'model' else 'a file'}, "
                           f"not {type(source).__name__}")
        factory = _BACKENDS[self.backend][0]
        runner = factory(self, source if isinstance(source, TorchModel) else Path(source), options or RunOptions())
        runner.name = self.name
        return runner

    def require(self) -> "Backend":
        """The row, or :class:`UnavailableBackend` naming what this machine lacks."""
        ok, why = self.available()
        if not ok:
            raise UnavailableBackend(f"{self.name} unavailable: {why}")
        return self


TABLE: dict[str, Backend] = {row.name: row for row in (
    Backend("torch-cpu", "torch", "cpu", "model", "PyTorch eager FP32 on the CPU"),
    Backend("torch-cpu-compile", "torch", "cpu", "model", "torch.compile (inductor) FP32 on the CPU",
            {"compile": True}),
    Backend("torch-cuda", "torch", "cuda", "model", "PyTorch eager FP32 on CUDA (TF32 off)"),
    Backend("torch-cuda-fp16", "torch", "cuda", "model", "PyTorch eager, FP16 autocast, channels_last, CUDA",
            {"fp16": True, "channels_last": True}),
    Backend("torch-cuda-compile", "torch", "cuda", "model", "torch.compile (inductor) FP32 on CUDA",
            {"compile": True}),
    Backend("onnxruntime-cpu", "onnxruntime", "cpu", "onnx", "onnxruntime CPU provider, the ONNX file as given",
            load=True),
    Backend("onnxruntime-cpu-int8", "onnxruntime", "cpu", "int8",
            "onnxruntime CPU provider, INT8 Q/DQ ONNX calibrated for onnxruntime"),
    Backend("onnxruntime-cpu-fp16", "onnxruntime", "cpu", "fp16", "onnxruntime CPU provider, FP16 ONNX"),
    Backend("onnxruntime-cuda", "onnxruntime", "cuda", "onnx", "onnxruntime CUDA provider, the ONNX file as given",
            load=True),
    Backend("onnxruntime-cuda-fp16", "onnxruntime", "cuda", "fp16", "onnxruntime CUDA provider, FP16 ONNX"),
    Backend("onnxruntime-cuda-tensorrt", "onnxruntime", "cuda", "onnx",
            "onnxruntime TensorRT provider, the ONNX file as given", {"provider": "trt"}),
    Backend("openvino-cpu", "openvino", "cpu", "onnx",
            "OpenVINO CPU, the ONNX file as given (FP32, or an INT8 file as it is)", load=True),
    Backend("openvino-cpu-int8", "openvino", "cpu", "int8-openvino",
            "OpenVINO CPU, INT8 Q/DQ ONNX calibrated for OpenVINO (NNCF)"),
    Backend("tensorrt-cuda", "tensorrt", "cuda", "engine", "TensorRT engine from `dnx build` (its own precision)",
            load=True),
)}

# Names from before the table -> (the row on a machine without CUDA, the row with CUDA).
ALIASES: dict[str, tuple[str, str]] = {
    "torch": ("torch-cpu", "torch-cuda"),
    "torch-compile": ("torch-cpu-compile", "torch-cuda-compile"),
    "torch-compile-cuda": ("torch-cuda-compile",) * 2,
    "ort-cpu": ("onnxruntime-cpu",) * 2,
    "ort-int8": ("onnxruntime-cpu-int8",) * 2,
    "ort-fp16": ("onnxruntime-cpu-fp16", "onnxruntime-cuda-fp16"),
    "ort-cuda": ("onnxruntime-cuda",) * 2,
    "ort-trt": ("onnxruntime-cuda-tensorrt",) * 2,
    "ov-cpu": ("openvino-cpu",) * 2,
    "ov-int8": ("openvino-cpu-int8",) * 2,
    "trt": ("tensorrt-cuda",) * 2,
}
_WARNED: set[str] = set()


def known(name: str) -> bool:
    return name in TABLE or name in ALIASES


def unknown_name_error(names: list[str], what: str = "backend") -> DnxError:
    """One error for names that are neither rows nor old names, with a close match where one exists."""
    def hint(name: str) -> str:
        close = difflib.get_close_matches(name, [*TABLE, *ALIASES], n=1)
        return f"{name!r}" + (f" (did you mean {resolve_name(close[0], warn=False)}?)" if close else "")
    return DnxError(f"unknown {what} {', '.join(map(hint, names))}; choose from {', '.join(TABLE)}")


def resolve_name(name: str, cuda: bool | None = None, warn: bool = True) -> str:
    """The row name for ``name``: a row's own, or an old name's row (on this machine: an old name like
    bench's ``torch`` meant CUDA where there was one; ``cuda`` None asks torch). An old name prints a
    one-line deprecation on stderr, once per process."""
    if name in TABLE:
        return name
    if name not in ALIASES:
        raise unknown_name_error([name])
    without, with_cuda = ALIASES[name]
    row = without if without == with_cuda else (with_cuda if (cuda_available() if cuda is None else cuda) else without)
    if warn and name not in _WARNED:
        _WARNED.add(name)
        print(f"dnx: note: backend name {name!r} is deprecated; use {row!r}", file=sys.stderr)
    return row


def resolve(name: str, cuda: bool | None = None) -> Backend:
    """The row called ``name`` (or an old name for it; see :func:`resolve_name`)."""
    return TABLE[resolve_name(name, cuda)]


def row_for(backend: str, device: str) -> Backend:
    """The plain row (no variant) of ``backend`` on ``device``: what ``--backend B --device D`` runs."""
    return TABLE[f"{backend}-{device}"]
