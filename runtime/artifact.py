"""What a service needs to know about an artifact before running it, read from the artifact alone.

An ONNX file dnx wrote carries its manifest (``metadata_props["dnx.manifest"]`` or the ``PATH.json``
sidecar); a ``dnx build`` engine has its ``ENGINE.json`` sidecar, which embeds the source ONNX's
manifest. Either supplies input name/shape/layout, preprocessing, labels and precision. A foreign
ONNX file has no manifest: it loads only when the caller gives the preprocessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import has_qdq, load_onnx
from dnx.schemas.certificate import check_certificate, check_preprocess_certified
from dnx.schemas.engine_manifest import read_engine_manifest
from dnx.schemas.manifest import manifest_of, preprocess_from_manifest, sidecar_path

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class Artifact:
    path: Path
    kind: str  # "onnx" or "engine"
    sha256: str
    precision: str  # fp32, fp16, int8, best
    preprocess: Preprocess
    labels: list[str] | None
    input_name: str
    input_shape: tuple[int | None, ...]  # None marks a dynamic dimension
    num_classes: int | None
    calibration_target: str | None  # for INT8: the placement (tensorrt, onnxruntime, openvino)
    manifest: dict[str, Any] | None = field(default=None, compare=False)
    # None: the parity certificate holds; else why the artifact is unverified (loaded only on opt-in)
    unverified: str | None = None

    @property
    def max_batch(self) -> int | None:
        """Largest batch one inference may carry: fixed by the graph or the engine's profile; None: any."""
        if self.kind == "engine":
            return int(self.manifest["batch_profile"]["max_batch"])
        return self.input_shape[0]

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "sha256": self.sha256, "precision": self.precision,
                "calibration_target": self.calibration_target,
                "input": {"name": self.input_name, "shape": ["N" if d is None else d for d in self.input_shape],
                          "dtype": "float32", "layout": "NCHW"},
                "num_classes": self.num_classes, "preprocess": self.preprocess.to_dict(), "labels": self.labels,
                "dnx_artifact": self.manifest is not None, "verified": self.unverified is None,
                **({"unverified_reason": self.unverified} if self.unverified else {}),
                "certificate": self.certificate}

    @property
    def certificate(self) -> dict | None:
        if self.manifest is None:
            return None
        if self.kind == "engine":
            return ((self.manifest.get("source_onnx") or {}).get("manifest") or {}).get("certificate")
        return self.manifest.get("certificate")


# Larger inputs than any classifier dnx serves; beyond this a typo (224 -> 22400) would allocate gigabytes.
MAX_IMAGE_SIZE = 4096


def manual_preprocess(mean, std, image_size: int, resize_size: int | None = None,
                      interpolation: str = "bilinear") -> Preprocess:
    """Preprocessing a caller gives for a foreign ONNX file (torchvision's 256/224 resize ratio by default).
    Its errors name the parameter (``DnxError.params``), so the CLI can name its flag instead."""
    try:
        m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        size = int(image_size)
    except (TypeError, ValueError) as exc:
        raise DnxError("mean and std take sequences of numbers and image_size an integer, e.g. "
                       "mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), image_size=224",
                       param=("mean", "std", "image_size")) from exc
    if len(m) != len(s) or len(m) not in (1, 3):
        raise DnxError(f"mean and std need 1 or 3 values each, the same count; got {len(m)} and {len(s)}",
                       param=("mean", "std"))
    if not all(0 < v < math.inf for v in s):
        raise DnxError(f"std values must be positive and finite, got {s}", param="std")
    if not all(math.isfinite(v) for v in m):
        raise DnxError(f"mean values must be finite, got {m}", param="mean")
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise DnxError(f"image_size must be from 1 to {MAX_IMAGE_SIZE}, got {size}", param="image_size")
    resize = resize_size or (round(size * 256 / 224) if size >= 64 else size)
    return Preprocess(size, resize, m, s, len(m), interpolation)


def _onnx_io(proto) -> tuple[str, tuple[int | None, ...], int | None]:
    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise DnxError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); dnx runs "
                       "image classifiers with exactly one NCHW input")
    dims = tuple(d.dim_value if d.HasField("dim_value") else None
                 for d in inputs[0].type.tensor_type.shape.dim)
    if len(dims) != 4:
        raise DnxError(f"input {inputs[0].name} has {len(dims)} dimensions; dnx runs NCHW image classifiers")
    return inputs[0].name, dims, _logits_classes(graph)


def _logits_classes(graph) -> int | None:
    """The class count of the one logits output, (N, classes) or (N, classes, 1, 1) (squeezed at run
    time, as a 1x1 conv head gives); any other output is refused here with the reason."""
    if len(graph.output) != 1:
        raise DnxError(f"the model has {len(graph.output)} outputs ({', '.join(o.name for o in graph.output)}); "
                       "dnx runs classifiers with one logits output of shape (N, classes)")
    out = graph.output[0]
    if not out.type.tensor_type.HasField("shape"):
        return None  # rank unknown: checked on the warm-up inference
    dims = [d.dim_value if d.HasField("dim_value") else None for d in out.type.tensor_type.shape.dim]
    shown = "(" + ", ".join("N" if d is None else str(d) for d in dims) + ")"
    if not (len(dims) == 2 or (len(dims) == 4 and dims[2:] == [1, 1])):
        raise DnxError(f"output {out.name} has shape {shown}; dnx runs classifiers whose output is logits "
                       "(N, classes), or (N, classes, 1, 1)")
    return dims[1]


