"""The accuracy budget's plot: accuracy and agreement vs measured latency for 0, 1, 2, ... float units."""

from __future__ import annotations

from pathlib import Path

from dnx.errors import DnxError

PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot_path(path: str | Path) -> None:
    """Before minutes of search: a plot format matplotlib writes, matplotlib installed, a writable path."""
    from dnx.errors import require
    from dnx.fileio import check_writable

    if Path(path).suffix.lstrip(".").lower() not in PLOT_FORMATS:
        raise DnxError(f"--budget-plot {path}: use a file ending in {', '.join('.' + f for f in PLOT_FORMATS)}")
    require("matplotlib", "plot", "--budget-plot")
    check_writable(path, "--budget-plot")


def plot_pareto(report: dict, path: str | Path) -> None:
    """Accuracy (search half) vs onnxruntime CPU batch-1 latency for 0, 1, 2, ... float units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from dnx.fileio import atomic_path

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
