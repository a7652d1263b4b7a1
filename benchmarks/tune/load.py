"""Load through the real service: a ``dnx serve`` child process on a loopback port, hit by an httpx client.

Three ways to measure one deployment (:class:`LoadSpec`):

- ``rate``: open loop, Poisson arrivals at ``rate`` requests/s. Latency is counted from each request's
  *scheduled* send time, so a server that falls behind is charged for the queue it builds (no
  coordinated omission). Holds when p99 <= SLO, no request failed and the rate was achieved.
- ``concurrency``: closed loop, ``concurrency`` requests in flight (``benchmarks.serve_load``'s loop).
- ``sustainable`` (neither given): the highest Poisson rate that holds. A closed-loop probe gives the
  capacity ``C``; open-loop steps then try ``0.9 C``, ``0.9 C * 0.75``, ... until one holds, and one more
  step between the held and the broken rate refines it. The score is the held rate.

Every measurement is bounded in requests and seconds; an open-loop step stops early once more than 1%
of its planned requests have broken the SLO (its p99 cannot hold any more).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dnx.core.errors import DnxError
from dnx.benchmarks.serve_load import _photos, closed_loop, latency_stats
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.runtime.serve.process import ServeProcess

FIRST_STEP, STEP_FACTOR = 0.9, 0.75


@dataclass(frozen=True)
class LoadSpec:
    slo_p99_ms: float
    rate: float | None = None
    concurrency: int | None = None
    seconds: float = 5.0  # per measurement step
    max_requests: int = 3000  # per measurement step
    probe_seconds: float = 3.0  # the sustainable mode's capacity probe
    rate_steps: int = 4  # the sustainable mode's descending steps (before the refinement)

    @property
    def mode(self) -> str:
        return "rate" if self.rate else "concurrency" if self.concurrency else "sustainable"

    def validate(self) -> "LoadSpec":
        if not (self.slo_p99_ms > 0 and math.isfinite(self.slo_p99_ms)):
            raise DnxError(f"--p99-ms must be a positive number of milliseconds, got {self.slo_p99_ms}")
        if self.rate is not None and self.concurrency is not None:
            raise DnxError("give --rate (open loop) or --concurrency (closed loop), not both")
        if self.rate is not None and not (0 < self.rate <= 100_000):
            raise DnxError(f"--rate must be from 0 to 100000 requests/s, got {self.rate}")
        if self.concurrency is not None and not (1 <= self.concurrency <= 1024):
            raise DnxError(f"--concurrency must be from 1 to 1024, got {self.concurrency}")
        if not (0.2 <= self.seconds <= 600) or not (10 <= self.max_requests <= 1_000_000):
            raise DnxError("--load-seconds must be from 0.2 to 600 and --max-requests from 10 to 1000000")
        return self

    def to_dict(self) -> dict:
        return {**asdict(self), "mode": self.mode}


def request_bodies(pre, workdir: Path, n: int = 16) -> list[bytes]:
    """JPEG requests the model's input looks like: Fashion-MNIST-size grey images for a 1-channel model
    (the shipped test split), else seeded crops of the offline photos (what serve_load sends)."""
    import io

    from PIL import Image

    if pre.in_channels == 1:

        bodies = []
        for img in shipped_fashion_mnist_test().images[:n]:
            buf = io.BytesIO()
            Image.fromarray(np.asarray(img, np.uint8).squeeze()).convert("L").save(buf, "JPEG", quality=95)
            bodies.append(buf.getvalue())
        return bodies

    return _photos(workdir / "requests", n)


async def open_loop(url: str, rate: float, seconds: float, max_requests: int, bodies: list[bytes], *,
                    slo_ms: float | None = None, seed: int = 0, max_in_flight: int = 512) -> dict:
    """Poisson arrivals at ``rate``/s for ``seconds`` (at most ``max_requests``); latency from the
    scheduled send time. With ``slo_ms``, stops once over 1% of the planned requests broke it."""
    import httpx

    n = max(1, min(max_requests, round(rate * seconds)))
    gaps = np.random.default_rng(seed).exponential(1 / rate, n)
    at = np.cumsum(gaps) - gaps[0]
    latencies: list[float] = []
    state = {"errors": 0, "over": 0, "sent": 0}
    allowed = n // 100
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    timeout = max(30.0, 20 * (slo_ms or 0) / 1e3)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        post = lambda i: client.post(f"{url}/v1/classify?top_k=1", content=bodies[i % len(bodies)],  # noqa: E731
                                     headers={"content-type": "image/jpeg"})
        for i in range(min(4, len(bodies))):  # warm-up: connections open, first-call costs paid
            await post(i)
        start = time.perf_counter()

        async def one(i: int) -> None:
            intended = start + at[i]
            if (wait := intended - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            state["sent"] += 1
            try:
                ok = (await post(i)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latency = time.perf_counter() - intended
            if ok:
                latencies.append(latency)
            else:
                state["errors"] += 1
            if slo_ms is not None and (not ok or latency * 1e3 > slo_ms):
                state["over"] += 1
                if state["over"] > allowed:
                    stop.set()

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        everything, stopper = asyncio.gather(*tasks, return_exceptions=True), asyncio.create_task(stop.wait())
        bound = float(at[-1]) + max(5.0, 3 * (slo_ms or 0) / 1e3)  # last arrival plus a drain allowance
        await asyncio.wait({everything, stopper}, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        late = sum(1 for t in tasks if not t.done()) if not stop.is_set() else 0
        for t in tasks:
            t.cancel()
        stopper.cancel()
        await asyncio.gather(everything, stopper, return_exceptions=True)
        seconds_run = time.perf_counter() - start
    stats = latency_stats(latencies, state["errors"] + late, seconds_run)
    return {**stats, "rate": round(rate, 2), "planned": n, "stopped_early": stop.is_set()}


def _holds(m: dict, slo_ms: float) -> bool:
    """p99 within the SLO and every request answered (open loop: every planned arrival, in time)."""
    answered = m["ok"] == m.get("planned", m["ok"])
    return bool(m["ok"]) and answered and not m["errors"] and not m.get("stopped_early") and m["p99_ms"] <= slo_ms


def measure_url(url: str, load: LoadSpec, bodies: list[bytes], probe_concurrency: int,
                progress: Callable[[str], None] = lambda _m: None) -> dict:
    """One deployment's numbers at ``url``: ``score`` (requests/s it sustains within the SLO, 0 if
    none), ``feasible``, and the latencies of the measurement that decided it (``steps`` lists all)."""

    slo = load.slo_p99_ms
    if load.mode == "concurrency":
        progress(f"closed loop, {load.concurrency} in flight")
        m = asyncio.run(closed_loop(url, load.concurrency, load.max_requests, bodies, load.seconds))
        ok = _holds(m, slo)
        return {**m, "feasible": ok, "score": m["throughput"] if ok else 0.0, "steps": [m]}
    if load.mode == "rate":
        progress(f"Poisson {load.rate:g}/s")
        m = asyncio.run(open_loop(url, load.rate, load.seconds, load.max_requests, bodies, slo_ms=slo))
        ok = _holds(m, slo)
        return {**m, "feasible": ok, "score": load.rate if ok else 0.0, "steps": [m]}
    progress(f"capacity probe, {probe_concurrency} in flight")
    probe = asyncio.run(closed_loop(url, probe_concurrency, load.max_requests, bodies, load.probe_seconds))
    steps = [{**probe, "closed_loop_concurrency": probe_concurrency}]
    held = broke = None
    rate = FIRST_STEP * probe["throughput"]
    for i in range(load.rate_steps if probe["ok"] else 0):
        progress(f"Poisson {rate:.1f}/s (step {i + 1})")
        m = asyncio.run(open_loop(url, rate, load.seconds, load.max_requests, bodies, slo_ms=slo, seed=i))
        steps.append(m)
        if _holds(m, slo):
            held = m
            break
        broke = rate
        rate *= STEP_FACTOR
    if held is not None and broke is not None:  # one step between the held and the broken rate
        rate = math.sqrt(held["rate"] * broke)
        progress(f"Poisson {rate:.1f}/s (refine)")
        m = asyncio.run(open_loop(url, rate, load.seconds, load.max_requests, bodies, slo_ms=slo, seed=99))
        steps.append(m)
        if _holds(m, slo):
            held = m
    decided = held or steps[-1]
    return {**decided, "feasible": held is not None, "score": held["rate"] if held else 0.0,
            "capacity": probe["throughput"], "steps": steps}


def served_settings(url: str) -> dict:
    """What the running server says it runs (GET /v1/model): backend, precision, batching, workers."""
    import httpx

    info = httpx.get(f"{url}/v1/model", timeout=30).json()
    keep = ("backend", "device", "precision", "inference_precision", "sha256")
    return {**{k: info[k] for k in keep if k in info}, **info.get("serving", {})}


def measure_deployment(artifact: Path | None, args: list[str], load: LoadSpec, bodies: list[bytes],
                       probe_concurrency: int, progress: Callable[[str], None] = lambda _m: None,
                       workers: int = 1) -> dict:
    """Start ``dnx serve ARTIFACT ARGS`` (``artifact`` None: ARGS hold ``--config FILE``), measure it,
    stop it. A server that fails to start is a result (``error``), not an exception.

    With ``workers`` > 1, /readyz answers as soon as the first worker is up, while the others may still
    be loading (and taking CPU from it); they load side by side, so waiting as long again (at most 60 s)
    lets the measurement start with all of them serving."""

    started = time.perf_counter()
    progress("starting dnx serve")
    try:
        server = ServeProcess(artifact, *args, timeout=600)
    except DnxError as exc:
        return {"feasible": False, "score": 0.0, "error": " ".join(str(exc).split())[:500],
                "start_s": round(time.perf_counter() - started, 2)}
    try:
        start_s = time.perf_counter() - started
        if workers > 1:
            progress(f"waiting {min(60.0, start_s):.0f} s for the other workers to load")
            time.sleep(min(60.0, start_s))
        served = served_settings(server.url)
        result = measure_url(server.url, load, bodies, probe_concurrency, progress)
    finally:
        code = server.stop()
    return {**result, "start_s": round(start_s, 2), "served": served, "exit_code": code}
