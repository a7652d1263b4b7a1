"""Prometheus metrics of one ``dnx serve`` app.

One process (``--workers 1``): a registry of its own, so several apps can live in one process (as in
tests). Several worker processes: prometheus-client's multiprocess mode. The supervisor gives every
worker the same ``PROMETHEUS_MULTIPROC_DIR`` (set before the worker imports prometheus_client); each
worker writes its values there and ``/metrics``, whichever worker answers it, sums them all. The
supervisor removes the folder when the service stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Seconds: from sub-millisecond preprocessing of small images to multi-second queues under overload.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class ServeMetrics:
    registry: Any
    requests: Any
    images: Any
    stage_seconds: Any
    batch_size: Any
    queue_depth: Any
    multiprocess: bool = False

    @classmethod
    def create(cls, multiprocess: bool = False) -> "ServeMetrics":
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        requests = Counter("dnx_requests", "HTTP classify requests by status code (499: the client closed the "
                           "connection before its body arrived)", ["status"], registry=registry)
        images = Counter("dnx_images", "Images classified", registry=registry)
        stages = Histogram("dnx_stage_seconds", "Time per request stage (decode, preprocess, queue, inference, "
                           "postprocess, total)", ["stage"], buckets=STAGE_BUCKETS, registry=registry)
        batch = Histogram("dnx_batch_size", "Images per inference call", buckets=BATCH_BUCKETS, registry=registry)
        queue = Gauge("dnx_queue_depth", "Requests admitted and not yet answered", registry=registry,
                      multiprocess_mode="livesum")
        return cls(registry, requests, images, stages, batch, queue, multiprocess)

    def render(self) -> tuple[bytes, str]:
        import os

        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            merged = CollectorRegistry()
            MultiProcessCollector(merged, os.environ[MULTIPROC_ENV])
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
