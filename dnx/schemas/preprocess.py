"""Preprocessing a caller gives for a foreign ONNX file (no dnx manifest): checked by the manifest's rules.

:class:`dnx.models.registry.Preprocess` is the one preprocessing spec; a manifest's ``preprocess`` entry
and the numbers a caller passes (``dnx.load(mean=..., std=..., image_size=...)``, the CLI's
``--mean/--std/--image-size``) are read by the same reader, so both obey the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from dnx.core.documents import SchemaError, read_document
from dnx.models.registry import Preprocess

# Larger crops are not image classifiers' inputs; a typo (22400) is refused before allocating for it.
MAX_IMAGE_SIZE = 4096


def default_resize(image_size: int) -> int:
    """torchvision's 256/224 resize ratio; small inputs (28x28, 32x32) are not cropped."""
    return round(image_size * 256 / 224) if image_size >= 64 else image_size


def manual_preprocess(mean: Iterable[float], std: Iterable[float], image_size: int, resize_size: int | None = None,
                      interpolation: str = "bilinear") -> Preprocess:
    """The caller's preprocessing for a foreign ONNX file. A bad value raises :class:`SchemaError` whose
    ``field`` is the parameter's name (``mean``, ``std[1]``, ``image_size``), so a caller can map it onto
    its own names (the CLI onto ``--mean``...)."""
    where = "the preprocessing given"
    values = {}
    for name, given in (("mean", mean), ("std", std)):
        try:
            values[name] = [float(v) for v in given]
        except (TypeError, ValueError):
            raise SchemaError(where, name, f"takes a sequence of numbers, got {given!r}") from None
    if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > MAX_IMAGE_SIZE:
        raise SchemaError(where, "image_size", f"must be <= {MAX_IMAGE_SIZE}, got {image_size}")
    if len(values["mean"]) not in (1, 3):
        raise SchemaError(where, "mean", f"needs 1 or 3 values (one per input channel), got {len(values['mean'])}")
    if resize_size is None:
        resize_size = default_resize(image_size) if isinstance(image_size, int) else image_size
    spec = {**values, "image_size": image_size, "resize_size": resize_size, "in_channels": len(values["mean"]),
            "interpolation": interpolation}
    return read_document(Preprocess, spec, where)
