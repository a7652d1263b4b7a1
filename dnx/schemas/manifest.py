"""Artifact manifests: provenance every later stage reads instead of guessing.

An ONNX file carries its manifest as JSON in ``metadata_props["dnx.manifest"]`` and in a sidecar
``PATH.json``, which also records the file's own sha256. Calibration, conversion, engine building
and the runtimes read preprocessing and labels from here, through the one reader: :func:`manifest_of`
(:class:`ArtifactManifest`, schema ``dnx/schemas/json/manifest.schema.json``). Writers check what they
write with the same reader, so every file dnx writes reads back.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dnx.core.documents import FieldProblem, doc_field, parse_json, read_document, to_json
from dnx.core.errors import DnxError
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import load_onnx
from dnx.core.version import __version__
from dnx.models.registry import ModelConfig, Preprocess
from dnx.schemas.budget_report import BudgetReport
from dnx.schemas.certificate import METADATA_KEY, Certificate

SCHEMA = "dnx.manifest/1"
HINT = "re-export the model with `dnx export`"
SHA256 = "^[0-9a-f]{64}$"
Precision = Literal["fp32", "fp16", "int8", "best"]

__all__ = ["METADATA_KEY", "SCHEMA", "ArtifactManifest", "manifest_of", "read_manifest", "parse_manifest"]


@dataclass(frozen=True)
class InputSpec:
    """The graph's one input: NCHW float32 images."""

    name: str
    shape: tuple[int | Literal["N"], ...] = doc_field(
        minItems=4, maxItems=4, items={"minimum": 1}, description='N, C, H, W; "N" marks a dynamic batch.')
    dtype: Literal["float32"] | None = None
    layout: Literal["NCHW"] | None = None


@dataclass(frozen=True)
class OutputSpec:
    """The graph's one output: logits (N, classes)."""

    name: str
    shape: tuple[int | Literal["N"], ...] | None = doc_field(None, minItems=1, items={"minimum": 1})
    dtype: Literal["float32"] | None = None


@dataclass(frozen=True)
class Labels:
    source: str | None = doc_field(None, write_null=True, description="The label set (imagenet-1k, fashion-mnist...).")
    names: tuple[str, ...] | None = doc_field(None, write_null=True, description="Class names, index order.")


@dataclass(frozen=True)
class Weights:
    id: str = doc_field(description="sha256 of the weights file, or 'random-init:seed=N'.")
    path: str | None = doc_field(None, write_null=True)


@dataclass(frozen=True)
class SourceFile:
    """The file this one was derived from (calibration, FP16 conversion)."""

    path: str
    sha256: str = doc_field(pattern=SHA256)


@dataclass(frozen=True)
class Calibration:
    """How an INT8 graph was calibrated; the budget search's report under ``budget``."""

    target: Literal["tensorrt", "onnxruntime", "openvino"] | None = None
    method: str | None = None
    samples: int | None = doc_field(None, minimum=1)
    budget: BudgetReport | None = None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True)
class ArtifactManifest:
    """The dnx manifest of an ONNX file (schema dnx.manifest/1). Keys a newer dnx adds are kept."""

    schema: Literal["dnx.manifest/1"]
    precision: Precision
    artifact: Literal["onnx", "onnx-fp16", "onnx-qdq"] | None = None
    input: InputSpec | None = None
    output: OutputSpec | None = None
    preprocess: Preprocess | None = None
    labels: Labels | None = None
    certificate: Certificate | None = None
    calibration: Calibration | None = None
    source: SourceFile | None = None
    model: dict[str, Any] | None = doc_field(None, description="The registry's model config (dnx.models.registry).")
    weights: Weights | None = None
    opset: int | None = doc_field(None, minimum=1)
    forward_form: str | None = None
    dnx_version: str | None = None
    onnx_version: str | None = None
    torch_version: str | None = None
    python: str | None = None
    sha256: str | None = doc_field(None, pattern=SHA256, description="The file's own sha256 (sidecars only).")
    extra: dict[str, Any] = doc_field({})

    def check(self) -> None:
        if self.input is not None and self.preprocess is not None:
            _, c, h, w = self.input.shape
            pre = self.preprocess
            if c not in ("N", pre.in_channels) or any(d not in ("N", pre.image_size) for d in (h, w)):
                raise FieldProblem("input.shape", f"{_shape_text(self.input.shape)} does not match the preprocess "
                                                  f"entry ({pre.in_channels} channels, "
                                                  f"{pre.image_size}x{pre.image_size})")

    @classmethod
    def from_dict(cls, data: Any, where: str = "the dnx manifest", hint: str = HINT,
                  path: str = "") -> ArtifactManifest:
        return read_document(cls, data, where, hint, path)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @property
    def label_names(self) -> list[str] | None:
        names = self.labels.names if self.labels else None
        return [str(n) for n in names] if names else None

    @property
    def calibration_target(self) -> str | None:
        return self.calibration.target if self.calibration else None


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


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


def _as_dict(manifest: ArtifactManifest | dict[str, Any]) -> dict[str, Any]:
    """The JSON of ``manifest``, checked by the reader: a writer never writes a file dnx cannot read."""
    if isinstance(manifest, ArtifactManifest):
        return manifest.to_dict()
    # judged as it will be written: JSON's types (a tuple is an array)
    ArtifactManifest.from_dict(json.loads(json.dumps(manifest)), "the manifest being written", "this is a bug in dnx")
    return manifest


def embed(model_proto, manifest: ArtifactManifest | dict[str, Any]) -> None:
    """Store ``manifest`` in the ONNX model's metadata_props (replacing an older one)."""
    text = json.dumps(_as_dict(manifest), sort_keys=True)
    props = [p for p in model_proto.metadata_props if p.key != METADATA_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(props)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text


def write_sidecar(path: str | Path, manifest: ArtifactManifest | dict[str, Any]) -> None:
    write_json_atomic(sidecar_path(path), {**_as_dict(manifest), "sha256": sha256_file(path)})


def read_manifest(path: str | Path, required: bool = True) -> ArtifactManifest | None:
    """The manifest of an ONNX file: from its metadata_props, else from its sidecar."""

    return manifest_of(load_onnx(path, load_external_data=False), path, required)


def parse_manifest(text: str | bytes, where: str) -> ArtifactManifest:
    """A manifest from JSON text, or a one-line DnxError saying ``where`` and which field is broken."""
    data = parse_json(text, where, HINT)
    if not isinstance(data, dict):
        raise DnxError(f"{where} is not a dnx manifest (a JSON {type(data).__name__}, not an object); {HINT}")
    return ArtifactManifest.from_dict(data, where)


def manifest_of(proto, path: str | Path, required: bool = True, hint: str = "") -> ArtifactManifest | None:
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


def sidecar_sha256(path: str | Path) -> str | None:
    """The sha256 the sidecar of ``path`` records, or None (no sidecar, or one that does not parse)."""
    try:
        return ArtifactManifest.from_dict(json.loads(sidecar_path(path).read_text())).sha256
    except (OSError, ValueError, DnxError):
        return None


def preprocess_from_manifest(manifest: ArtifactManifest | None, where: str = "the dnx manifest") -> Preprocess:
    """The preprocessing ``manifest`` declares (validated by the reader), or a DnxError when it has none."""
    if manifest is None or manifest.preprocess is None:
        raise DnxError(f"{where} has no preprocess entry; {HINT}")
    return manifest.preprocess
