"""Parity certificates: what an artifact was verified against, carried in its manifest and checked at load.

Every ONNX file dnx writes records, under ``manifest["certificate"]``, the check it passed (or failed):
the reference (PyTorch weights, or the FP32 ONNX it was derived from, by sha256), the data (what, how
many images, fingerprint), the metrics and thresholds, the verdict, the backend and machine, and the
sha256 of the graph's content (the ONNX without its dnx manifest, so the manifest can live inside the
file it describes), and the preprocessing the check fed the graph (so an edited ``preprocess`` entry,
e.g. ``std`` set to 0, voids the certificate as an edited graph does). :func:`check_certificate` is what ``dnx.load``, ``dnx serve`` and the Triton
export run before using an artifact: a failed verdict, changed content, or no certificate at all is
refused unless the caller opts in (``allow_unverified``).
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from typing import Any
from dnx.core.machine import cpu_model, isa_flags
from dnx.models.registry import Preprocess
from dnx.schemas.manifest import METADATA_KEY

SCHEMA = "dnx.certificate/1"


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
    final; the rest of the manifest may change afterwards)."""
    return {"schema": SCHEMA, "verdict": "passed" if passed else "failed", "content_sha256": content_sha256(proto),
            "preprocess": json.loads(json.dumps(preprocess.to_dict())),
            "reference": reference, "data": data, "cases": cases, "thresholds": thresholds, "backend": backend,
            "machine": machine_summary(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _same_preprocess(certified, declared) -> bool:
    try:
        return Preprocess.from_dict(certified) == Preprocess.from_dict(declared)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def check_certificate(manifest: dict | None, proto) -> str | None:
    """Why the artifact must not be trusted as is (one line), or None when its certificate holds."""
    if manifest is None:
        return "it has no dnx manifest"
    cert = manifest.get("certificate")
    if not isinstance(cert, dict) or cert.get("schema") != SCHEMA:
        return "it carries no parity certificate (made by an older dnx, or verification was skipped)"
    if cert.get("verdict") != "passed":
        return f"its recorded verification failed ({cert.get('summary') or 'see dnx inspect'})"
    if cert.get("content_sha256") != content_sha256(proto):
        return "its graph changed after it was verified (content sha256 differs from the certificate)"
    return check_preprocess_certified(manifest)


def check_preprocess_certified(manifest: dict) -> str | None:
    """Why the manifest's preprocessing is not the one its certificate was checked with, or None."""
    cert = manifest.get("certificate") or {}
    if "preprocess" not in cert:
        return "its certificate does not cover the preprocessing (made by an older dnx)"
    if not _same_preprocess(cert["preprocess"], manifest.get("preprocess")):
        return ("its preprocessing changed after it was verified (the manifest's preprocess entry differs from "
                "the certificate's)")
    return None
