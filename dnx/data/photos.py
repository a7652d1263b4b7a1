"""Real photos that exist offline, for verification and INT8 calibration of ImageNet-size models.

Sources, in order: the five photos bundled with dnx, scikit-image's sample photos (if installed),
Debian's opencv-doc sample images and mate-backgrounds' nature photos (if installed); files there that
are not photographs of the world (test patterns, renders, logos, text, wallpapers) are left out.
``make_photo_folder`` cuts distinct random crops so a few high-resolution photos give many calibration
samples; :func:`photo_parity_set` is the parity set of models without labelled data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from dnx.data.preprocess import IMAGE_SUFFIXES, bundled_photos, load_image
from dnx.core.errors import DnxError
from dnx.core.fileio import atomic_path

SYSTEM_FOLDERS = (Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/backgrounds/mate"))
# Files in those folders that are not photographs: opencv-doc's test patterns, renders, logos, text and a
# disparity ground truth, its 26 views of one chessboard (a camera-calibration series that would outweigh
# every other subject), and mate-backgrounds' drawn wallpapers and resized copies of one photo. A classifier
# is unsure of them all, so as parity images they only add near-ties.
NOT_PHOTOS = re.compile(
    r"(left|right)\d\d|pic\d|aloeGT|chessboard|digits|sudoku|notes|ml|gradient|cards|detect_blob|opencv-logo.*"
    r"|LinuxLogo|WindowsLogo|imageText[NR]|templ|tmpl|mask|Blender_Suzanne\d|blox|text_defocus|text_motion"
    r"|ellipses|Arc-Colors.*|Flow|Gulp|Silk|Spring|Waves|Float-into-MATE|MATE-Stripes.*|Stripes|Ubuntu-Mate.*"
    r"|GreenTraditional|Elephants_\d+x\d+")
# scikit-image sample images that are photographs (not synthetic test patterns)
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
                  "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "camera.png", "coins.png",
                  "moon.png", "grass.png", "gravel.png", "brick.png", "ihc.png")


def find_photos(min_side: int = 128, photos_only: bool = True) -> list[Path]:
    """Every offline photo found on this machine with both sides >= ``min_side``. ``photos_only=False``: also
    the system folders' images that are not photographs (:data:`NOT_PHOTOS`), a wider and harder set."""
    found = list(bundled_photos())
    try:
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        bundled = {p.stem for p in found}  # dnx bundles five of scikit-image's photos (as JPEG)
        found += [folder / n for n in SKIMAGE_PHOTOS if (folder / n).is_file() and Path(n).stem not in bundled]
    except ImportError:
        pass
    for folder in SYSTEM_FOLDERS:
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*")
                            if p.suffix.lower() in IMAGE_SUFFIXES
                            and not (photos_only and NOT_PHOTOS.fullmatch(p.stem)))
    keep = []
    for p in found:
        try:  # the header only: decoding every photo here took seconds
            with Image.open(p) as img:
                if min(img.size) >= min_side:
                    keep.append(p)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    return keep


def _random_crop(img, rng, size: int):
    w, h = img.size
    # larger photos give crops at several scales, so repeated sources still differ
    side = int(rng.integers(min(size, w, h), min(w, h) + 1))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return img.crop((x, y, x + side, y + side)).resize((size, size))


def random_crops(photos: list[Path], count: int, size: int, seed: int = 0):
    """``count`` RGB ``size``x``size`` crops (PIL images) cut at seeded random places and scales of ``photos``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        with load_image(photos[i % len(photos)]) as img:
            yield _random_crop(img.convert("RGB"), rng, size)


def make_photo_folder(dest: str | Path, count: int, size: int = 256, seed: int = 0) -> list[Path]:
    """Write ``count`` RGB JPEG crops (``size``x``size``) cut at random from the offline photos."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    photos = find_photos(min_side=size)
    if not photos:
        raise DnxError("no offline photos found; pip install scikit-image or apt-get install opencv-doc")
    written = []
    for i, crop in enumerate(random_crops(photos, count, size, seed)):
        path = dest / f"photo_{i:04d}.jpg"
        with atomic_path(path) as tmp:
            crop.save(tmp, format="JPEG", quality=92)
        written.append(path)
    return written


def parity_photos(size: int) -> list[Path]:
    """The photos :func:`photo_parity_set` uses, whole, for a model whose preprocessing reads ``size`` pixels
    (the larger of its resize and crop sizes): every offline photo whose short side is at least that."""
    return find_photos(min_side=size)


def photo_parity_set(size: int, transform: Callable, crops_per_photo: int = 2, seed: int = 0) -> tuple[list, str]:
    """The parity images of a model without labelled data: every offline photo whose short side is at
    least ``size``, whole (``transform``, the model's preprocessing, frames it), each followed by
    ``crops_per_photo`` seeded random crops of it (RGB, ``size`` square). Each photo is decoded once and
    each image handed to ``transform`` at once, so memory holds one photo. Returns (the transformed images,
    a description naming the sources)."""
    photos = parity_photos(size)
    rng = np.random.default_rng(seed)
    out = []
    for p in photos:
        with load_image(p) as img:
            rgb = img.convert("RGB")
        out.append(transform(rgb))
        out += [transform(_random_crop(rgb, rng, size)) for _ in range(crops_per_photo)]
    sources: dict[str, int] = {}
    for p in photos:
        key = ("dnx" if p.parent.name == "photos" and p.parent.parent.name == "assets" else
               "scikit-image" if "skimage" in p.parts else "opencv-doc" if "opencv-doc" in p.parts else
               "mate-backgrounds")
        sources[key] = sources.get(key, 0) + 1
    named = ", ".join(f"{n} {k}" for k, n in sources.items())
    return out, (f"{len(photos)} offline photos ({named}), each whole and as {crops_per_photo} seeded random "
                 f"crops: {len(out)} images")


def reencode_jpeg(path: str | Path, size: tuple[int, int] | None = None, megapixels: float | None = None,
                  quality: int = 90) -> bytes:
    """A photo re-encoded in memory as a camera would write it, for request-path benchmarks and tests:
    ``size=(w, h)`` centre-crops to that aspect ratio and resizes to it; ``megapixels`` keeps the aspect
    ratio and scales to about that many pixels."""
    import io

    from PIL import Image

    with load_image(path) as img:
        rgb = img.convert("RGB")
    if size is not None:
        w, h = size
        scale = min(rgb.width / w, rgb.height / h)
        cw, ch = round(w * scale), round(h * scale)
        left, top = (rgb.width - cw) // 2, (rgb.height - ch) // 2
        rgb = rgb.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)
    elif megapixels is not None:
        scale = (megapixels * 1e6 / (rgb.width * rgb.height)) ** 0.5
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.BICUBIC)
    buf = io.BytesIO()  # in memory: a request body, never a file
    rgb.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
