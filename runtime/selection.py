"""Which backend runs an artifact, and the Runner that does it: a row of the backend table
(:mod:`dnx.runtime.backends.table`) whose ``load`` mark says dnx.load may pick it. ``backend`` is
``auto``, a backend (onnxruntime, openvino, tensorrt, with ``device``) or a row's name
(``onnxruntime-cuda`` is backend onnxruntime on device cuda).

The ``auto`` rule (recorded with its reason in ``Classifier.info()["backend_reason"]``):

1. A TensorRT engine runs on ``tensorrt`` (nothing else can read it).
2. An ONNX file on a machine with a CUDA device (and ``device`` not ``cpu``) runs on ``onnxruntime``'s
   CUDA provider.
3. On a CPU, the fastest backend that is installed *and* proven for the artifact's precision (run at
   that precision: OpenVINO gets an explicit f32 inference hint, as its CPU plugin would otherwise run
   FP32 graphs in BF16 on CPUs with AVX-512 BF16 or AMX): OpenVINO
   when installed, else onnxruntime. Measured in one run on an Intel Xeon with AVX-512 VNNI
   (``benchmarks/results/cpu_int8.json``, densenet121 bs1, 1 thread): every dnx INT8 placement runs
   faster on OpenVINO than on onnxruntime (``--target openvino`` 24.6 ms, ``tensorrt`` 27.4, ``onnxruntime``
   37.3 vs onnxruntime's 40.0 on its own placement), FP32 is within 3%, and OpenVINO adds BF16 where the
   CPU has it when asked (``precision="bf16"``). Proven: ``tests/calibration/test_openvino_target.py``
   keeps OpenVINO at cosine >= 0.99 vs FP32 on every dnx INT8 placement (dnx's runner compiles fixed
   batch shapes, which avoids OpenVINO 2026.4's dynamic-batch Q/DQ defect:
   ``benchmarks/experiments/openvino_repro/``).
   The rule is a table from measurements, not a timing run at load: loading stays fast and
   deterministic, and the same artifact picks the same backend on every replica.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnx.core.errors import DnxError
from dnx.runtime.artifact import Artifact
from dnx.runtime.backends.base import Runner, UnavailableBackend
from dnx.runtime.backends.table import Backend, known, resolve, row_for, RunOptions, TABLE

LOAD_ROWS = tuple(name for name, row in TABLE.items() if row.load)
BACKENDS = ("auto", *dict.fromkeys(TABLE[name].backend for name in LOAD_ROWS))
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # onnxruntime, openvino, tensorrt
    device: str  # cpu or cuda
    reason: str

    @property
    def row(self) -> Backend:
        """The backend table's row: its name (``onnxruntime-cpu``...) is the runner's name."""
        return row_for(self.backend, self.device)


def _backend_and_device(backend: str, device: str) -> tuple[str, str]:
    """``backend`` as a backend name, with a row's name (or an old name of one) split into its backend and device."""
    if backend in BACKENDS or not known(backend):
        if backend not in BACKENDS:
            raise DnxError(f"backend must be one of {', '.join(BACKENDS)} (or a row: {', '.join(LOAD_ROWS)}), "
                           f"got {backend!r}")
        return backend, device
    row = resolve(backend)
    if not row.load:
        raise DnxError(f"backend {row.name} is a `dnx bench` backend; dnx.load runs an artifact on "
                       f"{', '.join(LOAD_ROWS)} (or auto)")
    if device not in ("auto", row.device):
        raise DnxError(f"backend {row.name} runs on {row.device}, not device={device!r}")
    return row.backend, row.device


def choose_backend(artifact: Artifact, backend: str = "auto", device: str = "auto",
                   precision: str | None = None) -> BackendChoice:
    """``precision``: a reduced float precision asked for ("bf16"), which only OpenVINO on a CPU runs."""
    if device not in DEVICES:
        raise DnxError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    backend, device = _backend_and_device(backend, device)
    if precision is not None:
        return _reduced_choice(artifact, backend, device, precision)
    if artifact.kind == "engine":
        if backend not in ("auto", "tensorrt"):
            raise DnxError(f"{artifact.path} is a TensorRT engine; only backend='tensorrt' can run it")
        if device == "cpu":
            raise DnxError(f"{artifact.path} is a TensorRT engine; it needs device='cuda' (or 'auto')")
        return BackendChoice("tensorrt", "cuda", "a TensorRT engine runs on TensorRT")
    if backend == "tensorrt":
        raise DnxError(f"{artifact.path} is an ONNX file; build an engine with `dnx build {artifact.path}` "
                       "for backend='tensorrt', or use backend='onnxruntime'")
    if backend == "openvino":
        if device == "cuda":
            raise DnxError("dnx runs OpenVINO on the CPU only; use device='cpu' or backend='onnxruntime'")
        return BackendChoice("openvino", "cpu", "asked for")
    if backend == "onnxruntime":
        return BackendChoice("onnxruntime", "cpu" if device == "auto" else device, "asked for")
    if device in ("auto", "cuda"):
        ok, why = TABLE["onnxruntime-cuda"].available()
        if ok:
            return BackendChoice("onnxruntime", "cuda", "ONNX on a CUDA device: onnxruntime's CUDA provider")
        if device == "cuda":
            raise UnavailableBackend(f"device='cuda' asked for, but {why}")
    return _cpu_choice(artifact)


def _reduced_choice(artifact: Artifact, backend: str, device: str, precision: str) -> BackendChoice:
    if backend not in ("auto", "openvino") or device == "cuda":
        raise DnxError(f"precision {precision!r} runs on OpenVINO's CPU plugin only; use backend='openvino' "
                       f"(or 'auto') and device='cpu' (or 'auto'), or run the artifact as written (fp32)")
    ok, why_not = TABLE["openvino-cpu"].available()
    if not ok:
        raise UnavailableBackend(f"precision {precision!r} needs OpenVINO: {why_not}")
    return BackendChoice("openvino", "cpu", f"{precision} asked for: OpenVINO's CPU plugin runs it")


def _cpu_choice(artifact: Artifact) -> BackendChoice:
    what = artifact.precision.upper() + (f" placed for {artifact.calibration_target}"
                                         if artifact.calibration_target else "")
    ov, why_not = TABLE["openvino-cpu"].available()
    if ov:
        return BackendChoice("openvino", "cpu", f"{what} on a CPU: OpenVINO is the fastest installed backend")
    return BackendChoice("onnxruntime", "cpu", f"{what} on a CPU: onnxruntime ({why_not})")


def make_runner(artifact: Artifact, choice: BackendChoice, threads: int | None = None,
                options: dict | None = None) -> Runner:
    """The (not yet activated) Runner for ``choice``. ``options`` go to the backend's constructor."""
    return choice.row.runner(artifact.path, RunOptions(threads=threads or 0, extra=dict(options or {})))
