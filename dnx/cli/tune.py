"""`dnx tune`: the fastest deployment that keeps a p99 SLO and an accuracy budget, found by measurement."""

from __future__ import annotations

from pathlib import Path

import click

from dnx.benchmarks.tune.load import LoadSpec
from dnx.benchmarks.tune.run import BACKENDS, TARGETS, tune, TuneOptions
from dnx.benchmarks.tune.space import parse_values
from dnx.benchmarks.tune.variants import VARIANTS
from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import json_file_option, output_option
from dnx.core.errors import DnxError, require
from dnx.core.fileio import write_json_atomic
from dnx.core.tables import new_table


def _values(defaults: tuple) -> str:
    return ",".join(v if isinstance(v, str) else f"{v:g}" for v in defaults)


@cli.command("tune")
@click.argument("model")
@click.option("--p99-ms", required=True, type=float, help="Latency SLO: p99 of a request, in milliseconds.")
@click.option("--rate", type=float, help="Open loop: Poisson arrivals at this many requests/s (default: find the "
              "highest rate each deployment sustains).")
@click.option("--concurrency", type=int, help="Closed loop: this many requests in flight.")
@click.option("--max-accuracy-drop", type=float, help="Budget: top-1 accuracy within this many points of FP32 "
              "(labelled data).")
@click.option("--max-agreement-loss", type=float, help="Budget: top-1 agreement with FP32 >= 100 minus this.")
@click.option("--eval-data", type=click.Path(), help="Labelled set (IDX folder, class folders, .npz); default: "
              "the images of the model's parity certificate.")
@click.option("--target", type=click.Choice([*TARGETS, "cpp"]), default=TuneOptions.target, show_default=True,
              help="What the winner is written for (triton: also a model repository with its batching; cpp: "
                   "refused, see docs/tune.md).")
@click.option("--budget-min", type=float, help="Stop starting new measurements after this many minutes.")
@click.option("--exhaustive", is_flag=True, help="Measure the whole grid instead of the quick coordinate descent.")
@click.option("--precisions", help=f"Comma-separated variants ({', '.join(VARIANTS)}); default: all this machine "
              "runs.")
@click.option("--backends", help=f"Comma-separated: {', '.join(BACKENDS)} (default: installed).")
@click.option("--max-batch", "max_batch", default=_values(TuneOptions.max_batch), show_default=True,
              help="Values to search.")
@click.option("--max-delay-ms", "max_delay_ms", default=_values(TuneOptions.max_delay_ms), show_default=True,
              help="Values to search.")
@click.option("--workers", default=_values(TuneOptions.workers), show_default=True, help="Values to search.")
@click.option("--threads", default=_values(TuneOptions.threads), show_default=True,
              help="Values to search (0: the backend's own default).")
@click.option("--ov-hint", "ov_hint", default=_values(TuneOptions.ov_hints), show_default=True,
              help="OpenVINO performance hints to search (openvino backend only).")
@click.option("--recheck", default=TuneOptions.recheck, show_default=True, type=click.IntRange(0, 20),
              help="Finalists re-measured after the search (three runs each; the median picks the winner).")
@click.option("--load-seconds", default=5.0, show_default=True, type=float, help="Length of each load step.")
@click.option("--max-requests", default=3000, show_default=True, type=int, help="Most requests of each load step.")
@click.option("--no-remeasure", is_flag=True, help="Skip the winner's re-measurement in a fresh process.")
@json_file_option("Also write the report here (it is always in DIR/tune.json).")
@output_option("Folder for the variants, the cache (resume: rerun the same command), serve.toml, pareto.png.",
               folder=True, default="dnx-tune", dest="outdir")
