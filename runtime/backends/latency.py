"""Latency of one Runner on one input: trtexec-style warm-up, then a fixed count or a fixed duration.

On CPU each inference is timed with ``time.perf_counter`` around ``runner.infer(feed, check=False)``.
On CUDA backends CUDA events time it instead, recorded on the runner's own stream (``cuda_stream``;
events on torch's default stream would not order with a runner's non-blocking stream, and would
measure wall time): end to end (host inputs in, host outputs out: H2D + compute + D2H) and, where
the runner can run on inputs already on the device, GPU compute alone. The loops do nothing else per
iteration (no allocation beyond one list append, no checks), so the harness adds well under a
microsecond to a measurement of milliseconds.

The device side is the Runner contract's (``base.py``): ``uses_cuda``, ``device_resident``,
``load_inputs``, ``infer_device`` (GPU seconds where the runner times its own stream, preferred;
otherwise events are recorded around it on ``cuda_stream``, else on torch's current stream) and
``cuda_stream``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from dnx.core.errors import DnxError
from dnx.runtime.backends.base import Runner

# trtexec's defaults: 200 ms of warm-up, 3 s of measurement, at least 10 inferences.
DEFAULT_WARMUP_S = 0.2
DEFAULT_DURATION_S = 3.0
MIN_ITERATIONS = 10


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-inference latencies of one batch size, in milliseconds.

    Percentiles are numpy's default (linear interpolation between the two nearest samples).
    Throughput is images per second over the timed inferences: ``batch * iterations / sum``.
    """

    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    iterations: int
    batch: int
    throughput: float  # images/s

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], batch: int) -> "LatencyStats":
        ms = np.asarray(samples_ms, dtype=np.float64)
        if ms.size == 0:
            raise ValueError("no latency samples")
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return cls(min_ms=float(ms.min()), mean_ms=float(ms.mean()), median_ms=float(p50),
                   p90_ms=float(p90), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(ms.max()),
                   std_ms=float(ms.std()), iterations=int(ms.size), batch=batch,
                   throughput=float(batch * ms.size * 1000.0 / ms.sum()))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LatencyMeasurement:
    """End-to-end latency, and GPU compute latency where the backend exposes it."""

    end_to_end: LatencyStats
    compute: LatencyStats | None
    timer: str  # "perf_counter" or "cuda-event"
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"timer": self.timer, "end_to_end": self.end_to_end.to_dict(),
                "compute": self.compute.to_dict() if self.compute else None, "notes": list(self.notes)}


def _feed_batch(feed: dict[str, np.ndarray]) -> int:
    return int(next(iter(feed.values())).shape[0])


def _warm_up(call, warmup_s: float) -> None:
    """Run ``call`` until ``warmup_s`` has passed; at least once, so lazy initialisation is excluded."""
    deadline = time.perf_counter() + warmup_s
    call()
    while time.perf_counter() < deadline:
        call()


def _time_host(call, iterations: int | None, duration_s: float, min_iterations: int) -> list[float]:
    perf = time.perf_counter
    samples: list[float] = []
    append = samples.append
    if iterations is not None:
        for _ in range(iterations):
            start = perf()
            call()
            append(perf() - start)
    else:
        deadline = perf() + duration_s
        end = 0.0
        while end < deadline or len(samples) < min_iterations:
            start = perf()
            call()
            end = perf()
            append(end - start)
    return [s * 1000.0 for s in samples]


def _repeat(measure_ms, iterations: int | None, duration_s: float, min_iterations: int) -> list[float]:
    """Call ``measure_ms`` (returns one latency in ms) ``iterations`` times, or until ``duration_s``
    has passed and at least ``min_iterations`` times."""
    if iterations is not None:
        return [measure_ms() for _ in range(iterations)]
    samples: list[float] = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or len(samples) < min_iterations:
        samples.append(measure_ms())
    return samples


