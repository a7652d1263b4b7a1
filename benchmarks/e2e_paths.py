"""The request paths benchmarks/e2e.py times: one JPEG in, network input (and then logits) out.

Each path is a callable ``bytes -> (float32 (C, H, W) input, {stage: seconds})`` for the preprocessing of an
ImageNet model (resize the short side to 256, centre-crop 224, normalise), so every path feeds the same
artifact and only the decode + preprocess differs:

- ``dnx exact`` / ``dnx fast``: ``Classifier.preprocess_one`` of a ``dnx.load`` classifier in each decode mode;
- ``PIL``: full decode, ``resize`` (bilinear, antialiased), crop, numpy normalise (what dnx's exact mode does);
- ``torchvision.io``: ``decode_jpeg`` (libjpeg-turbo) + ``transforms.v2.functional`` resize/crop/normalise;
- ``DALI CPU``: NVIDIA DALI's CPU pipeline (``device_id=None``): decode, resize, crop + normalise. An optional
  peer (``pip install nvidia-dali-cuda120``, which runs CPU-only): absent, its row says why.
"""

from __future__ import annotations

import io
import time
from typing import Callable

import numpy as np

Path_ = Callable[[bytes], tuple[np.ndarray, dict[str, float]]]


def dnx_path(clf) -> Path_:
    def run(data: bytes):
        x, decode_s, pre_s = clf.preprocess_one(data)
        return x, {"decode": decode_s, "preprocess": pre_s}

    return run


def pil_path(pre) -> Path_:
    from PIL import Image

    mean = np.asarray(pre.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(-1, 1, 1)

    def run(data: bytes):
        t0 = time.perf_counter()
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("L" if pre.in_channels == 1 else "RGB")
        t1 = time.perf_counter()
        w, h = rgb.size
        s = pre.resize_size / min(w, h)
        rgb = rgb.resize((max(pre.resize_size, round(w * s)), max(pre.resize_size, round(h * s))), Image.BILINEAR)
        left, top = (rgb.width - pre.image_size) // 2, (rgb.height - pre.image_size) // 2
        arr = np.asarray(rgb.crop((left, top, left + pre.image_size, top + pre.image_size)), np.float32) / 255.0
        x = ((arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)) - mean) / std
        return x, {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}

    return run


def torchvision_path(pre, threads: int) -> Path_:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    if threads:
        torch.set_num_threads(threads)
    mode = ImageReadMode.GRAY if pre.in_channels == 1 else ImageReadMode.RGB

    def run(data: bytes):
        t0 = time.perf_counter()
        img = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
        t1 = time.perf_counter()
        img = F.center_crop(F.resize(img, [pre.resize_size], antialias=True), [pre.image_size])
        x = F.normalize(img.float() / 255.0, list(pre.mean), list(pre.std)).numpy()
        return x, {"decode": t1 - t0, "preprocess": time.perf_counter() - t1}

    return run


def dali_path(pre, threads: int) -> tuple[Path_ | None, str]:
    """DALI's CPU pipeline, or (None, why not)."""
    try:
        from nvidia.dali import fn, pipeline_def, types
    except ImportError:
        return None, "nvidia-dali not installed (optional peer: pip install nvidia-dali-cuda120)"

    @pipeline_def(batch_size=1, num_threads=max(1, threads), device_id=None, prefetch_queue_depth=1)
    def pipe():
        jpegs = fn.external_source(name="jpegs", dtype=types.UINT8)
        images = fn.decoders.image(jpegs, device="cpu", output_type=types.GRAY if pre.in_channels == 1 else types.RGB)
        images = fn.resize(images, resize_shorter=pre.resize_size, antialias=True)
        return fn.crop_mirror_normalize(images, crop=(pre.image_size, pre.image_size), dtype=types.FLOAT,
                                        output_layout="CHW", mean=[m * 255 for m in pre.mean],
                                        std=[s * 255 for s in pre.std])

    try:
        p = pipe()
        p.build()
    except Exception as exc:  # noqa: BLE001 - any failure to build is reported as the row's reason
        return None, f"DALI pipeline could not be built: {str(exc).splitlines()[0][:200]}"

    def run(data: bytes):
        t0 = time.perf_counter()
        p.feed_input("jpegs", [np.frombuffer(data, np.uint8)])
        (out,) = p.run()
        x = np.array(out.as_tensor())[0]
        return x, {"decode+preprocess": time.perf_counter() - t0}

    return run, ""
