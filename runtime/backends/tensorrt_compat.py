"""TensorRT 10.x and 11.x behind one code path: loading the module and the few places they differ.

Nothing here imports tensorrt at module level; ``import_tensorrt`` checks for a CUDA device first,
because creating a TensorRT ``Runtime`` on a machine without a GPU driver segfaults the interpreter.

Conventions checked by :mod:`tests/runtime/tensorrt/tensorrt_api/trt_api_check.py` (read by a test on every machine):

* the tensorrt module is always bound to the name ``trt`` (a parameter or ``trt = import_tensorrt()``);
  functions that receive TensorRT objects annotate them (``config: trt.IBuilderConfig``), with
  ``tensorrt`` imported only under ``TYPE_CHECKING``;
* a name that exists in one major version only is used inside ``if is_trt11(trt):`` or
  ``if trt_major_version(trt) >= 11:`` (or their ``else``); a name that arrived after the oldest
  supported release (:data:`MIN_VERSION`) is used inside ``if trt_version(trt) >= (10, 9):`` with
  the version of :data:`trt_api_versions.FIRST_IN`. Such branches live in this module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

from dnx.core.errors import DnxError, MissingDependencyError, NoDeviceError

if TYPE_CHECKING:
    import tensorrt as trt

SUPPORTED_MAJORS = (10, 11)
# The oldest release dnx claims (pyproject's ``tensorrt>=10``); the static API check reads its bindings.
MIN_VERSION = (10, 0)
INSTALL_HINT = "pip install 'dnx[trt]'"

# numpy-style names of the TensorRT data types dnx reports (manifests, inspect, runner buffers).
_DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
                "INT32": "int32", "INT64": "int64", "BOOL": "bool", "FP8": "float8_e4m3fn", "INT4": "int4",
                "FP4": "float4_e2m1fn"}

# Callback of a build: (phase name, steps done, steps in the phase). Nested phases are "outer/inner".
ProgressCallback = Callable[[str, int, int], None]


class TensorRTError(DnxError):
    """TensorRT refused a step; ``code`` names it: parse, build, deserialize, shape, execute."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [trt-{code}]")
        self.code = code


def require_cuda_device(device: int = 0) -> None:
    """Raise :class:`NoDeviceError` unless CUDA device ``device`` is usable (torch is a base dependency)."""
    import torch

    if not torch.cuda.is_available():
        raise NoDeviceError("no CUDA device found: TensorRT builds and runs engines on an NVIDIA GPU; "
                            "run this on a machine with one and a working driver")
    count = torch.cuda.device_count()
    if device >= count:
        raise NoDeviceError(f"no CUDA device found with index {device}: this machine has {count}; "
                            f"choose a device below {count}")