def _event_timer(call, stream):
    """A ``measure_ms`` timing ``call`` with CUDA events on ``stream``. Each call is waited for, so
    work that is only enqueued never piles up and each sample is one inference."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def measure_ms() -> float:
        start.record(stream)
        call()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end)

    return measure_ms


def _torch_stream(runner: Runner):
    import torch

    stream = runner.cuda_stream
    if stream is None:
        return torch.cuda.current_stream()
    if isinstance(stream, int):
        return torch.cuda.ExternalStream(stream)
    return stream


def _gpu_compute(runner: Runner, feed, warmup_s: float, timing: tuple, notes: list[str]) -> LatencyStats | None:
    """GPU time of ``infer_device`` on inputs already on the device; None (noted) where the runner
    has no device-resident path or it fails."""
    import torch

    if not runner.device_resident:
        notes.append(f"{runner.name} exposes no device-only inference; GPU compute time not measured")
        return None
    infer_device = runner.infer_device
    try:
        runner.load_inputs(feed, check=False)
        deadline = time.perf_counter() + warmup_s
        self_timed = infer_device() is not None  # the first warm-up call says who times the runs
        torch.cuda.synchronize()
        while time.perf_counter() < deadline:
            infer_device()
            torch.cuda.synchronize()
        if self_timed:
            def measure_ms() -> float:
                return infer_device() * 1000.0
        else:
            measure_ms = _event_timer(infer_device, _torch_stream(runner))
            if runner.cuda_stream is None:
                # e.g. onnxruntime, whose stream is its own: its run returns once the GPU is done, so
                # the events bracket launch and compute as the host sees them
                notes.append(f"{runner.name}: GPU compute timed with CUDA events around a call that waits for "
                             "the GPU (launch overhead included)")
        samples = _repeat(measure_ms, *timing)
    except RuntimeError as exc:  # a CUDA error, or a backend library refusing the device path
        notes.append(f"GPU compute timing unavailable: {type(exc).__name__}: {exc}")
        return None
    return LatencyStats.from_samples(samples, _feed_batch(feed))


def measure_latency(runner: Runner, feed: dict[str, np.ndarray], warmup_s: float = DEFAULT_WARMUP_S,
                    iterations: int | None = None, duration_s: float | None = None,
                    cuda_events: bool = False, no_data_transfers: bool = False,
                    min_iterations: int = MIN_ITERATIONS) -> LatencyMeasurement:
    """Time ``runner`` (active) on ``feed``: warm up for ``warmup_s``, then run ``iterations``
    inferences, or for ``duration_s`` seconds (default 3 s) and at least ``min_iterations``.

    ``cuda_events`` times with CUDA events and adds GPU compute time when the runner is
    ``device_resident``; ``no_data_transfers`` then reports that compute time as the end-to-end figure.
    Callers pass ``cuda_events=runner.uses_cuda`` to time each runner on its own clock.
    """
    if iterations is not None and duration_s is not None:
        raise DnxError("give either a number of iterations or a duration, not both")
    if iterations is not None and iterations < 1:
        raise DnxError(f"iterations must be >= 1, got {iterations}")
    timing = (iterations, DEFAULT_DURATION_S if duration_s is None else duration_s, min_iterations)
    batch = _feed_batch(feed)
    infer = runner.infer

    def host_call():
        infer(feed, check=False)

    notes: list[str] = []
    if cuda_events:
        try:
            import torch

            cuda_events = torch.cuda.is_available()
        except ImportError:
            cuda_events = False
        if not cuda_events:
            notes.append("CUDA events unavailable (no torch CUDA); timed with perf_counter")
    if not cuda_events:
        if no_data_transfers:
            notes.append("no data transfers on a host backend: nothing to exclude")
        _warm_up(host_call, warmup_s)
        samples = _time_host(host_call, *timing)
        return LatencyMeasurement(LatencyStats.from_samples(samples, batch), None, "perf_counter", tuple(notes))

    compute = _gpu_compute(runner, feed, warmup_s, timing, notes)
    if no_data_transfers:
        if compute is not None:
            notes.append("--no-data-transfers: end-to-end is GPU compute on device-resident inputs")
            return LatencyMeasurement(compute, compute, "cuda-event", tuple(notes))
        notes.append(f"{runner.name} has no device-resident path; end-to-end includes transfers")
    _warm_up(host_call, warmup_s)
    samples = _repeat(_event_timer(host_call, _torch_stream(runner)), *timing)
    return LatencyMeasurement(LatencyStats.from_samples(samples, batch), compute, "cuda-event", tuple(notes))
