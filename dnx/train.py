"""Reproducible training of small DenseNets on small labelled image sets (e.g. Fashion-MNIST).

The paper's recipe, shortened: SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 64..128,
one-cycle learning rate (instead of the paper's 300 epochs with step decay, which a 2-core CPU
cannot afford), random-crop (pad 2) + horizontal-flip augmentation.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dnx.data.datasets import LabelledImages
from dnx.core.errors import DnxError
from dnx.models.registry import ModelConfig
from dnx.core.fileio import atomic_path, write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.data.preprocess import preprocess_array


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.2
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    limit: int | None = None  # use only the first N training images (quick runs)


def to_tensor_batch(images: np.ndarray, cfg: ModelConfig):
    """uint8 (N, H, W[, C]) at the model's size -> normalised float32 torch tensor (N, C, H, W)."""
    import torch

    channels = 1 if images.ndim == 3 else images.shape[3]
    if channels != cfg.in_channels:
        raise DnxError(f"images have {channels} channels, {cfg.name} takes {cfg.in_channels}")
    if images.shape[1:3] != (cfg.image_size, cfg.image_size):
        raise DnxError(f"images are {images.shape[1]}x{images.shape[2]}, {cfg.name} takes "
                       f"{cfg.image_size}x{cfg.image_size}; resize the images or pick a model of that input size")
    return torch.from_numpy(preprocess_array(images, cfg.preprocess))


def data_fingerprint(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    if labels is not None:
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def evaluate(model, data: LabelledImages, cfg: ModelConfig, batch_size: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(data), batch_size):
            x = to_tensor_batch(data.images[i:i + batch_size], cfg)
            correct += int((model(x).argmax(1).numpy() == data.labels[i:i + batch_size]).sum())
    return correct / len(data)


def train(cfg: ModelConfig, train_set: LabelledImages, test_set: LabelledImages | None,
          tc: TrainConfig, on_step: Callable[[int, int, int, float], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None):
    """Train ``cfg`` from scratch; returns (model, history dict). ``on_step(epoch, step, steps, loss)``
    and ``on_epoch(record)`` report progress."""
    import torch
    import torch.nn.functional as F

    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    images, labels = train_set.images, train_set.labels
    if tc.limit:
        images, labels = images[:tc.limit], labels[:tc.limit]
    if len(labels) == 0:
        raise DnxError("the training set is empty")
    if labels.min() < 0:
        raise DnxError(f"labels must be class indices >= 0, found {labels.min()}")
    if labels.max() >= cfg.num_classes:
        raise DnxError(f"labels go up to {labels.max()}, {cfg.name} has {cfg.num_classes} classes")
    if len(np.unique(labels)) < 2:
        raise DnxError(f"the training set has one class ({labels[0]}) only; a classifier needs at least two "
                       "(one subfolder per class)")
    if len(images) != len(labels):
        raise DnxError(f"{len(images)} training images but {len(labels)} labels; give one label per image")
    x_all = to_tensor_batch(images, cfg)
    y_all = torch.from_numpy(labels)
    model = cfg.build().train()
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=0.9, nesterov=True,
                          weight_decay=tc.weight_decay)
    steps_per_epoch = (len(x_all) + tc.batch_size - 1) // tc.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=tc.epochs * steps_per_epoch,
                                                pct_start=0.15)
    history = {"epochs": []}
    start = time.time()
    pad = 2
    for epoch in range(tc.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_all)))
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * tc.batch_size:(step + 1) * tc.batch_size]
            x, y = x_all[idx], y_all[idx]
            # augmentation: random crop with zero padding (in normalised space) and horizontal flip
            h, w = x.shape[2:]
            xp = F.pad(x, (pad, pad, pad, pad))
            dy, dx = (int(v) for v in rng.integers(0, 2 * pad + 1, size=2))
            x = xp[:, :, dy:dy + h, dx:dx + w]
            flip = torch.from_numpy(rng.random(len(x)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            value = float(loss.detach())
            total_loss += value
            if on_step:
                on_step(epoch, step + 1, steps_per_epoch, value)
        record = {"epoch": epoch + 1, "loss": total_loss / steps_per_epoch, "seconds": time.time() - start}
        if test_set is not None:
            record["test_accuracy"] = evaluate(model, test_set, cfg)
        history["epochs"].append(record)
        if on_epoch:
            on_epoch(record)
    history["train_config"] = asdict(tc)
    history["train_images"] = len(x_all)
    return model.eval(), history


def save_checkpoint(model, path: str | Path, manifest: dict) -> None:
    """Write the state dict and a ``PATH.json`` manifest, each atomically."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    write_json_atomic(path.with_name(path.name + ".json"), {**manifest, "sha256": sha256_file(path)})
