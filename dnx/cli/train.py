"""`dnx train`: a registered DenseNet trained on a small labelled image set."""

from __future__ import annotations

import sys

import click

from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import output_option, threads_option
from dnx.core.fileio import check_writable
from dnx.core.version import __version__ as version
from dnx.data.datasets import has_split, load_labelled
from dnx.models.registry import get_config
from dnx.train import data_fingerprint, save_checkpoint, train, TrainConfig


@cli.command("train")
@click.argument("model")
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="IDX folder (train-*/t10k-* files), image folder with class subfolders, or .npz.")
@click.option("--test-data", type=click.Path(), help="Held-out set (default: the t10k split of --data).")
@click.option("--epochs", default=TrainConfig.epochs, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=TrainConfig.lr, show_default=True, type=float, help="Peak one-cycle learning rate.")
@click.option("--seed", default=TrainConfig.seed, show_default=True, type=int)
@threads_option()
@click.option("--limit", type=click.IntRange(min=1), help="Train on the first N images only.")
@output_option("Checkpoint path (default: MODEL.pth).")
def train_cmd(model, data_path, test_data, epochs, batch_size, lr, seed, threads, limit, output) -> None:
    """Train a registered DenseNet on a small labelled image set."""
    from rich.progress import Progress

    cfg = get_config(model)
    output = check_writable(output or f"{cfg.name}.pth", sidecar=True)
    train_set = load_labelled(data_path, "train")
    # Without a held-out set there is no test accuracy: accuracy on the training images is not one.
    held_out = test_data or (data_path if has_split(data_path, "test") else None)
    test_set = load_labelled(held_out, "test") if held_out else None
    if test_set is None:
        print_notes([f"{data_path} has no test split and no --test-data was given: no test accuracy is measured"])
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads, limit=limit)
    with Progress(console=make_console(), transient=False) as progress:
        task = progress.add_task("training", total=None)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(task, total=steps * epochs, completed=epoch * steps + step,
                            description=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")

        def on_epoch(record: dict) -> None:
            tested = f", test accuracy {record['test_accuracy']:.2%}" if "test_accuracy" in record else ""
            progress.console.print(f"epoch {record['epoch']}: loss {record['loss']:.4f}{tested}, "
                                   f"{record['seconds']:.0f} s")

        net, history = train(cfg, train_set, test_set, tc, on_step, on_epoch)
    accuracy = history["epochs"][-1].get("test_accuracy")
    manifest = {"model": cfg.to_dict(), "dnx_version": version, "history": history,
                "test_accuracy": accuracy, "test_images": len(test_set) if test_set else 0,
                "train_data": {"path": str(data_path), "sha256": data_fingerprint(train_set.images, train_set.labels)},
                "command": "dnx train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "dnx train"}
    save_checkpoint(net, output, manifest)
    tested = f"test accuracy {accuracy:.2%} on {len(test_set)} images" if test_set else "no test set"
    click.echo(f"wrote {output} ({tested})")
