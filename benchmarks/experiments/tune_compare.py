"""`dnx tune`'s quick search against its exhaustive search over the same space, and against `dnx serve`'s
defaults, for densenet121 (dnx's FP32 export and its ``--target openvino`` INT8 graph).

Two runs in one process, each in its own folder (their caches never meet), the variants made once and
copied: the quick coordinate descent, then ``--exhaustive`` over the whole grid, each with the winner
re-measured in a fresh ``dnx serve --config`` process held to the winner's rate. Reported: each
search's wall time and winner, the quick winner's sustained rate as a share of the exhaustive best,
the defaults' sustained rate on each variant, and the fresh re-measurements.

    python -m dnx.benchmarks.experiments.tune_compare [--p99-ms 300] [--workdir DIR]

Results: ``benchmarks/results/tune_densenet121.json``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from dnx.benchmarks.scripts import save_result
from dnx.benchmarks.tune.load import LoadSpec
from dnx.benchmarks.tune.run import tune, TuneOptions

SPACE = dict(variants=("fp32", "int8-openvino"), backends=("openvino", "onnxruntime"), workers=(1, 2),
             threads=(0,), max_batch=(1, 4, 8), max_delay_ms=(2.0, 8.0))


def _summary(report: dict) -> dict:
    w, f = report["winner"] or {}, report.get("fresh") or {}
    return {"seconds": report["search"]["seconds"], "evaluations": report["search"]["evaluations"],
            "stopped": report["search"]["stopped"], "winner": w.get("label"), "winner_rate": w.get("score"), "winner_p99_ms": w.get("p99_ms"),
            "fresh": {"rate": (f.get("load") or {}).get("rate"), "p99_ms": f.get("p99_ms"),
                      "holds": f.get("feasible"), "errors": f.get("errors")},
            "defaults": {b["deployment"]["variant"]: {"rate": b["score"], "p99_ms": b.get("p99_ms"),
                                                      "holds": b.get("feasible")} for b in report["baselines"]}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m dnx.benchmarks.experiments.tune_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--p99-ms", type=float, default=300.0)
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--load-seconds", type=float, default=3.0)
    parser.add_argument("--workdir", default="build/tune_compare")
    parser.add_argument("--budget-min", type=float, default=40.0, help="Bound on the exhaustive search.")
    args = parser.parse_args(argv)

    work = Path(args.workdir)
    reports = {}
    for name in ("quick", "exhaustive"):
        out = work / name
        if name == "exhaustive" and not (out / "artifacts").exists():  # the same files: no second calibration
            shutil.copytree(work / "quick" / "artifacts", out / "artifacts")

        def progress(event, name=name):
            if event["kind"] == "measured":
                r = event["row"]
                print(f"[{name}] {r['label']}: {r['score']:.1f}/s p99 {r.get('p99_ms') or 0:.0f} ms "
                      f"{'holds' if r.get('feasible') else 'misses'}{' (cached)' if r['cached'] else ''}", flush=True)
            elif event["kind"] == "stage":
                print(f"[{name}] {event['message']}", flush=True)

        opts = TuneOptions(source=args.model, outdir=out, load=LoadSpec(args.p99_ms, seconds=args.load_seconds),
                           exhaustive=name == "exhaustive", plot=True,
                           budget_min=args.budget_min if name == "exhaustive" else None, **SPACE)
        reports[name] = tune(opts, progress)
    ex, qu = _summary(reports["exhaustive"]), _summary(reports["quick"])
    result = {"model": args.model, "p99_ms": args.p99_ms, "space": reports["quick"]["space"],
              "machine": reports["quick"]["machine"], "exhaustive": ex, "quick": qu,
              "quick_vs_exhaustive_rate": round(qu["winner_rate"] / ex["winner_rate"], 3) if ex["winner_rate"] else None,
              "quick_vs_exhaustive_time": round(qu["seconds"] / ex["seconds"], 3) if ex["seconds"] else None,
              # the quick winner's deployment as the exhaustive run measured it: the same run, the same
              # noise, against the best of the grid (which, as the max of many noisy numbers, flatters itself)
              "exhaustive_rate_of_quick_winner": next((r["score"] for r in reports["exhaustive"]["rows"]
                                                       if r["label"] == qu["winner"]), None),
              "rows": {k: [{x: r.get(x) for x in ("label", "score", "p99_ms", "feasible", "capacity", "start_s",
                                                  "measure_s", "cached")} for r in v["rows"]]
                       for k, v in reports.items()}}
    print(f"exhaustive: {ex['evaluations']} deployments in {ex['seconds']:.0f} s, best {ex['winner']} "
          f"{ex['winner_rate']}/s; quick: {qu['evaluations']} in {qu['seconds']:.0f} s, {qu['winner']} "
          f"{qu['winner_rate']}/s ({result['quick_vs_exhaustive_rate']} of the best, "
          f"{result['quick_vs_exhaustive_time']} of the time)")
    return save_result(f"tune_{args.model}", result)


if __name__ == "__main__":
    main()
