"""The ``dnx bench`` report (schema ``dnx.bench/1``): what :mod:`dnx.benchmarks.report` writes as JSON.

One run: the machine, the configuration, the model, the parity inputs, and for every requested backend
its latency per batch size and its parity with PyTorch FP32 on the CPU. Times are milliseconds,
throughput is images per second. Removing or renaming a field or changing a unit bumps the version in
``schema``; adding optional fields does not. Most objects are closed (an unknown key is an error): the
report is dnx's own output, and a misspelt key there is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dnx.core.documents import doc_field, read_document, to_json

SCHEMA = "dnx.bench/1"


@dataclass(frozen=True, kw_only=True)
class ParityInput:
    name: str = doc_field(description="'random', the model's reference set ('fashion-mnist test 1000', 'photo crops "
                                      "64'), or 'data:NAME' (--data).")
    samples: int = doc_field(minimum=1)
    labelled: bool
    source: str


@dataclass(frozen=True, kw_only=True)
class GpuSummary:
    name: str
    compute_capability: str = doc_field(pattern=r"^[0-9]+\.[0-9]+$")
    driver: str | None
    cuda: str | None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Versions:
    """Package versions; null when a package is not installed."""

    dnx: str | None
    torch: str | None
    onnxruntime: str | None
    tensorrt: str | None
    python: str | None
    extra: dict[str, str | None] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Threads:
    requested: int = doc_field(minimum=0, description="--threads; 0 means the libraries' defaults.")
    torch: int = doc_field(minimum=1)
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Machine:
    cpu: str = doc_field(description="CPU model name from /proc/cpuinfo.")
    isa_flags: tuple[str, ...] | None = doc_field(
        None, write_null=True,
        description="The CPU's AVX2/AVX-512/VNNI/BF16/AMX flags (which backend wins depends on them); absent in "
                    "reports older than the field.")
    physical_cores: int | None
    logical_cpus: int | None
    usable_cpus: int | None = doc_field(None, description="CPUs in this process's affinity mask.")
    os: str | None = None
    gpu: GpuSummary | None
    versions: Versions
    threads: Threads
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Pass criteria; null fields are not checked."""

    max_abs_diff: float | None
    min_top1_agreement: float | None = doc_field(minimum=0, maximum=1)
    min_cosine: float | None


@dataclass(frozen=True, kw_only=True)
class BenchConfigRecord:
    target: str | None
    engine: str | None
    backends: tuple[str, ...] = doc_field(description="As requested; empty means the machine's defaults.")
    batches: tuple[int, ...] = doc_field(minItems=1, items={"minimum": 1})
    iterations: int | None = doc_field(minimum=1)
    duration_s: float | None = doc_field(exclusiveMinimum=0)
    warmup_s: float = doc_field(minimum=0)
    threads: int = doc_field(minimum=0)
    data: str | None
    calib_data: str | None
    samples: int = doc_field(minimum=1)
    tolerances: dict[str, Tolerance]
    seed: int
    cuda_graphs: bool
    no_data_transfers: bool
    workdir: str | None
    ov_precision: Literal["auto", "fp32", "bf16"] | None = doc_field(
        None, description="--ov-precision of the OpenVINO backends.")


@dataclass(frozen=True, kw_only=True)
class ModelInput:
    name: str
    shape: tuple[int | str, ...]
    dtype: str
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    name: str
    weights: str = doc_field(description="sha256 of the weights file, or 'random-init:seed=N'.")
    weights_path: str | None
    input: ModelInput
    output: str
    source: str | None = doc_field(description="The ONNX file or engine benchmarked, or the model name.")
    reference: str


@dataclass(frozen=True, kw_only=True)
class Stats:
    """Per-inference latency over the timed iterations; percentiles by linear interpolation (numpy's default)."""

    min_ms: float = doc_field(minimum=0)
    mean_ms: float = doc_field(minimum=0)
    median_ms: float = doc_field(minimum=0)
    p90_ms: float = doc_field(minimum=0)
    p95_ms: float = doc_field(minimum=0)
    p99_ms: float = doc_field(minimum=0)
    max_ms: float = doc_field(minimum=0)
    std_ms: float = doc_field(minimum=0)
    iterations: int = doc_field(minimum=1)
    batch: int = doc_field(minimum=1)
    throughput: float = doc_field(minimum=0,
                                  description="Images per second: batch * iterations / total timed seconds.")


