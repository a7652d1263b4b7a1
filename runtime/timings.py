"""Per-stage latency histograms a service reads to see where its time goes.

``StageTimings`` keeps the most recent samples of each stage (decode, preprocess, queue wait,
inference, postprocess) in a bounded window and reports count, mean and p50/p90/p99 in milliseconds.
Thread-safe: many request threads record into one instance. (Prometheus histograms, which ``dnx
serve`` also exports, have fixed buckets; this is the exact-percentile view for in-process users.)
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

STAGES = ("decode", "preprocess", "queue", "inference", "postprocess")


class StageTimings:
    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._samples = {stage: deque(maxlen=window) for stage in STAGES}
        self._counts = dict.fromkeys(STAGES, 0)

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)
            self._counts[stage] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        """Stage -> {count, mean_ms, p50_ms, p90_ms, p99_ms} over the recent window (stages seen so far)."""
        with self._lock:
            snapshot = {stage: np.asarray(s, dtype=np.float64) for stage, s in self._samples.items() if s}
            counts = dict(self._counts)
        out = {}
        for stage, s in snapshot.items():
            p50, p90, p99 = np.percentile(s, [50, 90, 99]) * 1e3
            out[stage] = {"count": counts[stage], "mean_ms": float(s.mean() * 1e3), "p50_ms": float(p50),
                          "p90_ms": float(p90), "p99_ms": float(p99)}
        return out

    def reset(self) -> None:
        with self._lock:
            for s in self._samples.values():
                s.clear()
            self._counts = dict.fromkeys(STAGES, 0)
