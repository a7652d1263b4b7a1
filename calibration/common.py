"""What every INT8 calibration path shares, whichever tool places the Q/DQ (onnxruntime.quantization in
:mod:`dnx.calibration.qdq`, NNCF in :mod:`dnx.calibration.openvino`): the result, the cache key and file,
the --exclude check, and the certificate written beside the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dnx.calibration.parity import certify_derived
from dnx.core.errors import DnxError
from dnx.schemas.manifest import ArtifactManifest, embed

CACHE_SCHEMA = "dnx.calibration-cache/1"


@dataclass
class CalibrationResult:
    path: Path
    manifest: dict
    cache_path: Path
    cache_hit: bool
    seconds: float
    samples: int
    notes: list[str] = field(default_factory=list)


def split_exclude(model_proto, exclude: Sequence[str]) -> tuple[set[str], list[str]]:
    """(the graph's op types, the --exclude entries that are node names); unknown entries are refused."""
    ops_in_graph = {n.op_type for n in model_proto.graph.node}
    names_in_graph = {n.name for n in model_proto.graph.node}
    unknown = [e for e in exclude if e not in ops_in_graph and e not in names_in_graph]
    if unknown:
        raise DnxError(f"--exclude {', '.join(unknown)}: no such node name or op type in the graph "
                       f"(op types: {', '.join(sorted(ops_in_graph))}; `dnx inspect` lists nodes)")
    return ops_in_graph, [e for e in exclude if e in names_in_graph and e not in ops_in_graph]


def cache_key(source_sha256: str, data_fingerprint: str, method: str, target: str, samples: int) -> dict:
    # reduce_range changes the weights' scales, not the activation ranges, so it is not part of the key
    return {"source_sha256": source_sha256, "data_fingerprint": data_fingerprint, "method": method,
            "target": target, "samples": samples}


def default_cache_path(output: Path) -> Path:
    return output.with_name(output.name + ".calib.json")


def certify(qproto, source: Path, written: Path, manifest: dict, source_manifest: ArtifactManifest | None,
            pre) -> None:
    """Check the written Q/DQ graph against its FP32 source on real images and store the certificate
    in ``manifest`` (and the file at ``written``); a failed verdict is recorded, not raised: the caller
    reports it (``dnx calibrate`` exits 1) and the runtime refuses the file."""
    import onnx  # heavy: only the writer needs it

    manifest["certificate"], _ = certify_derived(qproto, source, written, manifest["precision"],
                                                 source_manifest, pre)
    embed(qproto, manifest)
    onnx.save(qproto, str(written))
