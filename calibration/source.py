"""The FP32 ONNX file every precision conversion (`dnx convert`, `dnx calibrate`) starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnx.errors import DnxError


def open_fp32_source(source: str | Path, output: str | Path, *, action: str, qdq_message: str,
                     required: bool = True) -> tuple[Path, Path, dict[str, Any] | None, Any]:
    """(source, output, source manifest, source proto), loaded once, after checking that the output is
    writable and not the source, and that the source is FP32 (``action`` names what to do with the FP32
    export instead; ``qdq_message`` is the error for a source that already holds Q/DQ nodes)."""
    from dnx.export.graph import has_qdq, load_onnx
    from dnx.export.manifest import manifest_of
    from dnx.fileio import check_writable

    source, output = Path(source), check_writable(output)
    if source.resolve() == output.resolve():
        raise DnxError("the output would overwrite the source model; choose another -o")
    proto = load_onnx(source)
    manifest = manifest_of(proto, source, required)
    if manifest and manifest.get("precision", "fp32") != "fp32":
        raise DnxError(f"{source} is already {manifest['precision']}; {action} the FP32 export")
    if has_qdq(proto):
        raise DnxError(qdq_message.format(source=source))
    return source, output, manifest, proto
