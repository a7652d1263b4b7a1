"""Export time of densenet121/169/201, with and without verification
(`python -m dnx.benchmarks.experiments.export_time`).

Writes benchmarks/results/export_time.json. Target (issue #3): densenet169 export + verify < 20 s on 2 cores.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from dnx.benchmarks.scripts import run_script, save_result
from dnx.core.machine import machine_info
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model


def main(models=("densenet121", "densenet169", "densenet201"), repeats: int = 3) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            for verify in (False, True):
                wall = []
                for i in range(repeats):
                    start = time.perf_counter()
                    loaded = create_model(name)
                    result = export_onnx(loaded, Path(tmp) / f"{name}.onnx", ExportOptions(verify=verify))
                    wall.append(time.perf_counter() - start)
                rows.append({"model": name, "verify": verify, "median_s": statistics.median(wall),
                             "runs_s": wall, "export_s": result.export_seconds, "verify_s": result.verify_seconds})
                print(f"{name:12s} verify={verify!s:5s} median {statistics.median(wall):6.2f} s  runs {wall}",
                      file=sys.stderr)
    out = {"benchmark": "export_time", "machine": machine_info(), "rows": rows}
    return save_result("export_time", out)


if __name__ == "__main__":
    run_script("export_time", __doc__, main)
