"""What the one-off measurement scripts in this folder share (``graph_form``, ``export_time``,
``calibration_memory``): where their results go, written atomically as ``results/NAME.json``, and a
command line that only answers ``--help`` (and refuses stray arguments) instead of starting a long run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.fileio import write_json_atomic
from dnx.data.photos import make_photo_folder
from dnx.export.onnx_export import export_onnx, ExportOptions

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(name: str, out: dict) -> dict:
    """Write ``out`` to ``results/NAME.json`` (atomically) and return it."""

    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(RESULTS / f"{name}.json", out)
    return out


def run_script(name: str, doc: str, main: Callable[[], object]) -> None:
    """``python -m dnx.benchmarks.NAME``: no options, so the parser only gives --help; then ``main()``."""
    argparse.ArgumentParser(prog=f"python -m dnx.benchmarks.{name}", description=doc.split("\n\n")[0]).parse_args()
    main()


def time_interleaved(runners: dict, x: np.ndarray, rounds: int, per_round: int, warmup: int = 2) -> dict[str, dict]:
    """Per-inference wall times of several runners on one input, interleaved round by round so that a
    drift in the machine's speed hits every runner alike: median, p90, images/s and count per runner."""
    import time

    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in runners.values():
        for _ in range(warmup):
            r.infer({"input": x})
    for _ in range(rounds):
        for k, r in runners.items():
            for _ in range(per_round):
                start = time.perf_counter()
                r.infer({"input": x}, check=False)
                times[k].append((time.perf_counter() - start) * 1e3)
    return {k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)),
                "images_per_s": float(len(x) * 1e3 / np.median(v)), "n": len(v)} for k, v in times.items()}


def both_forms(loaded, folder: Path, samples: int, target: str, **calibrate_options) -> dict[str, Path]:
    """``loaded`` exported in torchvision's and dnx's incremental form (FP32, unverified) and each
    calibrated for ``target`` on ``samples`` crops of the offline photos: {"FORM fp32"/"FORM int8": path}."""

    make_photo_folder(folder / "photos", samples)
    files = {}
    for form in ("torchvision", "incremental"):
        fp32 = export_onnx(loaded, folder / f"{form}.onnx", ExportOptions(verify=False, forward_form=form)).path
        files[f"{form} fp32"] = fp32
        files[f"{form} int8"] = calibrate_qdq(fp32, folder / f"{form}.int8-{target}.onnx", folder / "photos",
                                              target=target, samples=samples, **calibrate_options).path
    return files
