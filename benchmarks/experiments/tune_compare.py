"""`dnx tune`'s quick search against its exhaustive search over the same space, and against `dnx serve`'s
defaults, for densenet121 (dnx's FP32 export and its ``--target openvino`` INT8 graph).

    python -m dnx.benchmarks.experiments.tune_compare                 # the "small" space, ~6 min
    python -m dnx.benchmarks.experiments.tune_compare --space full    # the issue's 60 points, ~17 min

Expected durations are for a quiet 2-core Xeon (sustainable-rate mode, 2 s load steps and probe): about
11 s per run (a fresh ``dnx serve`` starts in a few seconds, longer with OpenVINO at max batch 8, which
compiles 8 batch shapes; then the probe and 1-4 load steps), plus 2-4 minutes the first time to export
and calibrate densenet121 (reused from ``--workdir`` afterwards). Run it on a quiet machine: on a loaded
one every number moves 2-3x between runs.

Two tunes, each in its own folder: the quick coordinate descent, then ``--exhaustive``. The exhaustive
run is given the quick run's variants and accuracy cache (the same files, the same accuracy; no second
calibration) but none of its load measurements. Both rank robustly (a new lead confirmed by a second
run; the top 3 re-measured to three runs, the median picks the winner) and re-measure their winner in
a fresh ``dnx serve --config`` process held to its rate. dnx serve's defaults are measured in the quick
run, three runs each like a finalist. Reported: each winner's sustained rate and p99 (median of three),
its numbers when the search ended beside the re-checks, the defaults on each variant, the quick winner
as a share of the exhaustive best (and as the exhaustive run measured it), the ratio of runs and of
seconds, and both fresh re-measurements.

Results: ``benchmarks/results/tune_MODEL.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dnx.benchmarks.scripts import save_result
from dnx.benchmarks.tune.load import LoadSpec
from dnx.benchmarks.tune.run import TuneOptions, tune
from dnx.core.fileio import write_json_atomic

SPACES = {
    # 2 variants x (openvino with 2 hints + onnxruntime) x max batch {1, 8} = 12 points; workers 1
    "small": dict(variants=("fp32", "int8-openvino"), backends=("openvino", "onnxruntime"),
                  ov_hints=("latency", "throughput"), workers=(1,), threads=(0,), max_batch=(1, 8),
                  max_delay_ms=(2.0,)),
    # the space: 6 engines x workers {1, 2} x (max batch 1 + {4, 8} x delay {2, 8}) = 60 points
    "full": dict(variants=("fp32", "int8-openvino"), backends=("openvino", "onnxruntime"),
                 ov_hints=("latency", "throughput"), workers=(1, 2), threads=(0,), max_batch=(1, 4, 8),
                 max_delay_ms=(2.0, 8.0)),
    # a smoke test of this script: 2 engines x max batch {1, 4} = 4 points
    "tiny": dict(variants=("fp32",), backends=("onnxruntime", "openvino"), ov_hints=("latency",), workers=(1,),
                 threads=(0,), max_batch=(1, 4), max_delay_ms=(2.0,)),
}


def _numbers(row: dict | None) -> dict:
    row = row or {}
    return {"rate": row.get("score"), "p99_ms": row.get("p99_ms"), "holds": row.get("feasible")}


def _summary(report: dict) -> dict:
    s, w, f = report["search"], report["winner"] or {}, report.get("fresh") or {}
    return {"seconds": s["seconds"], "recheck_seconds": s["recheck_seconds"], "evaluations": s["evaluations"],
            "runs": s["measurements"], "stopped": s["stopped"], "winner": w.get("label"),
            "winner_median": _numbers(w), "claimed_rate": w.get("claimed_rate"),
            "winner_at_search_end": w.get("search"),
            "winner_runs": [r["score"] for r in w.get("runs", [])], "finalists": report["finalists"],
            "fresh": {"rate": (f.get("load") or {}).get("rate"), "p99_ms": f.get("p99_ms"), "holds": f.get("feasible"),
                      "errors": f.get("errors")}}


def _share(a, b):
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.experiments.tune_compare",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--p99-ms", type=float, default=300.0)
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--space", choices=sorted(SPACES), default="small")
    parser.add_argument("--load-seconds", type=float, default=2.0, help="Each load step.")
    parser.add_argument("--probe-seconds", type=float, default=2.0, help="Each capacity probe.")
    parser.add_argument("--workdir", default="build/tune_compare")
    parser.add_argument("--budget-min", type=float, default=60.0, help="Bound on each search.")
    parser.add_argument("--output", help="Write the result here (default: benchmarks/results/tune_MODEL.json).")
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    load = LoadSpec(args.p99_ms, seconds=args.load_seconds, probe_seconds=args.probe_seconds)
    reports = {}
    for name in ("quick", "exhaustive"):
        out = work / name
        if name == "exhaustive":  # the same files and accuracies; the load is measured afresh
            if not (out / "artifacts").exists():
                shutil.copytree(work / "quick" / "artifacts", out / "artifacts")
            shutil.copytree(work / "quick" / "cache", out / "cache", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("measure-*"))

        def progress(event, name=name):
            if event["kind"] == "measured":
                r, why = event["result"], event["why"]
                note = "" if why == "search" else f" [{why} run {event['run']}]"
                print(f"[{name}] {event['label']}: {r.get('score') or 0:.1f}/s p99 {r.get('p99_ms') or 0:.0f} ms "
                      f"{'holds' if r.get('feasible') else 'misses'}{' (cached)' if r.get('cached') else ''}{note}",
                      flush=True)
            elif event["kind"] == "stage":
                print(f"[{name}] {event['message']}", flush=True)

        opts = TuneOptions(source=args.model, outdir=out, load=load, exhaustive=name == "exhaustive", plot=True,
                           budget_min=args.budget_min, baselines=name == "quick", **SPACES[args.space])
        reports[name] = tune(opts, progress)
    quick, ex = reports["quick"], reports["exhaustive"]
    qs, es = _summary(quick), _summary(ex)
    q_rate, e_rate = qs["winner_median"]["rate"], es["winner_median"]["rate"]
    defaults = {b["deployment"]["variant"]: {**_numbers(b), "label": b["label"],
                                             "runs": [r["score"] for r in b["runs"]]} for b in quick["baselines"]}
    result = {
        "model": args.model, "p99_ms": args.p99_ms, "space_name": args.space, "space": quick["space"],
        "load": quick["load"], "machine": quick["machine"], "quick": qs, "exhaustive": es,
        "defaults": defaults,
        "tuned_vs_defaults": {v: _share(q_rate, d["rate"]) for v, d in defaults.items()},
        "quick_vs_exhaustive_rate": _share(q_rate, e_rate),
        # the quick winner as the exhaustive run measured it: the same runs' noise as the exhaustive best
        "exhaustive_numbers_of_quick_winner": next((_numbers(r) for r in ex["rows"] if r["label"] == qs["winner"]),
                                                   None),
        "time": {"quick_s": qs["seconds"], "exhaustive_s": es["seconds"],
                 "ratio_s": _share(qs["seconds"], es["seconds"]),
                 "quick_runs": qs["runs"]["total"], "exhaustive_runs": es["runs"]["total"],
                 "ratio_runs": _share(qs["runs"]["total"], es["runs"]["total"])},
        "rows": {k: [{x: r.get(x) for x in ("label", "score", "p99_ms", "feasible", "capacity", "finalist", "search")}
                     | {"runs": [(x["score"], x["p99_ms"], x["why"]) for x in r["runs"]]} for r in v["rows"]]
                 for k, v in reports.items()}}
    t = result["time"]
    print(f"exhaustive: {es['evaluations']} deployments, {t['exhaustive_runs']} runs, {t['exhaustive_s']:.0f} s; "
          f"winner {es['winner']} {e_rate}/s p99 {es['winner_median']['p99_ms']} ms (median of 3); fresh "
          f"{es['fresh']}")
    print(f"quick: {qs['evaluations']} deployments, {t['quick_runs']} runs, {t['quick_s']:.0f} s; "
          f"winner {qs['winner']} {q_rate}/s p99 {qs['winner_median']['p99_ms']} ms; fresh {qs['fresh']}")
    print(f"quick / exhaustive: rate {result['quick_vs_exhaustive_rate']}, runs {t['ratio_runs']}, seconds "
          f"{t['ratio_s']}; dnx serve's defaults: " + ", ".join(
              f"{v} {d['rate']}/s p99 {d['p99_ms']} ms (tuned x{result['tuned_vs_defaults'][v]})"
              for v, d in defaults.items()))
    if args.output:
        write_json_atomic(Path(args.output), result, "--output")
        return result
    return save_result(f"tune_{args.model}", result)


if __name__ == "__main__":
    main()
