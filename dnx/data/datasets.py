"""Small labelled and unlabelled image sets: IDX files, image folders, .npy/.npz arrays.

Everything here yields uint8 or float arrays ready for :mod:`dnx.data.preprocess`; nothing downloads.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnx.data.preprocess import IMAGE_SUFFIXES, load_image
from dnx.core.errors import DnxError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in _IDX_DTYPES:
                raise DnxError(f"{path} is not an IDX file (bad magic number)")
            ndim = header[3]
            dims = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            dtype = np.dtype(_IDX_DTYPES[header[2]])
            data = f.read()
    except (OSError, EOFError, struct.error, zlib.error) as exc:
        raise DnxError(f"cannot read IDX file {path}: {exc}") from None
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a fuzzed header cannot overflow it
    if len(data) != expected:
        raise DnxError(f"{path} is truncated: {len(data)} bytes of data, header says {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


@dataclass
class LabelledImages:
    """uint8 images (N, H, W) or (N, H, W, C) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _find_idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    for suffix in (".gz", ""):
        imgs = folder / f"{prefix}-images-idx3-ubyte{suffix}"
        labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
        if imgs.is_file() and labels.is_file():
            return imgs, labels
    return None


def load_labelled(path: str | Path, split: str = "train", pre=None) -> LabelledImages:
    """A labelled set from an IDX folder (``train-*``/``t10k-*`` files), an ``.npz`` with ``images``
    and ``labels``, or an image folder with one subfolder per class (sorted names = class index), whose
    JPEGs are decoded as ``pre.decode`` says (exact when ``pre`` is None)."""
    path = Path(path)
    if not path.exists():
        raise DnxError(f"dataset path {path} does not exist")
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.is_dir():
        pair = _find_idx_pair(path, split)
        if pair is not None:
            return check_labelled(LabelledImages(read_idx(pair[0]), read_idx(pair[1])), f"{pair[0].parent}")
        return _load_image_folder(path / split if (path / split).is_dir() else path, pre)
    raise DnxError(f"{path}: expected an IDX folder, an image folder with class subfolders, or an .npz file")


def _load_npz(path: Path) -> LabelledImages:
    try:
        with np.load(path) as z:
            if "images" not in z.files or "labels" not in z.files:
                raise DnxError(f"{path} must hold arrays named 'images' and 'labels' (found: "
                               f"{', '.join(z.files[:5]) or 'no arrays'})")
            images, labels = z["images"], z["labels"]
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
    except DnxError:
        raise
    except Exception as exc:  # noqa: BLE001  (numpy/zipfile raise many types for damaged files)
        raise DnxError(f"cannot read {path} as a labelled .npz: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return check_labelled(LabelledImages(images, labels, classes), str(path))


def check_labelled(data: LabelledImages, where: str) -> LabelledImages:
    """uint8 images (N, H, W[, 1|3]) and as many integer labels >= 0, or a one-line DnxError."""
    images, labels = data.images, np.asarray(data.labels)
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3))):
        raise DnxError(f"{where}: images are {images.dtype} {images.shape}; expected uint8 (N, H, W) or (N, H, W, 1|3)")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DnxError(f"{where}: labels are {labels.dtype} {labels.shape}; expected integers (N,)")
    if len(labels) != len(images):
        raise DnxError(f"{where}: {len(images)} images but {len(labels)} labels; give one label per image")
    if len(labels) and labels.min() < 0:
        raise DnxError(f"{where}: labels must be class indices >= 0, found {labels.min()}")
    if data.classes is not None and len(labels) and labels.max() >= len(data.classes):
        raise DnxError(f"{where}: label {labels.max()} but only {len(data.classes)} class names")
    return LabelledImages(images, labels.astype(np.int64), data.classes)


def has_split(path: str | Path, split: str) -> bool:
    """Whether ``path`` holds its own ``split`` ("test"): an IDX pair, or a ``split`` subfolder of an
    image folder. An .npz or a plain class-folder tree holds one set only."""
    path = Path(path)
    return path.is_dir() and (_find_idx_pair(path, split) is not None or (path / split).is_dir())


def _load_image_folder(folder: Path, pre=None) -> LabelledImages:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DnxError(f"{folder} has no class subfolders (expected FOLDER/CLASS/IMAGE.jpg)")
    images, labels, shape = [], [], None
    for idx, cls in enumerate(classes):
        for p in sorted((folder / cls).rglob("*")):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            arr = np.asarray(load_image(p, pre))
            shape = shape or arr.shape
            if arr.shape != shape:
                raise DnxError(f"{p} is {arr.shape}, other images are {shape}; resize the set to one size")
            images.append(arr)
            labels.append(idx)
    if not images:
        raise DnxError(f"{folder} has no readable images ({', '.join(IMAGE_SUFFIXES)})")
    return LabelledImages(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


def shipped_fashion_mnist_test() -> LabelledImages:
    """The first 5,000 Fashion-MNIST test images (MIT licence), shipped with dnx for accuracy tests."""
    path = Path(__file__).resolve().parent.parent / "assets" / "fashion_mnist_test5k.npz"
    return load_labelled(path)
