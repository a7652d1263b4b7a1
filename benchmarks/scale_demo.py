"""Replicas behind haproxy on one machine, under load, while one dies or all are replaced (``make scale-demo``).

For ``dnx serve`` and ``dnx triton serve``: N replicas of dnx's Fashion-MNIST model (exported here with
``dnx export densenet_bc22_fmnist``: opset 17 is version v1, opset 18 is v2) on loopback behind haproxy
(runtime/deploy/haproxy.py), and a real HTTP client keeping 32 requests in flight (at most 60 s) while

- ``sigkill``: one replica is SIGKILLed (and restarted 2 s later, as a kubelet would);
- ``rolling``: every replica is replaced by v2, one at a time (surge, ready, drain, SIGTERM, next).

Reported per run: requests sent, answered 200, answered 503 with Retry-After, lost (anything else,
including no answer), p99 latency before the event (steady) and during it, haproxy's retries and
redispatches, and which versions answered.

    python -m dnx.benchmarks.scale_demo [--kinds serve,triton] [--replicas 3]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dnx.runtime.deploy.loadgen import LoadGenerator, request_for
from dnx.runtime.deploy.replicas import Fleet, Version
from dnx.benchmarks.scripts import save_result
from dnx.core.machine import machine_info
from dnx.data.preprocess import preprocess_array
from dnx.models import ASSETS
from dnx.runtime.artifact import open_artifact

EVENTS = ("sigkill", "rolling")
MAX_SECONDS = 60.0  # the load generator's bound, whatever happens


def export_versions(workdir: Path) -> tuple[Version, Version]:
    """v1 and v2 of the shipped Fashion-MNIST model: two verified exports that differ in opset (and sha256)."""
    versions = []
    for name, opset in (("v1", 17), ("v2", 18)):
        out = workdir / name / "fmnist.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "dnx.cli", "export", "densenet_bc22_fmnist", "--opset", str(opset),
                        "-o", str(out)], check=True, capture_output=True, timeout=600)
        versions.append(Version(out, name))
    return versions[0], versions[1]


def sample(artifact: Path) -> tuple[bytes, np.ndarray]:
    """One shipped Fashion-MNIST image as PNG bytes, and as the network input (dnx's preprocessing)."""
    from PIL import Image

    image = np.load(ASSETS / "fashion_mnist_calib512.npz")["images"][:1]
    png = io.BytesIO()
    Image.fromarray(image[0]).save(png, format="PNG")
    return png.getvalue(), preprocess_array(image, open_artifact(artifact).preprocess)


def run(kind: str, event: str, v1: Version, v2: Version, workdir: Path, replicas: int = 3,
        steady_s: float = 5.0, tail_s: float = 3.0, concurrency: int = 32) -> dict:
    png, tensor = sample(v1.artifact)
    folder = workdir / f"{kind}-{event}"
    folder.mkdir(parents=True, exist_ok=True)
    with Fleet(kind, v1, replicas, folder) as fleet:
        load = LoadGenerator(fleet.url, request_for(kind, png, tensor), concurrency, MAX_SECONDS)
        time.sleep(steady_s)
        start = time.monotonic()
        if event == "sigkill":
            fleet.kill("s0")
        else:
            fleet.rolling_update(v2)
        end = time.monotonic()
        time.sleep(tail_s)
        result = load.stop()
        stats = fleet.proxy.stats()
    return {"kind": kind, "event": event, "replicas": replicas, "concurrency": concurrency,
            "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: say how busy it was
            **result.counts(), "lost_statuses": result.lost_statuses(),
            "p99_ms_steady": result.p99_ms(result.window(None, start)),
            "p99_ms_event": result.p99_ms(result.window(start, end)),
            "event_seconds": round(end - start, 2), "load_seconds": round(result.seconds(), 1),
            "haproxy_retries": sum(int(s.get("wretr") or 0) for s in stats.values()),
            "haproxy_redispatches": sum(int(s.get("wredis") or 0) for s in stats.values()),
            "versions_answered": result.versions(),
            "events": [{**e, "t": round(e["t"] - start, 2)} for e in fleet.events]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.scale_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="serve,triton", help="Comma-separated: serve, triton.")
    parser.add_argument("--events", default=",".join(EVENTS), help="Comma-separated: sigkill, rolling.")
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="dnx-scale-demo-") as tmp:
        v1, v2 = export_versions(Path(tmp))
        for kind in args.kinds.split(","):
            for event in args.events.split(","):
                row = run(kind, event, v1, v2, Path(tmp), args.replicas)
                rows.append(row)
                print(f"{kind:6} {event:7}: sent {row['sent']:6} 200 {row['ok_200']:6} 503+Retry-After "
                      f"{row['busy_503_retry_after']:4} lost {row['lost']:3}; p99 steady {row['p99_ms_steady']} ms, "
                      f"during {row['p99_ms_event']} ms ({row['event_seconds']} s event); haproxy retries "
                      f"{row['haproxy_retries']}, redispatches {row['haproxy_redispatches']}; versions "
                      f"{row['versions_answered']}", flush=True)
    return save_result("scale_demo", {"machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
