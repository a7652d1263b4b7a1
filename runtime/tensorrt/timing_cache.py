"""TensorRT timing caches that say what they were made with.

TensorRT reuses a timing cache only from its own version and GPU, and on another one it quietly
starts empty. dnx writes a sidecar ``CACHE.json`` beside each cache it saves (TensorRT version, GPU
name and compute capability) and feeds TensorRT only caches whose sidecar matches this machine,
noting the rebuild otherwise; NVIDIA's ``samples/common`` cache helpers likewise check that
``createTimingCache`` did not return null.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from dnx.core.fileio import write_bytes_atomic, write_json_atomic
from dnx.runtime.backends.tensorrt_compat import TensorRTError
from dnx.schemas.manifest import sidecar_path

if TYPE_CHECKING:
    import tensorrt as trt

# What a timing cache's sidecar records: TensorRT reuses timings only from its own version and GPU.
TIMING_CACHE_KEYS = ("tensorrt_version", "gpu_name", "compute_capability")


def timing_cache_matches(path: Path, facts: dict[str, Any]) -> bool:
    """Whether the sidecar of the timing cache at ``path`` says it was made with this TensorRT on this GPU."""
    import json

    try:
        made = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(made, dict) and all(made.get(k) == facts.get(k) for k in TIMING_CACHE_KEYS)


def attach_timing_cache(config: trt.IBuilderConfig, path: Path | None, facts: dict[str, Any], notes: list[str]):
    """Attach the timing cache at ``path`` (or an empty one); the caller keeps it alive during the build."""

    here = f"TensorRT {facts.get('tensorrt_version')} on {facts.get('gpu_name')}"
    data = b""
    if path is not None and path.is_file():
        if timing_cache_matches(path, facts):
            data = path.read_bytes()
        else:
            notes.append(f"timing cache {path} was not made with {here} (or has no sidecar saying so); "
                         "it was rebuilt")
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if data:
        # The sidecar matched but TensorRT still refused the bytes (damaged file): time again from scratch.
        notes.append(f"TensorRT could not use timing cache {path}; it was rebuilt")
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache
    raise TensorRTError("timing-cache", f"TensorRT could not create a timing cache with {here}; "
                                        "build without --timing-cache")


def write_timing_cache(path: Path, cache: trt.ITimingCache, facts: dict[str, Any]) -> None:
    write_bytes_atomic(path, cache.serialize())  # the build added its timings
    write_json_atomic(sidecar_path(path), {k: facts.get(k) for k in TIMING_CACHE_KEYS})
