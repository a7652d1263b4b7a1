"""Load benchmark of ``dnx serve`` against in-process ``Classifier.predict``, in one run.

For each artifact (densenet121 FP32, densenet121 INT8, dnx's Fashion-MNIST model) and each
concurrency (1, 8, 32), with micro-batching on and off:

- in-process: ``C`` threads share one ``dnx.load`` classifier (through a ``Batcher`` when batching is on)
  and classify the same encoded photos the HTTP client sends;
- service: a real ``dnx serve`` process on a loopback port, driven by an ``httpx`` async client
  with ``C`` requests in flight, bounded by a request count and a time limit.

Reported per row: requests, errors, throughput, client latency p50/p90/p99, and the service's
throughput as a ratio of the in-process one. One long run on the first artifact also reads the
server's RSS after the first 500 and after 5,000 requests.

    python -m dnx.benchmarks.serve_load [--quick]

``--photos-2mp`` measures the whole request instead (issue 21): real photos re-encoded at 1600x1200
JPEG quality 90, ``dnx serve`` at concurrency 8 (decode pool beside the batcher) against the same
artifact's in-process inference-only throughput (preprocessed batches of 8) and in-process
end-to-end ``Batcher.predict`` from the same JPEG bytes, interleaved in one run.

    python -m dnx.benchmarks.serve_load --photos-2mp [--models densenet121-int8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from dnx.benchmarks.scripts import save_result
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.machine import machine_info
from dnx.data.photos import find_photos, make_photo_folder, reencode_jpeg
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.runtime.batching import Batcher
from dnx.runtime.serve.process import ServeProcess
from dnx.runtime.classifier import load as load_classifier

CONCURRENCY = (1, 8, 32)
TIME_LIMIT_S = 120.0  # per measurement: a bound on every loop, whatever the request count


def latency_stats(latencies: list[float], errors: int, seconds: float) -> dict:
    lat = np.asarray(latencies) * 1e3
    p50, p90, p99 = (np.percentile(lat, [50, 90, 99]) if len(lat) else (float("nan"),) * 3)
    return {"requests": len(latencies) + errors, "ok": len(latencies), "errors": errors,
            "seconds": round(seconds, 3), "throughput": round(len(latencies) / seconds, 2) if seconds else 0.0,
            "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2), "p99_ms": round(float(p99), 2)}


def _photos(folder: Path, n: int = 16) -> list[bytes]:
    """Real JPEG photos (random crops of the offline photos), so requests differ as a service's would."""

    return [p.read_bytes() for p in make_photo_folder(folder, n, size=320, seed=1)]


def in_process(artifact: Path, concurrency: int, requests: int, batching: bool, photos: list[bytes]) -> dict:
    with load_classifier(artifact) as clf:
        if batching:
            clf.warm_up(range(1, 9))  # as dnx serve does: every batch size the batcher can form
        batcher = Batcher(clf, max_batch=8, max_delay_ms=2.0, max_queue=256) if batching else None
        predict = batcher.predict if batcher else clf.predict
        deadline = time.perf_counter() + TIME_LIMIT_S

        def one(i: int) -> float | None:
            if time.perf_counter() > deadline:
                return None
            start = time.perf_counter()
            predict(photos[i % len(photos)], top_k=5)
            return time.perf_counter() - start

        for i in range(concurrency):  # warm-up: one round at this concurrency
            one(i)
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            lat = [t for t in pool.map(one, range(requests)) if t is not None]
        seconds = time.perf_counter() - start
        if batcher:
            batcher.close()
    return latency_stats(lat, 0, seconds)


async def closed_loop(url: str, concurrency: int, requests: int, photos: list[bytes],
                      time_limit_s: float = TIME_LIMIT_S) -> dict:
    """Closed loop: ``concurrency`` requests in flight until ``requests`` are sent or ``time_limit_s`` ends."""
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.perf_counter() + time_limit_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < requests and time.perf_counter() < deadline:
                i = next_index
                next_index += 1
                start = time.perf_counter()
                try:
                    r = await client.post(f"{url}/v1/classify", content=photos[i % len(photos)],
                                          headers={"content-type": "image/jpeg"})
                    ok = r.status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        for i in range(concurrency):  # warm-up round
            await client.post(f"{url}/v1/classify", content=photos[i % len(photos)],
                              headers={"content-type": "image/jpeg"})
        start = time.perf_counter()
        deadline = start + time_limit_s  # the warm-up round is not part of the measured time
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return latency_stats(latencies, errors, seconds)


