"""`dnx export`: PyTorch -> verified ONNX."""

from __future__ import annotations

import click

from dnx.cli.common import comparison_table, make_console
from dnx.cli.group import cli
from dnx.cli.options import output_option
from dnx.core.errors import DnxError
from dnx.core.fileio import check_writable
from dnx.export.onnx_export import export_onnx, ExportOptions
from dnx.models import create_model, get_config


# densenet121 at 2048x2048 already needs ~1 GiB per image for its first block's activations.
MAX_IMAGE_SIZE = 2048


@cli.command("export")
@click.argument("model")
@output_option("Output file (default: MODEL.onnx).")
@click.option("--weights", type=click.Path(), help="torchvision-format state dict (.pth/.pt/.safetensors).")
@click.option("--num-classes", type=int, help="Classifier outputs (default: the variant's).")
@click.option("--image-size", type=int, help="Input height/width (default: the variant's).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset (13-20).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check the file against PyTorch in onnxruntime.")
@click.option("--simplify", is_flag=True, help="Run onnxslim on the graph (pip install 'dnx[simplify]').")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of a random initialisation.")
def export_cmd(model, output, weights, num_classes, image_size, batch, opset, verify, simplify, seed) -> None:
    """Export a registered DenseNet to ONNX and prove it equals PyTorch."""

    cfg = get_config(model)
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise DnxError(f"--image-size {image_size} is larger than dnx exports ({MAX_IMAGE_SIZE}); its activations "
                       "would not fit in memory: choose a smaller size")
    options = ExportOptions(batch=parse_batch(batch), opset=opset, verify=verify, simplify=simplify)
    options.validate()
    output = check_writable(output or f"{cfg.name}.onnx", sidecar=True)
    loaded = create_model(cfg, weights=weights, seed=seed, num_classes=num_classes, image_size=image_size)
    console = make_console()
    try:
        result = export_onnx(loaded, output, options)
    except DnxError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            console.print(comparison_table("ONNX (onnxruntime CPU) vs PyTorch", report.cases))
        raise
    if result.verification is not None:
        console.print(comparison_table("ONNX (onnxruntime CPU) vs PyTorch", result.verification.cases))
    status = "verified" if result.verification else "not verified (--no-verify)"
    console.print(f"wrote {result.path} "
                  f"({loaded.weights if loaded.weights_path is None else 'weights ' + loaded.weights[:12]}), "
                  f"{status}; export {result.export_seconds:.1f} s, verify {result.verify_seconds:.1f} s")


def parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError as exc:
        raise DnxError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from exc
    return batch  # ExportOptions.validate refuses batch < 1
