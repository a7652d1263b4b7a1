"""Peak RSS and time of calibrating densenet121 on 512 real photos
(`python -m dnx.benchmarks.experiments.calibration_memory`).

Each calibration runs as a separate `dnx calibrate` process so its peak RSS is its own
(``RUSAGE_CHILDREN`` after it exits). Target (issue #4): under 8 GB. Writes
benchmarks/results/calibration_memory.json.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dnx.benchmarks.scripts import run_script, save_result
from dnx.core.machine import machine_info
from dnx.data.photos import find_photos, make_photo_folder


def main(samples: int = 512, targets=("tensorrt", "onnxruntime")) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photo_folder(tmp / "photos", samples)
        dnx = [sys.executable, "-m", "dnx.cli"]
        subprocess.run([*dnx, "export", "densenet121", "--no-verify", "-o", str(tmp / "d121.onnx")], check=True,
                       capture_output=True)
        for target in targets:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            subprocess.run([*dnx, "calibrate", str(tmp / "d121.onnx"), "--data", str(tmp / "photos"),
                            "--samples", str(samples), "--target", target, "-o", str(tmp / f"{target}.onnx")],
                           check=True, capture_output=True)
            seconds = time.perf_counter() - start
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            # RUSAGE_CHILDREN reports the largest child so far; the export child is far smaller.
            rows.append({"target": target, "samples": samples, "seconds": seconds,
                         "peak_rss_gib": peak_kib / 2**20, "previous_max_gib": before / 2**20})
            print(f"{target:12s} {samples} photos: {seconds:6.0f} s, peak RSS {peak_kib / 2**20:.2f} GiB",
                  file=sys.stderr)
        sources = len(find_photos(256))
    out = {"benchmark": "calibration_memory", "model": "densenet121", "photo_sources": sources,
           "machine": machine_info(), "rows": rows}
    return save_result("calibration_memory", out)


if __name__ == "__main__":
    run_script("calibration_memory", __doc__, main)