def tune_cmd(model, p99_ms, rate, concurrency, max_accuracy_drop, max_agreement_loss, eval_data, target, budget_min,
             exhaustive, precisions, backends, max_batch, max_delay_ms, workers, threads, ov_hint, recheck,
             load_seconds, max_requests, no_remeasure, json_path, outdir) -> None:
    """Find the fastest deployment of MODEL (a model name or an FP32 ONNX from `dnx export`) whose p99 stays
    under --p99-ms and whose accuracy stays within the budget, by measuring `dnx serve` for real.

    \b
    Accuracy first (cached): a precision/backend pair outside the budget is never timed. Then each
    deployment is served in a child process and loaded over HTTP. Writes DIR/serve.toml (run it with
    `dnx serve --config DIR/serve.toml`), DIR/tune.json and DIR/pareto.png.
    """
    for module in ("fastapi", "uvicorn", "prometheus_client", "multipart", "httpx"):
        require(module, "serve", "dnx tune")
    if Path(outdir).exists() and not Path(outdir).is_dir():
        raise click.UsageError(f"-o {outdir} is a file; give a folder")
    def split(text: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in text.split(",") if v.strip())

    opts = TuneOptions(
        source=model, outdir=Path(outdir),
        load=LoadSpec(p99_ms, rate=rate, concurrency=concurrency, seconds=load_seconds, max_requests=max_requests),
        max_accuracy_drop=max_accuracy_drop, max_agreement_loss=max_agreement_loss, eval_data=eval_data,
        target=target, exhaustive=exhaustive, budget_min=budget_min,
        variants=split(precisions) if precisions else None, backends=split(backends) if backends else None,
        workers=parse_values(workers, int, "--workers"), threads=parse_values(threads, int, "--threads"),
        max_batch=parse_values(max_batch, int, "--max-batch"),
        max_delay_ms=parse_values(max_delay_ms, float, "--max-delay-ms"), ov_hints=tuple(sorted(set(split(ov_hint)))),
        recheck=recheck, remeasure=not no_remeasure).validate()
    console = make_console()
    with _Progress() as bar:
        report = tune(opts, bar)
    print_notes(report["notes"])
    console.print(_accuracy_table(report))
    console.print(_ranking_table(report))
    if json_path:
        write_json_atomic(Path(json_path), report, "--json")
    _summary(report)


