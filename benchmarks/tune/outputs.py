"""What ``dnx tune`` writes: the winner as a ``dnx serve --config`` file and (``--target triton``) as a
Triton model repository whose config.pbtxt carries its batching settings; the Pareto front of
throughput vs p99 vs accuracy, as data and as a matplotlib plot; the report as JSON.
"""

from __future__ import annotations

from pathlib import Path

from dnx.core.errors import DnxError, require
from dnx.benchmarks.tune.space import Deployment
from dnx.core.fileio import atomic_path
from dnx.runtime.serve.config_file import write_serve_config as write
from dnx.runtime.serve.repository import export_repository, RepositoryOptions


def accuracy_value(row: dict) -> float | None:
    """The accuracy axis of a row: top-1 accuracy where the data is labelled, else agreement with FP32."""
    acc = row.get("accuracy") or {}
    return acc.get("accuracy") if acc.get("accuracy") is not None else acc.get("agreement")


def mark_pareto(rows: list[dict]) -> list[dict]:
    """Flag (``pareto``) the feasible rows no other feasible row beats on all of score (higher), p99
    (lower) and accuracy (higher) while being strictly better on one."""
    feasible = [r for r in rows if r.get("feasible")]

    def vec(r):
        return (r["score"], -r["p99_ms"], accuracy_value(r) or 0.0)

    for r in rows:
        r["pareto"] = bool(r.get("feasible")) and not any(
            all(a >= b for a, b in zip(vec(o), vec(r))) and vec(o) != vec(r) for o in feasible)
    return [r for r in rows if r["pareto"]]


def winner_settings(row: dict, artifact: Path, config_path: Path) -> dict:
    """The winner's serve flags for the --config file (artifact relative to the file when it can be)."""

    d = Deployment(**row["deployment"])
    try:
        where = str(artifact.resolve().relative_to(config_path.resolve().parent))
    except ValueError:
        where = str(artifact.resolve())
    return {"artifact": where, **d.serve_flags()}


def write_serve_config(row: dict, artifact: Path, path: Path, load: dict) -> Path:
    if load["mode"] == "rate":
        what = f"{load['rate']:g} requests/s"
    elif load["mode"] == "sustainable":
        what = (f"holds {row['claimed_rate']:.1f} requests/s (the lowest of its {len(row['runs'])} runs; median "
                f"{row['score']:.1f})")
    else:
        what = f"{row['score']:.1f} requests/s"
    comments = [f"written by dnx tune: the fastest measured deployment with p99 <= {load['slo_p99_ms']:g} ms",
                f"measured: {what}, p99 {row['p99_ms']:.1f} ms ({load['mode']} load)",
                "run: dnx serve --config THIS_FILE   (flags on the command line override these values)"]
    return write(path, winner_settings(row, artifact, path), comments, "the tuned config")


def write_triton(row: dict, artifact: Path, repo: Path) -> dict:
    """A Triton repository for the winner: max_batch_size, dynamic batching delay, preferred batch
    sizes and instance count from its settings (the search measured them through dnx serve)."""

    d = row["deployment"]
    preferred = tuple(sorted({b for b in (d["max_batch"] // 2, d["max_batch"]) if b >= 1}))
    options = RepositoryOptions(max_batch=d["max_batch"], instances=d["workers"], preferred_batch=preferred,
                                queue_delay_us=int(round(d["max_delay_ms"] * 1000)),
                                kind="gpu" if d["backend"].endswith("cuda") else "cpu", force=True)
    result = export_repository([artifact], repo, options)
    return {"repo": str(result.repo), "max_batch_size": d["max_batch"], "preferred_batch_size": list(preferred),
            "max_queue_delay_microseconds": options.queue_delay_us, "instance_count": d["workers"],
            "kind": options.kind}


def plot_front(rows: list[dict], path: Path, title: str, slo_ms: float | None = None) -> Path:
    """Score vs p99 of every measured deployment (colour: accuracy; ring: on the Pareto front)."""

    require("matplotlib", "plot", "the Pareto plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get("p99_ms") is not None and r.get("score") is not None]
    if not pts:
        raise DnxError("no measured deployment to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    acc = [accuracy_value(r) or 0.0 for r in pts]
    sc = ax.scatter([r["p99_ms"] for r in pts], [r["score"] for r in pts], c=acc, cmap="viridis", s=28)
    front = [r for r in pts if r.get("pareto")]
    ax.scatter([r["p99_ms"] for r in front], [r["score"] for r in front], facecolors="none", edgecolors="red",
               s=110, label="Pareto front")
    if slo_ms is not None:
        ax.axvline(slo_ms, color="grey", linestyle="--", linewidth=1, label=f"p99 SLO {slo_ms:g} ms")
    fig.colorbar(sc, ax=ax, label="top-1 accuracy (or agreement with FP32)")
    ax.set_xlabel("p99 latency (ms)")
    ax.set_ylabel("requests/s held within the SLO")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, "the Pareto plot") as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
