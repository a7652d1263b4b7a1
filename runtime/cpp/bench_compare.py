"""C++ end to end vs Python end to end vs bare inference, one run, same artifacts and threads.

    python runtime/cpp/bench_compare.py [--threads 1] [--duration 6] [--json OUT] MODEL.onnx...

For each model: ``dnx-classify --bench`` (C++: decode -> preprocess -> OpenVINO -> top-5, and bare
OpenVINO inference on a preprocessed tensor), then Python's ``dnx.load(model, backend=...)`` on
the same encoded photos (``predict`` on bytes: Pillow decode -> preprocess -> infer -> top-5)
and its bare ``logits``, for the OpenVINO backend (the C++ one) and for the backend dnx.load's
auto rule picks. Same statistics as ``dnx bench``: warm-up, then median/p90/p99 of per-call wall
times, images/s from the median. Batch 1. Prints a Markdown table; --json writes rows + machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CLASSIFY = ROOT / "build" / "cpp" / "dnx-classify"


def stats(ms: list[float]) -> dict:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": len(ms), "median_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "images_per_s": 1000.0 / float(p50)}


def measure(step, warmup_s: float, duration_s: float) -> list[float]:
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        step()
    ms: list[float] = []
    end = time.perf_counter() + duration_s
    while time.perf_counter() < end or len(ms) < 5:
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1000)
    return ms


def python_rows(model: Path, photos: list[bytes], backend: str, threads: int, duration: float) -> list[dict]:
    from dnx import load

    # speed only: artifacts made before parity certificates existed are measured too
    with load(model, backend=backend, threads=threads, allow_unverified=True) as clf:
        chosen = clf.info().get("backend", backend)
        i = iter(range(10**9))
        e2e = measure(lambda: clf.predict(photos[next(i) % len(photos)], top_k=5), 1.0, duration)
        x = clf.preprocess(photos[0])
        bare = measure(lambda: clf.logits(x), 0.5, duration)
    return [{"side": "python", "backend": chosen, "what": "end to end", **stats(e2e)},
            {"side": "python", "backend": chosen, "what": "bare inference", **stats(bare)}]


def cpp_rows(model: Path, photo_paths: list[Path], threads: int, duration: float) -> list[dict]:
    out = subprocess.run([str(CLASSIFY), "--bench", "--allow-unverified", "--threads", str(threads),
                          "--duration", str(duration * 2),
                          str(model), *map(str, photo_paths)], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return [{"side": "c++", "backend": r["backend"], "what": "end to end", **r["end_to_end"]},
            {"side": "c++", "backend": r["backend"], "what": "bare inference", **r["bare_inference"]}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured series")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from dnx.core.machine import machine_info

    from dnx.data.preprocess import bundled_photos
    from dnx.core.fileio import write_json_atomic

    photo_paths = bundled_photos()
    photos = [p.read_bytes() for p in photo_paths]
    rows = []
    for model in args.models:
        precision = json.loads(Path(str(model) + ".json").read_text()).get("precision")
        found = cpp_rows(model, photo_paths, args.threads, args.duration)
        found += python_rows(model, photos, "openvino", args.threads, args.duration)
        auto = python_rows(model, photos, "auto", args.threads, args.duration)
        if auto[0]["backend"] != found[-1]["backend"]:
            found += auto
        rows += [{"model": model.name, "precision": precision, **r} for r in found]
    machine = machine_info(args.threads)
    print(f"CPU: {machine['cpu']}; threads {args.threads}; batch 1; photos: {len(photos)} bundled JPEGs\n")
    print("| model | precision | side | backend | what | median ms | p90 ms | p99 ms | images/s | n |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['side']} | {r['backend']} | {r['what']} | {r['median_ms']:.2f} "
              f"| {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['images_per_s']:.1f} | {r['n']} |")
    if args.json:
        write_json_atomic(args.json, {"machine": machine, "threads": args.threads, "rows": rows})


if __name__ == "__main__":
    main()
