"""The whole request, end to end: JPEG bytes -> top-5, per image size and per decode path, in one run.

For each image size (real photos re-encoded as quality-90 JPEGs at 0.26, 2 and 12 MP, or the user's own
images with ``dnx bench --e2e IMAGES``) and each path of :mod:`dnx.benchmarks.e2e_paths` (dnx exact, dnx
fast, PIL, torchvision.io, DALI CPU), every stage (decode, preprocess, inference, postprocess) and the
total are timed per image, interleaved round by round so a drift of the shared machine hits every path
alike, and reported at p50/p99 beside inference alone on the same artifact. The C++ runtime's exact and
fast decode run through ``dnx-classify --bench`` (when built), and ``dnx serve`` is driven at concurrency
1 and 8 with the 2 MP photos, against the in-process inference-only throughput.

    python -m dnx.benchmarks.e2e [--photos 8] [--rounds 20] [--threads 2] [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.core.fileio import write_bytes_atomic, write_json_atomic
from dnx.benchmarks.e2e_paths import dali_path, dnx_path, pil_path, torchvision_path
from dnx.benchmarks.scripts import RESULTS
from dnx.benchmarks.serve_load import closed_loop, prepare
from dnx.core.machine import machine_info
from dnx.data.photos import find_photos, reencode_jpeg
from dnx.runtime.serve.process import ServeProcess
from dnx.runtime.classifier import load as load_classifier

SIZES = {"0.26MP": (512, 512), "2MP": (1632, 1224), "12MP": (4000, 3000)}
CPP_CLASSIFY = Path(__file__).resolve().parents[1] / "build" / "cpp" / "dnx-classify"
SERVE_CONCURRENCY = (1, 8)


def reencoded_photos(count: int) -> dict[str, list[bytes]]:
    """``count`` offline photos, centre-cropped to each size's aspect ratio and re-encoded at that size."""

    photos = find_photos(min_side=512)[:count]
    if not photos:
        raise DnxError("no offline photos found; pip install scikit-image or apt-get install opencv-doc")
    return {name: [reencode_jpeg(path, size=wh) for path in photos] for name, wh in SIZES.items()}


