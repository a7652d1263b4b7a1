"""Presenting a :class:`~dnx.benchmarks.harness.BenchResult`: rich tables, JSON, CSV, Markdown, a plot.

The JSON is a :class:`dnx.schemas.bench_report.BenchReport` (``"schema": "dnx.bench/1"``; JSON Schema
``dnx/schemas/json/bench.schema.json``), checked by its reader before it is written. A change that
removes or renames a field, or changes a unit, bumps the version; adding optional fields does not.
Every format carries the machine the numbers were measured on. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from dnx.core.fileio import atomic_path, write_json_atomic
from dnx.core.tables import new_table, verdict
from dnx.core.errors import DnxError, require
from dnx.schemas.bench_report import SCHEMA as BENCH_SCHEMA, BenchReport
from dnx.schemas.jsonschema import load_schema as load_json_schema

SCHEMA = BENCH_SCHEMA
PLOT_FORMATS = ("png", "svg", "pdf")


def _unavailable(b) -> str:
    return f"{b.status}: {b.reason}"


def machine_summary(machine: dict) -> str:
    """One line: CPU and its ISA flags, cores, GPU, versions, threads."""
    v = machine["versions"]
    cores = f"{machine['physical_cores']} cores" if machine.get("physical_cores") else f"{machine['logical_cpus']} CPUs"
    gpu = machine.get("gpu")
    gpu_text = (f"{gpu['name']} (sm {gpu['compute_capability']}, driver {gpu.get('driver') or '?'})"
                if gpu else "no GPU")
    libs = ", ".join(f"{k} {v[k]}" for k in ("dnx", "torch", "onnxruntime", "openvino", "tensorrt") if v.get(k))
    isa = machine.get("isa_flags")
    cpu = f"{machine['cpu']} ({'/'.join(isa) if isa else 'ISA flags unknown'})"
    threads = machine["threads"]
    thread_text = (f"threads {threads['requested']}" if threads["requested"]
                   else f"default threads (torch {threads['torch']})")
    return f"{cpu}, {cores}, {gpu_text}; {libs}; {thread_text}"


# -- JSON ---------------------------------------------------------------------------------------

def _latency_entry(result, b, entry) -> dict:
    m = entry.measurement
    return {"batch": entry.batch, "error": entry.error,
            "timer": m.timer if m else None,
            "end_to_end": m.end_to_end.to_dict() if m else None,
            "compute": m.compute.to_dict() if m and m.compute else None,
            "notes": list(m.notes) if m else [],
            "speedup_vs_torch": result.speedup(b.backend, entry.batch)}


def _backend_entry(result, b) -> dict:
    return {
        "backend": b.backend, "status": b.status, "reason": b.reason or None,
        "precision": b.precision, "device": b.device,
        "artifact": {"path": b.artifact, "sha256": b.artifact_sha256} if b.artifact_sha256 else None,
        "latency": [_latency_entry(result, b, e) for e in b.latency],
        "parity": {"passed": b.parity_passed, "tolerance": asdict(b.tolerance) if b.tolerance else None,
                   "cases": [{"name": name, **c.to_dict()} for name, c in b.parity]},
        "notes": list(b.notes),
    }


def to_json(result) -> dict:
    """The result as a ``dnx.bench/1`` document (:class:`~dnx.schemas.bench_report.BenchReport`)."""
    return {"schema": SCHEMA, "created": result.created, "seconds": round(result.seconds, 3),
            "machine": result.machine, "config": result.config.to_dict(), "model": result.model,
            "inputs": result.inputs, "results": [_backend_entry(result, b) for b in result.backends]}


def write_json(result, path: str | Path) -> None:
    doc = to_json(result)
    BenchReport.from_dict(json.loads(json.dumps(doc)), "the bench report being written", "this is a bug in dnx")
    write_json_atomic(path, doc)


# -- CSV ----------------------------------------------------------------------------------------

CSV_COLUMNS = ("backend", "status", "reason", "precision", "device", "batch", "timer", "iterations",
               "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "std_ms",
               "throughput_ips", "speedup_vs_torch", "compute_median_ms", "parity", "min_top1_agreement",
               "max_abs_diff", "cpu", "gpu", "threads", "dnx_version")


def _parity_word(b) -> str:
    return "" if b.parity_passed is None else ("pass" if b.parity_passed else "fail")


def to_csv(result) -> str:
    """One row per backend and batch size (one row for a backend that did not run)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    machine = result.machine
    common = {"cpu": machine["cpu"], "gpu": (machine.get("gpu") or {}).get("name", ""),
              "threads": machine["threads"]["requested"], "dnx_version": machine["versions"]["dnx"]}
    for b in result.backends:
        row = {**common, "backend": b.backend, "status": b.status, "reason": b.reason,
               "precision": b.precision or "", "device": b.device or "", "parity": _parity_word(b)}
        if b.parity:
            row["min_top1_agreement"] = min(c.top1_agreement for _, c in b.parity)
            row["max_abs_diff"] = max(c.max_abs_diff for _, c in b.parity)
        if not b.latency:
            writer.writerow(row)
        for entry in b.latency:
            line = {**row, "batch": entry.batch}
            m = entry.measurement
            if m is None:
                line["reason"] = entry.error
            else:
                s = m.end_to_end
                line.update(timer=m.timer, iterations=s.iterations, min_ms=s.min_ms, mean_ms=s.mean_ms,
                            median_ms=s.median_ms, p90_ms=s.p90_ms, p95_ms=s.p95_ms, p99_ms=s.p99_ms,
                            max_ms=s.max_ms, std_ms=s.std_ms, throughput_ips=s.throughput,
                            speedup_vs_torch=result.speedup(b.backend, entry.batch) or "",
                            compute_median_ms=m.compute.median_ms if m.compute else "")
            writer.writerow(line)
    return buf.getvalue()


