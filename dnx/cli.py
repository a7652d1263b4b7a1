"""The ``dnx`` command line. The only module that imports click.

Each command maps its options onto library calls; heavy packages are imported inside the callbacks
so ``dnx --help`` works with none of torch's optional companions installed. ``DnxError``s become one
line on stderr and exit code 1 (2 for a missing dependency or device); other exceptions are bugs and
keep their traceback.
"""

from __future__ import annotations

import json
import sys

import click

from dnx import __version__
from dnx.errors import DnxError


def _console():
    from rich.console import Console

    # Rich assumes 80 columns when piped; tables of numbers read better unwrapped.
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _err(message: str) -> None:
    click.echo(f"dnx: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnx")
def cli() -> None:
    """DenseNet from the paper to a deployed NVIDIA engine.

    \b
    build (PyTorch) -> export (ONNX) -> precision (FP16 / INT8 QDQ) -> engine (TensorRT)
                    -> bench (latency + parity vs PyTorch) -> serve
    """


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def models_cmd(as_json: bool) -> None:
    """List the registered DenseNet variants."""
    from dnx.models.registry import count_macs, count_params, get_config, list_models

    rows = []
    for name in list_models():
        cfg = get_config(name)
        rows.append({**cfg.to_dict(), "params": count_params(cfg), "macs": count_macs(cfg)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="DenseNet variants")
    for col in ("name", "depth", "k", "blocks", "params", "paper params", "GMACs", "input", "reference"):
        table.add_column(col, justify="right" if col in ("depth", "k", "params", "paper params", "GMACs") else "left")
    for r in rows:
        paper = f"{r['paper_params'] / 1e6:.1f}M" if r["paper_params"] else "-"
        table.add_row(r["name"], str(r["depth"]), str(r["growth_rate"]),
                      "-".join(map(str, r["block_config"])), f"{r['params']:,}", paper,
                      f"{r['macs'] / 1e9:.3f}", f"{r['in_channels']}x{r['image_size']}x{r['image_size']}",
                      r["reference"].rsplit(", ", 1)[-1] if "Table" in r["reference"] else "dnx")
    _console().print(table)


def _parse_batch(value: str) -> int | None:
    if value == "dynamic":
        return None
    try:
        batch = int(value)
    except ValueError:
        raise DnxError(f"--batch must be 'dynamic' or a positive integer, got {value!r}") from None
    if batch < 1:
        raise DnxError(f"--batch must be 'dynamic' or a positive integer, got {batch}")
    return batch


def _comparison_table(title: str, rows: list[tuple[str, object]]):
    from rich.table import Table

    table = Table(title=title)
    for col in ("case", "samples", "max|diff|", "mean|diff|", "max rel", "cosine", "top-1", "top-5", "result"):
        table.add_column(col, justify="left" if col in ("case", "result") else "right")
    for name, c in rows:
        table.add_row(name, str(c.samples), f"{c.max_abs_diff:.2e}", f"{c.mean_abs_diff:.2e}",
                      f"{c.max_rel_diff:.2e}", f"{c.cosine:.6f}", f"{c.top1_agreement:.1%}",
                      f"{c.top5_agreement:.1%}", "[green]pass[/]" if c else f"[red]FAIL[/] {c.criterion}")
    return table


@cli.command("export")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(), help="Output file (default: MODEL.onnx).")
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
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.fileio import check_writable
    from dnx.models import create_model, get_config

    cfg = get_config(model)
    options = ExportOptions(batch=_parse_batch(batch), opset=opset, verify=verify, simplify=simplify)
    options.validate()
    output = check_writable(output or f"{cfg.name}.onnx")
    loaded = create_model(cfg, weights=weights, seed=seed, num_classes=num_classes, image_size=image_size)
    console = _console()
    try:
        result = export_onnx(loaded, output, options)
    except DnxError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            console.print(_comparison_table("ONNX (onnxruntime CPU) vs PyTorch", report.cases))
        raise
    if result.verification is not None:
        console.print(_comparison_table("ONNX (onnxruntime CPU) vs PyTorch", result.verification.cases))
    status = "verified" if result.verification else "not verified (--no-verify)"
    console.print(f"wrote {result.path} ({loaded.weights if loaded.weights_path is None else 'weights ' + loaded.weights[:12]}), "
                  f"{status}; export {result.export_seconds:.1f} s, verify {result.verify_seconds:.1f} s")


@cli.command("train")
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="IDX folder (train-*/t10k-* files), image folder with class subfolders, or .npz.")
@click.option("--test-data", type=click.Path(), help="Held-out set (default: the t10k split of --data).")
@click.option("--epochs", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=0.2, show_default=True, type=float, help="Peak one-cycle learning rate.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=0, type=int, help="torch threads (0: torch's default).")
@click.option("--limit", type=click.IntRange(min=1), help="Train on the first N images only.")
@click.option("-o", "--output", type=click.Path(), help="Checkpoint path (default: MODEL.pth).")
def train_cmd(model, data_path, test_data, epochs, batch_size, lr, seed, threads, limit, output) -> None:
    """Train a registered DenseNet on a small labelled image set."""
    from rich.progress import Progress

    from dnx import __version__ as version
    from dnx.data.datasets import load_labelled
    from dnx.fileio import check_writable
    from dnx.models import get_config
    from dnx.train import TrainConfig, data_fingerprint, save_checkpoint, train

    cfg = get_config(model)
    output = check_writable(output or f"{cfg.name}.pth")
    train_set = load_labelled(data_path, "train")
    test_set = load_labelled(test_data or data_path, "test")
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads, limit=limit)
    with Progress(console=_console(), transient=False) as progress:
        task = progress.add_task("training", total=None)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(task, total=steps * epochs, completed=epoch * steps + step,
                            description=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")

        net, history = train(cfg, train_set, test_set, tc, on_step)
    accuracy = history["epochs"][-1]["test_accuracy"]
    manifest = {"model": cfg.to_dict(), "dnx_version": version, "history": history,
                "test_accuracy": accuracy, "test_images": len(test_set),
                "train_data": {"path": str(data_path), "sha256": data_fingerprint(train_set.images, train_set.labels)},
                "command": "dnx train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "dnx train"}
    save_checkpoint(net, output, manifest)
    click.echo(f"wrote {output} (test accuracy {accuracy:.2%} on {len(test_set)} images)")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="dnx", standalone_mode=False)
    except click.exceptions.Abort:
        _err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DnxError as exc:
        _err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted; no partial artifact was left under its final name")
        sys.exit(130)


if __name__ == "__main__":
    main()
