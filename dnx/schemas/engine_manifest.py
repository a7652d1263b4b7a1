"""Engine manifests: the sidecar ``X.engine.json`` saying where, how and from what an engine was built.

A TensorRT engine runs only with the TensorRT version and on the GPU architecture it was built for,
unless it was built with version or hardware compatibility. Runners call
:func:`check_engine_compatible` before deserializing, so a mismatch becomes a message naming the
``dnx build`` command to run instead of a TensorRT error deep inside deserialization.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dnx.core.documents import doc_field, parse_json, read_document, to_json
from dnx.core.errors import DnxError
from dnx.core.fileio import write_json_atomic
from dnx.core.hashing import sha256_file
from dnx.schemas.manifest import SHA256, ArtifactManifest, Precision, sidecar_path

ENGINE_SCHEMA = "dnx.engine-manifest/1"
HARDWARE_COMPAT = ("none", "ampere+", "same-cc")
# File suffixes of TensorRT engines, compared without case (model.PLAN is an engine too); the C++
# runtime's list is the same (runtime/cpp/src/classifier.cpp).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
AMPERE = (8, 0)
# (built, runtime) major versions NVIDIA supports for version-compatible engines across a major release.
VERSION_COMPAT_ACROSS_MAJORS = ((8, 10), (10, 11))


class EngineMismatchError(DnxError):
    """An engine that cannot run here (other TensorRT version or GPU), or whose sidecar does not match it."""


def is_engine_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


@dataclass(frozen=True)
class GpuInfo:
    compute_capability: str = doc_field(pattern=r"^[0-9]+\.[0-9]+$")
    name: str | None = None
    driver_version: str | None = doc_field(None, write_null=True)
    cuda_runtime: str | None = doc_field(None, write_null=True)
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile's batch sizes (null: a static batch)."""

    min_batch: int | None = doc_field(None, write_null=True, minimum=1)
    opt_batch: int | None = doc_field(None, write_null=True, minimum=1)
    max_batch: int | None = doc_field(None, write_null=True, minimum=1)
    shapes: dict[str, Any] | None = None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True)
class EngineTensor:
    name: str
    shape: tuple[int, ...] = doc_field(description="-1 marks a dynamic dimension.")
    mode: Literal["input", "output"] | None = None
    dtype: str | None = None
    profile: dict[str, Any] | None = None
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True)
class SourceOnnx:
    path: str
    sha256: str | None = doc_field(None, pattern=SHA256)
    manifest: ArtifactManifest | None = doc_field(None, write_null=True,
                                                   description="The source ONNX's dnx manifest; null: a foreign ONNX.")
    extra: dict[str, Any] = doc_field({})


@dataclass(frozen=True)
class EngineManifest:
    """The sidecar ``X.engine.json`` of a TensorRT engine (schema dnx.engine-manifest/1)."""

    schema: Literal["dnx.engine-manifest/1"]
    tensorrt_version: str
    gpu: GpuInfo
    artifact: Literal["tensorrt-engine"] | None = None
    dnx_version: str | None = None
    precision: Precision | None = None
    strongly_typed: bool | None = None
    hardware_compat: Literal["none", "ampere+", "same-cc"] = "none"
    version_compat: bool = False
    batch_profile: BatchProfile | None = None
    inputs: tuple[EngineTensor, ...] | None = None
    outputs: tuple[EngineTensor, ...] | None = None
    build_options: dict[str, Any] | None = None
    build_command: str | None = None
    build_seconds: float | None = doc_field(None, minimum=0)
    built_at: str | None = None
    source_onnx: SourceOnnx | None = None
    built_graph: dict[str, Any] | None = None
    notes: tuple[str, ...] | None = None
    tensorrt_warnings: tuple[str, ...] | None = None
    engine_sha256: str | None = doc_field(None, pattern=SHA256)
    engine_bytes: int | None = doc_field(None, minimum=0)
    extra: dict[str, Any] = doc_field({})

    @classmethod
    def from_dict(cls, data: Any, where: str = "the engine manifest") -> EngineManifest:
        hint = "rebuild the engine with `dnx build`"
        if isinstance(data, dict) and isinstance(data.get("build_command"), str):
            hint = f"rebuild it on this machine with `{data['build_command']}`"
        return read_document(cls, data, where, hint)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)

    @property
    def source_manifest(self) -> ArtifactManifest | None:
        return self.source_onnx.manifest if self.source_onnx else None

    def digest_problem(self, sha256: str) -> str | None:
        """The one rule for an engine's bytes: they must be the ones the manifest describes (a manifest
        without ``engine_sha256``, from an older dnx, has nothing to compare)."""
        if self.engine_sha256 and self.engine_sha256 != sha256:
            return (f"sha256 {sha256[:12]} vs {self.engine_sha256[:12]}: the engine was replaced without its "
                    "sidecar")
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(version))[:4])


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)


