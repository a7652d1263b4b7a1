"""Artifact manifests: provenance every later stage reads instead of guessing.

An ONNX file carries its manifest as JSON in ``metadata_props["dnx.manifest"]`` and in a sidecar
``PATH.json``, which also records the file's own sha256. Calibration, conversion, engine building
and the runtimes read preprocessing and labels from here.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from dnx.errors import DnxError
from dnx.models.registry import ModelConfig, Preprocess

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

    from dnx import __version__

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
    from dnx.export.graph import load_onnx

    return manifest_of(load_onnx(path, load_external_data=False), path, required)


def manifest_of(proto, path: str | Path, required: bool = True) -> dict[str, Any] | None:
    """The manifest of ``proto``, loaded from ``path``: from its metadata_props, else from the sidecar."""
    path = Path(path)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return json.loads(p.value)
    side = sidecar_path(path)
    if side.is_file():
        return json.loads(side.read_text())
    if required:
        raise DnxError(f"{path} has no dnx manifest (not exported by dnx); pass --mean/--std/--image-size "
                       "or re-export it with `dnx export`")
    return None


def preprocess_from_manifest(manifest: dict[str, Any]) -> Preprocess:
    return Preprocess.from_dict(manifest["preprocess"])


def write_sidecar(path: str | Path, manifest: dict[str, Any]) -> None:
    from dnx.fileio import write_json_atomic
    from dnx.models.weights import sha256_file

    write_json_atomic(sidecar_path(path), {**manifest, "sha256": sha256_file(path)})
