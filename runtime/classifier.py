"""The API a Python service embeds: ``dnx.load(artifact) -> Classifier``.

A ``Classifier`` owns one activated Runner for one artifact and adds what a service needs on top of
inference: the manifest's preprocessing (exactly ``dnx.data.preprocess``), top-k with labels, input
checks, and per-stage timing histograms.

Thread safety: one ``Classifier`` may be shared by any number of threads; concurrent calls give the
same results as serial ones. Each backend gets there its own way:

- onnxruntime: one ``InferenceSession``, whose ``run`` is documented as safe to call concurrently;
- OpenVINO: one compiled model and a pool of infer requests, one per concurrent caller;
- TensorRT: one execution context behind a lock (calls run one after another on the GPU).

Preprocessing and postprocessing run in the calling thread. To merge concurrent single-image calls
into one inference, put a :class:`dnx.runtime.batching.Batcher` in front.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from dnx.data.preprocess import DEFAULT_MAX_PIXELS, open_any_image, preprocess_image
from dnx.core.errors import DnxError
from dnx.models.registry import DECODE_MODES
from dnx.runtime.artifact import Artifact, UnverifiedArtifact, open_artifact
from dnx.schemas.preprocess import manual_preprocess
from dnx.runtime.selection import BackendChoice, choose_backend, make_runner
from dnx.runtime.runtime_precision import check_precision_request, check_runtime_precision
from dnx.runtime.timings import StageTimings
from dnx.runtime.backends.base import run_in_batches

# Chunk size for a large float batch on a backend without a fixed batch: bounds activation memory.
_CHUNK = 64
# What Pillow raises on an image it cannot convert or load: a closed or lazily opened truncated file
# (OSError, ValueError), a 0x0 image (ZeroDivisionError in the resize), a mode without a conversion
# (LAB, CMYK to grey: ValueError).
_IMAGE_ERRORS = (OSError, ValueError, ZeroDivisionError, SyntaxError, EOFError)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class InvalidInput(DnxError):
    """An input that cannot be classified (undecodable image, wrong shape, NaN, bad top_k)."""


class Prediction(NamedTuple):
    label: str
    index: int
    probability: float


def check_top_k(top_k, classes: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= classes:
        raise InvalidInput(f"top_k must be an integer from 1 to {classes} (the model's classes), got {top_k!r}")


class Classifier:
    """Classifies images with one artifact on one backend. Build it with :func:`load`."""

    def __init__(self, artifact: Artifact, runner, choice: BackendChoice, max_pixels: int = DEFAULT_MAX_PIXELS,
                 warmup: bool = True, exif_orientation: bool = True) -> None:
        self.artifact, self.choice, self.max_pixels = artifact, choice, max_pixels
        self.exif_orientation = exif_orientation
        self.timings = StageTimings()
        self._runner = runner.activate()
        self._output_name: str | None = None
        # the verdict of a precision the runtime applies below the artifact's (BF16), set by load()
        self.precision_verdict: dict[str, Any] | None = None
        self.warmed_up = False
        if warmup:
            self.warm_up()

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._runner.deactivate()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def warm_up(self, batch_sizes=(1,)) -> None:
        """One inference on zeros per batch size, so real requests do not pay for lazy initialisation
        (OpenVINO compiles each batch shape on first use). A fixed-batch artifact warms its own batch."""
        c, h, w = self.input_chw
        fixed = self.artifact.input_shape[0]
        for n in sorted({fixed} if fixed else set(batch_sizes)):
            self._infer(np.zeros((n, c, h, w), np.float32))
        self.timings.reset()
        self.warmed_up = True

    # -- facts -------------------------------------------------------------------------------
    @property
    def input_chw(self) -> tuple[int, int, int]:
        pre = self.artifact.preprocess
        return pre.in_channels, pre.image_size, pre.image_size

    @property
    def labels(self) -> list[str] | None:
        return self.artifact.labels

    def info(self) -> dict[str, Any]:
        return {**self.artifact.summary(), "backend": self.choice.backend, "device": self.choice.device,
                "backend_reason": self.choice.reason, "runner": self._runner.name,
                "max_batch": self.artifact.max_batch, "max_pixels": self.max_pixels,
                "decode": self.artifact.preprocess.decode, "exif_orientation": self.exif_orientation,
                **({"inference_precision": p} if (p := self.inference_precision) else {}),
                **({"precision_verdict": self.precision_verdict} if self.precision_verdict else {}),
                "manifest": self.artifact.manifest.to_dict() if self.artifact.manifest else None}

    @property
    def inference_precision(self) -> str | None:
        """The precision the backend runs the file's float operations in: "fp32" = as the file is written
        (an FP16 or INT8 file's reduced parts stay as written), "bf16"/"tf32" = reduced by the runtime;
        None for a TensorRT engine (its precision was fixed at build)."""
        p = self._runner.inference_precision
        return p or ("fp32" if self.choice.backend in ("onnxruntime", "openvino") else None)

    # -- the three steps, usable one by one (the batcher and the HTTP service do) ---------
    def preprocess(self, images) -> np.ndarray:
        """Images (see :func:`load`) -> float32 (N, C, H, W) network input, checked."""
        if isinstance(images, np.ndarray) and images.dtype == np.float32:
            return self.check_batch(images)
        if isinstance(images, np.ndarray) and images.dtype == np.uint8 and (
                images.ndim == 4 or (images.ndim == 3 and images.shape[2] not in (1, 3, 4))):
            items: Sequence = list(images)  # a stack: (N, H, W, C), or (N, H, W) grey
        elif isinstance(images, (list, tuple)):
            items = images
        else:
            items = [images]
        if not items:
            raise InvalidInput("no images given")
        arrays = [self.preprocess_one(item)[0] for item in items]
        return np.stack(arrays)

    def preprocess_one(self, item) -> tuple[np.ndarray, float, float]:
        """One image -> (float32 (C, H, W) input, decode seconds, preprocess seconds)."""
        start = time.perf_counter()
        try:
            img = open_any_image(item, self.max_pixels, self.artifact.preprocess, self.exif_orientation)
            decoded = time.perf_counter()
            x = preprocess_image(img, self.artifact.preprocess, self.max_pixels)
        except DnxError as exc:
            raise InvalidInput(str(exc)) from None
        except _IMAGE_ERRORS as exc:  # Pillow on a PIL image given as is: closed, truncated, empty, odd mode
            raise InvalidInput(f"cannot preprocess the image: {_one_line(exc)}") from None
        done = time.perf_counter()
        encoded = isinstance(item, (bytes, bytearray, memoryview, str, Path))
        if encoded:  # arrays and PIL images arrive decoded
            self.timings.record("decode", decoded - start)
        self.timings.record("preprocess", done - decoded)
        return x, (decoded - start) if encoded else 0.0, done - decoded

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            raise InvalidInput(f"a preprocessed batch must be a float32 numpy array, got "
                               f"{getattr(batch, 'dtype', type(batch).__name__)}")
        want = self.input_chw
        if batch.ndim != 4 or tuple(batch.shape[1:]) != want or batch.shape[0] < 1:
            raise InvalidInput(f"batch has shape {batch.shape}; the model takes (N, {', '.join(map(str, want))})")
        if not np.isfinite(batch).all():
            raise InvalidInput("batch holds NaN or infinite values")
        return np.ascontiguousarray(batch)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits (N, classes) of a preprocessed float32 (N, C, H, W) batch."""
        return self._infer(self.check_batch(batch))

    def postprocess(self, logits: np.ndarray, top_k: int = 5) -> list[list[Prediction]]:
        start = time.perf_counter()
        check_top_k(top_k, logits.shape[1])
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
        names = self.labels
        out = [[Prediction(names[i] if names and i < len(names) else str(i), int(i), float(p[i])) for i in row]
               for row, p in zip(order, probs)]
        self.timings.record("postprocess", time.perf_counter() - start)
        return out

    def predict(self, images, top_k: int = 5) -> list[list[Prediction]]:
        """Top-k ``(label, index, probability)`` per image, in input order."""
        if self.artifact.num_classes is not None:  # fail before the work, not after
            check_top_k(top_k, self.artifact.num_classes)
        return self.postprocess(self._infer(self.preprocess(images)), top_k)

    # -- inference ---------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        fixed = self.artifact.input_shape[0]
        limit = fixed or self.artifact.max_batch or _CHUNK
        if fixed is None and len(batch) <= limit:
            (name,) = self._runner.input_metadata()
            result = self._runner.infer({name: batch}, check=False)
            out = result[self._output_name] if self._output_name in result else next(iter(result.values()))
        else:
            out = run_in_batches(self._runner, batch, limit, pad=fixed is not None)
        if out.ndim == 4 and out.shape[2:] == (1, 1):
            out = out[:, :, 0, 0]  # a 1x1 conv head's (N, classes, 1, 1) logits, squeezed on purpose
        if out.ndim != 2 or len(out) != len(batch):
            raise DnxError(f"the model's output has shape {out.shape} for a batch of {len(batch)}; dnx runs "
                           "classifiers whose output is logits (N, classes), or (N, classes, 1, 1)")
        self.timings.record("inference", time.perf_counter() - start)
        return out


def load(artifact: str | Path, *, backend: str = "auto", device: str = "auto", threads: int | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None, image_size: int | None = None,
         labels: Sequence[str] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, warmup: bool = True,
         allow_unverified: bool = False, backend_options: dict | None = None, decode: str | None = None,
         exif_orientation: bool = True, precision: str | None = None) -> Classifier:
    """Open ``artifact`` (an ONNX file dnx wrote, any precision, or a ``dnx build`` engine) for classification.

    - ``backend``: ``auto`` (see :mod:`dnx.runtime.selection` for the rule), ``onnxruntime``, ``openvino``
      or ``tensorrt``; ``device``: ``auto``, ``cpu`` or ``cuda``; ``threads``: CPU intra-op threads.
    - ``mean``/``std``/``image_size`` (and optional ``labels``): the preprocessing of a foreign ONNX
      file without a dnx manifest (refused without them); they override a manifest's when given.
    - ``max_pixels``: encoded images larger than this are refused before decoding (bomb guard), and so are
      images whose resized intermediate would be larger (an extreme aspect ratio).
    - ``decode``: ``exact`` or ``fast`` (JPEGs decoded at the DCT scale the model needs); None: the manifest's
      (``fast`` for artifacts made by this dnx, ``exact`` for older ones).
    - ``exif_orientation``: turn encoded photos upright by their EXIF orientation tag (default; False: use
      the pixels as stored). PIL images and arrays are never rotated.
    - ``allow_unverified``: load a dnx artifact whose parity certificate failed, whose content changed
      since it was verified, or that has none (refused by default; ``info()["verified"]`` says which).
    - ``precision``: None or ``fp32`` runs the artifact as written on every backend (an FP32 file in FP32,
      also on CPUs whose OpenVINO would pick BF16); ``bf16`` runs its float operations in BF16 (OpenVINO,
      on CPUs with AVX-512 BF16 or AMX) after a parity check of that run on real data at load
      (``info()["precision_verdict"]``; a failed check is refused unless ``allow_unverified``).

    Inputs to ``predict``/``preprocess``: a path, encoded bytes (JPEG/PNG/WebP/BMP), a PIL image, a
    uint8 (H, W[, C]) array, a list of any of these, a uint8 stack (N, H, W, C), or (N, H, W) grey when the
    last axis is not 1, 3 or 4 (a 3-D array ending in 1, 3 or 4 is one image), or an already
    preprocessed float32 (N, C, H, W) batch.
    """
    given = [v is not None for v in (mean, std, image_size)]
    if any(given) and not all(given):
        raise DnxError("give all of mean, std and image_size (the preprocessing of a foreign ONNX file), or none",
                       param=("mean", "std", "image_size"))
    pre = manual_preprocess(mean, std, image_size) if all(given) else None
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise DnxError(f"threads must be a non-negative integer, got {threads!r}", param="threads")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise DnxError(f"max_pixels must be a positive integer, got {max_pixels!r}", param="max_pixels")
    if decode is not None and decode not in DECODE_MODES:
        raise DnxError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}", param="decode")
    art = open_artifact(artifact, pre, list(labels) if labels is not None else None, allow_unverified)
    if decode is not None:
        art = replace(art, preprocess=replace(art.preprocess, decode=decode))
    if art.labels is not None and art.num_classes is not None and len(art.labels) != art.num_classes:
        raise DnxError(f"{len(art.labels)} labels given for a model with {art.num_classes} classes")
    reduced = check_precision_request(precision, art)
    choice = choose_backend(art, backend, device, reduced)
    runner = make_runner(art, choice, threads,
                         {**({"precision": reduced} if reduced else {}), **(backend_options or {})})
    classifier = Classifier(art, runner, choice, max_pixels=max_pixels, warmup=warmup,
                            exif_orientation=bool(exif_orientation))
    if reduced:
        try:
            verdict = check_runtime_precision(art, classifier._runner, reduced)
        except BaseException:
            classifier.close()
            raise
        classifier.precision_verdict = verdict
        if verdict["verdict"] != "passed" and not allow_unverified:
            classifier.close()
            raise UnverifiedArtifact(f"{art.path} in {reduced} on {classifier._runner.name} is refused: its parity "
                                     f"with the file as written failed ({verdict['summary']}); run it as written "
                                     "(precision fp32), or load it anyway with allow_unverified=True")
    return classifier