def _sm(cc: str) -> str:
    major, minor = _cc_tuple(cc)
    return f"sm_{major}{minor}"


def cuda_driver_version() -> str | None:
    """The CUDA driver API version (e.g. "12.8"), read from libcuda; None where it cannot be read."""
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int()
        if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def machine_facts(trt, device: int = 0) -> dict[str, Any]:
    """What :func:`check_engine_compatible` compares: TensorRT version and the GPU of ``device``.

    Call only after :func:`dnx.runtime.backends.tensorrt_compat.import_tensorrt` (which checks for a device).
    """
    import torch

    props = torch.cuda.get_device_properties(device)
    return {"tensorrt_version": str(trt.__version__), "gpu_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}", "driver_version": cuda_driver_version(),
            "cuda_runtime": torch.version.cuda}


def read_engine_manifest(engine_path: str | Path, required: bool = True) -> EngineManifest | None:
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise DnxError(f"engine {engine_path} does not exist; build one with `dnx build MODEL.onnx -o {engine_path}`")
    side = sidecar_path(engine_path)
    if not side.is_file():
        if required:
            raise EngineMismatchError(f"{engine_path} has no manifest {side.name} (not built by dnx, or the sidecar "
                                      "was not copied with it); rebuild it with `dnx build MODEL.onnx` or copy the "
                                      "sidecar next to it")
        return None
    try:
        text = side.read_bytes()
    except OSError as exc:
        raise EngineMismatchError(f"cannot read {side}: {exc.strerror}") from None
    return parse_engine_manifest(text, str(side))


def parse_engine_manifest(text: str | bytes, where: str) -> EngineManifest:
    """The one reader of engine sidecars: EngineMismatchError naming ``where`` and the bad field."""
    hint = "rebuild the engine with `dnx build`"
    try:
        data = parse_json(text, where, hint)
        if not isinstance(data, dict) or data.get("schema") != ENGINE_SCHEMA:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise EngineMismatchError(f"{where} is not a dnx engine manifest (schema {schema!r}, expected "
                                      f"{ENGINE_SCHEMA!r}); {hint}")
        return EngineManifest.from_dict(data, where)
    except EngineMismatchError:
        raise
    except DnxError as exc:
        raise EngineMismatchError(str(exc)) from None


def write_engine_manifest(engine_path: str | Path, manifest: EngineManifest | dict[str, Any]) -> EngineManifest:
    """Write the sidecar of an engine that is already on disk, adding its size and sha256."""

    engine_path = Path(engine_path)
    data = manifest.to_dict() if isinstance(manifest, EngineManifest) else manifest
    data = {**data, "engine_sha256": sha256_file(engine_path), "engine_bytes": engine_path.stat().st_size}
    # what is written reads back (judged as JSON: a tuple is an array)
    written = EngineManifest.from_dict(json.loads(json.dumps(data)), "the engine manifest being written")
    write_json_atomic(sidecar_path(engine_path), data)
    return written


def rebuild_command(manifest: EngineManifest | None) -> str:
    """The ``dnx build`` command that made the engine of ``manifest``, or a generic one."""
    return (manifest.build_command if manifest else None) or "dnx build MODEL.onnx"


