"""The FP32 ONNX file every precision conversion (`dnx convert`, `dnx calibrate`) starts from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnx.core.errors import DnxError
from dnx.core.fileio import check_writable
from dnx.core.onnx_graph import graph_inputs, has_qdq, load_onnx
from dnx.schemas.manifest import ArtifactManifest, manifest_of


def open_fp32_source(source: str | Path, output: str | Path, *, action: str, qdq_message: str,
                     required: bool = True, hint: str = "") -> tuple[Path, Path, ArtifactManifest | None, Any]:
    """(source, output, source manifest, source proto), loaded once, after checking that the output is
    writable and not the source, and that the source is a one-input FP32 graph (``action`` names what
    to do with the FP32 export instead; ``qdq_message`` is the error for a source that already holds
    Q/DQ nodes; ``hint`` what else to do when a ``required`` manifest is missing)."""
    from onnx import TensorProto

    source, output = Path(source), check_writable(output, sidecar=True)
    if source.resolve() == output.resolve():
        raise DnxError("the output would overwrite the source model; choose another -o")
    proto = load_onnx(source)
    inputs = graph_inputs(proto)
    if len(inputs) != 1:
        raise DnxError(f"{source} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); dnx handles "
                       "image classifiers with one image input")
    manifest = manifest_of(proto, source, required=False)
    if manifest and manifest.precision != "fp32":
        raise DnxError(f"{source} is already {manifest.precision}; {action} the FP32 export")
    if has_qdq(proto):
        raise DnxError(qdq_message.format(source=source))
    # A foreign FP16 graph has no manifest to say so; its initializers do.
    if any(i.data_type == TensorProto.FLOAT16 for i in proto.graph.initializer):
        raise DnxError(f"{source} already holds FP16 weights; {action} the FP32 export")
    if manifest is None and required:
        manifest_of(proto, source, required=True, hint=hint)  # raises: says what else to do
    return source, output, manifest, proto


def check_input_shape(proto, pre, source: Path) -> None:
    """Refuse preprocessing (from --image-size or a manifest) that contradicts the graph's fixed input
    shape, before any data is read."""

    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in graph_inputs(proto)[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise DnxError(f"{source}'s input has {len(dims)} dimensions; dnx expects images as (N, C, H, W)")
    want = (pre.in_channels, pre.image_size, pre.image_size)
    for have, need, what in zip(dims[1:], want, ("channels", "height", "width")):
        if have is not None and have != need:
            raise DnxError(f"{source} takes input of shape {['N' if d is None else d for d in dims]}, but the "
                           f"preprocessing gives {what} {need} (--image-size/--mean/--std or its manifest); "
                           f"give the --image-size and the number of --mean/--std values the graph takes")
