"""Figure 5 of Huang et al.: how strongly each layer of a dense block reads each earlier layer.

For dense block b with L layers, :class:`BlockReuse.matrix` is an (L + 1) x (L + 1) array indexed
[target, source]. Source 0 is the block's input; source s >= 1 is the k channels layer s added.
Target t (row t - 1) is layer t of the block, which reads sources 0 .. t - 1; the last row is
what reads the whole block after it: the transition layer's 1x1 conv, or the classifier after the
last block. For DenseNet-B/BC the layer's 1x1 bottleneck conv (``conv1``) is the one that reads the
concatenated features, otherwise its 3x3 ``conv2``. Each pixel is the mean |w| over the weights
connecting that source's channels to that target: the paper's "average L1 norm, normalised by the
number of input feature-maps". Pixels a target cannot read (source >= target) are NaN.

Weights come from a dnx/torchvision checkpoint, or from an ONNX file made from it, FP32 or Q/DQ:
:func:`onnx_module_weights` dequantizes the Q/DQ weights and undoes the BatchNorm the exporter
folded into each bottleneck conv, so INT8 and FP32 maps are compared in the checkpoint's units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnx.core.errors import DnxError
from dnx.models.registry import ModelConfig, get_config
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import load_onnx
from dnx.models.weights import fix_legacy_keys, read_state_dict
from dnx.schemas.manifest import manifest_of, sidecar_path

# The BatchNorm that torch.onnx's constant folding merges into a conv when it follows it directly.
_FOLDED_BN = {"conv1": "norm2"}
BN_EPS = 1e-5  # nn.BatchNorm2d's default, which every dnx DenseNet uses


@dataclass(frozen=True)
class BlockReuse:
    block: int  # 1-based, as in the state-dict names
    layer_read: str  # "conv1" (bottleneck) or "conv2"
    last_target: str  # "transition1", "transition2", ..., or "classifier"
    matrix: np.ndarray  # [target, source], see the module docstring

    @property
    def layers(self) -> int:
        return self.matrix.shape[0] - 1

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "layers": self.layers, "layer_read": self.layer_read,
                "last_target": self.last_target,
                "targets": [f"layer{t}" for t in range(1, self.layers + 1)] + [self.last_target],
                "sources": ["input"] + [f"layer{s}" for s in range(1, self.layers + 1)],
                "matrix": _json_matrix(self.matrix)}


@dataclass
class ReuseReport:
    model: str
    checkpoint: str
    fp32: list[BlockReuse]
    onnx: str | None = None
    onnx_precision: str | None = None
    onnx_blocks: list[BlockReuse] | None = None  # the map of the ONNX file's (dequantized) weights
    notes: list[str] = field(default_factory=list)

    def difference(self) -> list[np.ndarray]:
        """Per block, ONNX map minus checkpoint map (INT8 − FP32 for a Q/DQ file)."""
        if self.onnx_blocks is None:
            raise ValueError("no ONNX map to compare")
        return [q.matrix - f.matrix for q, f in zip(self.onnx_blocks, self.fp32)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "figure": "Huang et al. 2017, Figure 5: mean |w| from each source to each target within a dense block",
            "model": self.model, "checkpoint": self.checkpoint, "blocks": [b.to_dict() for b in self.fp32],
            "notes": self.notes}
        if self.onnx_blocks is not None:
            diffs = self.difference()
            out["onnx"] = {"path": self.onnx, "precision": self.onnx_precision,
                           "blocks": [b.to_dict() for b in self.onnx_blocks],
                           "difference": [_json_matrix(d) for d in diffs],
                           "max_relative_difference": [float(np.nanmax(np.abs(d / f.matrix)))
                                                       for d, f in zip(diffs, self.fp32)]}
        return out


def _json_matrix(m: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in m]


def _layer_read(cfg: ModelConfig) -> str:
    return "conv1" if cfg.bn_size is not None else "conv2"


def _blocks(cfg: ModelConfig) -> list[tuple[int, int, str, list[str]]]:
    """Per dense block: (number, input channels, last target, state-dict keys of its targets' weights)."""
    out, channels = [], cfg.num_init_features
    for b, layers in enumerate(cfg.block_config, start=1):
        last = "classifier" if b == len(cfg.block_config) else f"transition{b}"
        keys = [f"features.denseblock{b}.denselayer{t}.{_layer_read(cfg)}.weight" for t in range(1, layers + 1)]
        keys.append("classifier.weight" if last == "classifier" else f"features.{last}.conv.weight")
        out.append((b, channels, last, keys))
        channels += layers * cfg.growth_rate
        channels = channels if last == "classifier" else int(channels * cfg.compression)
    return out


def read_modules(cfg: ModelConfig) -> list[str]:
    """State-dict keys of the weights Figure 5 reads for ``cfg``, in block order."""
    return [key for *_, keys in _blocks(cfg) for key in keys]


def feature_reuse(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> list[BlockReuse]:
    """Figure 5's matrices for ``cfg`` from state-dict weights (name -> array)."""
    missing = [k for k in read_modules(cfg) if k not in weights]
    if missing:
        raise DnxError(f"the weights lack {len(missing)} tensors {cfg.name} needs, first: {', '.join(missing[:3])}; "
                       "check --model")
    k, blocks = cfg.growth_rate, []
    for b, block_input, last, keys in _blocks(cfg):
        layers = len(keys) - 1
        bounds = [0, block_input] + [block_input + s * k for s in range(1, layers + 1)]
        matrix = np.full((layers + 1, layers + 1), np.nan)
        for row, key in enumerate(keys):
            w, reads = weights[key], row + 1  # target row + 1 reads sources 0 .. row
            if w.ndim < 2 or w.shape[1] != bounds[reads]:
                raise DnxError(f"{key} reads {w.shape[1:2]} channels, but {cfg.name} feeds it {bounds[reads]}; "
                               f"the weights are not {cfg.name}'s (check --model)")
            mags = np.abs(w.reshape(w.shape[0], w.shape[1], -1))
            for s in range(reads):
                matrix[row, s] = mags[:, bounds[s]:bounds[s + 1]].mean()
        blocks.append(BlockReuse(b, _layer_read(cfg), last, matrix))
    return blocks


def checkpoint_config(checkpoint: str | Path, model: str | None) -> ModelConfig:
    """``model``'s config, else the one in the checkpoint's sidecar (``dnx train`` writes it)."""
    if model:
        return get_config(model)
    import json

    side = sidecar_path(checkpoint)
    if side.is_file():
        try:
            return ModelConfig.from_dict(json.loads(side.read_text())["model"])
        except (ValueError, KeyError, TypeError):
            raise DnxError(f"{side} does not describe a dnx model; pass --model NAME") from None
    raise DnxError(f"{checkpoint} has no {side.name} naming its model; pass --model NAME (`dnx models` lists them)")


def checkpoint_weights(path: str | Path) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in fix_legacy_keys(read_state_dict(path)).items()
            if v.is_floating_point()}


def _node_module(node) -> str | None:
    """``features.denseblock1.denselayer1.conv1`` for the exporter's
    ``/features/denseblock1/denselayer1/conv1/Conv``."""
    parts = node.name.strip("/").split("/")
    return ".".join(parts[:-1]) if node.name.startswith("/") and len(parts) > 1 else None


def _dequantized(name: str, inits: dict, producers: dict) -> np.ndarray | None:
    """The float value of tensor ``name``: an initializer, or DequantizeLinear of initializers."""
    from onnx import helper, numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name]).astype(np.float64)
    node = producers.get(name)
    if node is None or node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
        return None
    x, scale = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[:2])
    zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if len(node.input) > 2 and node.input[2] \
        else np.zeros_like(scale)
    if scale.ndim == 1 and scale.size > 1:  # per-channel: scale runs along `axis`
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1) % x.ndim
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (x - zero) * scale