class _Progress:
    """Rich progress on stderr: a bar over the measurements with an ETA, and the current step."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        console = Console(stderr=True)
        # the bar only on a terminal: elsewhere (a log, a pipe) rich's live display cannot redraw and leaves
        # a blank line on stderr when it stops; the measured lines are printed either way
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=console, transient=True, disable=not console.is_terminal)
        self.bar.start()
        self.task = self.bar.add_task("preparing", total=None)
        self.done = 0
        return self

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "stage":
            self.bar.update(self.task, description=event["message"][:90])
        elif kind == "total":
            self.bar.update(self.task, total=event["total"])
        elif kind == "step":
            self.bar.update(self.task, description=f"{event['label']}: {event['message']}"[:90])
        elif kind == "measured":
            self.done += 1
            total = self.bar.tasks[0].total
            self.bar.update(self.task, completed=self.done, total=max(total or 0, self.done))
            run, row = event["result"], event["row"]
            why = "" if event["why"] == "search" else f" [{event['why']} run {event['run']}"
            why += f", ranked by {_verdict(row)}]" if event["run"] > 1 else ("]" if why else "")
            self.bar.console.print(f"  {event['label']}: {_verdict(run)}{' (cached)' if run.get('cached') else ''}"
                                   f"{why}", highlight=False, markup=False)

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def _verdict(r: dict) -> str:
    if r.get("feasible"):
        return f"{r['score']:.1f}/s p99 {r['p99_ms']:.1f} ms"
    return f"misses the SLO ({r.get('error') or 'p99 ' + format(r.get('p99_ms') or 0, '.1f') + ' ms'})"


def _runs(n: int, median: str = "") -> str:
    return f"{median if n > 2 else ''}{n} run{'s' if n > 1 else ''}"


def _pt(value) -> str:
    return "-" if value is None else f"{value:+.2f} pt"


def _accuracy_table(report: dict):
    table = new_table(f"accuracy first ({report['accuracy_data']}, search half; budget: {report['budget'] or 'none'})",
                      ("variant", "backend", "accuracy", "drop", "agreement", "budget"), left=("variant", "backend"))
    for a in report["accuracy"]:
        acc = "-" if a.get("accuracy") is None else f"{a['accuracy']:.2%}"
        agree = a.get("error", "")[:60] or f"{a['agreement']:.2%}"
        table.add_row(a["variant"], a["backend"], acc, _pt(a.get("accuracy_drop_pt")), agree,
                      "kept" if a["within_budget"] else "OUT: never timed")
    return table


def _ranking_table(report: dict):
    load = report["load"]
    # what ranks the runs: the p99 where every deployment that holds carries the same --rate
    field, runs_title = ("p99_ms", "runs (p99 ms)") if load["mode"] == "rate" else ("score", "runs (req/s)")
    table = new_table(f"deployments, ranked (p99 SLO {load['slo_p99_ms']:g} ms, {load['mode']} load; "
                      f"{report['search']['method']})",
                      ("#", "deployment", "float as", "req/s", "p50 ms", "p99 ms", "SLO", runs_title, "search",
                       "Pareto", "cached"), left=("deployment", runs_title))
    for i, r in enumerate(report["rows"], 1):
        p50, p99 = r.get("p50_ms"), r.get("p99_ms")
        # what the backend really computes the float parts in (OpenVINO: bf16 where the CPU has it)
        runs_as = (r.get("served") or {}).get("inference_precision", "-")
        # a finalist's numbers when the search ended, beside its median over the re-checks
        n = r.get("search", {}).get("runs", 0)
        at_search = f"{r['search'][field] or 0:.1f} ({_runs(n)})" if n else ""
        table.add_row(str(i), r["label"] + ("" if r.get("in_space", True) else " (serve defaults)")
                      + (" (finalist)" if r.get("finalist") else ""), runs_as, f"{r.get('score', 0):.1f}",
                      "-" if p50 is None else f"{p50:.1f}", "-" if p99 is None else f"{p99:.1f}",
                      "held" if r.get("feasible") else "missed",
                      " ".join(f"{x[field] or 0:.1f}" for x in r["runs"]), at_search,
                      "*" if r.get("pareto") else "", "yes" if r.get("cached") else "")
    return table


def _summary(report: dict) -> None:
    s = report["search"]
    m = s["measurements"]
    click.echo(f"search: {s['evaluations']} deployments, {m['total']} runs ({m['search']} searching, {m['confirm']} "
               f"confirming a new lead, {m['recheck']} re-checking the finalists; {s['cache_hits']} from the cache) "
               f"in {s['seconds']:.0f} s" + (" (stopped: --budget-min reached)" if s["stopped"] else ""))
    for f in report["finalists"]:
        again = ", ".join(_verdict(x) for x in f["rechecks"])
        click.echo(f"finalist {f['label']}: at the end of the search {_verdict(f['search'])} "
                   f"({_runs(f['search']['runs'])}); re-measured {again}; median of {len(f['runs'])}: "
                   f"{_verdict(f['final'])}")
    for b in report["baselines"]:
        click.echo(f"dnx serve's defaults on {b['deployment']['variant']} ({_runs(len(b['runs']), 'median of ')}): "
                   f"{b['score']:.1f}/s, p99 {b.get('p99_ms') or 0:.1f} ms "
                   f"({'holds' if b.get('feasible') else 'misses'} the SLO)")
    w = report["winner"]
    if w is None:
        raise DnxError(f"no deployment held p99 <= {report['load']['slo_p99_ms']:g} ms; see the table (raise "
                       "--p99-ms, lower --rate/--concurrency, or widen the space)")
    claim = f" (claimed {w['claimed_rate']:.1f}/s: the lowest any of its runs held)" if w.get("claimed_rate") else ""
    click.echo(f"winner: {w['label']}: {w['score']:.1f}/s{claim}, p99 {w['p99_ms']:.1f} ms; wrote {report['config']}")
    if "fresh" in report:
        f = report["fresh"]
        at = f" at {f['load']['rate']:.1f}/s" if report["load"]["mode"] == "sustainable" else ""
        click.echo(f"fresh process (dnx serve --config){at}: {f.get('score', 0):.1f}/s, "
                   f"p99 {f.get('p99_ms') or 0:.1f} ms, "
                   f"{'holds' if f.get('feasible') else 'MISSES'} the SLO (search: {w['score']:.1f}/s, "
                   f"p99 {w['p99_ms']:.1f} ms)")
    h = report.get("held_apart") or {}
    if h.get("agreement") is not None:
        acc = ("" if h.get("accuracy") is None
               else f"accuracy {h['accuracy']:.2%} ({_pt(0.0 - h['accuracy_drop_pt'])} vs FP32), ")
        click.echo(f"held-apart half ({h['images']} images): {acc}agreement {h['agreement']:.2%}; budget "
                   f"{'met' if h['within_budget'] else 'NOT met'}")
    if "triton" in report:
        t = report["triton"]
        click.echo(f"Triton repository {t['repo']}: max_batch_size {t['max_batch_size']}, preferred_batch_size "
                   f"{t['preferred_batch_size']}, max_queue_delay_microseconds {t['max_queue_delay_microseconds']}, "
                   f"instance_group count {t['instance_count']}")
    if "plot" in report:
        click.echo(f"Pareto plot: {report['plot']}")
