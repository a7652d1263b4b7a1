"""Latency statistics and the timing loop: exact numbers on known samples, iteration/duration modes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dnx.runtime.backends.latency import LatencyStats, measure_latency
from dnx.core.errors import DnxError
from dnx.runtime.backends.base import Runner, TensorMeta


class CountingRunner(Runner):
    """Sleeps ``delay_s`` per inference and counts calls."""

    name = "counting"

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s, self.calls = delay_s, 0

    def input_metadata(self):
        return {"input": TensorMeta("input", (None, 1), np.dtype(np.float32))}

    def output_names(self):
        return ["logits"]

    def _infer(self, feed):
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return {"logits": feed["input"]}


FEED = {"input": np.zeros((4, 1), dtype=np.float32)}


def test_stats_on_known_samples():
    s = LatencyStats.from_samples(np.arange(1, 101, dtype=float), batch=4)
    assert (s.min_ms, s.max_ms, s.mean_ms, s.median_ms) == (1.0, 100.0, 50.5, 50.5)
    # numpy's default linear interpolation: rank (n - 1) * q between neighbours.
    assert s.p90_ms == pytest.approx(90.1, abs=1e-12)
    assert s.p95_ms == pytest.approx(95.05, abs=1e-12)
    assert s.p99_ms == pytest.approx(99.01, abs=1e-12)
    assert s.std_ms == pytest.approx(np.sqrt((100 ** 2 - 1) / 12), rel=1e-12)  # population std of 1..n
    assert s.iterations == 100 and s.batch == 4
    # 4 images per inference, 100 inferences, 5050 ms in all.
    assert s.throughput == pytest.approx(4 * 100 * 1000 / 5050, rel=1e-12)


def test_stats_single_sample_and_order_independence():
    s = LatencyStats.from_samples([2.5], batch=1)
    assert s.min_ms == s.median_ms == s.p99_ms == s.max_ms == 2.5 and s.std_ms == 0.0
    assert s.throughput == pytest.approx(400.0)
    shuffled = np.random.default_rng(0).permutation(np.arange(1, 101, dtype=float))
    assert LatencyStats.from_samples(shuffled, 4) == LatencyStats.from_samples(np.arange(1, 101, dtype=float), 4)


def test_stats_reject_empty():
    with pytest.raises(ValueError):
        LatencyStats.from_samples([], batch=1)


def test_to_dict_has_every_field():
    d = LatencyStats.from_samples([1.0, 2.0, 3.0], 2).to_dict()
    assert set(d) == {"min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "std_ms",
                      "iterations", "batch", "throughput"}


def test_iteration_mode_times_exactly_n_after_warmup():
    with CountingRunner() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=7)
    assert m.end_to_end.iterations == 7 and m.end_to_end.batch == 4
    assert runner.calls == 8  # one warm-up call even with warmup_s=0: lazy initialisation is never timed
    assert m.timer == "perf_counter" and m.compute is None


def test_duration_mode_runs_for_the_duration_and_at_least_min_iterations():
    with CountingRunner(delay_s=0.002) as runner:
        start = time.perf_counter()
        m = measure_latency(runner, FEED, warmup_s=0.0, duration_s=0.05, min_iterations=3)
        elapsed = time.perf_counter() - start
    assert elapsed >= 0.05 and m.end_to_end.iterations >= 3
    assert m.end_to_end.min_ms >= 2.0  # each sample includes the 2 ms sleep
    with CountingRunner() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, duration_s=1e-6, min_iterations=10)
    assert m.end_to_end.iterations >= 10


def test_warmup_is_by_time():
    with CountingRunner(delay_s=0.005) as runner:
        measure_latency(runner, FEED, warmup_s=0.05, iterations=1)
    assert runner.calls >= 1 + 0.05 / 0.005 * 0.5  # generous: sleep can overshoot on a busy machine


def test_iterations_and_duration_are_exclusive():
    with CountingRunner() as runner, pytest.raises(DnxError, match="not both"):
        measure_latency(runner, FEED, iterations=3, duration_s=1.0)


def test_cuda_events_without_cuda_fall_back_with_a_note(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with CountingRunner() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=2, cuda_events=True)
    assert m.timer == "perf_counter" and any("CUDA events unavailable" in n for n in m.notes)


def test_a_runner_without_the_device_side_says_so():
    """The base Runner declares the device side with "not supported" defaults: nothing to probe."""
    runner = CountingRunner()
    assert runner.uses_cuda is False and runner.device_resident is False and runner.cuda_stream is None
    for call in (lambda: runner.load_inputs(FEED), runner.infer_device, runner.fetch_outputs):
        with pytest.raises(DnxError, match="counting cannot keep inputs on a device"):
            call()


@pytest.mark.gpu
def test_cuda_event_timing_reports_end_to_end_and_compute():
    import torch

    from dnx.runtime.backends.torch_runner import TorchRunner

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    feed = {"input": np.zeros((2, 3, 16, 16), dtype=np.float32)}
    for graphs in (False, True):
        with TorchRunner(model, device="cuda", cuda_graphs=graphs) as runner:
            m = measure_latency(runner, feed, warmup_s=0.0, iterations=5, cuda_events=True)
            assert runner.graph_error is None
        assert m.timer == "cuda-event" and m.compute is not None and m.compute.iterations == 5
        assert m.end_to_end.median_ms > 0


class FakeEvent:
    """Stands in for torch.cuda.Event to test the CUDA control flow on a CPU machine (not CUDA coverage)."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.t = None

    def record(self, stream=None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: "FakeEvent") -> float:
        return (end.t - self.t) * 1000.0


class DeviceRunner(CountingRunner):
    uses_cuda = True
    device_resident = True

    def __init__(self) -> None:
        super().__init__()
        self.uploads = self.device_calls = 0

    def load_inputs(self, feed, check=True) -> None:
        self.uploads += 1

    def infer_device(self) -> float | None:
        self.device_calls += 1
        return None


@pytest.fixture
def fake_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)


def test_cuda_path_times_end_to_end_and_device_compute(fake_cuda):
    with DeviceRunner() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=4, cuda_events=True)
    assert m.timer == "cuda-event" and m.end_to_end.iterations == 4 and m.compute.iterations == 4
    assert runner.uploads == 1 and runner.device_calls == 1 + 4  # one warm-up, four timed
    assert runner.calls == 1 + 4  # host path: one warm-up, four timed


def test_no_data_transfers_reports_device_compute(fake_cuda):
    with DeviceRunner() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=3, cuda_events=True, no_data_transfers=True)
    assert m.end_to_end is m.compute and runner.calls == 0
    assert any("no-data-transfers" in n for n in m.notes)


def test_cuda_runner_without_device_hooks_still_gets_end_to_end(fake_cuda):
    class HostOnly(CountingRunner):
        uses_cuda = True

    with HostOnly() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=3, cuda_events=True, no_data_transfers=True)
    assert m.compute is None and m.end_to_end.iterations == 3
    assert any("no device-only inference" in n for n in m.notes)
    assert any("includes transfers" in n for n in m.notes)


def test_runner_timed_device_compute_is_preferred(fake_cuda):
    class SelfTimed(DeviceRunner):
        def infer_device(self) -> float | None:
            super().infer_device()
            return 0.004  # seconds, as TensorRTRunner reports from its own stream's events

    with SelfTimed() as runner:
        m = measure_latency(runner, FEED, warmup_s=0.0, iterations=3, cuda_events=True)
    assert m.compute.median_ms == pytest.approx(4.0) and m.compute.iterations == 3