@dataclass(frozen=True, kw_only=True)
class LatencyEntry:
    batch: int = doc_field(minimum=1)
    error: str | None = doc_field(description="Why this batch size was not timed; null when it was.")
    timer: Literal["perf_counter", "cuda-event"] | None
    end_to_end: Stats | None = doc_field(description="Host inputs in, host outputs out (with --no-data-transfers on a "
                                                     "device-resident backend: GPU compute).")
    compute: Stats | None = doc_field(
        description="GPU compute only, on inputs already on the device; null where not measured.")
    notes: tuple[str, ...]
    speedup_vs_torch: float | None = doc_field(
        description="Median of the torch backend in this run divided by this median, same batch.")


@dataclass(frozen=True, kw_only=True)
class Comparison:
    name: str
    samples: int = doc_field(minimum=1)
    max_abs_diff: float = doc_field(minimum=0)
    mean_abs_diff: float = doc_field(minimum=0)
    max_rel_diff: float = doc_field(minimum=0)
    cosine: float
    min_cosine: float
    top1_agreement: float = doc_field(minimum=0, maximum=1)
    top5_agreement: float = doc_field(minimum=0, maximum=1)
    accuracy: float | None = doc_field(description="Backend accuracy against labels (labelled inputs only).")
    reference_accuracy: float | None
    passed: bool | None
    criterion: str = doc_field(description="The tolerance applied, or what failed it.")
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True, kw_only=True)
class ArtifactRecord:
    path: str | None = doc_field(description="Null when the file lived in a temporary work folder.")
    sha256: str = doc_field(pattern="^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class ParityRecord:
    passed: bool | None = doc_field(description="All cases within tolerance; null when parity was not checked.")
    tolerance: Tolerance | None
    cases: tuple[Comparison, ...]


@dataclass(frozen=True, kw_only=True)
class BackendRecord:
    backend: str = doc_field(description="A row of the backend table (dnx.runtime.backends.table): torch-cpu, "
                                         "torch-cuda, torch-cuda-fp16, onnxruntime-cpu, onnxruntime-cpu-int8, "
                                         "onnxruntime-cuda, onnxruntime-cuda-tensorrt, openvino-cpu, "
                                         "openvino-cpu-int8, tensorrt-cuda...")
    status: Literal["ok", "unavailable", "error"]
    reason: str | None = doc_field(description="Why the backend did not run (status unavailable or error).")
    precision: str | None = doc_field(description="fp32, fp16, int8, best, bf16 or tf32 (float reduced by the "
                                                  "backend), or unknown (an engine without a manifest).")
    device: str | None = doc_field(description="cpu or cuda (the row's device).")
    artifact: ArtifactRecord | None
    latency: tuple[LatencyEntry, ...]
    parity: ParityRecord
    notes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class BenchReport:
    """One `dnx bench` run: the machine, the configuration, the model, the parity inputs, and for every
    requested backend its latency per batch size and its parity with PyTorch FP32 on the CPU. Times are
    milliseconds, throughput is images per second. Removing or renaming a field or changing a unit bumps
    the version in `schema`; adding optional fields does not."""

    schema: Literal["dnx.bench/1"]
    created: str = doc_field(description="Local start time, ISO 8601 with UTC offset.")
    seconds: float = doc_field(minimum=0, description="Wall time of the whole run.")
    machine: Machine
    config: BenchConfigRecord
    model: ModelRecord
    inputs: tuple[ParityInput, ...] = doc_field(description="The parity input sets every backend received.")
    results: tuple[BackendRecord, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str = "the bench report", hint: str = "") -> BenchReport:
        return read_document(cls, data, where, hint)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)
