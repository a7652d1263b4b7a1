"""Turning images into network inputs, exactly as a model's manifest says.

The same steps as torchvision's ImageNet evaluation transform: resize the shorter side to
``resize_size``, center-crop ``image_size``, scale to [0, 1], normalise per channel, NCHW float32.
Implemented with Pillow and numpy so the runtime does not need torchvision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_image(path: str | Path, pre: Preprocess | None = None, exif_orientation: bool = True):
    """Open an image file fully (so truncated files fail here, not later), decoded as ``pre.decode`` says
    (exact when ``pre`` is None) and turned upright by its EXIF orientation unless told not to."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DnxError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return decode_image(data, max_pixels=None, what=f"image {path}", pre=pre, exif_orientation=exif_orientation)


# Largest image (pixels) a service decodes: above it an image is refused before its pixels are read, so a
# small compressed "decompression bomb" cannot make a server allocate gigabytes. 50 MP covers phone photos.
# The same bound holds for the resized image (see preprocess_image): an extreme aspect ratio is refused.
DEFAULT_MAX_PIXELS = 50_000_000

# decode "fast": the JPEG is decoded at the smallest DCT scale (libjpeg-turbo's 1/2, 1/4, 1/8) that keeps its
# short side >= this many times the resize target. Chosen from benchmarks/results/decode_fidelity_margins.json
# (margins 1, 2 and 4 measured); the C++ runtime (runtime/cpp/src/image.cpp) uses the same number.
FAST_DECODE_MARGIN = 2

# EXIF orientation -> the transpose that turns the stored pixels upright (as PIL.ImageOps.exif_transpose)
_ORIENTATION_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                          6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def draft_side(pre: Preprocess | None, margin: int | None = None) -> int | None:
    """The short side a ``fast`` decode must keep (None: decode every pixel). ``margin``: measure another
    margin than :data:`FAST_DECODE_MARGIN` (benchmarks/decode_fidelity.py)."""
    if pre is None or pre.decode != "fast":
        return None
    return (margin or FAST_DECODE_MARGIN) * pre.resize_size


