"""The reproducible CPU benchmark behind `make bench`: ``python -m dnx.benchmarks.suite``.

PyTorch eager FP32 vs onnxruntime FP32 and INT8 (QDQ) vs OpenVINO FP32 and INT8 (``--target openvino``),
one thread, batch 1 and 8, for DenseNet-121, DenseNet-169 (random weights: speed and parity do not depend
on training) and dnx's trained Fashion-MNIST DenseNet-BC, each with `dnx bench`'s defaults for data:
parity on the model's real reference set (the shipped Fashion-MNIST test split, 1,000 labelled images, or
64 crops of the bundled photos) plus random tensors as a numeric check, calibration on in-distribution
images kept apart from it. Writes ``benchmarks/results/MODEL.json`` (schema dnx.bench/1) and
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

from dnx.benchmarks import report
from dnx.benchmarks.harness import BenchConfig, BenchResult, run_bench
from dnx.core.fileio import atomic_path

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-int8", "openvino-cpu", "openvino-cpu-int8")
BATCHES = (1, 8)
THREADS = 1  # one thread: comparable across machines, and what a busy server core gets


@dataclass(frozen=True)
class SuiteEntry:
    model: str
    samples: int = 100  # random tensors of the numeric check


def suite_entries() -> list[SuiteEntry]:
    return [SuiteEntry("densenet121"), SuiteEntry("densenet169"), SuiteEntry("densenet_bc22_fmnist")]


def suite_config(entry: SuiteEntry, duration_s: float, workdir: str | None) -> BenchConfig:
    return BenchConfig(target=entry.model, backends=BACKENDS, batches=BATCHES, duration_s=duration_s,
                       warmup_s=1.0, threads=THREADS, samples=entry.samples, workdir=workdir)


def results_markdown(results: list[BenchResult]) -> str:
    lines = ["# dnx benchmark results", "",
             "Made by `make bench` (`python -m dnx.benchmarks.suite`); one JSON file per model in "
             "`benchmarks/results/` (schema `dnx.bench/1`, `dnx/schemas/json/bench.schema.json`).",
             f"Backends {', '.join(BACKENDS)}; batch {', '.join(map(str, BATCHES))}; {THREADS} thread; latency is "
             "the median of per-inference wall times after warm-up; speed-up is against torch in the same run.",
             "Parity is against PyTorch FP32 on the CPU (torchvision forward) on the same inputs.", "",
             "Verdicts come from real images only: the shipped Fashion-MNIST test split (1,000 labelled "
             "images) for dnx's trained model, every offline photo whole and as 2 seeded crops for the ImageNet "
             "models; random N(0, 1) tensors are a numeric check (they decide no reduced precision). Top-1 is "
             "shown with its flips out of the set size; a flip counts only where FP32 is sure (top-1 minus top-2 "
             "probability >= 0.2; n sure images at threshold t allow floor(n(1-t)) flips), near-ties are "
             "reported apart (docs/verification.md). The ImageNet models have random weights, so their FP16/INT8 "
             "verdicts are the smallest per-image cosine (>= 0.999 / 0.99): top-1 margins of random weights are "
             "noise. "
             "INT8 is slower than FP32 on the 28x28 model at batch 1 on onnxruntime: its convolutions are so "
             "narrow (12-48 channels) that integer kernels do not pay.", "",
             "Serving (`dnx serve` vs in-process), Triton, the C++ runtime and dnx INT8 vs OpenVINO+NNCF are "
             "measured by their own scripts: see `MEASUREMENTS.md`.", ""]
    for result in results:
        lines.append(report.to_markdown(result, heading_level=2))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="subset of the suite's models")
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per backend and batch")
    parser.add_argument("--samples", type=int, help="override parity/calibration images per model")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON files")
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--workdir", help="keep prepared ONNX files here (default: temporary)")
    args = parser.parse_args(argv)

    entries = suite_entries()
    if args.models:
        unknown = set(args.models) - {e.model for e in entries}
        if unknown:
            parser.error(f"not in the suite: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e.model in args.models]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for entry in entries:
        if args.samples:
            entry = replace(entry, samples=args.samples)
        start = time.perf_counter()
        print(f"{entry.model}: benchmarking {', '.join(BACKENDS)} ...", flush=True)
        result = run_bench(suite_config(entry, args.duration, args.workdir))
        report.write_json(result, args.out / f"{entry.model}.json")
        print(f"{entry.model}: done in {time.perf_counter() - start:.0f} s", flush=True)
        results.append(result)
    with atomic_path(args.markdown) as tmp:
        tmp.write_text(results_markdown(results))
    print(f"wrote {args.markdown} and {len(results)} JSON file(s) in {args.out}")


if __name__ == "__main__":
    main()
