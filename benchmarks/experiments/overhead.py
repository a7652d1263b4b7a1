"""Does `dnx bench` add measurable overhead? Compare its ort-cpu median with a bare loop.

    python -m dnx.benchmarks.experiments.overhead [--model densenet121] [--batch 1] [--threads 1]

Both measurements run in this process, on the same ONNX file and the same input, with the same
session options: the harness (``measure_latency`` around an ``OnnxRuntimeRunner``, exactly as
``dnx bench`` times ort-cpu) and a plain ``session.run`` loop on its own InferenceSession, timed
with ``perf_counter``. They alternate for several rounds (order swapped each round) so drift on a
shared machine hits both; the ratio of the medians over rounds is the overhead. Target: within 3%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dnx.runtime.backends.latency import measure_latency
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


def bare_median_ms(session, feed: dict[str, np.ndarray], warmup_s: float, duration_s: float) -> float:
    """The simplest honest loop: warm up, then time each session.run until the duration is up."""
    deadline = time.perf_counter() + warmup_s
    session.run(None, feed)
    while time.perf_counter() < deadline:
        session.run(None, feed)
    samples = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or len(samples) < 10:
        start = time.perf_counter()
        session.run(None, feed)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1000.0


def compare(onnx_path: Path, batch: int, threads: int, rounds: int, duration_s: float,
            warmup_s: float) -> list[tuple[float, float]]:
    """(harness median, bare median) per round, in ms."""
    import onnxruntime as ort

    runner = OnnxRuntimeRunner(onnx_path, "cpu", threads=threads).activate()
    opts = ort.SessionOptions()
    if threads:  # the options OnnxRuntimeRunner sets, so only the timing code differs
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    meta = session.get_inputs()[0]
    shape = [batch] + [int(d) for d in meta.shape[1:]]
    feed = {meta.name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    pairs = []
    for i in range(rounds):
        def harness() -> float:
            return measure_latency(runner, feed, warmup_s, duration_s=duration_s).end_to_end.median_ms

        def bare() -> float:
            return bare_median_ms(session, feed, warmup_s, duration_s)

        if i % 2 == 0:
            h, b = harness(), bare()
        else:
            b, h = bare(), harness()
        pairs.append((h, b))
    runner.deactivate()
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.experiments.overhead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--onnx", type=Path, help="use this ONNX file instead of exporting --model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0, help="timed seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dnx-overhead-") as tmp:
        path = args.onnx
        if path is None:

            path = Path(tmp) / f"{args.model}.onnx"
            export_onnx(create_model(args.model), path, ExportOptions(verify=False))
        pairs = compare(path, args.batch, args.threads, args.rounds, args.duration, args.warmup)
    print(f"{path.name}, batch {args.batch}, {args.threads} thread(s), {args.rounds} interleaved rounds of "
          f"{args.duration:g} s each")
    print("round  dnx bench median ms  bare session.run median ms  ratio")
    for i, (h, b) in enumerate(pairs):
        print(f"{i:5d}  {h:19.3f}  {b:26.3f}  {h / b:.4f}")
    harness_ms = statistics.median(h for h, _ in pairs)
    bare_ms = statistics.median(b for _, b in pairs)
    ratios = [h / b for h, b in pairs]
    ratio = harness_ms / bare_ms
    print(f"median over rounds: dnx bench {harness_ms:.3f} ms, bare {bare_ms:.3f} ms, ratio {ratio:.4f} "
          f"(per-round ratios {min(ratios):.4f}..{max(ratios):.4f}); "
          f"{'within' if abs(ratio - 1) <= 0.03 else 'NOT within'} 3%")


if __name__ == "__main__":
    main()
