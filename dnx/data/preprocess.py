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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DnxError(f"cannot read image {path}: {exc}") from None


# Largest image (pixels) a service decodes: above it an image is refused before its pixels are read, so a
# small compressed "decompression bomb" cannot make a server allocate gigabytes. 50 MP covers phone photos.
DEFAULT_MAX_PIXELS = 50_000_000


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image"):
    """Encoded bytes (JPEG/PNG/WebP/BMP) -> a fully loaded PIL image; refuses bombs and truncated files."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DnxError(f"{what} is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise DnxError(f"{what} is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit")
            img.load()
            return img.copy()
    except UnidentifiedImageError:
        raise DnxError(f"{what} is not an image Pillow can read (JPEG, PNG, WebP, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DnxError(f"{what} cannot be decoded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def open_any_image(item, max_pixels: int = DEFAULT_MAX_PIXELS):
    """One image in any form a service receives -> a PIL image (decoded, not yet preprocessed).

    ``item``: a path (str/Path), encoded bytes, a PIL image, or a uint8 (H, W) / (H, W, C) array with 1, 3
    or 4 channels."""
    from PIL import Image

    if isinstance(item, (bytes, bytearray, memoryview)):
        img = decode_image(bytes(item), max_pixels)
    elif isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise DnxError(f"image file {path} does not exist")
        img = decode_image(path.read_bytes(), max_pixels, what=f"image {path}")
    elif isinstance(item, Image.Image):
        img = item
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise DnxError(f"image arrays must be uint8 (H, W[, C]), got {item.dtype}; pass float32 network "
                           "input as one (N, C, H, W) batch instead")
        if item.ndim == 3 and item.shape[2] == 1:
            item = item[..., 0]
        if not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4))):
            raise DnxError(f"image array has shape {item.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
        if item.size == 0:
            raise DnxError(f"image array has shape {item.shape}: it is empty")
        img = Image.fromarray(item)
    else:
        raise DnxError(f"cannot classify a {type(item).__name__}: give a path, image bytes, a PIL image, "
                       "a uint8 array or a float32 (N, C, H, W) batch")
    if img.mode.startswith(("I", "F")):
        raise DnxError(f"image mode {img.mode} (16-bit or float) is not supported; convert it to 8-bit")
    return img


def image_to_input(item, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image in any form :func:`open_any_image` takes -> float32 (C, H, W) network input, through
    :func:`preprocess_image`, the function export verification and ``dnx eval`` use."""
    return preprocess_image(open_any_image(item, max_pixels), pre)


def preprocess_image(img, pre: Preprocess) -> np.ndarray:
    """A PIL image -> float32 array (C, H, W), converted to the model's channel count."""
    from PIL import Image

    mode = "L" if pre.in_channels == 1 else "RGB"
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit greyscale (PNG): Pillow's convert() clips to 255 instead of scaling 0..65535 down
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257.0).clip(0, 255).round().astype(np.uint8))
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