def write_csv(result, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(to_csv(result))


# -- Markdown -----------------------------------------------------------------------------------

def _fmt_ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _speedup_text(result, b, batch) -> str:
    s = result.speedup(b.backend, batch)
    return f"{s:.2f}x" if s else "-"


def _weights_text(weights: str) -> str:
    return weights if weights.startswith("random-init") else f"sha256 {weights[:12]}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def to_markdown(result, heading_level: int = 2) -> str:
    """A self-contained Markdown section: machine, latency table, parity table."""
    h = "#" * heading_level
    inputs = ", ".join(f"{i['name']} ({i['samples']}{', labelled' if i['labelled'] else ''})" for i in result.inputs)
    lines = [f"{h} {result.model['name']}", "",
             f"- Machine: {machine_summary(result.machine)}",
             f"- Model: {result.model['name']}, weights `{_weights_text(result.model['weights'])}`, "
             f"input {'x'.join(map(str, result.model['input']['shape']))}",
             f"- Reference: {result.model['reference']}; parity inputs: {inputs}",
             f"- Run: {result.created}, {result.seconds:.0f} s", "",
             "| backend | precision | device | batch | median ms | p90 ms | p99 ms | images/s | vs torch "
             "| iterations |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for b in result.backends:
        if not b.ran:
            lines.append(f"| {b.backend} | {_unavailable(b)} | | | | | | | | |")
            continue
        for e in b.latency:
            if e.measurement is None:
                lines.append(f"| {b.backend} | {b.precision} | {b.device} | {e.batch} | error: {e.error} | | | | | |")
                continue
            s = e.measurement.end_to_end
            lines.append(f"| {b.backend} | {b.precision} | {b.device} | {e.batch} | {_fmt_ms(s.median_ms)} | "
                         f"{_fmt_ms(s.p90_ms)} | {_fmt_ms(s.p99_ms)} | {s.throughput:.1f} | "
                         f"{_speedup_text(result, b, e.batch)} | {s.iterations} |")
    lines += ["", "| backend | input | samples | max abs diff | min cosine | top-1 agreement, flips "
                  "| accuracy (ref → backend) | parity |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    for b in result.ran:
        for name, c in b.parity:
            acc = "-" if c.accuracy is None else f"{c.reference_accuracy:.1%} → {c.accuracy:.1%}"
            verdict = "numeric only" if c.passed is None else ("pass" if c else f"**FAIL** ({c.criterion})")
            lines.append(f"| {b.backend} | {name} | {c.samples} | {c.max_abs_diff:.2e} | {c.min_cosine:.6f} | "
                         f"{c.top1_text} | {acc} | {verdict} |")
    return "\n".join(lines) + "\n"


def write_markdown(result, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(to_markdown(result))


# -- rich tables (the CLI prints them) ----------------------------------------------------------

def _add_unavailable_row(table, backend) -> None:
    table.add_row(backend.backend, *["-"] * (len(table.columns) - 2), f"[yellow]{_unavailable(backend)}[/]")


def latency_table(result):
    gpu_compute = any(e.measurement and e.measurement.compute for b in result.backends for e in b.latency)
    cols = ["backend", "precision", "device", "batch", "median", "mean", "min", "p90", "p95", "p99", "max",
            "std", "img/s", "vs torch"] + (["GPU compute median"] if gpu_compute else []) + ["iters", "note"]
    table = new_table(f"{result.model['name']}: latency (ms) and throughput", cols,
                      ("backend", "precision", "device", "note"), caption=machine_summary(result.machine))
    for b in result.backends:
        if not b.ran:
            _add_unavailable_row(table, b)
            continue
        for i, e in enumerate(b.latency):
            name = b.backend if i == 0 else ""
            m = e.measurement
            if m is None:
                table.add_row(name, b.precision, b.device, str(e.batch), *["-"] * (len(cols) - 5), f"[red]{e.error}[/]")
                continue
            s = m.end_to_end
            row = [name, b.precision, b.device, str(e.batch)] + [_fmt_ms(v) for v in (
                s.median_ms, s.mean_ms, s.min_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.max_ms, s.std_ms)]
            row += [f"{s.throughput:.1f}", _speedup_text(result, b, e.batch)]
            if gpu_compute:
                row.append(_fmt_ms(m.compute.median_ms) if m.compute else "-")
            row += [str(s.iterations), "; ".join(m.notes)]
            table.add_row(*row)
    return table


def parity_table(result):
    cols = ("backend", "precision", "input", "samples", "max|diff|", "mean|diff|", "min cosine", "top-1 flips",
            "top-5", "accuracy ref→backend", "result")
    table = new_table(f"{result.model['name']}: parity with {result.model['reference']}", cols,
                      ("backend", "precision", "input", "result"))
    for b in result.backends:
        if not b.ran:
            _add_unavailable_row(table, b)
            continue
        for i, (name, c) in enumerate(b.parity):
            acc = "-" if c.accuracy is None else f"{c.reference_accuracy:.1%}→{c.accuracy:.1%}"
            table.add_row(b.backend if i == 0 else "", b.precision, name, str(c.samples), f"{c.max_abs_diff:.2e}",
                          f"{c.mean_abs_diff:.2e}", f"{c.min_cosine:.6f}", c.top1_text,
                          _pct(c.top5_agreement), acc,
                          verdict(c))
    return table


# -- plot ---------------------------------------------------------------------------------------

def plot(result, path: str | Path) -> None:
    """A PNG/SVG/PDF (by suffix) with three panels: latency (median, bars min..p99) vs batch,
    throughput vs batch, and top-1 agreement per backend against its tolerance."""

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in PLOT_FORMATS:
        raise DnxError(f"cannot plot to {path}: use a file ending in {', '.join('.' + f for f in PLOT_FORMATS)}")
    require("matplotlib", "plot", "dnx bench --plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ran = [b for b in result.ran if any(e.measurement for e in b.latency)]
    all_batches = sorted({e.batch for b in ran for e in b.latency if e.measurement})
    # The object API with an explicit Agg canvas: no pyplot global state, no display needed.
    fig = Figure(figsize=(15, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_lat, ax_tput, ax_par = fig.subplots(1, 3)
    for b in ran:
        points = [(e.batch, e.measurement.end_to_end) for e in b.latency if e.measurement]
        batches = [p[0] for p in points]
        medians = [s.median_ms for _, s in points]
        spread = [[s.median_ms - s.min_ms for _, s in points], [s.p99_ms - s.median_ms for _, s in points]]
        bars = ax_lat.errorbar(batches, medians, yerr=spread, marker="o", capsize=4, label=b.backend)
        ax_lat.scatter(batches, [s.p90_ms for _, s in points], color=bars.lines[0].get_color(), marker="_", s=80)
        ax_tput.plot(batches, [s.throughput for _, s in points], marker="o", label=b.backend)
    for ax, ylabel, title in ((ax_lat, "latency (ms)", "median; bars min..p99; dash p90"),
                              (ax_tput, "images / s", "throughput")):
        ax.set_xlabel("batch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_batches, [str(b) for b in all_batches])
        ax.grid(True, alpha=0.3)
        if ran:
            ax.legend(fontsize="small")
    checked = [b for b in result.ran if b.parity]
    cases = sorted({name for b in checked for name, _ in b.parity}, key=lambda n: (n != "random", n))
    width = 0.8 / max(len(cases), 1)
    for j, case in enumerate(cases):
        values = [next((c.top1_agreement for n, c in b.parity if n == case), 0.0) for b in checked]
        xs = [i + (j - (len(cases) - 1) / 2) * width for i in range(len(checked))]
        ax_par.bar(xs, values, width, label=case)
    for i, b in enumerate(checked):
        if b.tolerance and b.tolerance.min_top1_agreement is not None:
            ax_par.hlines(b.tolerance.min_top1_agreement, i - 0.45, i + 0.45, colors="red", linestyles="--")
    labels = [f"{b.backend}\nmax|diff| {max(c.max_abs_diff for _, c in b.parity):.1e}" for b in checked]
    ax_par.set_xticks(range(len(checked)), labels, fontsize="small")
    ax_par.set_ylim(0, 1.05)
    ax_par.set_ylabel("top-1 agreement with PyTorch FP32")
    ax_par.set_title("parity (red dashes: tolerance)")
    if cases:
        ax_par.legend(fontsize="small", loc="lower right")
    fig.suptitle(f"{result.model['name']} — {machine_summary(result.machine)}", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)


def load_schema() -> dict:
    return load_json_schema("bench")
