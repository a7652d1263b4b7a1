"""Which container image runs an artifact, and which server flags the artifact needs.

A TensorRT engine deserializes only in the TensorRT release it was built with (unless built
version-compatible), so the tritonserver image must carry that release. NGC publishes one
``nvcr.io/nvidia/tritonserver:YY.MM-py3`` image a month; the table below maps a TensorRT
``major.minor`` to the first release that ships it, as listed in NVIDIA's "Triton Inference Server
Release YY.MM" notes (Contents of the container). It was written from those notes, not from images
pulled here (no registry reachable): check a new row against the notes, or pass ``--image``.
"""

from __future__ import annotations

import re

from dnx.core.errors import DnxError
from dnx.schemas.manifest import ArtifactManifest

TRITON_REPOSITORY = "nvcr.io/nvidia/tritonserver"
# TensorRT major.minor -> NGC tritonserver release whose container ships it.
TRITON_RELEASE_FOR_TENSORRT = {
    "10.0": "24.05",
    "10.1": "24.06",
    "10.2": "24.07",
    "10.3": "24.08",
    "10.4": "24.09",
    "10.5": "24.10",
    "10.6": "24.11",
    "10.7": "24.12",
    "10.8": "25.01",
    "10.9": "25.03",
    "10.10": "25.05",
    "10.11": "25.06",
    "10.13": "25.08",
}
# For ONNX files (onnxruntime backend) no TensorRT version binds the image: this release is used.
DEFAULT_TRITON_RELEASE = "25.08"


class ImageError(DnxError):
    """No known image for an artifact."""


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:2]]
    if len(parts) < 2:
        raise ImageError(f"cannot read a TensorRT version from {version!r}")
    return parts[0], parts[1]


def triton_release_for(tensorrt_version: str, version_compatible: bool = False) -> str:
    """The NGC tritonserver release (``YY.MM``) for an engine built with ``tensorrt_version``.

    An exact engine needs its own major.minor. A version-compatible one runs on any later release of
    its major version (dnx's engine compatibility rule), so the newest release of that major is chosen.
    """
    major, minor = _major_minor(tensorrt_version)
    if version_compatible:
        later = [(tuple(map(int, k.split("."))), v) for k, v in TRITON_RELEASE_FOR_TENSORRT.items()]
        later = [v for (ma, mi), v in sorted(later) if ma == major and mi >= minor]
        if later:
            return later[-1]
    release = TRITON_RELEASE_FOR_TENSORRT.get(f"{major}.{minor}")
    if release is None:
        known = ", ".join(TRITON_RELEASE_FOR_TENSORRT)
        raise ImageError(f"no tritonserver release is known for TensorRT {tensorrt_version} (the table knows "
                         f"{known}); pass --image nvcr.io/nvidia/tritonserver:YY.MM-py3 with the release whose "
                         "notes list that TensorRT version")
    return release


def triton_image(artifact) -> tuple[str, str]:
    """``(image, why)`` for serving ``artifact`` (a dnx ``Artifact``) in tritonserver."""
    if artifact.kind == "engine":
        version, compat = artifact.manifest.tensorrt_version, artifact.manifest.version_compat
        release = triton_release_for(version, compat)
        why = (f"engine built with TensorRT {version}" + (" (version-compatible)" if compat else "")
               + f"; NGC release {release} ships TensorRT {_release_trt(release)}")
    else:
        release = DEFAULT_TRITON_RELEASE
        why = f"ONNX file on the onnxruntime backend: no TensorRT version binds it; release {release}"
    return f"{TRITON_REPOSITORY}:{release}-py3", why


def _release_trt(release: str) -> str:
    return next(k for k, v in TRITON_RELEASE_FOR_TENSORRT.items() if v == release)


def triton_backend_flags(artifact) -> list[str]:
    """tritonserver ``--backend-config`` flags the artifact needs to load."""
    flags = []
    if artifact.kind == "engine" and artifact.manifest.version_compat:
        # Triton's TensorRT backend refuses version-compatible plans unless told (it must allow the
        # lean runtime embedded in the plan): tensorrt_backend README, "version-compatible".
        flags.append("--backend-config=tensorrt,version-compatible=true")
    return flags


def serve_pins(manifest: ArtifactManifest | None) -> dict[str, str]:
    """Package versions for a ``dnx serve`` image, read from an ONNX artifact's manifest: the Python
    and packages that exported and certified it."""
    if manifest is None:
        return {"python": "3.11", "dnx": ""}
    pins = {"python": manifest.python or "3.11", "dnx": manifest.dnx_version or ""}
    if manifest.onnx_version:
        pins["onnx"] = manifest.onnx_version
    if manifest.torch_version:
        pins["torch"] = manifest.torch_version.split("+")[0]  # the CPU wheel of the same release
    backend = (manifest.certificate.backend if manifest.certificate else None) or ""
    found = re.match(r"onnxruntime (\d+\.\d+\.\d+)", backend)
    if found:
        pins["onnxruntime"] = found.group(1)
    return pins
