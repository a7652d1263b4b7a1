"""The parity check every derived ONNX file (FP16, INT8 of any placement) gets before it is trusted.

Data: real and in-distribution. dnx's Fashion-MNIST models are checked on the shipped test split
(with its labels); other models on every offline photo found here (:func:`dnx.data.photos.photo_parity_set`:
the 5 bundled with dnx, scikit-image's, Debian opencv-doc's and mate-backgrounds' where installed), each
whole and as seeded random crops; the certificate records which and how many (its fingerprint is the same
on machines with the same photo packages). Random tensors are a numeric check for FP32 only (``dnx export``
and ``dnx bench`` keep them) and never decide a reduced precision (FP16, BF16, INT8).

Verdicts (thresholds in :data:`dnx.core.compare.DEFAULT_TOLERANCES`): top-1 agreement with the FP32 graph on
the images where FP32 is sure (top-1 minus top-2 probability >= :data:`dnx.core.compare.DECISIVE_MARGIN`),
counted as flips, where ``n`` sure images at threshold ``t`` allow ``floor(n * (1 - t))`` flips (64 at
99%: none); flips on near-ties are reported apart. A random-initialised model's top-1 is decided by
noise-level margins, so for it the verdict is the smallest per-image cosine (INT8 >= 0.99, FP16/BF16 >=
0.999) and flips are reported, not judged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dnx.core.compare import DEFAULT_TOLERANCES, Comparison, Tolerance, compare_logits
from dnx.core.hashing import sha256_file
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.data.photos import make_photo_folder, photo_parity_set
from dnx.data.preprocess import preprocess_array, preprocess_image
from dnx.models import ASSETS
from dnx.runtime.backends.base import run_in_batches
from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner
from dnx.schemas.certificate import data_fingerprint, make_certificate
from dnx.schemas.manifest import ArtifactManifest

FMNIST_TEST_IMAGES = 1000
PHOTO_CROPS = 64  # default calibration images cut from the offline photos (another seed than the parity set)
PARITY_CROPS_PER_PHOTO = 2  # with the whole photo: ~180 parity images where opencv-doc and mate are installed


@dataclass
class ParitySet:
    name: str
    images: np.ndarray  # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None
    source: str


def labels_source(manifest: ArtifactManifest | None) -> str | None:
    return manifest.labels.source if manifest and manifest.labels else None


def reference_set(pre, labels: str | None) -> ParitySet:
    """The real images a model (whose labels come from ``labels``, e.g. "fashion-mnist") is judged on."""

    if labels == "fashion-mnist" and pre.in_channels == 1:

        data = shipped_fashion_mnist_test()
        n = FMNIST_TEST_IMAGES
        return ParitySet(f"fashion-mnist test {n}", preprocess_array(data.images[:n], pre), data.labels[:n],
                         f"dnx's shipped Fashion-MNIST test split, first {n}")

    photos, source = photo_parity_set(max(pre.resize_size, pre.image_size), lambda img: preprocess_image(img, pre),
                                      PARITY_CROPS_PER_PHOTO, seed=0)
    images = np.stack(photos)
    return ParitySet(f"photos {len(images)}", images, None, source)


def default_calibration_data(labels: str | None, workdir: Path) -> Path:
    """Calibration images when none are given, in distribution and apart from :func:`reference_set`:
    the shipped Fashion-MNIST *training* subset, or 64 crops of the offline photos cut with another seed."""
    if labels == "fashion-mnist":

        return ASSETS / "fashion_mnist_calib512.npz"

    folder = Path(workdir) / "calibration-photos"
    if not (folder.is_dir() and len(list(folder.glob("*.jpg"))) >= PHOTO_CROPS):
        make_photo_folder(folder, PHOTO_CROPS, seed=1)
    return folder


def weights_id(manifest: ArtifactManifest | None) -> str | None:
    return manifest.weights.id if manifest and manifest.weights else None


def is_random_init(weights: str | None) -> bool:
    return str(weights or "").startswith("random-init")


# Random-init models: judged by the smallest per-image cosine instead of top-1 (see the module docstring).
RANDOM_INIT_TOLERANCES = {"fp16": Tolerance(min_cosine=0.999), "bf16": Tolerance(min_cosine=0.999),
                          "int8": Tolerance(min_cosine=0.99), "best": Tolerance(min_cosine=0.99)}


def tolerance_for(precision: str, weights: str | None) -> Tolerance:
    """The tolerance for ``precision`` of a model whose weights are ``weights`` (a manifest's weights id)."""
    if precision in RANDOM_INIT_TOLERANCES and is_random_init(weights):
        return RANDOM_INIT_TOLERANCES[precision]
    return DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])


def check_derived(reference: str | Path, candidate: str | Path, precision: str, manifest: ArtifactManifest | None,
                  pre) -> tuple[Comparison, ParitySet]:
    """``candidate`` vs its FP32 ``reference`` ONNX in onnxruntime CPU on :func:`reference_set`."""

    data = reference_set(pre, labels_source(manifest))
    outs = []
    for path in (reference, candidate):
        with OnnxRuntimeRunner(path) as runner:
            outs.append(run_in_batches(runner, data.images, 32))
    comparison = tolerance_for(precision, weights_id(manifest)).apply(compare_logits(outs[0], outs[1], data.labels))
    return comparison, data


def certify_derived(proto, reference: str | Path, candidate: str | Path, precision: str,
                    manifest: ArtifactManifest | None,
                    pre) -> tuple[dict, Comparison]:
    """Check ``candidate`` (already written, graph = ``proto``) against its FP32 ``reference`` and return
    the certificate to put in its manifest, and the comparison."""
    import onnxruntime

    comparison, data = check_derived(reference, candidate, precision, manifest, pre)
    tolerance = tolerance_for(precision, weights_id(manifest))
    cert = make_certificate(
        proto=proto, preprocess=pre, reference={"what": "the FP32 ONNX it was derived from", "path": str(reference),
                                "sha256": sha256_file(reference)},
        data={"what": data.source, "images": len(data.images), "labelled": data.labels is not None,
              "fingerprint": data_fingerprint(data.images, data.labels), "decode": pre.decode},
        cases={data.name: comparison.to_dict()}, thresholds=asdict(tolerance), passed=bool(comparison),
        backend=f"onnxruntime {onnxruntime.__version__} CPU")
    cert["summary"] = summary(comparison)
    return cert, comparison


def summary(c: Comparison) -> str:
    """One line: flips out of the set (those where FP32 is sure, and near-ties), cosine, and the criterion."""
    flips = f"{c.top1_flips}/{c.samples} top-1 flips"
    if c.decisive_flips is not None:
        flips += (f" ({c.decisive_flips} of the {c.decisive_samples} images FP32 is sure of, "
                  f"{c.near_tie_flips} near-ties)")
    return f"{flips}, min cosine {c.min_cosine:.4f}: {c.criterion}"
