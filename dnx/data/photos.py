"""Real photos that exist offline, for verification and INT8 calibration of ImageNet-size models.

Sources, in order: the five photos bundled with dnx, scikit-image's sample photos (if installed),
Debian's opencv-doc sample images and mate-backgrounds (if installed). ``make_photo_folder`` cuts
distinct random crops so a few high-resolution photos give many calibration samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dnx.data.preprocess import IMAGE_SUFFIXES, bundled_photos, load_image
from dnx.errors import DnxError
from dnx.fileio import atomic_path

SYSTEM_FOLDERS = (Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/backgrounds/mate"))
# scikit-image sample images that are photographs (not synthetic test patterns)
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg",
                  "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "camera.png", "coins.png",
                  "moon.png", "grass.png", "gravel.png", "brick.png", "ihc.png")


def find_photos(min_side: int = 128) -> list[Path]:
    """Every offline photo found on this machine with both sides >= ``min_side``."""
    found = list(bundled_photos())
    try:
        import skimage.data

        folder = Path(skimage.data.__file__).parent
        found += [folder / n for n in SKIMAGE_PHOTOS if (folder / n).is_file()]
    except ImportError:
        pass
    for folder in SYSTEM_FOLDERS:
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    keep = []
    for p in found:
        try:
            with load_image(p) as img:
                if min(img.size) >= min_side:
                    keep.append(p)
        except DnxError:
            continue
    return keep


def random_crops(photos: list[Path], count: int, size: int, seed: int = 0):
    """``count`` RGB ``size``x``size`` crops (PIL images) cut at seeded random places and scales of ``photos``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        with load_image(photos[i % len(photos)]) as img:
            img = img.convert("RGB")
            w, h = img.size
            # larger photos give crops at several scales, so repeated sources still differ
            side = int(rng.integers(min(size, w, h), min(w, h) + 1))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            yield img.crop((x, y, x + side, y + side)).resize((size, size))


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
