"""What a service needs to know about an artifact before running it, read from the artifact alone.

An ONNX file dnx wrote carries its manifest (``metadata_props["dnx.manifest"]`` or the ``PATH.json``
sidecar); a ``dnx build`` engine has its ``ENGINE.json`` sidecar, which embeds the source ONNX's
manifest. Either supplies input name/shape/layout, preprocessing, labels and precision. A foreign
ONNX file has no manifest: it loads only when the caller gives the preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.core.hashing import sha256_file
from dnx.core.onnx_graph import has_qdq, load_onnx
from dnx.models.registry import Preprocess
from dnx.schemas.certificate import check_certificate, check_preprocess_certified
from dnx.schemas.engine_manifest import ENGINE_SUFFIXES, EngineManifest, is_engine_path, read_engine_manifest
from dnx.schemas.manifest import ArtifactManifest, manifest_of, preprocess_from_manifest, sidecar_sha256

__all__ = ["Artifact", "UnverifiedArtifact", "open_artifact"]


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
    # the ONNX file's manifest, or the engine's sidecar (which holds its source ONNX's manifest)
    manifest: ArtifactManifest | EngineManifest | None = field(default=None, compare=False)
    # None: the parity certificate holds; else why the artifact is unverified (loaded only on opt-in)
    unverified: str | None = None

    @property
    def max_batch(self) -> int | None:
        """Largest batch one inference may carry: fixed by the graph or the engine's profile; None: any."""
        profile = self.manifest.batch_profile if isinstance(self.manifest, EngineManifest) else None
        if profile is not None and profile.max_batch is not None:
            return profile.max_batch
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
    def onnx_manifest(self) -> ArtifactManifest | None:
        """The ONNX manifest: the file's own, or for an engine its source ONNX's."""
        return self.manifest.source_manifest if isinstance(self.manifest, EngineManifest) else self.manifest

    @property
    def certificate(self) -> dict | None:
        onnx_manifest = self.onnx_manifest
        return onnx_manifest.certificate.to_dict() if onnx_manifest and onnx_manifest.certificate else None


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


def check_artifact_path(path: str | Path) -> Path:
    """``path`` as a Path, or one line saying why it cannot be an artifact (before anything loads)."""
    path = Path(path)
    if not path.exists():
        raise DnxError(f"artifact {path} does not exist")
    if not path.is_file():
        raise DnxError(f"artifact {path} is not a file")
    return path


def open_artifact(path: str | Path, preprocess: Preprocess | None = None, labels: list[str] | None = None,
                  allow_unverified: bool = False) -> Artifact:
    """Read an artifact's manifest (or take the caller's preprocessing for a foreign ONNX file) and check
    its parity certificate: an unverified dnx artifact is refused unless ``allow_unverified``. A foreign
    ONNX file is not a dnx artifact: it has no certificate to check, loads, and is marked unverified."""

    path = check_artifact_path(path)
    if is_engine_path(path):
        return _checked(_open_engine(path, sha256_file(path), preprocess, labels), allow_unverified)
    if path.suffix.lower() != ".onnx":
        raise DnxError(f"{path}: cannot tell what it is; expected an .onnx file or an engine "
                       f"({'/'.join(ENGINE_SUFFIXES)})")

    proto = load_onnx(path, load_external_data=False)
    manifest = manifest_of(proto, path, required=False)
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
    if why is None and sidecar_sha256(path) not in (None, sha):
        why = "the file changed after its manifest was written (sha256 differs from the sidecar's)"
    pre = preprocess or _manifest_preprocess(manifest, path)
    _check_input(path, shape, pre)
    art = Artifact(path, "onnx", sha, manifest.precision, pre, labels or manifest.label_names, name, shape,
                   classes, manifest.calibration_target, manifest, why)
    return _checked(art, allow_unverified)


def _checked(art: Artifact, allow_unverified: bool) -> Artifact:
    if art.unverified and not allow_unverified:
        raise UnverifiedArtifact(f"{art.path} is refused: {art.unverified}; re-create it with dnx (export, convert, "
                                 "calibrate, build), or load it anyway with allow_unverified=True / --allow-unverified")
    return art


def _open_engine(path: Path, sha: str, preprocess: Preprocess | None, labels) -> Artifact:
    manifest = read_engine_manifest(path, required=True)
    source = manifest.source_manifest
    if preprocess is None and source is None:
        raise DnxError(f"{path}'s manifest does not name its source ONNX preprocessing; pass mean, std and image_size")
    inputs = manifest.inputs or ()
    if len(inputs) != 1:
        raise DnxError(f"{path} has {len(inputs)} inputs; dnx runs image classifiers with exactly one input")
    spec = inputs[0]
    shape = tuple(None if d < 0 else d for d in spec.shape)
    out_shape = manifest.outputs[0].shape if manifest.outputs else ()
    classes = out_shape[-1] if out_shape and out_shape[-1] >= 0 else None
    why = manifest.digest_problem(sha)
    if why is not None:
        why = f"the engine changed after it was built ({why})"
    elif source is None or source.certificate is None or source.certificate.verdict != "passed":
        why = "its source ONNX carries no passed parity certificate"
    else:
        why = check_preprocess_certified(source)
    return Artifact(path, "engine", sha, manifest.precision or "fp32",
                    preprocess or _manifest_preprocess(source, path), labels or (source and source.label_names),
                    spec.name, shape, classes, source and source.calibration_target, manifest, why)


def _manifest_preprocess(manifest: ArtifactManifest | None, path: Path) -> Preprocess:
    return preprocess_from_manifest(manifest, f"{path}'s dnx manifest")


def _check_input(path: Path, shape: tuple, pre: Preprocess) -> None:
    """The graph's input against the preprocessing (the manifest's or the caller's): a mismatch is one
    line at load, not a multi-line backend error at the first request."""
    if shape[1] is not None and shape[1] != pre.in_channels:
        raise DnxError(f"{path} takes {shape[1]} channels but its preprocessing gives {pre.in_channels}")
    if any(d is not None and d != pre.image_size for d in shape[2:]):
        raise DnxError(f"{path} takes {shape[2]}x{shape[3]} images but its preprocessing gives "
                       f"{pre.image_size}x{pre.image_size}")