class UnverifiedArtifact(DnxError):
    """A dnx artifact whose parity certificate failed, no longer matches it, or is missing."""


def open_artifact(path: str | Path, preprocess: Preprocess | None = None, labels: list[str] | None = None,
                  allow_unverified: bool = False) -> Artifact:
    """Read an artifact's manifest (or take the caller's preprocessing for a foreign ONNX file) and check
    its parity certificate: an unverified dnx artifact is refused unless ``allow_unverified``. A foreign
    ONNX file is not a dnx artifact: it has no certificate to check, loads, and is marked unverified."""

    path = Path(path)
    if not path.exists():
        raise DnxError(f"artifact {path} does not exist")
    if not path.is_file():
        raise DnxError(f"artifact {path} is not a file")
    suffix = path.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return _checked(_open_engine(path, sha256_file(path), preprocess, labels), allow_unverified)
    if suffix != ".onnx":
        raise DnxError(f"{path}: cannot tell what it is; expected an .onnx file or an .engine/.plan file")

    proto = load_onnx(path, load_external_data=False)
    try:
        manifest = manifest_of(proto, path, required=False)
    except ValueError:
        raise DnxError(f"{path} has a corrupt dnx manifest (not valid JSON); re-export it with `dnx export`") from None
    name, shape, classes = _onnx_io(proto)
    sha = sha256_file(path)
    if manifest is None:
        if preprocess is None:
            raise DnxError(f"{path} has no dnx manifest (not exported by dnx); pass its preprocessing "
                           "(mean, std, image_size; `--mean/--std/--image-size` on the command line)")
        _check_input(path, shape, preprocess)
        return Artifact(path, "onnx", sha, "fp32" if not has_qdq(proto) else "int8", preprocess, labels,
                        name, shape, classes, None, None, "not a dnx artifact (foreign ONNX, caller's preprocessing)")

    why = check_certificate(manifest, proto)
    if why is None and _sidecar_sha(path) not in (None, sha):
        why = "the file changed after its manifest was written (sha256 differs from the sidecar's)"
    pre = preprocess or _manifest_preprocess(manifest, path, shape)
    _check_input(path, shape, pre)
    art = Artifact(path, "onnx", sha, str(manifest.get("precision", "fp32")),
                   pre, labels or _labels(manifest), name, shape,
                   classes, (manifest.get("calibration") or {}).get("target"), manifest, why)
    return _checked(art, allow_unverified)


def _checked(art: Artifact, allow_unverified: bool) -> Artifact:
    if art.unverified and not allow_unverified:
        raise UnverifiedArtifact(f"{art.path} is refused: {art.unverified}; re-create it with dnx (export, convert, "
                                 "calibrate, build), or load it anyway with allow_unverified=True / --allow-unverified")
    return art


def _sidecar_sha(path: Path) -> str | None:
    import json

    try:
        return json.loads(sidecar_path(path).read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return None


def _open_engine(path: Path, sha: str, preprocess: Preprocess | None, labels) -> Artifact:
    manifest = read_engine_manifest(path, required=True)
    source = (manifest.get("source_onnx") or {}).get("manifest") or {}
    if preprocess is None and not source:
        raise DnxError(f"{path}'s manifest does not name its source ONNX preprocessing; pass mean, std and image_size")
    inputs = manifest.get("inputs") or []
    if len(inputs) != 1:
        raise DnxError(f"{path} has {len(inputs)} inputs; dnx runs image classifiers with exactly one input")
    spec = inputs[0]
    shape = tuple(None if int(d) < 0 else int(d) for d in spec["shape"])
    outputs = manifest.get("outputs") or [{}]
    out_shape = outputs[0].get("shape") or [None]
    classes = int(out_shape[-1]) if out_shape and out_shape[-1] not in (None, -1) else None
    why = None
    if manifest.get("engine_sha256") not in (None, sha):
        why = "the engine changed after it was built (sha256 differs from its manifest's)"
    elif ((source.get("certificate") or {}).get("verdict")) != "passed":
        why = "its source ONNX carries no passed parity certificate"
    else:

        why = check_preprocess_certified(source)
    return Artifact(path, "engine", sha, str(manifest.get("precision", "fp32")),
                    preprocess or _manifest_preprocess(source, path, shape), labels or _labels(source), spec["name"],
                    shape, classes, (source.get("calibration") or {}).get("target"), manifest, why)


def _manifest_preprocess(manifest: dict, path: Path, shape=None) -> Preprocess:
    return preprocess_from_manifest(manifest, f"{path}'s dnx manifest", shape)


def _check_input(path: Path, shape: tuple, pre: Preprocess) -> None:
    """The graph's input against the preprocessing (the manifest's or the caller's): a mismatch is one
    line at load, not a multi-line backend error at the first request."""
    if shape[1] is not None and shape[1] != pre.in_channels:
        raise DnxError(f"{path} takes {shape[1]} channels but its preprocessing gives {pre.in_channels}")
    if any(d is not None and d != pre.image_size for d in shape[2:]):
        raise DnxError(f"{path} takes {shape[2]}x{shape[3]} images but its preprocessing gives "
                       f"{pre.image_size}x{pre.image_size}")


def _labels(manifest: dict) -> list[str] | None:
    names = (manifest.get("labels") or {}).get("names")
    return [str(n) for n in names] if names else None