def rebuild_command_with(manifest: EngineManifest | None, flag: str, value: Any) -> str:
    """:func:`rebuild_command` with ``flag`` set to ``value`` (replaced where the command has it already)."""
    import shlex

    args, kept, skip = shlex.split(rebuild_command(manifest)), [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(f"{flag}="):
            kept.append(arg)
    at = kept.index("-o") if "-o" in kept else len(kept)
    return shlex.join([*kept[:at], flag, str(value), *kept[at:]])


def rebuild_hint(manifest: EngineManifest | None) -> str:
    return f"rebuild it on this machine with `{rebuild_command(manifest)}`"


def _describe(version: str, cc: str, gpu: str | None) -> str:
    return f"TensorRT {version} on {_sm(cc)}" + (f" ({gpu})" if gpu else "")


def check_engine_compatible(manifest: EngineManifest, facts: dict[str, Any],
                            engine_path: str | Path | None = None) -> list[str]:
    """Raise :class:`EngineMismatchError` when the engine of ``manifest`` cannot run on ``facts``' machine.

    Pure: ``facts`` is :func:`machine_facts`' dict. Returns warnings (e.g. same architecture,
    another GPU model: the engine runs but its tactics were timed elsewhere).
    """
    name = Path(engine_path).name if engine_path else "engine"
    built_version, here_version = manifest.tensorrt_version, str(facts["tensorrt_version"])
    built_gpu = manifest.gpu
    built_cc, here_cc = built_gpu.compute_capability, str(facts["compute_capability"])
    hardware = manifest.hardware_compat
    version_compat = manifest.version_compat
    built = _describe(built_version, built_cc, built_gpu.name)
    here = _describe(here_version, here_cc, facts.get("gpu_name"))

    reasons = []
    bv, hv = _version_tuple(built_version), _version_tuple(here_version)
    if version_compat:
        # NVIDIA's engine-compatibility page: a version-compatible engine runs on later releases of its
        # major version and, across majors, only 10 -> 11 (and 8 -> 10); never on an older runtime.
        newer_major = bv[:1] != hv[:1] and (bv[0], hv[0]) not in VERSION_COMPAT_ACROSS_MAJORS
        if hv < bv or newer_major:
            later = " or ".join(f"{n}.x" for b, n in VERSION_COMPAT_ACROSS_MAJORS if b == bv[0])
            reasons.append(f"it is version-compatible only with TensorRT {bv[0]}.x from {built_version} on"
                           + (f" and TensorRT {later}" if later else ""))
    elif bv != hv:
        reasons.append("TensorRT versions differ (engines are tied to the exact version unless built with "
                       "--version-compat)")
    if hardware == "ampere+":
        if _cc_tuple(here_cc) < AMPERE:
            reasons.append("it was built for Ampere or newer GPUs (--hardware-compat ampere+) and this GPU is older")
    elif _cc_tuple(here_cc) != _cc_tuple(built_cc):
        reasons.append("GPU architectures differ (build with --hardware-compat ampere+ for an engine that runs "
                       "on every Ampere-or-newer GPU)")
    if reasons:
        raise EngineMismatchError(f"{name} was built with {built}; this machine has {here}: "
                                  f"{'; '.join(reasons)}; {rebuild_hint(manifest)}")

    warnings = []
    if built_gpu.name and facts.get("gpu_name") and built_gpu.name != facts["gpu_name"] \
            and hardware == "none":
        warnings.append(f"{name} was built on {built_gpu.name} and runs on {facts['gpu_name']} (same "
                        f"{_sm(here_cc)}): it works, but its kernels were timed on the other GPU; "
                        f"{rebuild_hint(manifest)} for best speed")
    return warnings


def check_engine_digest(manifest: EngineManifest, sha256: str, engine_path: str | Path) -> None:
    """Refuse an engine whose bytes are not the ones its manifest describes (replaced or rebuilt elsewhere)."""
    problem = manifest.digest_problem(sha256)
    if problem:
        raise EngineMismatchError(f"{engine_path} does not match its manifest ({problem}); {rebuild_hint(manifest)}")
