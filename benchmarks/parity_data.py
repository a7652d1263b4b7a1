"""The inputs every backend is checked on for parity with PyTorch: seeded random tensors, plus
real, in-distribution images (a labelled set or a folder of images given with --data, else the model's
reference set: the shipped Fashion-MNIST test split for dnx's trained model, 64 crops of the bundled
photos otherwise), preprocessed as the model expects. Random tensors are a numeric check: they decide
FP32 verdicts but never a reduced precision's (FP16, BF16, TF32, INT8): off the data a model was trained
on, its top-1 is decided by margins that any rounding flips, and INT8's ranges come from real images.
:class:`ParityInput` is one such set; :func:`load_parity_data` reads one from a path and
:func:`parity_inputs` assembles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.calibration.parity import reference_set
from dnx.data.datasets import load_labelled
from dnx.data.preprocess import IMAGE_SUFFIXES, load_image, preprocess_array, preprocess_image


@dataclass
class ParityInput:
    name: str
    images: np.ndarray  # (N, C, H, W) float32, preprocessed as the model expects
    labels: np.ndarray | None
    source: str
    decides_reduced: bool = True  # False for random tensors: reported for reduced precisions, never judged


def load_parity_data(path: str | Path, pre, limit: int) -> ParityInput:
    """Up to ``limit`` images from ``path``, preprocessed: a labelled set (IDX folder, .npz, class
    folders; the test split where there is one) or a folder of unlabelled images."""

    path = Path(path)
    if not path.exists():
        raise DnxError(f"--data {path} does not exist")
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        files = [path]
    else:
        try:
            labelled = load_labelled(path, "test")
        except DnxError:
            labelled = None
        if labelled is not None:
            return ParityInput(f"data:{path.name}", preprocess_array(labelled.images[:limit], pre),
                               labelled.labels[:limit], str(path))
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else []
        if not files:
            raise DnxError(f"--data {path}: no labelled set (IDX folder, .npz, class folders) and no images "
                           f"({', '.join(IMAGE_SUFFIXES)})")
    images = np.stack([preprocess_image(load_image(p), pre) for p in files[:limit]])
    return ParityInput(f"data:{path.name}", images, None, str(path))


def parity_inputs(pre, samples: int, seed: int, data: str | None, labels: str | None = None) -> list[ParityInput]:
    """The inputs every backend gets: seeded random tensors, plus real images (--data, or the model's
    reference set, see :func:`dnx.calibration.parity.reference_set`; ``labels`` is the model's label source)."""

    rng = np.random.default_rng(seed)
    shape = (pre.in_channels, pre.image_size, pre.image_size)
    cases = [ParityInput("random", rng.standard_normal((samples, *shape), dtype=np.float32), None,
                         f"standard normal, seed {seed}", decides_reduced=False)]
    if data:
        cases.append(load_parity_data(data, pre, max(samples, 64)))
    else:
        ref = reference_set(pre, labels)
        cases.append(ParityInput(ref.name, ref.images, ref.labels, ref.source))
    return cases
