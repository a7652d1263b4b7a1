"""What one ``dnx serve`` process holds: its configuration, the classifier, the batcher, the decode pool,
the admission counter and the metrics. The HTTP layer (:mod:`dnx.runtime.serve.http`) only routes to it.

Decode is off the critical path: each image is decoded and preprocessed (the one function,
``Classifier.preprocess_one``) on a pool of ``decode_threads`` threads, apart from the batcher's
inference thread, so while one batch runs the next requests' images are being decoded (Pillow
releases the GIL while it decodes and resizes).
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dnx.data.preprocess import DEFAULT_MAX_PIXELS
from dnx.core.errors import DnxError
from dnx.runtime.artifact import check_artifact_path
from dnx.runtime.batching import Batcher, Overloaded
from dnx.runtime.classifier import InvalidInput, load
from dnx.runtime.serve.metrics import ServeMetrics

RETRY_AFTER_S = "1"


@dataclass(frozen=True)
class ServeConfig:
    artifact: str
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "auto"
    device: str = "auto"
    threads: int | None = None
    max_batch: int = 8  # 1: no batcher, each request runs its own inference
    max_delay_ms: float = 2.0
    max_queue: int = 64  # requests admitted at once (after their body arrived); more get 503
    max_body_bytes: int = 10 * 1024 * 1024
    body_timeout_s: float = 30.0  # a request body must arrive within this; else 408 (slow clients)
    max_images: int = 64  # per multipart request
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image, read from its header before decoding
    max_request_pixels: int = 2 * DEFAULT_MAX_PIXELS  # all images of one request together; else 413
    decode_threads: int = 0  # 0: one per CPU core, at most 8
    default_top_k: int = 5
    workers: int = 1
    docs: bool = False  # /docs, /redoc and /openapi.json (Swagger UI loads from a CDN): off unless asked
    allow_unverified: bool = False
    preprocess: dict | None = field(default=None)  # mean/std/image_size (+labels) for a foreign ONNX
    model_version: str | None = None  # reported by /v1/model and X-Model-Version; default: sha256[:12]
    precision: str = "fp32"  # fp32: the artifact as written; bf16: OpenVINO BF16 after its own parity check
    decode: str | None = None  # exact | fast; None: the manifest's
    exif_orientation: bool = True
    ov_hint: str = "latency"  # OpenVINO's performance hint: latency (one stream) or throughput (several)

    def validate(self) -> "ServeConfig":
        # (holds, field, what it must be): an error names the field; the CLI writes its flag instead
        checks = [(self.max_batch >= 1, "max_batch", ">= 1"),
                  (0 <= self.max_delay_ms <= 10_000, "max_delay_ms", "from 0 to 10000"),
                  (self.max_queue >= 1, "max_queue", ">= 1"),
                  (self.max_body_bytes >= 1, "max_body_bytes", "positive"),
                  (0 < self.body_timeout_s <= 3600, "body_timeout_s", "from 0 (exclusive) to 3600"),
                  (self.max_images >= 1, "max_images", ">= 1"),
                  (self.max_pixels >= 1, "max_pixels", ">= 1"),
                  (self.max_request_pixels >= 1, "max_request_pixels", ">= 1"),
                  (self.decode_threads >= 0, "decode_threads", ">= 0"),
                  (self.default_top_k >= 1, "default_top_k", ">= 1"),
                  (self.workers >= 1, "workers", ">= 1"),
                  (0 <= self.port <= 65535, "port", "from 0 to 65535"),
                  (self.ov_hint in ("latency", "throughput"), "ov_hint", "latency or throughput")]
        for ok, name, rule in checks:
            if not ok:
                raise DnxError(f"{name} must be {rule}, got {getattr(self, name)}", param=name)
        if self.ov_hint != "latency" and self.backend != "openvino":  # another backend has no such hint
            raise DnxError("ov_hint throughput applies to OpenVINO only; add --backend openvino", param="ov_hint")
        check_artifact_path(self.artifact)
        return self

    @property
    def decode_pool_size(self) -> int:
        return self.decode_threads or min(8, os.cpu_count() or 1)


class Refused(Exception):
    """An HTTP error answered as JSON ``{"error": message}``; never leaves the serve package."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Service:
    """What the endpoints share. ``open`` loads the model (errors are one-line DnxErrors), ``close`` is
    idempotent."""

    def __init__(self, config: ServeConfig, multiprocess: bool = False) -> None:
        self.config = config
        self.classifier = None
        self.batcher = None
        self.pool: ThreadPoolExecutor | None = None
        self.classes = 0
        self.inflight = 0
        self.received = 0  # classify requests whose handler started; each is answered (counted below)
        self.answered = 0
        self.metrics = ServeMetrics.create(multiprocess)

    def open(self) -> None:
        pre = self.config.preprocess or {}
        self.classifier = load(self.config.artifact, backend=self.config.backend, device=self.config.device,
                               threads=self.config.threads, max_pixels=self.config.max_pixels,
                               allow_unverified=self.config.allow_unverified, decode=self.config.decode,
                               exif_orientation=self.config.exif_orientation, precision=self.config.precision,
                               backend_options={"hint": self.config.ov_hint} if self.config.backend == "openvino"
                               else None, **pre)
        chw = self.classifier.input_chw
        self.classes = (self.classifier.artifact.num_classes
                        or int(self.classifier.logits(np.zeros((1, *chw), np.float32)).shape[1]))
        self.pool = ThreadPoolExecutor(self.config.decode_pool_size, thread_name_prefix="dnx-decode")
        if self.config.max_batch > 1:
            self.classifier.warm_up(range(1, self.config.max_batch + 1))  # every batch size the batcher makes
            self.batcher = Batcher(self.classifier, self.config.max_batch, self.config.max_delay_ms,
                                   self.config.max_queue, on_batch=self._on_batch)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.classifier is not None:
            self.classifier.close()

    def _on_batch(self, size: int, waits: list[float]) -> None:
        self.metrics.batch_size.observe(size)

    @property
    def ready(self) -> bool:
        return self.classifier is not None and self.classifier.warmed_up

    # -- admission (one event loop: no lock needed) -------------------------------------------------
    def admit(self) -> None:
        if self.inflight >= self.config.max_queue:
            raise Refused(503, f"{self.inflight} requests in flight, at the --max-queue limit; retry later",
                          {"Retry-After": RETRY_AFTER_S})
        self.inflight += 1
        self.metrics.queue_depth.inc()

    def release(self) -> None:
        self.inflight -= 1
        self.metrics.queue_depth.dec()

    # -- one request --------------------------------------------------------------------------------
    async def prepare(self, blobs: list[bytes]) -> tuple[np.ndarray, float, float]:
        """Decode and preprocess every image on the decode pool, concurrently; per-image errors name the
        image. Returns the (N, C, H, W) input and the summed decode and preprocess seconds."""

        futures = [asyncio.wrap_future(self.pool.submit(self.classifier.preprocess_one, blob)) for blob in blobs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, InvalidInput):
                where = f"image {i + 1} of {len(blobs)}: " if len(blobs) > 1 else ""
                raise Refused(400, f"{where}{result}")
            if isinstance(result, BaseException):
                raise result
        return (np.stack([x for x, _, _ in results]), sum(d for _, d, _ in results),
                sum(p for _, _, p in results))

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Logits, queue seconds and inference seconds (through the batcher when there is one)."""
        from starlette.concurrency import run_in_threadpool

        if self.batcher is None:
            start = time.perf_counter()
            logits = await run_in_threadpool(self.classifier.logits, x)
            self.metrics.batch_size.observe(len(x))
            return logits, 0.0, time.perf_counter() - start
        try:
            futures = [self.batcher.submit(row) for row in x]
        except Overloaded as exc:
            raise Refused(503, str(exc), {"Retry-After": RETRY_AFTER_S}) from None
        rows = [await asyncio.wrap_future(f) for f in futures]
        timing = [f.timing for f in futures]
        return (np.stack(rows), max(t["queue"] for t in timing), max(t["inference"] for t in timing))
