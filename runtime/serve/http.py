"""``dnx serve``: an HTTP classification service on FastAPI + uvicorn over :func:`dnx.load`.

Endpoints
- ``POST /v1/classify[?top_k=K]``: the body is one encoded image (``image/*`` or
  ``application/octet-stream``), or ``multipart/form-data`` with one or more image files. Answers
  ``{"predictions": [[{label, index, probability}, ...] per image], "timings_ms": {...}}``.
- ``GET /v1/model``: the artifact's summary, backend, batching settings and manifest.
- ``GET|HEAD /healthz``: the process is up. ``GET|HEAD /readyz``: the model is loaded and warmed up.
- ``GET /metrics``: Prometheus text (requests by status, per-stage latency, batch sizes, queue depth).
- ``/docs``, ``/redoc``, ``/openapi.json`` only with ``--docs`` (Swagger UI loads from a CDN).

Every failure is a JSON ``{"error": "one line"}``, 404 and 405 included: 400 bad image or parameter,
408 body not received within ``--body-timeout-s``, 413 body or pixels over the limit, 415 wrong content
type, 500 a bug (logged with its traceback), 503 (with ``Retry-After``) when the admission limit or the
batch queue is full. A request takes an admission slot only once its body has arrived, so slow clients
cannot starve the others. A request is answered or refused, never dropped: on SIGTERM/SIGINT uvicorn
stops accepting, closes connections that have not sent a request, lets the requests in flight finish,
then the lifespan closes the batcher (which serves what it holds) and the model.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.

import logging
import time
from contextlib import asynccontextmanager

from dnx.runtime.serve.body import ClientGone, check_pixel_budget, images_of, read_body, top_k_of
from dnx.runtime.serve.service import RETRY_AFTER_S, Refused, ServeConfig, Service
from dnx.core.version import __version__

__all__ = ["ServeConfig", "Service", "build_app", "close_when_stopping"]

log = logging.getLogger("dnx.serve")


def close_when_stopping(app, stopping):
    """``app`` whose responses carry ``Connection: close`` once ``stopping()`` is true. uvicorn marks the
    connections it knows of at shutdown, but one accepted in the same instant (its protocol is made a
    step later) stays keep-alive, and its client's next requests would keep it open past the graceful
    window, to be cut when the model closes. With this every connection closes after its current
    answer."""
    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and stopping():
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        return await app(scope, receive, send_closing)

    return wrapped


def build_app(config: ServeConfig, service: Service | None = None):
    """The ASGI app for ``config``. The model is opened by the app's lifespan (unless ``service`` comes
    already open) and closed when the lifespan ends."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    service = service or Service(config.validate())

    @asynccontextmanager
    async def lifespan(app):
        if service.classifier is None:
            await run_in_threadpool(service.open)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)  # idempotent: serve() may close it again

    docs = {} if config.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="dnx serve", version=__version__, lifespan=lifespan, **docs)
    app.state.service = service

    def refuse(status: int, message: str, headers: dict | None = None):
        service.metrics.requests.labels(str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path}; see /v1/classify, /v1/model, /healthz, /readyz, /metrics"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {request.method} is not allowed on {request.url.path}; use {allowed or 'another'}"
        else:
            message = str(exc.detail).splitlines()[0] if exc.detail else f"HTTP {exc.status_code}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        return JSONResponse({"error": f"bad request: {first.get('msg', 'invalid parameters')}"}, status_code=400)

    def version() -> str:
        return config.model_version or service.classifier.artifact.sha256[:12]

    @app.post("/v1/classify")
    async def classify(request: Request):
        service.received += 1
        try:
            answer = await _classify(request)
            if service.classifier is not None:  # which artifact answered, behind a load balancer
                answer.headers["X-Model-Version"] = version()
            return answer
        except ClientGone:  # nothing to answer: the client left before its body arrived
            service.metrics.requests.labels("499").inc()
            return Response(status_code=499)
        except Exception:  # a bug: logged with its traceback, answered as one JSON line, counted
            log.exception("classify failed")
            return refuse(500, "internal error while classifying; see the server log")
        finally:
            service.answered += 1

    async def _classify(request: Request):
        start = time.perf_counter()
        if not service.ready:
            return refuse(503, "the model is still loading", {"Retry-After": RETRY_AFTER_S})
        try:
            top_k = top_k_of(request, config, service.classes)
            # the body first, without an admission slot: a slow client holds only its own connection
            body = await read_body(request, config.max_body_bytes, config.body_timeout_s)
            blobs = await images_of(request, body, config.max_images)
            check_pixel_budget(blobs, config.max_request_pixels)
            service.admit()
        except Refused as exc:
            return refuse(exc.status, exc.message, exc.headers)
        try:
            x, decode_s, pre_s = await service.prepare(blobs)
            logits, queue_s, infer_s = await service.infer(x)
            post_start = time.perf_counter()
            predictions = service.classifier.postprocess(logits, top_k)
            post_s = time.perf_counter() - post_start
        except Refused as exc:
            return refuse(exc.status, exc.message, exc.headers)
        finally:
            service.release()
        total = time.perf_counter() - start
        stages = {"decode": decode_s, "preprocess": pre_s, "queue": queue_s, "inference": infer_s,
                  "postprocess": post_s, "total": total}
        for stage, seconds in stages.items():
            service.metrics.stage_seconds.labels(stage).observe(seconds)
        service.metrics.images.inc(len(blobs))
        service.metrics.requests.labels("200").inc()
        return JSONResponse({"predictions": [[p._asdict() for p in row] for row in predictions],
                             "timings_ms": {k: round(v * 1e3, 3) for k, v in stages.items()}})

    @app.get("/v1/model")
    async def model():
        if service.classifier is None:
            return refuse(503, "the model is still loading", {"Retry-After": RETRY_AFTER_S})
        info = service.classifier.info()
        info["version"] = {"name": version(), "sha256": service.classifier.artifact.sha256}
        info["serving"] = {"max_batch": config.max_batch, "max_delay_ms": config.max_delay_ms,
                           "max_queue": config.max_queue, "max_body_bytes": config.max_body_bytes,
                           "body_timeout_s": config.body_timeout_s, "max_request_pixels": config.max_request_pixels,
                           "decode_threads": config.decode_pool_size, "workers": config.workers,
                           **({"ov_hint": config.ov_hint} if service.classifier.choice.backend == "openvino" else {})}
        return info

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz():
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz():
        if not service.ready:
            return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": RETRY_AFTER_S})
        return {"status": "ready", "backend": service.classifier.choice.backend}

    @app.get("/metrics")
    async def metrics():
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    return app

