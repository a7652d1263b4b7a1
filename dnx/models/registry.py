"""Registered DenseNet variants, each with the preprocessing facts every stage reads.

A variant is data: add one ``_register(ModelConfig(...))`` line. Export writes these facts into the
ONNX manifest; calibration, runtime and the C++ runtime read them from there.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal

from dnx.core.documents import FieldProblem, SchemaError, read_document, to_json
from dnx.core.errors import DnxError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

LABELS = {
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    # ImageNet-1k class names are not shipped (no offline source with a clear licence); indices only.
    "imagenet-1k": None,
}

DECODE_MODES = ("exact", "fast")

PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network input: resize the shorter side to resize_size, center-crop
    image_size, scale pixels to [0, 1], normalise per channel ((x - mean) / std). Layout NCHW, float32."""

    image_size: int = field(metadata={"dnx": {"minimum": 1,
                                              "description": "Side of the square crop fed to the network."}})
    resize_size: int = field(metadata={"dnx": {"minimum": 1,
                                               "description": "The shorter side is resized to this first."}})
    # pixels are scaled to [0, 1] before normalising: a mean outside was written for 0-255 pixels
    mean: tuple[float, ...] = field(metadata={"dnx": {"minItems": 1, "maxItems": 3,
                                                      "items": {"minimum": 0, "maximum": 1}}})
    std: tuple[float, ...] = field(metadata={"dnx": {"minItems": 1, "maxItems": 3, "items": {"exclusiveMinimum": 0}}})
    in_channels: Literal[1, 3]
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    # "exact": decode every pixel; "fast": JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
    # keeps the short side >= dnx.data.preprocess.FAST_DECODE_MARGIN x resize_size, and only the region the
    # centre crop keeps is resized (crop_box, docs/images.md). A manifest without the field predates the
    # mode and was verified on exact decodes; new artifacts are written with "fast".
    decode: Literal["exact", "fast"] = "exact"

    # one mean and one std per input channel, as JSON Schema says it (check() below says it in Python)
    json_schema_extra: ClassVar[dict] = {"allOf": [
        {"if": {"properties": {"in_channels": {"const": n}}},
         "then": {"properties": {"mean": {"minItems": n, "maxItems": n}, "std": {"minItems": n, "maxItems": n}}}}
        for n in (1, 3)]}

    def check(self) -> None:
        """The rule across fields (the types and ranges are the fields' own); FieldProblem names the field."""
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.in_channels:
                raise FieldProblem(name, f"needs one value per input channel ({self.in_channels}), got "
                                         f"{len(getattr(self, name))}")

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """A spec from a dict dnx made itself (tests, fixtures, a certificate's record): read without the
        file-naming messages of the manifest reader; any problem is a ValueError."""
        try:
            return read_document(cls, {**d, "mean": list(d["mean"]), "std": list(d["std"])}, "preprocess")
        except (SchemaError, KeyError, TypeError) as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class ModelConfig:
    name: str
    depth: int
    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int
    bn_size: int | None
    compression: float
    stem: str
    num_classes: int
    in_channels: int
    image_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: str
    reference: str
    drop_rate: float = 0.0
    paper_params: int | None = None  # the paper's Table 2 count, where it gives one
    aliases: tuple[str, ...] = field(default=())

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(self.image_size, self.resize_size, self.mean, self.std, self.in_channels, decode="fast")

    @property
    def label_names(self) -> list[str] | None:
        return LABELS.get(self.labels)

    @property
    def min_image_size(self) -> int:
        """Smallest input whose spatial size stays >= 1 through every downsampling."""
        stem_down = 4 if self.stem == "imagenet" else 1
        return stem_down * 2 ** (len(self.block_config) - 1)

    def with_overrides(self, num_classes: int | None = None, image_size: int | None = None) -> "ModelConfig":
        cfg = self
        if num_classes is not None:
            if num_classes < 1:
                raise DnxError(f"--num-classes must be >= 1, got {num_classes}")
            labels = cfg.labels if num_classes == cfg.num_classes else "custom"
            cfg = replace(cfg, num_classes=num_classes, labels=labels)
        if image_size is not None:
            if image_size < cfg.min_image_size:
                raise DnxError(
                    f"image size {image_size} is too small for {cfg.name}: it downsamples by "
                    f"{cfg.min_image_size}, use --image-size {cfg.min_image_size} or more")
            resize = round(image_size * cfg.resize_size / cfg.image_size)
            cfg = replace(cfg, image_size=image_size, resize_size=resize)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["block_config"] = list(self.block_config)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d.pop("aliases")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        d["block_config"] = tuple(d["block_config"])
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def build(self, memory_efficient: bool = False):
        from dnx.models.densenet import DenseNet

        return DenseNet(growth_rate=self.growth_rate, block_config=self.block_config,
                        num_init_features=self.num_init_features, bn_size=self.bn_size,
                        compression=self.compression, drop_rate=self.drop_rate, stem=self.stem,
                        num_classes=self.num_classes, in_channels=self.in_channels,
                        memory_efficient=memory_efficient)


