"""Figure 5's heat maps drawn with matplotlib (imported here only; pyplot's global state is not used).

Drawn as in the paper: x is the target layer, y the source layer (0 = the block's input, top row),
one panel per dense block, the last column (transition layer or classifier) boxed. Colours are
each pixel over the largest FP32 pixel of its block, so the FP32 and the ONNX rows share one scale;
the difference row shows (ONNX − FP32) / FP32 in percent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError, require
from dnx.paper.reuse import BlockReuse, ReuseReport
from dnx.core.fileio import atomic_path


def _ticks(ax, block: BlockReuse) -> None:
    n = block.layers
    step = max(1, -(-n // 6))  # at most ~7 labels, so two-digit layer numbers do not collide
    xs = [t for t in range(0, n, step)] + [n]
    ax.set_xticks(xs, [str(t + 1) for t in xs[:-1]] + ["C" if block.last_target == "classifier" else "T"])
    ys = list(range(0, n + 1, step))
    ax.set_yticks(ys, [str(s) for s in ys])
    ax.set_xlabel("target layer (ℓ)")
    ax.set_ylabel("source layer (s)")


def _box_last_column(ax, block: BlockReuse) -> None:
    from matplotlib.patches import Rectangle

    n = block.layers
    ax.add_patch(Rectangle((n - 0.5, -0.5), 1, n + 1, fill=False, edgecolor="black", linewidth=2))


def _panel(ax, values: np.ndarray, block: BlockReuse, title: str, **imshow):
    image = ax.imshow(values.T, origin="upper", interpolation="nearest", **imshow)
    _ticks(ax, block)
    _box_last_column(ax, block)
    ax.set_title(title, fontsize=10)
    return image


def plot_format(path: str | Path) -> str:
    """The image format ``path``'s suffix asks for; raises before any work if matplotlib is missing
    or cannot write it."""
    require("matplotlib", "plot", "drawing the feature-reuse heat maps")
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in FigureCanvasBase.get_supported_filetypes():
        raise DnxError(f"--plot {path}: matplotlib cannot write .{fmt} files; use .png, .pdf or .svg")
    return fmt


def plot_reuse(report: ReuseReport, path: str | Path, dpi: int = 120) -> Path:
    """Write the heat maps of ``report`` to ``path`` (format from its suffix: .png, .pdf, .svg)."""
    fmt = plot_format(path)
    from matplotlib.figure import Figure

    path = Path(path)
    rows = [("FP32 (checkpoint)", report.fp32)]
    precision = (report.onnx_precision or "ONNX").upper()
    if report.onnx_blocks is not None:
        rows.append((f"{precision} ({Path(report.onnx or '').name})", report.onnx_blocks))
    cols = len(report.fp32)
    fig = Figure(figsize=(3.4 * cols + 0.8, 3.1 * (len(rows) + (report.onnx_blocks is not None))),
                 layout="constrained")
    axes = fig.subplots(len(rows) + (report.onnx_blocks is not None), cols, squeeze=False)
    scales = [np.nanmax(b.matrix) for b in report.fp32]
    for r, (label, blocks) in enumerate(rows):
        for c, block in enumerate(blocks):
            image = _panel(axes[r, c], block.matrix / scales[c], block,
                           f"{label}\nblock {block.block} → {block.last_target}", cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9, label="mean |w| / block's FP32 max")
    if report.onnx_blocks is not None:
        relative = [100 * d / f.matrix for d, f in zip(report.difference(), report.fp32)]
        limit = max(float(np.nanmax(np.abs(m))) for m in relative) or 1.0
        for c, (block, values) in enumerate(zip(report.fp32, relative)):
            image = _panel(axes[-1, c], values, block, f"{precision} − FP32, block {block.block}",
                           cmap="RdBu_r", vmin=-limit, vmax=limit)
        fig.colorbar(image, ax=axes[-1, :].tolist(), shrink=0.9, label=f"({precision} − FP32) / FP32, %")
    fig.suptitle(f"{report.model}: feature reuse (Huang et al. 2017, Figure 5)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path
