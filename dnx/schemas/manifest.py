"""Artifact manifests: provenance every later stage reads instead of guessing.

An ONNX file carries its manifest as JSON in ``metadata_props["dnx.manifest"]`` and in a sidecar
``PATH.json``, which also records the file's own sha256. Calibration, conversion, engine building
and the runtimes read preprocessing and labels from here.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.models.registry import ModelConfig, Preprocess
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import load_onnx
from dnx.core.version import __version__

SCHEMA = "dnx.manifest/1"
METADATA_KEY = "dnx.manifest"


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def base_manifest(with_torch: bool = True) -> dict[str, Any]:
    """Versions of what made a file. ``with_torch=False`` for files made without torch (calibrated
    and FP16 graphs): importing torch only to read its version would cost seconds, and a derived
    file keeps its source's ``torch_version`` (the exporter's) through the merged source manifest."""
    import onnx

    base = {"schema": SCHEMA, "dnx_version": __version__, "onnx_version": onnx.__version__,
            "python": platform.python_version()}
    if with_torch:
        import torch

        base["torch_version"] = torch.__version__
    return base


def model_manifest(config: ModelConfig, weights: str, weights_path: str | None, input_name: str,
                   output_name: str, batch: int | None, opset: int, forward_form: str) -> dict[str, Any]:
    n = "N" if batch is None else batch
    pre = config.preprocess
    return {
        **base_manifest(),
        "artifact": "onnx",
        "precision": "fp32",
        "model": config.to_dict(),
        "weights": {"id": weights, "path": weights_path},
        "input": {"name": input_name, "shape": [n, config.in_channels, config.image_size, config.image_size],
                  "dtype": "float32", "layout": "NCHW"},
        "output": {"name": output_name, "shape": [n, config.num_classes], "dtype": "float32"},
        "preprocess": pre.to_dict(),
        "labels": {"source": config.labels, "names": config.label_names},
        "opset": opset,
        "forward_form": forward_form,
    }


def embed(model_proto, manifest: dict[str, Any]) -> None:
    """Store ``manifest`` in the ONNX model's metadata_props (replacing an older one)."""
    props = [p for p in model_proto.metadata_props if p.key != METADATA_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(props)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(manifest, sort_keys=True)


def read_manifest(path: str | Path, required: bool = True) -> dict[str, Any] | None:
    """The manifest of an ONNX file: from its metadata_props, else from its sidecar."""

    return manifest_of(load_onnx(path, load_external_data=False), path, required)


def parse_manifest(text: str | bytes, where: str) -> dict[str, Any]:
    """A manifest from JSON text, or a one-line DnxError saying ``where`` it is broken."""
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DnxError(f"{where} is not valid JSON ({str(exc).splitlines()[0][:120]}); re-export the model "
                       "with `dnx export`") from None
    if not isinstance(manifest, dict):
        raise DnxError(f"{where} is not a dnx manifest (a JSON {type(manifest).__name__}, not an object); "
                       "re-export the model with `dnx export`")
    return manifest


def manifest_of(proto, path: str | Path, required: bool = True, hint: str = "") -> dict[str, Any] | None:
    """The manifest of ``proto``, loaded from ``path``: from its metadata_props, else from the sidecar.
    ``hint``: what else the user can do when it has none and one is ``required``."""
    path = Path(path)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return parse_manifest(p.value, f"the dnx manifest embedded in {path}")
    side = sidecar_path(path)
    if side.is_file():
        try:
            text = side.read_bytes()
        except OSError as exc:
            raise DnxError(f"cannot read {side}: {exc.strerror}") from None
        return parse_manifest(text, f"{side}")
    if required:
        raise DnxError(f"{path} has no dnx manifest (not exported by `dnx export`, or its {side.name} sidecar is "
                       f"missing); {hint or 're-export it with `dnx export`'}")
    return None


def preprocess_from_manifest(manifest: dict[str, Any], where: str = "the dnx manifest",
                             input_shape=None) -> Preprocess:
    """The one validating reader of a manifest's ``preprocess`` entry, with the rules of the C++ runtime's
    manifest parser (``runtime/cpp/src/manifest.cpp``): in_channels 1 or 3; image_size and resize_size
    positive; one mean and one std per channel; std finite and > 0; interpolation bilinear, bicubic or
    nearest; and, given the graph's NCHW ``input_shape``, channels and image_size that match it. Also:
    mean finite and within [0, 1] (pixels are scaled to [0, 1] before normalising, so a mean outside is a
    manifest written for 0-255 pixels). Anything else is one DnxError line naming the field."""
    def bad(what: str) -> DnxError:
        return DnxError(f"{where}: {what}; re-export the model with `dnx export`")

    entry = manifest.get("preprocess") if isinstance(manifest, dict) else None
    if not isinstance(entry, dict):
        raise bad("the preprocess entry is missing or not an object")
    try:
        pre = Preprocess.from_dict(entry)
    except KeyError as exc:
        raise bad(f"the preprocess entry has no {exc.args[0]!r} field") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise bad(f"a preprocess field has the wrong type ({str(exc).splitlines()[0][:100]})") from None
    if pre.in_channels not in (1, 3):
        raise bad(f"preprocess in_channels must be 1 or 3, got {pre.in_channels}")
    if pre.image_size < 1 or pre.resize_size < 1:
        raise bad(f"preprocess image_size and resize_size must be positive, got {pre.image_size} and {pre.resize_size}")
    if len(pre.mean) != pre.in_channels or len(pre.std) != pre.in_channels:
        raise bad(f"preprocess mean and std need one value per input channel ({pre.in_channels}), got "
                  f"{len(pre.mean)} and {len(pre.std)}")
    if not all(0 < v < math.inf for v in pre.std):
        raise bad(f"preprocess std values must be positive and finite, got {list(pre.std)}")
    if not all(0 <= v <= 1 for v in pre.mean):
        raise bad(f"preprocess mean values must be within [0, 1] (pixels are scaled to [0, 1] first), "
                  f"got {list(pre.mean)}")
    if pre.interpolation not in ("bilinear", "bicubic", "nearest"):
        raise bad(f"unknown preprocess interpolation {pre.interpolation!r} (expected bilinear, bicubic or nearest)")
    if input_shape is not None and len(input_shape) == 4:
        _, c, h, w = input_shape
        if (c is not None and c != pre.in_channels) or any(d is not None and d != pre.image_size for d in (h, w)):
            shown = "(" + ", ".join("N" if d is None else str(d) for d in input_shape) + ")"
            raise bad(f"the graph's input {shown} does not match the "
                      f"preprocess entry ({pre.in_channels} channels, {pre.image_size}x{pre.image_size})")
    return pre


def write_sidecar(path: str | Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(sidecar_path(path), {**manifest, "sha256": sha256_file(path)})