def import_tensorrt(device: int = 0):
    """The tensorrt module, after checking for a CUDA device; a :class:`MissingDependencyError` if absent."""
    require_cuda_device(device)
    try:
        import tensorrt as trt
    except ImportError as exc:  # also raised when sys.modules["tensorrt"] is None
        raise MissingDependencyError(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    except OSError as exc:  # the wheel is there but libnvinfer is not (e.g. the PyPI placeholder)
        raise MissingDependencyError(f"TensorRT is installed but cannot load ({exc}): {INSTALL_HINT}") from exc
    major = trt_major_version(trt)
    if major not in SUPPORTED_MAJORS:
        raise MissingDependencyError(f"TensorRT {trt.__version__} is not supported (dnx supports "
                                     f"{' and '.join(f'{m}.x' for m in SUPPORTED_MAJORS)}): {INSTALL_HINT}")
    return trt


def trt_major_version(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def trt_version(trt) -> tuple[int, ...]:
    """``(10, 8, 0, 43)`` from ``trt.__version__``; compare with a literal tuple, ``>= (10, 9)``."""
    return tuple(int(p) for p in re.findall(r"\d+", str(trt.__version__))[:4])


def is_trt11(trt) -> bool:
    return trt_major_version(trt) >= 11


def network_creation_flags(trt) -> int:
    """Flags for ``Builder.create_network``: always a strongly typed network.

    Precision comes from the ONNX file's types (FP16 graph, Q/DQ graph), never from builder flags.
    """
    if is_trt11(trt):
        # 11.x networks are always strongly typed (the flag is accepted and ignored); EXPLICIT_BATCH is gone.
        flags = 0
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def hardware_compatibility_level(trt, choice: str):
    """The ``trt.HardwareCompatibilityLevel`` of a ``--hardware-compat`` choice (none, ampere+, same-cc).

    Only the level asked for is looked up: ``SAME_COMPUTE_CAPABILITY`` first appeared in TensorRT 10.9,
    and reading it on 10.0-10.8 would fail every build, including those that never asked for it.
    """
    if choice == "none":
        return trt.HardwareCompatibilityLevel.NONE
    if choice == "ampere+":
        return trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if choice != "same-cc":
        raise DnxError(f"--hardware-compat must be one of none, ampere+, same-cc, got {choice!r}")
    if trt_version(trt) >= (10, 9):
        return trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    raise DnxError(f"--hardware-compat same-cc needs TensorRT 10.9 or newer; this machine has TensorRT "
                   f"{trt.__version__}: upgrade TensorRT, or use --hardware-compat ampere+ or none")


def has_progress_monitor(trt) -> bool:
    # IProgressMonitor appeared during 10.x; older 10.x builds simply run without progress reports.
    return hasattr(trt, "IProgressMonitor")


def dtype_name(dtype: trt.DataType) -> str:
    """numpy-style name of a TensorRT data type (``DataType.HALF`` -> ``"float16"``)."""
    name = str(dtype.name)
    return _DTYPE_NAMES.get(name, name.lower())


def make_logger(trt):
    """A ``trt.ILogger`` that records warnings and errors instead of printing them (library code never prints).

    ``logger.records`` is a list of ``(severity name, message)``; ``logger.errors()`` the error texts.
    The subclass is defined here so that importing this module never needs tensorrt.
    """
    keep = int(trt.ILogger.Severity.WARNING)

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.records: list[tuple[str, str]] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if int(severity) <= keep:
                self.records.append((str(severity.name), str(msg)))

        def errors(self) -> list[str]:
            return [m for s, m in self.records if s in ("ERROR", "INTERNAL_ERROR")]

        def warnings(self) -> list[str]:
            return [m for s, m in self.records if s == "WARNING"]

    return RecordingLogger()


def make_progress_monitor(trt, callback: ProgressCallback):
    """A ``trt.IProgressMonitor`` forwarding build phases to ``callback``, or None where unavailable.

    An exception in ``callback`` (Ctrl-C included) stops the build: it is kept out of TensorRT's C++
    frames, ``step_complete`` answers False (``build_serialized_network`` then returns None), and
    ``check()`` re-raises it.
    """
    if not has_progress_monitor(trt):
        return None

    class ForwardingMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._totals: dict[str, int] = {}
            self._paths: dict[str, str] = {}
            self.error: BaseException | None = None

        def _call(self, phase: str, step: int) -> bool:
            if self.error is not None:  # stopping: TensorRT may still report the phases it unwinds
                return False
            try:
                callback(self._paths.get(phase, phase), step, self._totals.get(phase, 0))
            except BaseException as exc:  # noqa: BLE001 - re-raised by check() outside TensorRT
                self.error = exc
                return False
            return True

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            parent = self._paths.get(parent_phase or "", "")
            self._paths[phase_name] = f"{parent}/{phase_name}" if parent else phase_name
            self._totals[phase_name] = int(num_steps)
            self._call(phase_name, 0)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return self._call(phase_name, int(step) + 1)

        def phase_finish(self, phase_name: str) -> None:
            self._call(phase_name, self._totals.get(phase_name, 0))

        def check(self) -> None:
            if self.error is not None:
                raise self.error

    return ForwardingMonitor()
