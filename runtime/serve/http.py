"""``dnx serve``: an HTTP classification service on FastAPI + uvicorn over :func:`dnx.load`.

Endpoints
- ``POST /v1/classify[?top_k=K]``: the body is one encoded image (``image/*`` or
  ``application/octet-stream``), or ``multipart/form-data`` with one or more image files. Answers
  ``{"predictions": [[{label, index, probability}, ...] per image], "timings_ms": {...}}``.
- ``GET /v1/model``: the artifact's summary, backend, batching settings and manifest.
- ``GET /healthz``: the process is up. ``GET /readyz``: the model is loaded and warmed up.
- ``GET /metrics``: Prometheus text (requests by status, per-stage latency, batch sizes, queue depth).

Every failure is a JSON ``{"error": "one line"}``: 400 bad image or parameter, 413 body over the limit,
415 wrong content type, 503 (with ``Retry-After``) when the admission limit or the batch queue is full.
A request is answered or refused, never dropped: on SIGTERM/SIGINT uvicorn stops accepting, the
requests in flight finish, then the lifespan closes the batcher (which serves what it holds) and the model.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.

import asyncio
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from dnx.data.preprocess import DEFAULT_MAX_PIXELS
from dnx.errors import DnxError

RETRY_AFTER_S = "1"
IMAGE_TYPES = ("image/", "application/octet-stream")


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
    max_queue: int = 64  # requests admitted at once; more get 503
    max_body_bytes: int = 10 * 1024 * 1024
    max_images: int = 64  # per multipart request
    max_pixels: int = DEFAULT_MAX_PIXELS
    default_top_k: int = 5
    workers: int = 1
    allow_unverified: bool = False
    preprocess: dict | None = field(default=None)  # mean/std/image_size (+labels) for a foreign ONNX
    precision: str = "fp32"  # fp32: the artifact as written; bf16: OpenVINO BF16 after its own parity check

    def validate(self) -> "ServeConfig":
        checks = [(self.max_batch >= 1, "--max-batch must be >= 1"),
                  (0 <= self.max_delay_ms <= 10_000, "--max-delay-ms must be from 0 to 10000"),
                  (self.max_queue >= 1, "--max-queue must be >= 1"),
                  (self.max_body_bytes >= 1, "--max-body-mb must be positive"),
                  (self.max_images >= 1, "--max-images must be >= 1"),
                  (self.default_top_k >= 1, "--top-k must be >= 1"),
                  (self.workers >= 1, "--workers must be >= 1"),
                  (0 <= self.port <= 65535, f"--port must be from 0 to 65535, got {self.port}")]
        for ok, message in checks:
            if not ok:
                raise DnxError(message)
        return self


class _Refused(Exception):
    """An HTTP error answered as JSON; never leaves this module."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _Service:
    """What the endpoints share: the classifier, the optional batcher, the admission counter, metrics."""

    def __init__(self, config: ServeConfig) -> None:
        from dnx.runtime.serve.metrics import ServeMetrics

        self.config = config
        self.classifier = None
        self.batcher = None
        self.classes = 0
        self.inflight = 0
        self.received = 0  # classify requests whose handler started; each is answered (counted below)
        self.answered = 0
        self.metrics = ServeMetrics.create(lambda: self.inflight)

    def open(self) -> None:
        from dnx.runtime.batching import Batcher
        from dnx.runtime.classifier import load

        pre = self.config.preprocess or {}
        self.classifier = load(self.config.artifact, backend=self.config.backend, device=self.config.device,
                               threads=self.config.threads, max_pixels=self.config.max_pixels,
                               allow_unverified=self.config.allow_unverified, precision=self.config.precision, **pre)
        chw = self.classifier.input_chw
        self.classes = (self.classifier.artifact.num_classes
                        or int(self.classifier.logits(np.zeros((1, *chw), np.float32)).shape[1]))
        if self.config.max_batch > 1:
            self.classifier.warm_up(range(1, self.config.max_batch + 1))  # every batch size the batcher makes
            self.batcher = Batcher(self.classifier, self.config.max_batch, self.config.max_delay_ms,
                                   self.config.max_queue, on_batch=self._on_batch)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.classifier is not None:
            self.classifier.close()

    def _on_batch(self, size: int, waits: list[float]) -> None:
        self.metrics.batch_size.observe(size)

    @property
    def ready(self) -> bool:
        return self.classifier is not None and self.classifier.warmed_up

    # -- one request --------------------------------------------------------------------------
    def prepare(self, blobs: list[bytes]) -> tuple[np.ndarray, float, float]:
        """Decode and preprocess (a worker thread); per-image errors name the image."""
        from dnx.runtime.classifier import InvalidInput

        arrays, decode, pre = [], 0.0, 0.0
        for i, blob in enumerate(blobs):
            try:
                x, d, p = self.classifier.preprocess_one(blob)
            except InvalidInput as exc:
                where = f"image {i + 1} of {len(blobs)}: " if len(blobs) > 1 else ""
                raise _Refused(400, f"{where}{exc}") from None
            arrays.append(x)
            decode, pre = decode + d, pre + p
        return np.stack(arrays), decode, pre

    async def infer(self, x: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Logits, queue seconds and inference seconds (through the batcher when there is one)."""
        from starlette.concurrency import run_in_threadpool

        from dnx.runtime.batching import Overloaded

        if self.batcher is None:
            start = time.perf_counter()
            logits = await run_in_threadpool(self.classifier.logits, x)
            self.metrics.batch_size.observe(len(x))
            return logits, 0.0, time.perf_counter() - start
        try:
            futures = [self.batcher.submit(row) for row in x]
        except Overloaded as exc:
            raise _Refused(503, str(exc), {"Retry-After": RETRY_AFTER_S}) from None
        rows = [await asyncio.wrap_future(f) for f in futures]
        timing = [f.timing for f in futures]
        return (np.stack(rows), max(t["queue"] for t in timing), max(t["inference"] for t in timing))


async def _read_body(request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, f"body is {int(declared):,} bytes, over the {limit:,}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"body is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _images_of(request, body: bytes, max_images: int) -> list[bytes]:
    from starlette.requests import Request

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            async with Request(request.scope, replay).form(max_files=max_images, max_fields=max_images) as form:
                blobs = [await v.read() for _, v in form.multi_items() if hasattr(v, "read")]
        except Exception as exc:  # python-multipart's and starlette's parse errors
            raise _Refused(400, f"cannot parse the multipart body: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        if not blobs:
            raise _Refused(400, "the multipart body has no image files")
        return blobs
    if not kind.startswith(IMAGE_TYPES):
        raise _Refused(415, f"content type {kind or '(none)'} is not accepted; send image bytes (image/jpeg, "
                            "image/png, application/octet-stream) or multipart/form-data")
    if not body:
        raise _Refused(400, "the request body is empty; send the image bytes")
    return [body]


def _top_k(request, config: ServeConfig, classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return min(config.default_top_k, classes)
    try:
        k = int(raw)
    except ValueError:
        raise _Refused(400, f"top_k must be an integer, got {raw!r}") from None
    if not 1 <= k <= classes:
        raise _Refused(400, f"top_k must be from 1 to {classes} (the model's classes), got {k}")
    return k


def build_app(config: ServeConfig, service: _Service | None = None):
    """The ASGI app for ``config``. The model is opened by the app's lifespan (unless ``service`` comes
    already open) and closed when the lifespan ends."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from dnx import __version__

    service = service or _Service(config.validate())

    @asynccontextmanager
    async def lifespan(app):
        if service.classifier is None:
            await run_in_threadpool(service.open)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)  # idempotent: serve() may close it again

    app = FastAPI(title="dnx serve", version=__version__, lifespan=lifespan)
    app.state.service = service

    def refuse(status: int, message: str, headers: dict | None = None):
        service.metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.post("/v1/classify")
    async def classify(request: Request):
        service.received += 1
        try:
            return await _classify(request)
        finally:
            service.answered += 1

    async def _classify(request: Request):
        start = time.perf_counter()
        if not service.ready:
            return refuse(503, "the model is still loading", {"Retry-After": RETRY_AFTER_S})
        if service.inflight >= config.max_queue:
            return refuse(503, f"{service.inflight} requests in flight, at the --max-queue limit; retry later",
                          {"Retry-After": RETRY_AFTER_S})
        service.inflight += 1  # one event loop: no lock needed
        try:
            clf = service.classifier
            top_k = _top_k(request, config, service.classes)
            blobs = await _images_of(request, await _read_body(request, config.max_body_bytes), config.max_images)
            x, decode_s, pre_s = await run_in_threadpool(service.prepare, blobs)
            logits, queue_s, infer_s = await service.infer(x)
            post_start = time.perf_counter()
            predictions = clf.postprocess(logits, top_k)
            post_s = time.perf_counter() - post_start
        except _Refused as exc:
            return refuse(exc.status, exc.message, exc.headers)
        finally:
            service.inflight -= 1
        total = time.perf_counter() - start
        stages = {"decode": decode_s, "preprocess": pre_s, "queue": queue_s, "inference": infer_s,
                  "postprocess": post_s, "total": total}
        for stage, seconds in stages.items():
            service.metrics.stage_seconds.labels(stage).observe(seconds)
        service.metrics.images.inc(len(blobs))
        service.metrics.requests.labels("200").inc()
        return {"predictions": [[p._asdict() for p in row] for row in predictions],
                "timings_ms": {k: round(v * 1e3, 3) for k, v in stages.items()}}

    @app.get("/v1/model")
    async def model():
        if service.classifier is None:
            return refuse(503, "the model is still loading", {"Retry-After": RETRY_AFTER_S})
        info = service.classifier.info()
        info["serving"] = {"max_batch": config.max_batch, "max_delay_ms": config.max_delay_ms,
                           "max_queue": config.max_queue, "max_body_bytes": config.max_body_bytes,
                           "workers": config.workers}
        return info

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        return {"status": "ready", "backend": service.classifier.choice.backend}

    @app.get("/metrics")
    async def metrics():
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    return app


