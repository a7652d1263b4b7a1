"""The DenseNet family of Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017).

One public module, :class:`DenseNet`; its parts are private. State-dict key names follow
torchvision's ``torchvision/models/densenet.py`` so torchvision checkpoints load unchanged.

Two forward forms compute the same function:

* ``"incremental"`` (default): a dense block keeps one running feature map and each layer appends
  its k new channels with a two-input Concat. Exported ONNX graphs have short Concats; onnxruntime
  runs this form 1.09x faster in FP32 and 1.13x faster in INT8 Q/DQ on an AVX2 CPU (with the
  pool-first transitions below; ``benchmarks/MEASUREMENTS.md``).
  TensorRT also prefers it: its concat elimination turns each two-input Concat into writes of the
  new channels into the tail of one preallocated buffer, while the all-predecessor form makes it
  materialise a fresh 32-input Concat (or re-quantize the same channels) at every layer.
  Transitions average-pool before their 1x1 convolution (exact: both are linear), which cuts the
  transition convolutions' work by 4x.
* ``"torchvision"``: each layer concatenates *all* its predecessors, as torchvision does. Kept as the
  reference the exporter verifies against.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp

ForwardForm = Literal["incremental", "torchvision"]


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3 producing k channels; with a bottleneck (DenseNet-B) preceded by
    BN-ReLU-Conv1x1 producing ``bn_size * k`` channels (the paper uses bn_size = 4)."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int | None,
                 drop_rate: float, memory_efficient: bool) -> None:
        super().__init__()
        self.bottleneck = bn_size is not None
        if self.bottleneck:
            inter = bn_size * growth_rate
            self.norm1 = nn.BatchNorm2d(num_input_features)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(num_input_features, inter, kernel_size=1, stride=1, bias=False)
        else:
            inter = num_input_features
        self.norm2 = nn.BatchNorm2d(inter)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inter, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def _entry(self, x: torch.Tensor) -> torch.Tensor:
        # The part whose activations dominate memory; checkpointed in memory-efficient training.
        if self.bottleneck:
            return self.conv1(self.relu1(self.norm1(x)))
        return self.relu2(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_efficient and self.training and x.requires_grad:
            out = cp.checkpoint(self._entry, x, use_reentrant=False)
        else:
            out = self._entry(x)
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        else:
            out = self.conv2(out)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int | None,
                 growth_rate: int, drop_rate: float, memory_efficient: bool) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size,
                                drop_rate, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)
        self.forward_form: ForwardForm = "incremental"

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        if self.forward_form == "incremental":
            x = init_features
            for layer in self.values():
                x = torch.cat([x, layer(x)], 1)
            return x
        features = [init_features]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.forward_form: ForwardForm = "incremental"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm(x))
        if self.forward_form == "incremental":
            # A bias-free 1x1 conv and a 2x2 average pool are both linear and commute exactly;
            # pooling first does the conv on a quarter of the pixels (8% of densenet121's MACs).
            return self.conv(self.pool(x))
        return self.pool(self.conv(x))


class DenseNet(nn.Module):
    """DenseNet with the paper's knobs.

    Args:
        growth_rate: k, channels each layer adds.
        block_config: layers per dense block.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width factor (DenseNet-B: 4); ``None`` for no bottleneck.
        compression: theta, transition output = floor(theta * input channels) (DenseNet-C: 0.5).
        drop_rate: dropout after each 3x3 conv.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv).
        num_classes, in_channels: classifier outputs and image channels.
        memory_efficient: checkpoint each layer's entry in training (less memory, more compute).
    """

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int | None = 4, compression: float = 0.5,
                 drop_rate: float = 0.0, stem: Literal["imagenet", "cifar"] = "imagenet",
                 num_classes: int = 1000, in_channels: int = 3, memory_efficient: bool = False) -> None:
        super().__init__()
        if stem == "imagenet":
            layers = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        elif stem == "cifar":
            layers = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=3, padding=1, bias=False))]
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.features = nn.Sequential(OrderedDict(layers))

        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out_features = int(num_features * compression)
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, out_features))
                num_features = out_features
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        self.num_features = num_features

        # torchvision's initialisation, so random-init models behave like torchvision's. Skipped on
        # the meta device (shape-only models for counting), where it is slow and means nothing.
        if self.classifier.weight.is_meta:
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def set_forward_form(self, form: ForwardForm) -> "DenseNet":
        if form not in ("incremental", "torchvision"):
            raise ValueError(f"unknown forward form {form!r}")
        for m in self.modules():
            if isinstance(m, (_DenseBlock, _Transition)):
                m.forward_form = form
        return self

    def set_memory_efficient(self, enabled: bool) -> "DenseNet":
        for m in self.modules():
            if isinstance(m, _DenseLayer):
                m.memory_efficient = enabled
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)