def decode_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, what: str = "image", *,
                 pre: Preprocess | None = None, exif_orientation: bool = True, margin: int | None = None):
    """Encoded bytes (JPEG/PNG/WebP/BMP) -> a fully loaded PIL image; refuses bombs and corrupt files.

    ``pre``: its ``decode`` mode ("fast" scales JPEGs down while decoding, see :data:`FAST_DECODE_MARGIN`).
    ``exif_orientation``: turn the image upright by its EXIF orientation tag (the first Exif APP1 segment of
    a JPEG, the eXIf chunk of a PNG), so a phone photo is classified as its owner sees it."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DnxError(f"{what} is empty")
    try:
        # No `with` and no copy: the source is a BytesIO over ``data`` (nothing to close), and after load()
        # the pixels are in memory, so the opened image is returned as it is.
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if max_pixels is not None and w * h > max_pixels:
            raise DnxError(f"{what} is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit")
        if img.format == "PNG":
            _check_png_crcs(data, what)
        side = draft_side(pre, margin)
        # MPO: a phone's JPEG with more pictures after the first (the one decoded); C++ reads it as a JPEG
        if side is not None and img.format in ("JPEG", "MPO"):
            img.draft(None, (side, side))  # mode unchanged: only the DCT scale
        img.load()
        orientation = _orientation(img) if exif_orientation else 1
    except UnidentifiedImageError:
        raise DnxError(f"{what} is not an image Pillow can read (JPEG, PNG, WebP, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DnxError(f"{what} cannot be decoded: "
                       f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if orientation in _ORIENTATION_TRANSPOSE:
        img = img.transpose(getattr(Image.Transpose, _ORIENTATION_TRANSPOSE[orientation]))
    return img


def _orientation(img) -> int:
    """IFD0's Orientation tag of the image's raw EXIF block, 1 when absent or unreadable. Only the EXIF block
    is read (not XMP), the rule the C++ runtime implements too."""
    from PIL import Image

    raw = img.info.get("exif")
    if not raw:
        return 1
    try:
        value = Image.Exif()
        value.load(raw)
        tag = value.get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a malformed EXIF block means "no orientation", never a failed request
        return 1
    return tag if isinstance(tag, int) else 1


def _check_png_crcs(data: bytes, what: str) -> None:
    """Refuse a PNG any of whose chunks (up to IEND) has a wrong CRC. Pillow checks only some chunks; libpng
    (the C++ runtime, told to be strict) checks all, and a corrupt file must fail in both the same way."""
    import struct
    import zlib

    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            return  # truncated: Pillow refuses it while decoding
        if zlib.crc32(data[pos + 4:end]) != struct.unpack(">I", data[end:end + 4])[0]:
            raise DnxError(f"{what} cannot be decoded: corrupt PNG (bad CRC in its {kind.decode('latin-1')!r} chunk)")
        if kind == b"IEND":
            return
        pos = end + 4


def open_any_image(item, max_pixels: int = DEFAULT_MAX_PIXELS, pre: Preprocess | None = None,
                   exif_orientation: bool = True):
    """One image in any form a service receives -> a PIL image (decoded, not yet preprocessed).

    ``item``: a path (str/Path), encoded bytes, a PIL image, or a uint8 (H, W) / (H, W, C) array with 1, 3
    or 4 channels. Encoded images are decoded as ``pre.decode`` says and turned upright by their EXIF
    orientation (unless ``exif_orientation`` is False); PIL images and arrays are taken as they are."""
    from PIL import Image

    if isinstance(item, (bytes, bytearray, memoryview)):
        img = decode_image(bytes(item), max_pixels, pre=pre, exif_orientation=exif_orientation)
    elif isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise DnxError(f"image file {path} does not exist")
        img = decode_image(path.read_bytes(), max_pixels, what=f"image {path}", pre=pre,
                           exif_orientation=exif_orientation)
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
    if img.mode.startswith(("I", "F")) and img.mode not in _SIXTEEN_BIT_GREY:
        raise DnxError(f"image mode {img.mode} (32-bit or float) is not supported; convert it to 8-bit")
    return img


# 16-bit greyscale (a 16-bit grey PNG opens as I;16): scaled to 8 bits as round(v / 257), in integers as
# libpng's png_set_scale_16 computes it (equal for every 16-bit value), the C++ runtime's conversion.
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")


def image_to_input(item, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS,
                   exif_orientation: bool = True) -> np.ndarray:
    """One image in any form :func:`open_any_image` takes -> float32 (C, H, W) network input, through
    :func:`preprocess_image`, the function export verification and ``dnx eval`` use."""
    return preprocess_image(open_any_image(item, max_pixels, pre, exif_orientation), pre, max_pixels)


def resized_size(w: int, h: int, resize_size: int) -> tuple[int, int]:
    """The size a ``w`` x ``h`` image is resized to: its short side ``resize_size``, its aspect ratio kept
    (rounded half to even, the C++ runtime's nearbyint)."""
    scale = resize_size / min(w, h)
    return max(resize_size, round(w * scale)), max(resize_size, round(h * scale))


def crop_box(w: int, h: int, pre: Preprocess) -> tuple[float, float, float, float] | None:
    """``fast``: the region of a ``w`` x ``h`` image that the centre crop keeps, as Pillow's resize box (float
    source pixels), so the resize computes only the ``image_size`` square the network sees. It is the crop's
    integer offsets in the resized image mapped back through the resize's own scale factors (w / W, h / H),
    so Pillow samples the same source centres as resize-then-crop, up to the float32 rounding of the box
    (docs/images.md). None where the crop is not inside the resized image (resize_size < image_size), and
    for nearest-neighbour resizing, which is cheap in full and would pick neighbouring pixels from a box."""
    if pre.interpolation == "nearest":
        return None
    s = pre.image_size
    rw, rh = resized_size(w, h, pre.resize_size)
    left, top = (rw - s) // 2, (rh - s) // 2
    if left < 0 or top < 0:
        return None
    return left * w / rw, top * h / rh, (left + s) * w / rw, (top + s) * h / rh


def preprocess_image(img, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PIL image -> float32 array (C, H, W), converted to the model's channel count. The resized image is
    bounded by ``max_pixels`` too: a 1x20000 strip would become 256x5,120,000 and is refused instead.

    ``pre.decode`` "exact": resize the whole image, then crop. "fast": resize only the region the crop keeps
    (:func:`crop_box`), straight to ``image_size``; at most one grey level away from exact's resize."""
    from PIL import Image

    mode = "L" if pre.in_channels == 1 else "RGB"
    if img.mode in _SIXTEEN_BIT_GREY or img.mode == "I":
        wide = np.asarray(img).astype(np.uint32).clip(0, 65535)
        img = Image.fromarray(((wide * 255 + 32895) >> 16).astype(np.uint8))
    elif img.mode == "CMYK":
        img = img.convert("RGB")  # then to L if the model is grey: the path the C++ runtime takes
    if img.mode != mode:
        img = img.convert(mode)
    w, h = img.size
    if w < 1 or h < 1:
        raise DnxError(f"image is {w}x{h}: it has no pixels")
    s = pre.image_size
    if min(w, h) != pre.resize_size:
        size = resized_size(w, h, pre.resize_size)
        if max_pixels is not None and size[0] * size[1] > max_pixels:  # refused in both modes alike
            raise DnxError(f"image of {w}x{h} would be resized to {size[0]}x{size[1]} = {size[0] * size[1]:,} "
                           f"pixels, over the {max_pixels:,} limit: its aspect ratio is too extreme; crop it first")
        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[pre.interpolation]
        box = crop_box(w, h, pre) if pre.decode == "fast" else None
        img = img.resize((s, s), resample, box=box) if box is not None else img.resize(size, resample)
    if img.size != (s, s):
        w, h = img.size
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    arr = np.asarray(img)  # uint8 (s, s[, C])
    if arr.ndim == 2:
        arr = arr[:, :, None]
    # float32 x / 255, then normalised in place: the arithmetic (and so every bit) of
    # normalize(asarray(img, float32) / 255.0), with one array instead of five
    x = np.empty((arr.shape[2], s, s), np.float32)  # C-contiguous (C, H, W)
    np.divide(arr.transpose(2, 0, 1), np.float32(255.0), out=x, dtype=np.float32)
    return normalize(x, pre, out=x)


def normalize(chw01: np.ndarray, pre: Preprocess, out: np.ndarray | None = None) -> np.ndarray:
    """[0,1] (..., C, H, W) -> normalised float32. ``out=chw01`` (float32) normalises in place."""
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
    x = np.subtract(chw01, mean, out=out)
    x /= std
    return x.astype(np.float32, copy=False)


def bundled_photos() -> list[Path]:
    """Freely licensed photos shipped with dnx (see dnx/assets/LICENSES.md)."""
    folder = Path(__file__).resolve().parent.parent / "assets" / "photos"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def photo_batch(pre: Preprocess, n: int | None = None) -> np.ndarray:
    """The bundled photos preprocessed for a model, stacked (N, C, H, W)."""
    paths = bundled_photos()[:n]
    return np.stack([preprocess_image(load_image(p, pre), pre) for p in paths])


def preprocess_array(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 images (N, H, W[, C]) -> network input (N, C, H, W). Images already at the model's size
    and channel count are only scaled and normalised (vectorised); others go through Pillow."""
    from PIL import Image

    channels = 1 if images.ndim == 3 else images.shape[3]
    if images.shape[1:3] == (pre.image_size, pre.image_size) and channels == pre.in_channels:
        x = images.astype(np.float32) / 255.0
        x = x[:, None] if images.ndim == 3 else x.transpose(0, 3, 1, 2)
        return normalize(x, pre, out=x)  # x is a fresh float32 array
    # Pillow has no (H, W, 1) mode: single-channel images go in as (H, W)
    return np.stack([preprocess_image(Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img), pre)
                     for img in images])
