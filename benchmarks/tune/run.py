"""``dnx tune``'s library entry: :func:`tune` runs accuracy first, then the load search, then writes
and re-measures the winner. Progress goes to a callback (``progress(event: dict)``); nothing prints.

Events: ``{"kind": "stage", "message"}``, ``{"kind": "total", "total"}`` (measurements expected, an
estimate for the quick search), ``{"kind": "step", "label", "message"}`` (inside one measurement),
``{"kind": "measured", "label", "row", "result", "run", "why"}`` (one run: ``result`` its numbers, ``row``
the deployment's ranking numbers over its runs so far, ``why`` search/confirm/recheck/baseline).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from dnx.benchmarks.tune.load import LoadSpec, measure_deployment, request_bodies
from dnx.core.errors import DnxError
from dnx.benchmarks.tune import outputs, search
from dnx.benchmarks.tune.accuracy import AccuracyCache, eval_set, within
from dnx.benchmarks.tune.measure import claimed_rate, Measurer
from dnx.benchmarks.tune.space import Deployment, OV_HINTS, serve_defaults, Space
from dnx.benchmarks.tune.variants import available, fp32_source, make_variants, VARIANTS
from dnx.calibration.budget import Budget
from dnx.calibration.parity import default_calibration_data, labels_source
from dnx.core.fileio import write_json_atomic
from dnx.runtime.artifact import open_artifact
from dnx.runtime.backends.table import row_for
from dnx.runtime.selection import choose_backend
from dnx.schemas.manifest import preprocess_from_manifest, read_manifest

TARGETS = ("serve", "triton")
# the backends searched, each a backend table row that runs the ONNX file as given: name -> (backend, device)
BACKENDS = {"onnxruntime": ("onnxruntime", "cpu"), "openvino": ("openvino", "cpu"),
            "onnxruntime-cuda": ("onnxruntime", "cuda")}
# Why not --target cpp: libdnx_runtime is a call-level library (no batcher, no server, no settings file),
# so the quantity tuned here, the request rate a process holds within a p99 SLO, has no C++ counterpart
# to measure, and nothing could read the settings written; see docs/tune.md.
CPP_REFUSAL = ("dnx tune --target cpp is not supported: the C++ library (libdnx_runtime) has no batcher, server "
               "or settings file to tune; supported: --target serve (dnx serve --config) and --target triton; "
               "time C++ threads and batch with `dnx-classify --bench --threads N --batch B MODEL IMAGE`")


class UnsupportedTarget(DnxError):
    """A --target dnx tune cannot tune for (exit 2, like a missing capability)."""

    exit_code = 2


@dataclass(frozen=True)
class TuneOptions:
    source: str  # a model name (exported once) or an FP32 ONNX file from `dnx export`
    outdir: Path
    load: LoadSpec
    max_accuracy_drop: float | None = None
    max_agreement_loss: float | None = None
    eval_data: str | None = None
    target: str = "serve"
    exhaustive: bool = False
    budget_min: float | None = None
    variants: tuple[str, ...] | None = None  # None: every variant this machine can run
    backends: tuple[str, ...] | None = None  # None: every backend installed
    workers: tuple[int, ...] = (1, 2)
    threads: tuple[int, ...] = (0, 1)
    max_batch: tuple[int, ...] = (1, 4, 8, 16)
    max_delay_ms: tuple[float, ...] = (0.5, 2.0, 8.0)
    ov_hints: tuple[str, ...] = OV_HINTS  # searched on the openvino backend only
    recheck: int = 3  # finalists re-measured to three runs each after the search (0: none)
    baselines: bool = True  # measure dnx serve's defaults on each variant (as many runs as a finalist)
    remeasure: bool = True
    plot: bool = True

    def validate(self) -> "TuneOptions":
        self.load.validate()
        if self.target == "cpp":
            raise UnsupportedTarget(CPP_REFUSAL)
        if self.target not in TARGETS:
            raise DnxError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")

        unknown = [v for v in self.variants or () if v not in VARIANTS]
        if unknown:
            raise DnxError(f"unknown precision variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
        unknown = [b for b in self.backends or () if b not in BACKENDS]
        if unknown:
            raise DnxError(f"unknown backend {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
        if not self.ov_hints or not set(self.ov_hints) <= set(OV_HINTS):
            raise DnxError(f"--ov-hint values must be latency or throughput, got {','.join(self.ov_hints) or 'none'}")
        if not 0 <= self.recheck <= 20:
            raise DnxError(f"--recheck must be from 0 to 20 finalists, got {self.recheck}")
        if self.budget_min is not None and not self.budget_min > 0:
            raise DnxError(f"--budget-min must be a positive number of minutes, got {self.budget_min}")
        for name in ("max_accuracy_drop", "max_agreement_loss"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 100:
                raise DnxError(f"--{name.replace('_', '-')} must be from 0 to 100 points, got {value}")
        return self


@dataclass
class _Events:
    progress: Callable[[dict], None]
    notes: list[str] = field(default_factory=list)

    def stage(self, message: str) -> None:
        self.progress({"kind": "stage", "message": message})


def _backends(requested: tuple[str, ...] | None) -> tuple[list[str], list[str], dict[str, bool]]:
    """The backends to search, notes, and which backends are installed here. Each is a backend table row
    that runs the ONNX file as given, named as ``dnx serve`` takes it: ``--backend B`` on the CPU, ``B-cuda``
    on CUDA."""

    have = {name: row_for(*row).available() for name, row in BACKENDS.items()}
    wanted = list(requested or have)  # names checked by TuneOptions.validate
    notes = [f"backend {b} left out: {have[b][1]}" for b in wanted if not have[b][0]]
    notes.append("TensorRT is not searched: dnx serve runs it from an engine (`dnx build`), on a CUDA device")
    return [b for b in wanted if have[b][0]], notes, {b: ok for b, (ok, _) in have.items()}


def _default_backend(fp32: Path) -> str:
    """What `dnx serve` runs the FP32 artifact on with --backend auto (dnx.runtime.selection's rule), by
    the name the search uses."""
    choice = choose_backend(open_artifact(fp32, allow_unverified=True))
    return choice.backend if choice.device == "cpu" else f"{choice.backend}-{choice.device}"


def _side_by_side(row: dict) -> dict:
    """A finalist's numbers at the end of the search beside its re-measurements and the median that ranks it."""
    numbers = ("score", "p99_ms", "feasible")
    return {"label": row["label"], "search": row["search"], "final": {k: row.get(k) for k in numbers},
            "rechecks": [{k: r[k] for k in numbers} for r in row["runs"] if r["why"] == "recheck"],
            "runs": [r["score"] for r in row["runs"]]}


def tune(opts: TuneOptions, progress: Callable[[dict], None] = lambda _e: None) -> dict:
    """Search ``opts``' space; returns the report (also written as ``OUTDIR/tune.json``)."""

    opts.validate()
    started = time.perf_counter()
    ev = _Events(progress)
    out = Path(opts.outdir)
    cache_dir = out / "cache"
    has_budget = opts.max_accuracy_drop is not None or opts.max_agreement_loss is not None
    budget = Budget(opts.max_accuracy_drop, opts.max_agreement_loss) if has_budget else None

    ev.stage("preparing the FP32 source")
    fp32 = fp32_source(opts.source, out / "artifacts", ev.stage)  # a bad source fails before any folder is made
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(fp32)
    es = eval_set(fp32, opts.eval_data)
    if opts.max_accuracy_drop is not None and not es.labelled:
        raise DnxError(f"--max-accuracy-drop needs labelled data and {es.what} has no labels: add --eval-data "
                       "LABELLED, or use --max-agreement-loss")
    backends, notes, installed = _backends(opts.backends)
    ev.notes += notes
    names, notes = available(opts.variants, cuda=installed["onnxruntime-cuda"], openvino=installed["openvino"],
                             budget=has_budget and es.raw is not None)
    ev.notes += notes
    calib = default_calibration_data(labels_source(manifest), out / "artifacts")
    variants, notes = make_variants(fp32, names, out / "artifacts", calib_data=calib, labelled=es.raw,
                                    budget={"max_accuracy_drop": opts.max_accuracy_drop,
                                            "max_agreement_loss": opts.max_agreement_loss}, progress=ev.stage)
    ev.notes += notes

    # 1. accuracy first: a pair outside the budget is never timed
    acc = AccuracyCache(cache_dir, es, fp32)
    accuracy_rows, engines = [], []
    for v in variants:
        for b in backends:
            if v.precision == "fp16" and b != "onnxruntime-cuda":
                continue
            ev.stage(f"accuracy of {v.name} on {b}")
            m = acc.measure(v.path, b)
            ok = within(m, budget)
            accuracy_rows.append({"variant": v.name, "backend": b, "artifact": str(v.path), **m, "within_budget": ok})
            if ok:
                engines.append((v.name, b))
    if not engines:
        raise DnxError(f"no precision variant keeps the accuracy budget ({budget.describe() if budget else '-'}) "
                       "on any backend; loosen it")
    default_backend = _default_backend(fp32)
    engines.sort(key=lambda e: (e[0] != "fp32", e[1] != default_backend))  # start where `dnx serve` starts
    space = Space(tuple(engines), opts.workers, opts.threads, opts.max_batch, opts.max_delay_ms,
                  opts.ov_hints).validate()

    # 2. load through the real service
    ev.stage(f"searching {space.size()} deployments ({'exhaustive' if opts.exhaustive else 'quick'})")
    bodies = request_bodies(preprocess_from_manifest(manifest), out)
    paths = {v.name: v.path for v in variants}
    measurer = Measurer(paths, opts.load, bodies, cache_dir, progress)
    deadline = started + opts.budget_min * 60 if opts.budget_min else None
    result = (search.exhaustive if opts.exhaustive else search.quick)(space, measurer, deadline,
                                                                       recheck_k=opts.recheck)
    by_engine = {(r["variant"], r["backend"]): r for r in accuracy_rows}
    in_space = set(space.grid())
    baselines = []
    for variant, backend in engines if opts.baselines else ():  # dnx serve's defaults for each variant
        if backend == default_backend and variant in {"fp32", "int8-openvino", "int8-onnxruntime", "int8-tensorrt"}:
            ev.stage(f"dnx serve's defaults on {variant}")
            d = serve_defaults(variant, backend)
            # as many runs as a finalist: the defaults are compared with the winner's median
            measurer(d, search.RECHECK_RUNS if opts.recheck else 1, "baseline")
            baselines.append(d)
    rows = search.ranked_rows(measurer)
    for r in rows:
        r["accuracy"] = {k: by_engine[(r["deployment"]["variant"], r["deployment"]["backend"])].get(k)
                         for k in ("accuracy", "reference_accuracy", "agreement", "accuracy_drop_pt",
                                   "agreement_loss_pt")}
        r["in_space"] = Deployment(**r["deployment"]) in in_space  # False: a dnx serve default outside it
    front = outputs.mark_pareto(rows)
    by_label = {r["label"]: r for r in rows}
    winner = by_label[result.winner["label"]] if result.winner else None
    if winner is not None and opts.load.mode == "sustainable":
        winner["claimed_rate"] = claimed_rate(winner)  # what serve.toml promises and the fresh process is held to
    report = {"source": str(fp32), "target": opts.target, "load": opts.load.to_dict(),
              "budget": None if budget is None else budget.describe(), "accuracy_data": es.what,
              "machine": measurer.machine, "space": space.to_dict(), "search": {
                  "method": "exhaustive" if opts.exhaustive else "quick (coordinate descent)",
                  "evaluations": result.evaluations, "measurements": result.measurements,
                  "cache_hits": measurer.cache_hits, "seconds": round(result.seconds, 1),
                  "recheck_seconds": round(result.recheck_seconds, 1),
                  "measured_seconds": round(measurer.measured_s, 1), "stopped": result.stopped},
              "finalists": [_side_by_side(by_label[d.label()]) for d in result.finalists],
              "accuracy": accuracy_rows, "rows": rows, "pareto": [r["label"] for r in front],
              "baselines": [{**by_label[d.label()], "in_search": d in in_space} for d in baselines],
              "winner": winner, "notes": ev.notes}

    # 3. the winner: written as config, re-measured in a fresh process from that config
    if winner is not None:
        d = Deployment(**winner["deployment"])
        config = outputs.write_serve_config(winner, Path(winner["artifact"]), out / "serve.toml", report["load"])
        report["config"] = str(config)
        if opts.target == "triton":
            ev.stage("writing the Triton repository")
            report["triton"] = outputs.write_triton(winner, Path(winner["artifact"]), out / "triton")
        if opts.remeasure:
            ev.stage("re-measuring the winner in a fresh process (dnx serve --config)")
            # the sustainable mode's claim is a rate: the fresh process is held to it
            fresh_load = replace(opts.load, rate=winner["claimed_rate"]) if opts.load.mode == "sustainable" \
                else opts.load
            fresh = measure_deployment(None, ["--config", str(config)], fresh_load, bodies,
                                       min(64, max(4, 2 * d.max_batch * d.workers)),
                                       lambda m: progress({"kind": "step", "label": "fresh", "message": m}), d.workers)
            fresh.pop("steps", None)
            report["fresh"] = {**fresh, "load": fresh_load.to_dict()}
        ev.stage("winner's accuracy on the held-apart half")
        held = acc.measure(Path(winner["artifact"]), d.backend, "held_apart")
        report["held_apart"] = {**held, "within_budget": within(held, budget)}
    if opts.plot and rows:
        report["plot"] = str(outputs.plot_front(rows, out / "pareto.png",
                                                f"{Path(opts.source).name}: p99 SLO {opts.load.slo_p99_ms:g} ms, "
                                                f"{opts.load.mode} load", opts.load.slo_p99_ms))
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "load"}
    write_json_atomic(out / "tune.json", report, "the tune report")
    return report
