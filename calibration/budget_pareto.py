"""The accuracy budget's Pareto points (latency, Transposes, which are optimal) and their plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError, require
from dnx.core.fileio import atomic_path, check_writable
from dnx.runtime.backends.latency import measure_latency
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner


def count_transposes(path: Path, workdir: Path) -> int:
    """Transposes in onnxruntime's optimized CPU graph (layout changes around float islands)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # its warning that a saved optimized graph is machine-specific: known, scratch
    options.optimized_model_filepath = str(workdir / f"{path.stem}.optimized.onnx")  # scratch, deleted with workdir
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "Transpose" for n in onnx.load(options.optimized_model_filepath).graph.node)


LATENCY_ROUNDS = 3


def latencies(paths: list[Path], x1: np.ndarray, threads: int, duration_s: float) -> list[dict]:
    """Batch-1 latency of each graph, interleaved: ``LATENCY_ROUNDS`` rounds over all graphs, each
    graph's figure from its fastest round (a neighbour's burst on a shared CPU slows one round, not
    one graph's every sample)."""

    runners = [OnnxRuntimeRunner(p, threads=threads).activate() for p in paths]
    try:
        (name,) = runners[0].input_metadata()
        rounds = [[measure_latency(r, {name: x1}, warmup_s=0.1, duration_s=duration_s / LATENCY_ROUNDS).end_to_end
                   for r in runners] for _ in range(LATENCY_ROUNDS)]
    finally:
        for r in runners:
            r.deactivate()
    best = [min((rnd[i] for rnd in rounds), key=lambda s: s.median_ms) for i in range(len(paths))]
    return [{"median_ms": round(s.median_ms, 4), "p90_ms": round(s.p90_ms, 4), "min_ms": round(s.min_ms, 4)}
            for s in best]


def mark_pareto(points: list[dict]) -> None:
    """``pareto_optimal``: no other point is at least as fast and as accurate, and better in one."""
    for p in points:
        a, t = p["accuracy"], p["latency"]["median_ms"]
        p["pareto_optimal"] = not any(q["accuracy"] >= a and q["latency"]["median_ms"] <= t
                                      and (q["accuracy"] > a or q["latency"]["median_ms"] < t) for q in points)


PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot_path(path: str | Path) -> None:
    """Before minutes of search: a plot format matplotlib writes, matplotlib installed, a writable path."""

    if Path(path).suffix.lstrip(".").lower() not in PLOT_FORMATS:
        raise DnxError(f"--budget-plot {path}: use a file ending in {', '.join('.' + f for f in PLOT_FORMATS)}")
    require("matplotlib", "plot", "--budget-plot")
    check_writable(path, "--budget-plot")


def plot_pareto(report: dict, path: str | Path) -> None:
    """Accuracy (search half) vs onnxruntime CPU batch-1 latency for 0, 1, 2, ... float units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_plot_path(path)
    points = report["pareto"]["points"]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # the object API with an explicit Agg canvas: no pyplot state, no display
    ms = [p["latency"]["median_ms"] for p in points]
    fp32_ms = report["pareto"]["fp32_latency"]["median_ms"]
    reference = report["plain_int8"]["search"]["reference_accuracy"] * 100
    budget = report["budget"]
    for ax, key, ylabel, limit in (
            (fig.add_subplot(1, 2, 1), "accuracy", "top-1 accuracy, search half (%)",
             None if budget["max_accuracy_drop_pt"] is None else reference - budget["max_accuracy_drop_pt"]),
            (fig.add_subplot(1, 2, 2), "agreement", "top-1 agreement with FP32, search half (%)",
             None if budget["max_agreement_loss_pt"] is None else 100 - budget["max_agreement_loss_pt"])):
        ys = [p[key] * 100 for p in points]
        ax.scatter(ms, ys, c=["tab:green" if p["meets_budget"] else "tab:blue" for p in points], zorder=3)
        for p, x, y in zip(points, ms, ys):
            ax.annotate(str(p["float_units"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if key == "accuracy":
            front = sorted((x, y) for p, x, y in zip(points, ms, ys) if p["pareto_optimal"])
            ax.step([x for x, _ in front], [y for _, y in front], where="post", color="grey", label="Pareto front")
            ax.axhline(reference, color="grey", linestyle="--", label="FP32")
        if limit is not None:
            ax.axhline(limit, color="red", linestyle=":", label="budget")
        ax.axvline(fp32_ms, color="grey", linestyle="-.", label="FP32 latency")
        ax.set_xlabel(f"median latency, batch 1, {report['pareto']['backend']} (ms)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"int8 + N float units (label N; green: meets the budget), --target {report['target']}, "
                 f"{report['machine']['cpu']}", fontsize=9)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(str(tmp), format=Path(path).suffix.lstrip(".").lower())
