"""A bounded HTTP load generator for replica tests: ``concurrency`` requests in flight (httpx, one
connection each), until ``stop`` is set or ``max_seconds`` pass. Every request is recorded: when it
was sent, its latency, its status (0: the client got no HTTP answer: lost), Retry-After, and which
model version answered (``X-Model-Version``)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from dnx.runtime.deploy.replicas import TRITON_MODEL


@dataclass
class Record:
    sent: float  # time.monotonic()
    latency_s: float
    status: int  # 0: transport error (no answer)
    retry_after: bool
    version: str | None


@dataclass
class LoadResult:
    records: list[Record] = field(default_factory=list)

    def window(self, start: float | None = None, end: float | None = None) -> list[Record]:
        return [r for r in self.records if (start is None or r.sent >= start) and (end is None or r.sent < end)]

    @staticmethod
    def p99_ms(records: list[Record]) -> float | None:
        lat = [r.latency_s * 1e3 for r in records if r.status == 200]
        return round(float(np.percentile(lat, 99)), 2) if lat else None

    def counts(self) -> dict[str, int]:
        sent = len(self.records)
        ok = sum(r.status == 200 for r in self.records)
        busy = sum(r.status == 503 and r.retry_after for r in self.records)
        return {"sent": sent, "ok_200": ok, "busy_503_retry_after": busy, "lost": sent - ok - busy}

    def lost_statuses(self) -> dict[int, int]:
        """What the lost requests got (0: no HTTP answer)."""
        out: dict[int, int] = {}
        for r in self.records:
            if r.status != 200 and not (r.status == 503 and r.retry_after):
                out[r.status] = out.get(r.status, 0) + 1
        return out

    def seconds(self) -> float:
        if not self.records:
            return 0.0
        return max(r.sent + r.latency_s for r in self.records) - min(r.sent for r in self.records)

    def versions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            if r.status == 200 and r.version:
                out[r.version] = out.get(r.version, 0) + 1
        return out


def request_for(kind: str, image_png: bytes, tensor: np.ndarray) -> tuple[str, dict, bytes]:
    """(path, headers, body) of one classification request for ``kind`` ("serve" or "triton")."""
    import json

    if kind == "serve":
        return "/v1/classify?top_k=1", {"content-type": "image/png"}, image_png

    body = {"inputs": [{"name": "input", "shape": list(tensor.shape), "datatype": "FP32",
                        "data": tensor.ravel().round(5).tolist()}]}
    return f"/v2/models/{TRITON_MODEL}/infer", {"content-type": "application/json"}, json.dumps(body).encode()


async def _drive(url: str, request: tuple[str, dict, bytes], concurrency: int, stop: threading.Event,
                 max_seconds: float, result: LoadResult) -> None:
    import httpx

    path, headers, body = request
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        async def worker() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    r = await client.post(path, content=body, headers=headers)
                    status, retry, version = r.status_code, "retry-after" in r.headers, r.headers.get("x-model-version")
                except httpx.TransportError as exc:
                    status, retry, version = 0, False, type(exc).__name__
                result.records.append(Record(sent, time.monotonic() - sent, status, retry, version))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


class LoadGenerator:
    """Runs :func:`_drive` in a thread; ``stop()`` ends it and returns the result."""

    def __init__(self, url: str, request: tuple[str, dict, bytes], concurrency: int = 32,
                 max_seconds: float = 60.0) -> None:
        self.result, self._stop = LoadResult(), threading.Event()
        self._thread = threading.Thread(target=asyncio.run, daemon=True, args=(
            _drive(url, request, concurrency, self._stop, max_seconds, self.result),))
        self._thread.start()

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join(60)
        return self.result
