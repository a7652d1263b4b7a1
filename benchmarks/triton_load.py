"""Load on a live ``dnx triton serve``, reported as perf_analyzer does (`python -m dnx.benchmarks.triton_load`).

perf_analyzer is not obtainable here (PyPI's ``perf-analyzer`` is a placeholder; tritonclient ships
no binary), so this is its concurrency mode rebuilt on tritonclient's gRPC client: C requests are
kept in flight (each completion sends the next), over a window bounded by both a request count and
a time limit. Reported per run: throughput; client latency p50/p90/p95/p99; from Triton's
statistics extension, per request, the server-side queue time and compute time (input, infer,
output) and the average batch the dynamic batcher formed; failed requests.

Runs: concurrency 1, 8 and 32 with Triton's dynamic batching, and 32 without it, each on its own
server started with ``dnx triton serve`` on loopback ports; plus the in-process ``dnx.load`` numbers
(batch 1 latency, max-batch throughput) as the floor the server adds to. Batch-1 requests of a
random float32 network input. Results (merged per model) go to benchmarks/results/triton_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from dnx.benchmarks.scripts import RESULTS, save_result
from dnx.runtime.serve.process import free_ports
from dnx.core.machine import machine_info
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.runtime.artifact import open_artifact
from dnx.runtime.classifier import load as load_classifier

CLI = [sys.executable, "-c", "import sys; from dnx.cli import main; main(sys.argv[1:])"]


class LiveServer:
    """``dnx triton serve`` in a subprocess on free loopback ports; stopped with SIGTERM."""

    def __init__(self, artifact: Path, backend: str, threads: int | None, max_batch: int, dynamic: bool,
                 queue_delay_us: int, log: Path) -> None:
        self.http_port, self.grpc_port, metrics = free_ports(3)
        args = [*CLI, "triton", "serve", str(artifact), "--backend", backend, "--max-batch", str(max_batch),
                "--queue-delay-us", str(queue_delay_us), "--http-port", str(self.http_port),
                "--grpc-port", str(self.grpc_port), "--metrics-port", str(metrics),
                "--dynamic-batching" if dynamic else "--no-dynamic-batching"]
        if threads is not None:
            args += ["--threads", str(threads)]
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, model: str, timeout_s: float = 180) -> None:
        from tritonclient import grpc

        deadline = time.monotonic() + timeout_s
        with grpc.InferenceServerClient(f"127.0.0.1:{self.grpc_port}") as client:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if client.is_model_ready(model):
                        return
                except Exception:  # noqa: BLE001  (not listening yet)
                    pass
                time.sleep(0.3)
        raise RuntimeError(f"dnx triton serve did not become ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def _stats(client, model: str) -> dict:
    # MODEL is an ensemble (a per-request check, then the network): the batches, queue and compute
    # times are those of its network step, MODEL_network
    return client.get_inference_statistics(f"{model}_network", as_json=True)["model_stats"][0]


def _per_request_us(before: dict, after: dict, key: str, requests: int) -> float | None:
    ns = int(after["inference_stats"][key].get("ns", 0)) - int(before["inference_stats"][key].get("ns", 0))
    return round(ns / requests / 1e3, 1) if requests else None


def load_run(grpc_port: int, model: str, input_name: str, sample: np.ndarray, concurrency: int,
             max_requests: int, max_seconds: float, warmup: int) -> dict:
    """Keep ``concurrency`` requests in flight until ``max_requests`` completed or ``max_seconds`` passed.

    One thread and one gRPC client per in-flight request, each sending its next request when the last
    is answered (perf_analyzer's concurrency mode). Not async callbacks: tritonclient runs a callback
    in the sending thread when the answer is already there, which would re-enter the sender.
    """
    import tritonclient.grpc as grpc

    url = f"127.0.0.1:{grpc_port}"
    inp = grpc.InferInput(input_name, list(sample.shape), "FP32")
    inp.set_data_from_numpy(sample)
    with grpc.InferenceServerClient(url) as client:
        for _ in range(warmup):
            client.infer(model, [inp])
        before = _stats(client, model)
    lock, latencies, failures, sent = threading.Lock(), [], [], [0]
    start = time.perf_counter()
    stop_at = start + max_seconds

    def worker() -> None:
        with grpc.InferenceServerClient(url) as client:
            while True:
                with lock:
                    if sent[0] >= max_requests or time.perf_counter() >= stop_at:
                        return
                    sent[0] += 1
                t = time.perf_counter()
                try:
                    client.infer(model, [inp], client_timeout=max_seconds + 60)
                except Exception as exc:  # noqa: BLE001  (a failed request is counted, as perf_analyzer does)
                    failures.append(str(exc))
                else:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max_seconds + 120)
    seconds = time.perf_counter() - start
    with grpc.InferenceServerClient(url) as client:
        after = _stats(client, model)
    completed = len(latencies)
    ms = np.array(latencies) * 1e3
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    return {"concurrency": concurrency, "requests": completed, "failed": len(failures),
            "failure_examples": failures[:3], "seconds": round(seconds, 2),
            "throughput_infer_per_s": round(completed / seconds, 2),
            "client_latency_ms": {"avg": round(float(ms.mean()), 2),
                                  **{f"p{q}": round(float(np.percentile(ms, q)), 2) for q in (50, 90, 95, 99)}},
            "server_per_request_us": {"queue": _per_request_us(before, after, "queue", inferences),
                                      "compute_input": _per_request_us(before, after, "compute_input", inferences),
                                      "compute_infer": _per_request_us(before, after, "compute_infer", inferences),
                                      "compute_output": _per_request_us(before, after, "compute_output", inferences)},
            "server_inferences": inferences, "server_executions": executions,
            "avg_server_batch": round(inferences / executions, 2) if executions else None}


def in_process(artifact: Path, backend: str, threads: int | None, max_batch: int, seconds: float = 5.0) -> dict:
    """dnx.load in this process: batch-1 latency and max-batch throughput, each for about ``seconds``."""

    with load_classifier(artifact, backend=backend, threads=threads) as clf:
        c, h, w = clf.input_chw
        out = {"backend": clf.choice.backend}
        for batch in (1, max_batch):
            x = np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
            clf.logits(x)
            times, end = [], time.perf_counter() + seconds
            while time.perf_counter() < end and len(times) < 2000:
                t = time.perf_counter()
                clf.logits(x)
                times.append(time.perf_counter() - t)
            out[f"batch{batch}"] = {"median_ms": round(float(np.median(times)) * 1e3, 2),
                                    "images_per_s": round(batch / float(np.median(times)), 1), "runs": len(times)}
    return out


def bench_model(name: str, args, workdir: Path) -> dict:
    # Verified like any served artifact (dnx.load refuses one without a passed parity certificate).
    artifact = export_onnx(create_model(name), workdir / f"{name}.onnx", ExportOptions()).path
    model = artifact.stem
    art = open_artifact(artifact)
    sample = np.random.default_rng(0).standard_normal((1, *art.input_shape[1:])).astype(np.float32)
    result = {"model": name, "precision": art.precision, "backend": args.backend, "threads": args.threads,
              "max_batch": args.max_batch, "queue_delay_us": args.queue_delay_us,
              "in_process": in_process(artifact, args.backend, args.threads, args.max_batch), "runs": []}
    plans = [(True, args.concurrency), (False, [max(args.concurrency)])]
    for dynamic, levels in plans:
        server = LiveServer(artifact, args.backend, args.threads, args.max_batch, dynamic, args.queue_delay_us,
                            workdir / f"{name}-{dynamic}.log")
        try:
            server.wait_ready(model)
            for c in levels:
                run = load_run(server.grpc_port, model, art.input_name, sample, c, args.requests, args.seconds,
                               warmup=min(c, 8))
                run["dynamic_batching"] = dynamic
                result["runs"].append(run)
                lat = run["client_latency_ms"]
                print(f"{name} dyn={'on ' if dynamic else 'off'} c={c:2d}: {run['throughput_infer_per_s']:8.1f} "
                      f"infer/s  p50 {lat['p50']:7.1f} p99 {lat['p99']:7.1f} ms  batch {run['avg_server_batch']}  "
                      f"queue {run['server_per_request_us']['queue']} us  failed {run['failed']}", file=sys.stderr)
        finally:
            server.stop()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.triton_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="densenet_bc22_fmnist", help="comma-separated registry names")
    parser.add_argument("--concurrency", default="1,8,32", help="in-flight requests per run")
    parser.add_argument("--requests", type=int, default=2000, help="most requests measured per run")
    parser.add_argument("--seconds", type=float, default=15.0, help="most seconds measured per run")
    parser.add_argument("--backend", default="onnxruntime", choices=["auto", "onnxruntime", "openvino"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the model in the server")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--queue-delay-us", type=int, default=500)
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    previous = {}
    if (RESULTS / "triton_load.json").is_file():
        previous = json.loads((RESULTS / "triton_load.json").read_text()).get("models", {})
    with tempfile.TemporaryDirectory(prefix="dnx-triton-load-") as tmp:
        for name in args.models.split(","):
            # Other work on the machine shares its cores with the server and this client: say how much.
            load_before = os.getloadavg()[0]
            previous[name] = bench_model(name, args, Path(tmp))
            previous[name]["machine"] = {**machine_info(threads=args.threads or 0),
                                         "load_average_1m": {"before": round(load_before, 2),
                                                             "after": round(os.getloadavg()[0], 2)}}
            previous[name]["command"] = " ".join(["python -m dnx.benchmarks.triton_load", *(argv or sys.argv[1:])])
    return save_result("triton_load", {"benchmark": "triton_load", "models": previous})


if __name__ == "__main__":
    main()