def onnx_module_weights(proto, checkpoint: dict[str, np.ndarray],
                        keys: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """(weights for ``keys`` read from an exported graph, notes).

    Conv/Gemm nodes are matched to modules by the exporter's scope names
    (``/features/.../conv1/Conv``), falling back to the weight's own name. A conv the exporter
    gave a bias its module does not have had the next BatchNorm folded in (w' = w·γ/√(σ²+ε) per
    output channel); that factor is divided out with the checkpoint's BatchNorm.
    """
    from onnx import helper

    inits = {i.name: i for i in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    wanted, found, notes = set(keys), {}, []
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2:
            continue
        weight_input = node.input[1]
        source = producers[weight_input].input[0] if weight_input in producers else weight_input
        key = f"{_node_module(node)}.weight"
        if key not in wanted:
            key = source.removesuffix("_quantized")
        if key not in wanted:
            continue
        w = _dequantized(weight_input, inits, producers)
        if w is None:
            raise DnxError(f"cannot read the weight of {node.name or node.output[0]} (not a constant or a "
                           "DequantizeLinear of constants)")
        if node.op_type == "Gemm":
            trans_b = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "transB"), 0)
            w = w if trans_b else w.T
        has_bias = len(node.input) > 2 and bool(node.input[2])
        module = key.removesuffix(".weight")
        parent, _, kind = module.rpartition(".")
        if has_bias and f"{module}.bias" not in checkpoint:
            if kind not in _FOLDED_BN:
                raise DnxError(f"{node.name} carries a bias that {module} lacks and dnx does not know which "
                               "BatchNorm was folded into it; export the model with `dnx export`")
            bn = f"{parent}.{_FOLDED_BN[kind]}"
            factor = checkpoint[f"{bn}.weight"] / np.sqrt(checkpoint[f"{bn}.running_var"] + BN_EPS)
            dead = factor == 0
            if dead.any():
                notes.append(f"{key}: {int(dead.sum())} output channels have a zero BatchNorm scale; the ONNX "
                             "file keeps nothing of their weights, shown as 0")
            w = np.divide(w, factor.reshape(-1, *[1] * (w.ndim - 1)), out=np.zeros_like(w),
                          where=~dead.reshape(-1, *[1] * (w.ndim - 1)))
        found[key] = w
    missing = [k for k in keys if k not in found]
    if missing:
        raise DnxError(f"found no Conv/Gemm for {len(missing)} of the layers Figure 5 reads, first: "
                       f"{', '.join(missing[:3])}; is the ONNX file a dnx export of this model?")
    return found, notes


