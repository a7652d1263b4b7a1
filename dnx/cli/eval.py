"""`dnx eval`: accuracy of PyTorch FP32 against ONNX FP32 / FP16 / INT8 Q/DQ on a labelled set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from dnx.benchmarks.accuracy import evaluate_precisions
from dnx.cli.common import make_console, print_notes
from dnx.cli.group import cli
from dnx.cli.options import decode_option, json_file_option, method_option, threads_option
from dnx.core.errors import DnxError
from dnx.core.fileio import write_json_atomic
from dnx.core.tables import new_table, verdict
from dnx.data.datasets import LabelledImages, load_labelled, shipped_fashion_mnist_test
from dnx.models import ASSETS, create_model


@cli.command("eval")
@click.argument("model", default="densenet_bc22_fmnist")
@click.option("--weights", type=click.Path(), help="Checkpoint (default: the bundled one, if any).")
@click.option("--data", "data_path", type=click.Path(),
              help="Labelled set: IDX folder, class-folder tree or .npz (default: the shipped Fashion-MNIST 5k).")
@click.option("--calib-data", type=click.Path(), help="Calibration data (default: the shipped 512 training images).")
@click.option("--samples", default=512, show_default=True, type=int)
@method_option()
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N images only.")
@threads_option()
@click.option("--workdir", type=click.Path(), default="build/eval", show_default=True)
@json_file_option("Also write the report as JSON.")
@click.option("--max-accuracy-drop", type=float,
              help="Add the row of `dnx calibrate --max-accuracy-drop` (int8 + N float units), "
                   "searched on half the data.")
@click.option("--max-agreement-loss", type=float, help="Budget on top-1 agreement loss (points) for that row.")
@click.option("--budget-target", type=click.Choice(["tensorrt", "onnxruntime"]), default="tensorrt",
              show_default=True, help="Q/DQ placement of the budget row.")
@decode_option("the JPEGs of an image-folder --data", default="fast")
def eval_cmd(model, weights, data_path, calib_data, samples, method, limit, threads, workdir, json_path,
             max_accuracy_drop, max_agreement_loss, budget_target, decode) -> None:
    """Accuracy of PyTorch FP32 vs ONNX FP32 / FP16 / INT8 QDQ over a labelled set."""
    if Path(workdir).exists() and not Path(workdir).is_dir():
        raise DnxError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
    loaded = create_model(model, weights=weights)
    if loaded.weights_path is None:
        raise DnxError(f"{model} has random weights: accuracy needs trained weights (--weights PATH)")
    pre = replace(loaded.config.preprocess, decode=decode)
    data = load_labelled(data_path, "test", pre=pre) if data_path else shipped_fashion_mnist_test()
    if limit:
        data = LabelledImages(data.images[:limit], data.labels[:limit], data.classes)
    calib = calib_data or ASSETS / "fashion_mnist_calib512.npz"
    budget = None
    if max_accuracy_drop is not None or max_agreement_loss is not None:
        budget = {"max_accuracy_drop": max_accuracy_drop, "max_agreement_loss": max_agreement_loss,
                  "target": budget_target}
    console = make_console()
    with console.status("evaluating...") as status:
        report = evaluate_precisions(loaded, data, workdir, calib, samples=samples, method=method,
                                     threads=threads, progress=lambda msg: status.update(msg), budget=budget)
    print_notes(report.notes)
    table = new_table(f"{model}: accuracy on {report.images} labelled images (onnxruntime CPU)",
                      ("precision", "accuracy", "delta", "top-1 agree", "max|diff|", "cosine", "result"),
                      left=("precision", "result"))
    base = report.rows[0].comparison.accuracy
    for row in report.rows:
        c = row.comparison
        table.add_row(row.label, f"{c.accuracy:.2%}", f"{(c.accuracy - base) * 100:+.2f} pt",
                      f"{c.top1_agreement:.2%}", f"{c.max_abs_diff:.2e}", f"{c.cosine:.6f}", verdict(c))
    console.print(table)
    if json_path:
        write_json_atomic(Path(json_path), report.to_dict(), "--json")
    if not report.passed:
        raise DnxError("some precisions failed their parity tolerance (see the table)")