_REGISTRY: dict[str, ModelConfig] = {}


def _register(cfg: ModelConfig) -> None:
    _REGISTRY[cfg.name] = cfg


def _imagenet(name: str, depth: int, k: int, blocks: tuple[int, ...], init: int) -> ModelConfig:
    return ModelConfig(name=name, depth=depth, growth_rate=k, block_config=blocks, num_init_features=init,
                       bn_size=4, compression=0.5, stem="imagenet", num_classes=1000, in_channels=3,
                       image_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       labels="imagenet-1k", reference=f"{PAPER}, Table 1")


def _cifar(name: str, depth: int, k: int, bc: bool, paper_params: int, **kw: Any) -> ModelConfig:
    # Paper section 4.1: three equal dense blocks; L counts the conv layers plus the classifier.
    # Plain DenseNet: (L - 4) / 3 layers per block, 16 stem channels, no compression.
    # DenseNet-BC: each layer has two convs, so (L - 4) / 6 per block; 2k stem channels; theta = 0.5.
    per_block = (depth - 4) // 6 if bc else (depth - 4) // 3
    opts: dict[str, Any] = dict(
        name=name, depth=depth, growth_rate=k, block_config=(per_block,) * 3,
        num_init_features=2 * k if bc else 16, bn_size=4 if bc else None,
        compression=0.5 if bc else 1.0, stem="cifar", num_classes=10, in_channels=3,
        image_size=32, resize_size=32, mean=CIFAR_MEAN, std=CIFAR_STD, labels="cifar10",
        reference=f"{PAPER}, Table 2", paper_params=paper_params)
    opts.update(kw)
    return ModelConfig(**opts)


for _cfg in (
    _imagenet("densenet121", 121, 32, (6, 12, 24, 16), 64),
    _imagenet("densenet169", 169, 32, (6, 12, 32, 32), 64),
    _imagenet("densenet201", 201, 32, (6, 12, 48, 32), 64),
    _imagenet("densenet264", 264, 32, (6, 12, 64, 48), 64),
    _imagenet("densenet161", 161, 48, (6, 12, 36, 24), 96),
    _cifar("densenet40_k12", 40, 12, bc=False, paper_params=1_000_000),
    _cifar("densenet100_k12", 100, 12, bc=False, paper_params=7_000_000),
    _cifar("densenet100_k24", 100, 24, bc=False, paper_params=27_200_000),
    _cifar("densenet_bc100_k12", 100, 12, bc=True, paper_params=800_000),
    _cifar("densenet_bc250_k24", 250, 24, bc=True, paper_params=15_300_000),
    _cifar("densenet_bc190_k40", 190, 40, bc=True, paper_params=25_600_000),
    # dnx's own small DenseNet-BC for Fashion-MNIST (28x28 grey); its trained weights ship with dnx.
    _cifar("densenet_bc22_fmnist", 22, 12, bc=True, paper_params=None, in_channels=1, image_size=28,
           resize_size=28, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, labels="fashion-mnist",
           reference=f"{PAPER}, DenseNet-BC (reduced depth), trained by dnx on Fashion-MNIST"),
):
    _register(_cfg)


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_config(name: str) -> ModelConfig:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DnxError(f"unknown model {name!r}{hint} (`dnx models` lists them)") from None


def count_params(cfg: ModelConfig) -> int:
    return model_stats(cfg)[0]


def count_macs(cfg: ModelConfig) -> int:
    return model_stats(cfg)[1]


def model_stats(cfg: ModelConfig) -> tuple[int, int]:
    """(parameters, multiply-accumulates of one image at the config's input size over conv + linear
    layers). The model is built on the meta device (no memory) and MACs follow from each layer's
    output size, computed arithmetically: a meta-device forward pass takes ~20 s for the family."""
    import torch
    import torch.nn as nn

    with torch.device("meta"):
        model = cfg.build()
    params = sum(p.numel() for p in model.parameters())

    def out_size(size: int, m) -> int:
        k, st, pad = (v[0] if isinstance(v, tuple) else v for v in (m.kernel_size, m.stride, m.padding))
        return (size + 2 * pad - k) // st + 1

    macs, size = 0, cfg.image_size

    def conv(m: nn.Conv2d) -> None:
        nonlocal macs, size
        size = out_size(size, m)
        macs += size * size * m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            conv(m)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            size = out_size(size, m)
    macs += model.classifier.in_features * model.classifier.out_features
    return params, macs