def feature_reuse_report(checkpoint: str | Path, model: str | None = None,
                         onnx_path: str | Path | None = None) -> ReuseReport:
    """Figure 5 for ``checkpoint`` and, with ``onnx_path``, for the ONNX file (FP32, FP16 or Q/DQ)
    exported from that checkpoint, which must say so in its manifest (weights sha256)."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        raise DnxError(f"{checkpoint} is an ONNX file; give the checkpoint it was made from as CHECKPOINT "
                       "and the ONNX file as --onnx")
    cfg = checkpoint_config(checkpoint, model)
    weights = checkpoint_weights(checkpoint)
    report = ReuseReport(cfg.name, str(checkpoint), feature_reuse(cfg, weights))
    if onnx_path is None:
        return report

    proto = load_onnx(onnx_path)
    manifest = manifest_of(proto, onnx_path, required=False)
    if manifest is None:
        raise DnxError(f"{onnx_path} has no dnx manifest, so nothing says it was made from {checkpoint}; "
                       "pass a file made by `dnx export` / `dnx calibrate`")
    made_from, digest = manifest.weights.id if manifest.weights else None, sha256_file(checkpoint)
    if made_from != digest:
        raise DnxError(f"{onnx_path} was exported from weights {str(made_from)[:12]}, not from {checkpoint} "
                       f"({digest[:12]}); pass the checkpoint it was made from")
    keys = read_modules(cfg)
    onnx_weights, notes = onnx_module_weights(proto, weights, keys)
    report.onnx, report.onnx_precision = str(onnx_path), manifest.precision
    report.onnx_blocks, report.notes = feature_reuse(cfg, onnx_weights), notes
    return report
