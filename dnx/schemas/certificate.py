"""Parity certificates: what an artifact was verified against, carried in its manifest and checked at load.

Every ONNX file dnx writes records, under ``manifest["certificate"]``, the check it passed (or failed):
the reference (PyTorch weights, or the FP32 ONNX it was derived from, by sha256), the data (what, how
many images, fingerprint), the metrics and thresholds, the verdict, the backend and machine, and the
sha256 of the graph's content (the ONNX without its dnx manifest, so the manifest can live inside the
file it describes), and the preprocessing the check fed the graph (so an edited ``preprocess`` entry,
e.g. ``std`` set to 0, voids the certificate as an edited graph does). :func:`check_certificate` is what
``dnx.load``, ``dnx serve`` and the Triton export run before using an artifact: a failed verdict, changed
content, or no certificate at all is refused unless the caller opts in (``allow_unverified``).
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from dnx.core.documents import doc_field, read_document, to_json
from dnx.core.machine import cpu_model, isa_flags
from dnx.models.registry import Preprocess

if TYPE_CHECKING:
    from dnx.schemas.manifest import ArtifactManifest

SCHEMA = "dnx.certificate/1"
METADATA_KEY = "dnx.manifest"  # the ONNX metadata_props key of the manifest (which holds the certificate)


@dataclass(frozen=True)
class Certificate:
    """What an artifact was verified against and the verdict (``manifest["certificate"]``)."""

    schema: Literal["dnx.certificate/1"]
    verdict: Literal["passed", "failed"]
    content_sha256: str = doc_field(pattern="^[0-9a-f]{64}$",
                                    description="sha256 of the graph without its dnx manifest.")
    preprocess: dict[str, Any] | None = doc_field(
        None, description="The preprocessing the check fed the graph, as the manifest's preprocess entry was then.")
    reference: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    cases: dict[str, dict[str, Any]] | None = None
    thresholds: dict[str, Any] | None = None
    backend: str | None = None
    machine: dict[str, Any] | None = None
    at: str | None = None
    summary: str | None = None
    extra: dict[str, Any] = doc_field({})

    @classmethod
    def from_dict(cls, data: Any, where: str = "the certificate", hint: str = "") -> Certificate:
        return read_document(cls, data, where, hint)

    def to_dict(self) -> dict[str, Any]:
        return to_json(self)


def content_sha256(proto) -> str:
    """sha256 of the model with its ``dnx.manifest`` metadata removed (deterministic serialization)."""

    keep = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    saved = [(p.key, p.value) for p in proto.metadata_props]
    del proto.metadata_props[:]
    for key, value in keep:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()
    finally:
        del proto.metadata_props[:]
        for key, value in saved:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def data_fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(str(a.shape).encode() + str(a.dtype).encode())
            h.update(memoryview(a).cast("B") if a.flags.c_contiguous else a.tobytes())
    return h.hexdigest()


def machine_summary() -> dict[str, Any]:
    return {"cpu": cpu_model(), "isa": isa_flags(), "python": platform.python_version()}


def make_certificate(*, proto, preprocess, reference: dict, data: dict, cases: dict[str, dict], thresholds: dict,
                     passed: bool, backend: str) -> dict[str, Any]:
    """A certificate for ``proto`` checked with ``preprocess`` (a ``Preprocess``; call after the graph is
    final; the rest of the manifest may change afterwards), as the JSON a manifest holds."""
    return Certificate(SCHEMA, "passed" if passed else "failed", content_sha256(proto), preprocess.to_dict(),
                       reference, data, cases, thresholds, backend, machine_summary(),
                       datetime.now(timezone.utc).isoformat(timespec="seconds")).to_dict()


def _same_preprocess(certified: dict | None, declared: Preprocess | None) -> bool:
    try:
        return declared is not None and Preprocess.from_dict(certified) == declared
    except ValueError:
        return False


def check_certificate(manifest: ArtifactManifest | None, proto) -> str | None:
    """Why the artifact must not be trusted as is (one line), or None when its certificate holds."""
    if manifest is None:
        return "it has no dnx manifest"
    cert = manifest.certificate
    if cert is None:
        return "it carries no parity certificate (made by an older dnx, or verification was skipped)"
    if cert.verdict != "passed":
        return f"its recorded verification failed ({cert.summary or 'see dnx inspect'})"
    if cert.content_sha256 != content_sha256(proto):
        return "its graph changed after it was verified (content sha256 differs from the certificate)"
    return check_preprocess_certified(manifest)


def check_preprocess_certified(manifest: ArtifactManifest) -> str | None:
    """Why the manifest's preprocessing is not the one its certificate was checked with, or None."""
    cert = manifest.certificate
    if cert is None or cert.preprocess is None:
        return "its certificate does not cover the preprocessing (made by an older dnx)"
    if not _same_preprocess(cert.preprocess, manifest.preprocess):
        return ("its preprocessing changed after it was verified (the manifest's preprocess entry differs from "
                "the certificate's)")
    return None