def user_images(path: str | Path, limit: int = 64) -> dict[str, list[bytes]]:
    """A user's JPEGs (a file, or a folder searched recursively) as one image set named after them."""
    path = Path(path)
    if not path.exists():
        raise DnxError(f"--e2e {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise DnxError(f"--e2e {path} holds no .jpg/.jpeg files")
    return {f"{path.name} ({min(len(files), limit)} JPEGs)": [p.read_bytes() for p in files[:limit]]}


def _pct(values: list[float]) -> dict:
    ms = np.asarray(values) * 1e3
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def time_paths(clf, paths: dict, images: list[bytes], rounds: int) -> dict[str, dict]:
    """Stages and total per path over ``rounds`` passes through ``images`` (paths interleaved per image)."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in paths}
    for name, run in paths.items():  # warm-up: first calls pay for lazy initialisation
        run(images[0])
    for _ in range(rounds):
        for data in images:
            for name, run in paths.items():
                x, stages = run(data)
                split = "decode" in stages  # DALI's pipeline times its two stages as one
                if split:
                    stages["decode+preprocess"] = stages["decode"] + stages["preprocess"]
                start = time.perf_counter()
                logits = clf.logits(x[None])
                stages["inference"] = time.perf_counter() - start
                start = time.perf_counter()
                clf.postprocess(logits, 5)
                stages["postprocess"] = time.perf_counter() - start
                stages["total"] = sum(v for k, v in stages.items() if not (split and k == "decode+preprocess"))
                for stage, seconds in stages.items():
                    samples[name].setdefault(stage, []).append(seconds)
    return {name: {stage: _pct(v) for stage, v in stages.items()} for name, stages in samples.items()}


def inference_only(clf, images: list[bytes], rounds: int, batch: int = 1) -> dict:
    x = np.stack([clf.preprocess_one(d)[0] for d in images[:1]] * batch)
    for _ in range(3):
        clf.logits(x)
    times = []
    for _ in range(rounds * max(1, len(images) // batch)):
        start = time.perf_counter()
        clf.logits(x)
        times.append(time.perf_counter() - start)
    out = _pct(times)
    out["images_per_s"] = round(batch / float(np.median(times)), 2)
    return out


def cpp_rows(artifact: Path, images: list[bytes], threads: int, seconds: float, binary: Path) -> dict[str, dict]:
    """``dnx-classify --bench`` in each decode mode on the same files (absent binary: a row saying so)."""
    if not binary.is_file():
        return {"C++ (not built)": {"unavailable": f"{binary} not found; run runtime/cpp/build_and_test.sh"}}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="dnx-e2e-") as tmp:
        files = []
        for i, data in enumerate(images):
            files.append(Path(tmp) / f"{i}.jpg")
            write_bytes_atomic(files[-1], data)
        for decode in ("exact", "fast"):
            cmd = [str(binary), "--bench", "--decode", decode, "--threads", str(threads), "--warmup", "1",
                   "--duration", str(seconds), str(artifact), *map(str, files)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                rows[f"C++ {decode}"] = {"unavailable": done.stderr.strip()[:300]}
                continue
            r = json.loads(done.stdout)
            stage = {k: {"n": v["n"], "p50_ms": round(v["median_ms"], 3), "p99_ms": round(v["p99_ms"], 3)}
                     for k, v in r["stages"].items()}
            stage["decode+preprocess"] = {"p50_ms": round(stage["decode"]["p50_ms"] + stage["preprocess"]["p50_ms"], 3),
                                          "note": "sum of the two stages' p50"}
            stage["total"] = {"n": r["end_to_end"]["n"], "p50_ms": round(r["end_to_end"]["median_ms"], 3),
                              "p99_ms": round(r["end_to_end"]["p99_ms"], 3)}
            stage["bare_inference"] = {"n": r["bare_inference"]["n"],
                                       "p50_ms": round(r["bare_inference"]["median_ms"], 3),
                                       "p99_ms": round(r["bare_inference"]["p99_ms"], 3)}
            rows[f"C++ {decode}"] = stage
    return rows


def serve_rows(artifact: Path, images: list[bytes], threads: int, requests: int) -> dict[str, dict]:
    """Images/s through a real ``dnx serve`` (loopback) at concurrency 1 and 8, bounded in requests and time."""

    rows = {}
    server = ServeProcess(artifact, "--threads", str(threads), "--max-batch", "8", "--max-queue", "64")
    try:
        for c in SERVE_CONCURRENCY:
            rows[f"concurrency {c}"] = asyncio.run(closed_loop(server.url, c, requests * max(1, c // 2), images))
    finally:
        server.stop()
    return rows


def run_e2e(artifact: str | Path, sets: dict[str, list[bytes]], *, threads: int = 2, rounds: int = 10,
            cpp_seconds: float = 4.0, serve_requests: int = 48, cpp_binary: Path = CPP_CLASSIFY,
            serve_size: str | None = "2MP", peers: bool = True) -> dict:
    """Every path on every image set; the dict benchmarks/results/e2e.json holds."""

    artifact = Path(artifact)
    result: dict = {"benchmark": "e2e", "artifact": str(artifact), "threads": threads, "rounds": rounds,
                    "machine": machine_info(threads), "sizes": {}, "notes": []}
    with load_classifier(artifact, threads=threads, decode="exact") as exact, \
            load_classifier(artifact, threads=threads, decode="fast") as fast:
        pre = exact.artifact.preprocess
        result["precision"] = exact.artifact.precision
        result["backend"] = exact.info()["backend"]
        paths = {"dnx exact": dnx_path(exact), "dnx fast": dnx_path(fast)}
        if peers:
            paths["PIL"] = pil_path(pre)
            paths["torchvision.io"] = torchvision_path(pre, threads)
            dali, why = dali_path(pre, threads)
            if dali is not None:
                paths["DALI CPU"] = dali
            else:
                result["notes"].append(f"DALI CPU: {why}")
        for name, images in sets.items():
            row = {"images": len(images), "inference_only": inference_only(exact, images, rounds),
                   "paths": time_paths(exact, paths, images, rounds)}
            row["paths"].update(cpp_rows(artifact, images, threads, cpp_seconds, cpp_binary))
            result["sizes"][name] = row
            print(f"[e2e] {name}: " + ", ".join(f"{p} {r['total']['p50_ms']:.1f}" for p, r in row["paths"].items()
                                                 if "total" in r) + " ms p50", flush=True)
        if serve_size in sets:
            result["inference_only_batch8"] = inference_only(exact, sets[serve_size], max(1, rounds // 2), batch=8)
    if serve_size in sets:
        result["serve"] = {"images": serve_size,
                           "rows": serve_rows(artifact, sets[serve_size], threads, serve_requests)}
    result["summary"] = summarize(result)
    return result


def summarize(result: dict) -> dict:
    """The issue's must-show ratios, from this run's numbers."""
    out = {}
    for name, row in result["sizes"].items():
        inf = row["inference_only"]["p50_ms"]
        p = row["paths"]
        entry = {"inference_only_p50_ms": inf}
        for path in ("dnx exact", "dnx fast", "C++ exact", "C++ fast", "DALI CPU", "PIL", "torchvision.io"):
            if "total" in p.get(path, {}):
                entry[f"{path} p50_ms"] = p[path]["total"]["p50_ms"]
        if "dnx fast p50_ms" in entry:
            entry["dnx fast / inference"] = round(entry["dnx fast p50_ms"] / inf, 2)
            # the inference stage timed inside the same interleaved rounds (inference alone runs before them)
            stage = p["dnx fast"]["inference"]["p50_ms"]
            entry["dnx fast / its own inference stage"] = round(entry["dnx fast p50_ms"] / stage, 2)
            if "DALI CPU p50_ms" in entry:
                entry["DALI CPU / dnx fast"] = round(entry["DALI CPU p50_ms"] / entry["dnx fast p50_ms"], 2)
                # like for like: DALI's pipeline (decode + resize + crop + normalise) against dnx's two stages
                dali, fast = p["DALI CPU"]["decode+preprocess"]["p50_ms"], p["dnx fast"]["decode+preprocess"]["p50_ms"]
                entry["DALI CPU / dnx fast, decode+preprocess"] = round(dali / fast, 2)
            if "C++ fast p50_ms" in entry:
                entry["C++ fast / dnx fast"] = round(entry["C++ fast p50_ms"] / entry["dnx fast p50_ms"], 2)
        out[name] = entry
    serve = result.get("serve")
    if serve and "inference_only_batch8" in result:
        ref = result["inference_only_batch8"]["images_per_s"]
        out["serve"] = {"in_process_inference_only_images_per_s_batch8": ref,
                        **{k: {"images_per_s": v["throughput"], "vs_inference_only": round(v["throughput"] / ref, 3)}
                           for k, v in serve["rows"].items()}}
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# End-to-end request latency ({Path(result['artifact']).name}, {result['precision']}, "
             f"{result['backend']}, {result['threads']} threads)", "",
             f"CPU: {m.get('cpu')} ({', '.join(m.get('isa_flags') or [])}); one run, paths interleaved per image.", ""]
    for name, row in result["sizes"].items():
        lines += [f"## {name} JPEG ({row['images']} photos); inference alone p50 "
                  f"{row['inference_only']['p50_ms']:.2f} ms", "",
                  "| path | decode | preprocess | inference | postprocess | total p50 | total p99 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for path, st in row["paths"].items():
            if "unavailable" in st:
                lines.append(f"| {path} | {st['unavailable']} | | | | | |")
                continue
            dec = st.get("decode") or st.get("decode+preprocess")
            cells = [f"{dec['p50_ms']:.2f}" if dec else "", f"{st['preprocess']['p50_ms']:.2f}" if "preprocess" in st
                     else "(in decode)", f"{st['inference']['p50_ms']:.2f}", f"{st['postprocess']['p50_ms']:.3f}",
                     f"**{st['total']['p50_ms']:.2f}**", f"{st['total']['p99_ms']:.2f}"]
            lines.append(f"| {path} | " + " | ".join(cells) + " |")
        lines.append("")
    if "serve" in result:
        lines += [f"## dnx serve, {result['serve']['images']} photos", "",
                  "| concurrency | images/s | p50 ms | p99 ms | errors |",
                  "|---|---:|---:|---:|---:|"]
        for k, v in result["serve"]["rows"].items():
            lines.append(f"| {k} | {v['throughput']:.1f} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['errors']} |")
        lines.append("")
    lines += ["## Summary", "", "```", json.dumps(result["summary"], indent=1), "```"]
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8, help="Offline photos per size.")
    parser.add_argument("--rounds", type=int, default=10, help="Passes over the photos per size.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="build/e2e", help="Keeps the densenet121 INT8 (OpenVINO) artifact.")
    parser.add_argument("--json", default=str(RESULTS / "e2e.json"))
    parser.add_argument("--markdown", default=str(RESULTS / "e2e.md"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / "densenet121.int8-openvino.onnx"
    if not artifact.is_file():
        artifact = prepare(workdir, quick=False, only=["densenet121-int8"])["densenet121-int8"]
    result = run_e2e(artifact, reencoded_photos(args.photos), threads=args.threads, rounds=args.rounds)
    write_json_atomic(Path(args.json), result)
    write_bytes_atomic(Path(args.markdown), markdown(result).encode())
    return result


if __name__ == "__main__":
    main()
