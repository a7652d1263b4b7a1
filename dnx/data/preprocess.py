"""Turning images into network inputs, exactly as a model's manifest says.

The same steps as torchvision's ImageNet evaluation transform: resize the shorter side to
``resize_size``, center-crop ``image_size``, scale to [0, 1], normalise per channel, NCHW float32.
Implemented with Pillow and numpy so the runtime does not need torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.errors import DnxError
from dnx.models.registry import Preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_image(path: str | Path):
    """Open an image fully (so truncated files fail here, not later)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DnxError(f"cannot read image {path}: {exc}") from None


def preprocess_image(img, pre: Preprocess) -> np.ndarray:
    """A PIL image -> float32 array (C, H, W), converted to the model's channel count."""
    from PIL import Image

    mode = "L" if pre.in_channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    w, h = img.size
    scale = pre.resize_size / min(w, h)
    if (w, h) != (pre.resize_size, pre.resize_size) and min(w, h) != pre.resize_size:
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pre.interpolation]
        img = img.resize((max(pre.resize_size, round(w * scale)), max(pre.resize_size, round(h * scale))), resample)
    w, h = img.size
    left, top = (w - pre.image_size) // 2, (h - pre.image_size) // 2
    img = img.crop((left, top, left + pre.image_size, top + pre.image_size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return normalize(arr.transpose(2, 0, 1), pre)


def normalize(chw01: np.ndarray, pre: Preprocess) -> np.ndarray:
    """[0,1] (..., C, H, W) -> normalised float32."""
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
    return ((chw01 - mean) / std).astype(np.float32)


def bundled_photos() -> list[Path]:
    """Freely licensed photos shipped with dnx (see dnx/assets/LICENSES.md)."""
    folder = Path(__file__).resolve().parent.parent / "assets" / "photos"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def photo_batch(pre: Preprocess, n: int | None = None) -> np.ndarray:
    """The bundled photos preprocessed for a model, stacked (N, C, H, W)."""
    paths = bundled_photos()[:n]
    return np.stack([preprocess_image(load_image(p), pre) for p in paths])


def preprocess_array(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 images (N, H, W[, C]) -> network input (N, C, H, W). Images already at the model's size
    and channel count are only scaled and normalised (vectorised); others go through Pillow."""
    from PIL import Image

    channels = 1 if images.ndim == 3 else images.shape[3]
    if images.shape[1:3] == (pre.image_size, pre.image_size) and channels == pre.in_channels:
        x = images.astype(np.float32) / 255.0
        x = x[:, None] if images.ndim == 3 else x.transpose(0, 3, 1, 2)
        return normalize(x, pre)
    # Pillow has no (H, W, 1) mode: single-channel images go in as (H, W)
    return np.stack([preprocess_image(Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img), pre)
                     for img in images])