def photos_2mp(n: int = 16) -> list[bytes]:
    """``n`` real photos (the offline ones at least 1000 px on both sides, JPEG camera photos first)
    centre-cropped to 4:3 and re-encoded at 1600x1200 as JPEG quality 90 (~2 MP)."""

    found = sorted(find_photos(min_side=1000), key=lambda p: (p.suffix.lower() not in (".jpg", ".jpeg"), str(p)))
    return [reencode_jpeg(path, size=(1600, 1200)) for path in found[:n]]


def _inference_window(clf, x: np.ndarray, seconds: float) -> dict:
    """Images/s of ``clf.logits`` on the preprocessed batch ``x`` for ``seconds`` (no decode, no HTTP)."""
    lat = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        clf.logits(x)
        lat.append(time.perf_counter() - start)
    return {"calls": len(lat), "p50_batch_ms": round(float(np.median(lat) * 1e3), 2),
            "throughput": round(len(x) * len(lat) / sum(lat), 2)}


def e2e_2mp(arts: dict[str, Path], concurrency: int = 8, rounds: int = 3,
            window_s: float = 15.0) -> list[dict]:
    """``dnx serve`` with 2 MP photos at ``concurrency`` vs in-process inference only on batches of 8.

    The machine may be shared, so the two are interleaved: ``rounds`` x (inference window, service
    window, inference window), each service window compared with the mean of the two around it."""

    photos = photos_2mp()
    rows = []
    for name, path in arts.items():
        server = ServeProcess(path, "--max-queue", "256", "--max-batch", "8")
        try:
            with load_classifier(path) as clf:
                clf.warm_up((8,))
                x = clf.preprocess((photos * 8)[:8])
                asyncio.run(closed_loop(server.url, concurrency, concurrency * 2, photos))  # warm-up
                windows = []
                for _ in range(rounds):
                    before = _inference_window(clf, x, window_s)
                    http = asyncio.run(closed_loop(server.url, concurrency, 1_000_000, photos, time_limit_s=window_s))
                    after = _inference_window(clf, x, window_s)
                    ratio = http["throughput"] / ((before["throughput"] + after["throughput"]) / 2)
                    windows.append({"inference_before": before, "service": http, "inference_after": after,
                                    "service_vs_inference_only": round(ratio, 3)})
                    print(f"{name}: 2 MP, c={concurrency}: service {http['throughput']:.1f}/s (p50 "
                          f"{http['p50_ms']:.0f} ms, errors {http['errors']}), inference only "
                          f"{before['throughput']:.1f} / {after['throughput']:.1f}/s: ratio {ratio:.2f}", flush=True)
                backend = clf.choice.backend
            stages = _server_stages(server.url)
        finally:
            server.stop()
        ratios = sorted(w["service_vs_inference_only"] for w in windows)
        rows.append({"artifact": name, "backend": backend, "photos": len(photos),
                     "photo_size": "1600x1200 JPEG q90",
                     "mean_photo_kb": round(sum(map(len, photos)) / len(photos) / 1024, 1),
                     "concurrency": concurrency, "window_s": window_s, "windows": windows,
                     "service_stage_mean_ms": stages, "median_service_vs_inference_only": ratios[len(ratios) // 2]})
        print(f"{name}: median service / inference-only {ratios[len(ratios) // 2]:.2f}; server stages (mean ms) "
              f"{stages}", flush=True)
    return rows


def _server_stages(url: str) -> dict:
    """Mean seconds per stage from the server's /metrics histograms, in ms."""
    import httpx

    sums, counts = {}, {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for kind, table in (("_sum", sums), ("_count", counts)):
            prefix = f"dnx_stage_seconds{kind}{{stage=\""
            if line.startswith(prefix):
                stage = line[len(prefix):].split('"')[0]
                table[stage] = float(line.split()[1])
    return {k: round(sums[k] / counts[k] * 1e3, 2) for k in sums if counts.get(k)}


def prepare(workdir: Path, quick: bool, only: list[str] | None = None) -> dict[str, Path]:
    """The artifacts: densenet121 FP32 and INT8 (best CPU placement), and the shipped Fashion-MNIST model."""

    want = set(only or (["fmnist-fp32"] if quick else ["fmnist-fp32", "densenet121-fp32", "densenet121-int8"]))
    arts = {}
    if "fmnist-fp32" in want:
        fm = workdir / "densenet_bc22_fmnist.onnx"
        export_onnx(create_model("densenet_bc22_fmnist"), fm, ExportOptions())  # verified: dnx serve checks it
        arts["fmnist-fp32"] = fm
    if want & {"densenet121-fp32", "densenet121-int8"}:
        d121 = workdir / "densenet121.onnx"
        export_onnx(create_model("densenet121"), d121, ExportOptions())
        if "densenet121-fp32" in want:
            arts["densenet121-fp32"] = d121
        if "densenet121-int8" in want:
            make_photo_folder(workdir / "calib", 64, seed=0)
            int8 = workdir / "densenet121.int8-openvino.onnx"
            calibrate_qdq(d121, int8, workdir / "calib", target="openvino", samples=64)
            arts["densenet121-int8"] = int8
    return arts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.serve_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Only the Fashion-MNIST model, fewer requests.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per row at concurrency 32.")
    parser.add_argument("--models", help="Comma-separated subset of fmnist-fp32, densenet121-fp32, densenet121-int8.")
    parser.add_argument("--batching", choices=("both", "on", "off"), default="both", help="Micro-batching runs.")
    parser.add_argument("--photos-2mp", action="store_true",
                        help="Whole requests with 2 MP JPEG photos at concurrency 8 vs inference only (issue 21).")
    args = parser.parse_args(argv)

    if args.photos_2mp:
        with tempfile.TemporaryDirectory(prefix="dnx-serve-2mp-") as tmp:
            arts = prepare(Path(tmp), False, (args.models or "densenet121-int8").split(","))
            load_before = os.getloadavg()  # a shared machine's contention, next to the numbers it skews
            rows = e2e_2mp(arts)
        return save_result("serve_load_2mp", {"machine": machine_info(), "load_average_1_5_15": {
            "before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]},
            "rows": rows})

    rows, rss = [], {}
    with tempfile.TemporaryDirectory(prefix="dnx-serve-load-") as tmp:
        photos = _photos(Path(tmp) / "requests")
        arts = prepare(Path(tmp), args.quick, args.models.split(",") if args.models else None)
        modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.batching]
        for name, path in arts.items():
            for batching in modes:
                server = ServeProcess(path, "--max-queue", "256", "--max-batch", "8" if batching else "1")
                try:
                    if name == "fmnist-fp32" and batching:  # RSS drift: 500 then 5,000 requests
                        asyncio.run(closed_loop(server.url, 32, 500, photos))
                        rss["after_500"] = server.rss_mib()
                        asyncio.run(closed_loop(server.url, 32, 4500, photos))
                        rss["after_5000"] = server.rss_mib()
                    for c in CONCURRENCY:
                        n = max(c * 8, args.requests * c // 32) if not args.quick else c * 20
                        if "densenet121" in name and c == 1:
                            n = min(n, 100)
                        http = asyncio.run(closed_loop(server.url, c, n, photos))
                        local = in_process(path, c, n, batching, photos)
                        ratio = http["throughput"] / local["throughput"] if local["throughput"] else None
                        rows.append({"artifact": name, "batching": batching, "concurrency": c, "service": http,
                                     "in_process": local, "service_vs_in_process": round(ratio, 3) if ratio else None})
                        print(f"{name:18} batching={'on ' if batching else 'off'} c={c:2}: service "
                              f"{http['throughput']:7.1f}/s p50 {http['p50_ms']:7.1f} p99 {http['p99_ms']:7.1f} "
                              f"errors {http['errors']}; in-process {local['throughput']:7.1f}/s; ratio {ratio:.2f}",
                              flush=True)
                finally:
                    server.stop()
    if rss:
        rss["growth"] = round(rss["after_5000"] / rss["after_500"] - 1, 4)
    return save_result("serve_load", {"machine": machine_info(), "time_limit_s": TIME_LIMIT_S, "rows": rows,
                                      "server_rss_mib": rss})


if __name__ == "__main__":
    main()
