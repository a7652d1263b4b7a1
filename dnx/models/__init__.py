"""The DenseNet family, its registry and weight loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dnx.models.registry import ModelConfig, Preprocess, get_config, list_models
from dnx.models.weights import load_weights

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["ModelConfig", "Preprocess", "get_config", "list_models", "create_model", "LoadedModel",
           "bundled_weights"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def bundled_weights(name: str) -> Path | None:
    """The checkpoint dnx ships for ``name``, if any (only its own trained Fashion-MNIST model)."""
    path = ASSETS / f"{name}.pth"
    return path if path.is_file() else None


@dataclass
class LoadedModel:
    model: "nn.Module"
    config: ModelConfig
    weights: str  # sha256 of the weights file, or "random-init:seed=N"
    weights_path: str | None


def create_model(name: str | ModelConfig, weights: str | Path | None = None, seed: int = 0,
                 num_classes: int | None = None, image_size: int | None = None,
                 use_bundled: bool = True) -> LoadedModel:
    """Build a registered DenseNet in eval mode, with weights from ``weights``, else dnx's bundled
    checkpoint for that name, else a seeded random initialisation."""
    import torch

    cfg = name if isinstance(name, ModelConfig) else get_config(name)
    cfg = cfg.with_overrides(num_classes=num_classes, image_size=image_size)
    if weights is None and use_bundled and num_classes in (None, cfg.num_classes):
        weights = bundled_weights(cfg.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cfg.build()
    if weights is not None:
        digest = load_weights(model, weights)
        tag, path = digest, str(weights)
    else:
        tag, path = f"random-init:seed={seed}", None
    return LoadedModel(model.eval(), cfg, tag, path)