def app_from_env():
    """uvicorn factory for ``--workers N``: each worker process builds its app from DNX_SERVE_CONFIG."""
    import json
    import os

    return build_app(ServeConfig(**json.loads(os.environ["DNX_SERVE_CONFIG"])))


def serve(config: ServeConfig) -> dict | None:
    """Run the service until SIGINT/SIGTERM; return after a graceful stop (requests in flight answered)
    with the count of classify requests received and answered (None for ``workers > 1``)."""
    import dataclasses
    import json
    import os
    import signal

    import uvicorn

    import socket

    config.validate()
    with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as probe:
        try:  # a clear error now rather than uvicorn's after the model has loaded
            probe.bind((config.host, config.port))
        except OSError as exc:
            raise DnxError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}; choose another --port "
                           "or --host") from None
    common = dict(host=config.host, port=config.port, log_level="warning", timeout_graceful_shutdown=30,
                  lifespan="on")
    def ignore_reraise() -> None:
        # uvicorn re-raises a captured SIGINT/SIGTERM after its graceful shutdown (restoring the handlers
        # it found first), which would end this process with a signal status; a completed graceful stop
        # is a success, so the handlers it restores ignore that re-raise.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    if config.workers > 1:
        ignore_reraise()
        os.environ["DNX_SERVE_CONFIG"] = json.dumps(dataclasses.asdict(config))
        uvicorn.run("dnx.runtime.serve.http:app_from_env", factory=True, workers=config.workers, **common)
        return None
    service = _Service(config)
    service.open()  # load errors surface here as one line, before anything listens
    try:
        server = uvicorn.Server(uvicorn.Config(build_app(config, service), **common))
        ignore_reraise()  # only now: a signal during the model load still stops the process at once
        server.run()
    finally:
        service.close()
    if not server.started:
        raise DnxError(f"the service did not start on {config.host}:{config.port} (see the log above)")
    return {"received": service.received, "answered": service.answered}
