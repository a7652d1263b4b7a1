"""Tables 1 and 2 of Huang et al. (CVPR 2017), computed from the models dnx builds.

Table 1 is read off the built modules (kernel sizes, strides, layers per block) with each stage's
output size worked out arithmetically, as :func:`dnx.models.registry.model_stats` does; nothing is
typed in. Table 2 puts the parameter count of each registered CIFAR configuration beside the
count the paper prints (``ModelConfig.paper_params``), which is rounded to 0.1M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dnx.core.errors import DnxError
from dnx.models.registry import ModelConfig, get_config, list_models, model_stats

TABLE1_MODELS = ("densenet121", "densenet169", "densenet201", "densenet264")
# The paper prints parameters in millions with one decimal: a count within 0.05M of the printed
# one is the same number.
PAPER_ROUNDING = 50_000


@dataclass(frozen=True)
class Table1:
    models: tuple[str, ...]
    growth_rates: tuple[int, ...]
    # (layer name, output size, one layer specification per model)
    rows: tuple[tuple[str, str, tuple[str, ...]], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "growth_rates": list(self.growth_rates),
                "rows": [{"layers": name, "output_size": size, "specification": dict(zip(self.models, specs))}
                         for name, size, specs in self.rows]}

    def markdown(self) -> str:
        headers = ["Layers", "Output Size",
                   *(f"{_display_name(get_config(m))} (k={k})" for m, k in zip(self.models, self.growth_rates))]
        return markdown_table(headers, [[name, size, *specs] for name, size, specs in self.rows])


@dataclass(frozen=True)
class Table2Row:
    model: str
    label: str
    depth: int
    growth_rate: int
    paper_params: int
    dnx_params: int

    @property
    def difference(self) -> int:
        return self.dnx_params - self.paper_params

    @property
    def within_rounding(self) -> bool:
        return abs(self.difference) <= PAPER_ROUNDING

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference,
                "relative_difference": self.difference / self.paper_params, "within_rounding": self.within_rounding}


def _size(size: int) -> str:
    return f"{size}×{size}"


def _out(size: int, module) -> int:
    k, st, pad = (v[0] if isinstance(v, tuple) else v for v in (module.kernel_size, module.stride, module.padding))
    return (size + 2 * pad - k) // st + 1


def _kernel(module) -> str:
    k = module.kernel_size[0] if isinstance(module.kernel_size, tuple) else module.kernel_size
    return f"{k}×{k}"


def _stride(module) -> str:
    st = module.stride[0] if isinstance(module.stride, tuple) else module.stride
    return f", stride {st}" if st != 1 else ""


def _display_name(cfg: ModelConfig) -> str:
    return f"DenseNet-{cfg.depth}" if cfg.stem == "imagenet" else cfg.name


def architecture_rows(cfg: ModelConfig) -> list[tuple[str, str, str]]:
    """(layer name, output size, specification) per stage of ``cfg``, in the paper's Table 1 words.

    Transitions are listed conv-then-pool as the paper does; dnx's exported graph pools first,
    which computes the same thing (both are linear) and does not change any output size.
    """
    import torch
    from torch import nn

    with torch.device("meta"):
        model = cfg.build()
    rows, size = [], cfg.image_size
    for name, module in model.features.named_children():
        if isinstance(module, nn.Conv2d):
            size = _out(size, module)
            rows.append(("Convolution", _size(size), f"{_kernel(module)} conv{_stride(module)}"))
        elif isinstance(module, nn.MaxPool2d):
            size = _out(size, module)
            rows.append(("Pooling", _size(size), f"{_kernel(module)} max pool{_stride(module)}"))
        elif name.startswith("denseblock"):
            layer = next(iter(module.values()))
            convs = [_kernel(m) + " conv" for m in (getattr(layer, "conv1", None), layer.conv2) if m is not None]
            rows.append((f"Dense Block ({name[len('denseblock'):]})", _size(size),
                         f"[{', '.join(convs)}] × {len(module)}"))
        elif name.startswith("transition"):
            label = f"Transition Layer ({name[len('transition'):]})"
            rows.append((label, _size(size), f"{_kernel(module.conv)} conv"))
            size = _out(size, module.pool)
            rows.append((label, _size(size), f"{_kernel(module.pool)} average pool{_stride(module.pool)}"))
    rows.append(("Classification Layer", "1×1", f"{_size(size)} global average pool"))
    rows.append(("Classification Layer", "1×1", f"{cfg.num_classes}D fully-connected, softmax"))
    return rows


def table1(models: Sequence[str] = TABLE1_MODELS) -> Table1:
    """Table 1 for ``models`` (default: the paper's four ImageNet DenseNets)."""
    if not models:
        raise DnxError("Table 1 needs at least one model name")
    configs = [get_config(m) for m in models]
    per_model = [architecture_rows(cfg) for cfg in configs]
    layout = [(name, size) for name, size, _ in per_model[0]]
    for cfg, rows in zip(configs[1:], per_model[1:]):
        if [(name, size) for name, size, _ in rows] != layout:
            raise DnxError(f"{cfg.name} has other stages or output sizes than {configs[0].name}; Table 1 puts "
                           "models with the same stem, block count and input size side by side")
    rows = tuple((name, size, tuple(rows[i][2] for rows in per_model)) for i, (name, size) in enumerate(layout))
    return Table1(tuple(cfg.name for cfg in configs), tuple(cfg.growth_rate for cfg in configs), rows)


def table2() -> list[Table2Row]:
    """The paper's Table 2 DenseNet rows (CIFAR, 10 classes): every registered config with a printed count."""
    rows = []
    for name in list_models():
        cfg = get_config(name)
        if cfg.paper_params is None or "Table 2" not in cfg.reference:
            continue
        variant = ("B" if cfg.bn_size else "") + ("C" if cfg.compression < 1 else "")
        label = f"DenseNet{'-' + variant if variant else ''} (L={cfg.depth}, k={cfg.growth_rate})"
        rows.append(Table2Row(name, label, cfg.depth, cfg.growth_rate, cfg.paper_params, model_stats(cfg)[0]))
    return rows


def table2_markdown(rows: Sequence[Table2Row]) -> str:
    return markdown_table(
        ["Method", "dnx model", "Depth", "k", "Params (paper)", "Params (dnx)", "dnx − paper", "within rounding"],
        [[r.label, f"`{r.model}`", str(r.depth), str(r.growth_rate), f"{r.paper_params / 1e6:.1f}M",
          f"{r.dnx_params:,}", f"{r.difference:+,} ({r.difference / r.paper_params:+.1%})",
          "yes" if r.within_rounding else "no"] for r in rows])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"
