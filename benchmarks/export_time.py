"""Export time of densenet121/169/201, with and without verification (`python -m dnx.benchmarks.export_time`).

Writes benchmarks/results/export_time.json. Target (issue #3): densenet169 export + verify < 20 s on 2 cores.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(models=("densenet121", "densenet169", "densenet201"), repeats: int = 3) -> dict:
    from dnx.benchmarks.harness import machine_info
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

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
                print(f"{name:12s} verify={verify!s:5s} median {statistics.median(wall):6.2f} s  runs {wall}", file=sys.stderr)
    out = {"benchmark": "export_time", "machine": machine_info(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export_time.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    import argparse

    # no options: the parser gives --help (and refuses stray arguments) instead of starting a long run
    argparse.ArgumentParser(prog="python -m dnx.benchmarks.export_time", description=__doc__.split("\n\n")[0]).parse_args()
    main()
