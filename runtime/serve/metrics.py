"""Prometheus metrics of one ``dnx serve`` app, on a registry of its own (so several apps can live in
one process, as in tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# Seconds: from sub-millisecond preprocessing of small images to multi-second queues under overload.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class ServeMetrics:
    registry: Any
    requests: Any
    images: Any
    stage_seconds: Any
    batch_size: Any
    queue_depth: Any

    @classmethod
    def create(cls, depth: Callable[[], float]) -> "ServeMetrics":
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        requests = Counter("dnx_requests", "HTTP classify requests by status code", ["status"], registry=registry)
        images = Counter("dnx_images", "Images classified", registry=registry)
        stages = Histogram("dnx_stage_seconds", "Time per request stage (decode, preprocess, queue, inference, "
                           "postprocess, total)", ["stage"], buckets=STAGE_BUCKETS, registry=registry)
        batch = Histogram("dnx_batch_size", "Images per inference call", buckets=BATCH_BUCKETS, registry=registry)
        queue = Gauge("dnx_queue_depth", "Requests admitted and not yet answered", registry=registry)
        queue.set_function(depth)
        return cls(registry, requests, images, stages, batch, queue)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
