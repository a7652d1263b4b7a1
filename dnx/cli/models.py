"""`dnx models` and `dnx train`: the registry and training."""

from __future__ import annotations

import json
import sys

import click

from dnx.cli.common import make_console
from dnx.cli.group import cli


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def models_cmd(as_json: bool) -> None:
    """List the registered DenseNet variants."""
    from dnx.models.registry import get_config, list_models, model_stats

    rows = []
    for name in list_models():
        cfg = get_config(name)
        params, macs = model_stats(cfg)
        rows.append({**cfg.to_dict(), "params": params, "macs": macs})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from dnx.tables import new_table

    table = new_table("DenseNet variants",
                      ("name", "depth", "k", "blocks", "params", "paper params", "GMACs", "input", "reference"),
                      left=("name", "blocks", "input", "reference"))
    for r in rows:
        paper = f"{r['paper_params'] / 1e6:.1f}M" if r["paper_params"] else "-"
        table.add_row(r["name"], str(r["depth"]), str(r["growth_rate"]),
                      "-".join(map(str, r["block_config"])), f"{r['params']:,}", paper,
                      f"{r['macs'] / 1e9:.3f}", f"{r['in_channels']}x{r['image_size']}x{r['image_size']}",
                      r["reference"].rsplit(", ", 1)[-1] if "Table" in r["reference"] else "dnx")
    make_console().print(table)


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
    with Progress(console=make_console(), transient=False) as progress:
        task = progress.add_task("training", total=None)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(task, total=steps * epochs, completed=epoch * steps + step,
                            description=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")

        def on_epoch(record: dict) -> None:
            progress.console.print(f"epoch {record['epoch']}: loss {record['loss']:.4f}, test accuracy "
                                   f"{record.get('test_accuracy', float('nan')):.2%}, {record['seconds']:.0f} s")

        net, history = train(cfg, train_set, test_set, tc, on_step, on_epoch)
    accuracy = history["epochs"][-1]["test_accuracy"]
    manifest = {"model": cfg.to_dict(), "dnx_version": version, "history": history,
                "test_accuracy": accuracy, "test_images": len(test_set),
                "train_data": {"path": str(data_path), "sha256": data_fingerprint(train_set.images, train_set.labels)},
                "command": "dnx train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "dnx train"}
    save_checkpoint(net, output, manifest)
    click.echo(f"wrote {output} (test accuracy {accuracy:.2%} on {len(test_set)} images)")
