"""Memory requests from a measurement: start ``dnx serve`` on the artifact (loopback, free port), drive
it at the concurrency its batcher fills, and read the process's peak resident set (``VmHWM``) from /proc.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dnx.core.errors import DnxError
from dnx.data.preprocess import bundled_photos
from dnx.runtime.serve.process import ServeProcess

HEADROOM = 1.25  # over the measured peak: allocator growth under a long run, other images
STEP_MIB = 64


@dataclass(frozen=True)
class MemoryMeasurement:
    peak_mib: float  # VmHWM after the load
    rss_mib: float  # VmRSS after the load
    requests: int
    threads: int

    @property
    def request_mib(self) -> int:
        """The Kubernetes memory request: the peak with headroom, rounded up to 64 MiB."""
        return int(math.ceil(self.peak_mib * HEADROOM / STEP_MIB) * STEP_MIB)

    def describe(self) -> str:
        return (f"measured: dnx serve peak RSS (VmHWM) {self.peak_mib:.0f} MiB after {self.requests} requests, "
                f"--threads {self.threads}; request = peak x {HEADROOM} rounded up to {STEP_MIB} MiB")


def proc_status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise DnxError(f"{field} not found in /proc/{pid}/status")


def measure_serve_memory(artifact: str | Path, threads: int = 1, max_batch: int = 8, requests: int = 64,
                         extra_args: tuple[str, ...] = ()) -> MemoryMeasurement:
    """Start ``dnx serve ARTIFACT``, send ``requests`` classify requests (``max_batch`` at a time, a
    bundled photo each), and read its memory."""
    import httpx

    photo = bundled_photos()[0].read_bytes()
    with ServeProcess(artifact, "--threads", str(threads), "--max-batch", str(max_batch), *extra_args) as server:
        def one(_: int) -> int:
            return httpx.post(f"{server.url}/v1/classify", content=photo, headers={"content-type": "image/jpeg"},
                              timeout=120).status_code

        with ThreadPoolExecutor(max_batch) as pool:
            codes = list(pool.map(one, range(requests)))
        if any(c != 200 for c in codes):
            raise DnxError(f"dnx serve answered {sorted(set(codes))} while its memory was measured")
        pid = server.proc.pid
        return MemoryMeasurement(proc_status_mib(pid, "VmHWM"), proc_status_mib(pid, "VmRSS"), requests, threads)
