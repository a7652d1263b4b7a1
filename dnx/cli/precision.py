"""`dnx calibrate`, `dnx convert`, `dnx eval`: FP16 / INT8 graphs and their accuracy."""

from __future__ import annotations

import click

from dnx.cli.common import (
    comparison_table,
    make_console,
    manual_preprocess,
    print_notes,
)
from dnx.cli.group import cli
from dnx.core.errors import DnxError
from dnx.benchmarks.accuracy import evaluate_precisions
from dnx.calibration.budget import BudgetNotMetError, calibrate_with_budget
from dnx.calibration.fp16 import convert_fp16
from dnx.calibration.qdq import calibrate_qdq
from dnx.core.fileio import check_writable, write_json_atomic
from dnx.core.tables import new_table, verdict
from dnx.data.datasets import LabelledImages, load_labelled, shipped_fashion_mnist_test
from dnx.models import ASSETS, create_model
from dnx.schemas.manifest import read_manifest


@cli.command("calibrate")
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="Image folder (recursive), .npy/.npz array, or IDX file/folder.")
@click.option("--target", type=click.Choice(["tensorrt", "onnxruntime", "openvino"]), default="tensorrt",
              show_default=True, help="Place Q/DQ for the engine that will run the file (openvino: NNCF's "
              "placement, pip install 'dnx[openvino]').")
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]),
              help="Range statistic (default: entropy for --target tensorrt, percentile for onnxruntime; "
                   "openvino uses NNCF's own).")
@click.option("--samples", default=512, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--exclude", multiple=True, help="Node name or op type to leave in float (repeatable).")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of the unquantized ops (fp16: TensorRT's 'best' mode).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--cache", "cache_path", type=click.Path(), help="Calibration cache (default: OUT.calib.json).")
@click.option("--mean", help="Per-channel mean, for ONNX files without a dnx manifest.")
@click.option("--std", help="Per-channel std, for ONNX files without a dnx manifest.")
@click.option("--image-size", type=int, help="Input size, for ONNX files without a dnx manifest.")
@click.option("--eval-data", type=click.Path(),
              help="Labelled set (IDX folder, class folders, .npz) for an accuracy budget: half searches, half checks.")
@click.option("--max-accuracy-drop", type=float,
              help="Budget: keep the fewest units (dense layers, transitions, ...) in float so top-1 accuracy is "
                   "within this many points of FP32.")
@click.option("--max-agreement-loss", type=float,
              help="Budget: top-1 agreement with FP32 at least 100 minus this many points.")
@click.option("--budget-plot", type=click.Path(), help="Write the budget's accuracy-vs-latency plot (.png/.svg/.pdf).")
@click.option("--decode", type=click.Choice(["exact", "fast"]),
              help="JPEG decode of the calibration images, recorded in the output's manifest (default: the model's).")
@click.option("-o", "--output", type=click.Path(),
              help="Output (default: MODEL.int8.onnx for --target tensorrt, the file `dnx build --precision int8` "
                   "makes; MODEL.int8-onnxruntime.onnx / MODEL.int8-openvino.onnx for onnxruntime / openvino; .best "
                   "instead of .int8 with --high-precision fp16).")
def calibrate_cmd(model, data_path, target, method, samples, seed, exclude, high_precision, batch_size,
                  cache_path, mean, std, image_size, eval_data, max_accuracy_drop, max_agreement_loss, budget_plot,
                  decode, output) -> None:
    """Calibrate INT8 and write a Q/DQ ONNX graph (with a budget: the fewest float units that meet it)."""
    from pathlib import Path

    src = Path(model)
    suffix = ("best" if high_precision == "fp16" else "int8") + ("" if target == "tensorrt" else f"-{target}")
    output = output or str(src.with_name(f"{src.stem}.{suffix}.onnx"))
    if max_accuracy_drop is not None or max_agreement_loss is not None or eval_data or budget_plot:
        if decode is not None:
            raise DnxError("--decode is not available with an accuracy budget; calibrate with the model's decode")
        _calibrate_with_budget(src, output, data_path, eval_data, max_accuracy_drop, max_agreement_loss,
                               budget_plot, exclude, {"target": target, "method": method, "samples": samples, "seed": seed,
                                                      "high_precision": high_precision, "cache_path": cache_path,
                                                      "batch_size": batch_size,
                                                      "preprocess": manual_preprocess(mean, std, image_size)})
        return
    with make_console().status("calibrating..."):
        result = calibrate_qdq(src, output, data_path, target=target, method=method, samples=samples, seed=seed,
                               exclude=exclude, high_precision=high_precision,
                               cache_path=cache_path, batch_size=batch_size,
                               preprocess=manual_preprocess(mean, std, image_size), decode=decode)
    print_notes(result.notes)
    how = f"reused calibration cache {result.cache_path}" if result.cache_hit else f"ranges cached in {result.cache_path}"
    click.echo(f"wrote {result.path}: INT8 Q/DQ for {target}, {result.manifest['calibration']['method']} on {result.samples} samples, "
               f"{result.seconds:.1f} s ({how})")
    _report_certificate(result.path, result.manifest)


def _report_certificate(path, manifest: dict) -> None:
    """One line with the parity verdict of a derived file; a failed one exits 1 (the file is kept, marked)."""
    cert = manifest.get("certificate") or {}
    data = cert.get("data") or {}
    line = f"parity vs FP32 on {data.get('images', '?')} images ({data.get('what', '?')}): {cert.get('summary', '?')}"
    if cert.get("verdict") != "passed":
        raise DnxError(f"{path} was written but failed its parity check and is marked 'failed' (dnx.load refuses "
                       f"it without --allow-unverified): {line}")
    click.echo(line)


def _calibrate_with_budget(src, output, data_path, eval_data, max_accuracy_drop, max_agreement_loss, budget_plot,
                           exclude, options: dict) -> None:
    if max_accuracy_drop is None and max_agreement_loss is None:
        raise DnxError("--eval-data/--budget-plot need a budget: add --max-accuracy-drop and/or --max-agreement-loss")
    if not eval_data:
        raise DnxError("an accuracy budget needs labelled data to measure it: add --eval-data LABELLED")
    if exclude:
        raise DnxError("--exclude and an accuracy budget both choose the float nodes; drop --exclude")
    console = make_console()
    try:
        with console.status("budget search...") as status:
            report = calibrate_with_budget(src, output, data_path, eval_data, max_accuracy_drop=max_accuracy_drop,
                                           max_agreement_loss=max_agreement_loss, plot=budget_plot,
                                           progress=lambda msg: status.update(msg), **options)
    except BudgetNotMetError as exc:
        print_notes(exc.report["notes"])
        console.print(_pareto_table(exc.report))
        raise
    print_notes(report["notes"])
    console.print(_pareto_table(report))
    held, fp32_ms = report["result"]["held_apart"], report["pareto"]["fp32_latency"]["median_ms"]
    points = report["pareto"]["points"]
    chosen = next(p for p in points if p["float_units"] == len(report["float_units"]))
    extra = f" ({', '.join(report['float_units'])})" if report["float_units"] else ""
    click.echo(f"wrote {output}: INT8 for {report['target']} + {len(report['float_units'])} float unit(s){extra}; "
               f"held-apart half ({report['eval_data']['held_apart']} images): accuracy {held['accuracy']:.2%} "
               f"(FP32 {held['reference_accuracy']:.2%}, drop {held['accuracy_drop_pt']:+.2f} pt), agreement "
               f"{held['agreement']:.2%}, budget {'met' if report['result']['held_apart_meets_budget'] else 'NOT met'}; "
               f"latency {chosen['latency']['median_ms']:.3f} ms vs plain INT8 {points[0]['latency']['median_ms']:.3f} ms "
               f"and FP32 {fp32_ms:.3f} ms ({report['pareto']['backend']}, batch 1); "
               f"{report['search']['evaluations']} evaluations in {report['search']['seconds']:.0f} s")

    _report_certificate(output, read_manifest(output).to_dict())  # the chosen graph's parity check, as without a budget


def _pareto_table(report: dict):
    table = new_table(f"accuracy vs latency, search half ({report['eval_data']['search']} images), "
                      f"{report['pareto']['backend']} batch 1; FP32 {report['pareto']['fp32_latency']['median_ms']:.3f} ms",
                      ("float units", "added", "accuracy", "drop", "agreement", "median ms", "transposes", "Pareto", "budget"),
                      left=("added",))
    for p in report["pareto"]["points"]:
        table.add_row(str(p["float_units"]), p["added"] or "(plain INT8)", f"{p['accuracy']:.2%}",
                      f"{p['accuracy_drop_pt']:+.2f} pt", f"{p['agreement']:.2%}", f"{p['latency']['median_ms']:.3f}",
                      str(p["transposes"]), "*" if p["pareto_optimal"] else "", "met" if p["meets_budget"] else "-")
    return table


@cli.command("convert")
@click.argument("model", type=click.Path())
@click.option("--precision", type=click.Choice(["fp16"]), default="fp16", show_default=True)
@click.option("--check/--no-check", default=True, show_default=True, help="Compare with the FP32 file in onnxruntime.")
@click.option("-o", "--output", type=click.Path(), help="Output (default: MODEL.fp16.onnx).")
def convert_cmd(model, precision, check, output) -> None:
    """Convert an FP32 ONNX file to FP16 (FP32 inputs/outputs kept)."""
    from pathlib import Path

    src = Path(model)
    result = convert_fp16(src, output or src.with_name(f"{src.stem}.{precision}.onnx"), check=check)
    print_notes(result.notes)
    if result.comparison is not None:
        data = result.manifest["certificate"]["data"]["what"]
        make_console().print(comparison_table("FP16 vs FP32 (onnxruntime CPU)", [(data, result.comparison)]))
    click.echo(f"wrote {result.path} ({result.seconds:.1f} s)")
    if result.comparison is not None:
        _report_certificate(result.path, result.manifest)


@cli.command("eval")
@click.argument("model", default="densenet_bc22_fmnist")
@click.option("--weights", type=click.Path(), help="Checkpoint (default: the bundled one, if any).")
@click.option("--data", "data_path", type=click.Path(),
              help="Labelled set: IDX folder, class-folder tree or .npz (default: the shipped Fashion-MNIST 5k).")
@click.option("--calib-data", type=click.Path(), help="Calibration data (default: the shipped 512 training images).")
@click.option("--samples", default=512, show_default=True, type=int)
@click.option("--method", type=click.Choice(["entropy", "percentile", "minmax"]),
              help="Range statistic (default: entropy for --target tensorrt, percentile for onnxruntime).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N images only.")
@click.option("--threads", default=0, type=int)
@click.option("--workdir", type=click.Path(), default="build/eval", show_default=True)
@click.option("--json", "json_path", type=click.Path(), help="Also write the report as JSON.")
@click.option("--max-accuracy-drop", type=float,
              help="Add the row of `dnx calibrate --max-accuracy-drop` (int8 + N float units), searched on half the data.")
@click.option("--max-agreement-loss", type=float, help="Budget on top-1 agreement loss (points) for that row.")
@click.option("--budget-target", type=click.Choice(["tensorrt", "onnxruntime"]), default="tensorrt",
              show_default=True, help="Q/DQ placement of the budget row.")
@click.option("--decode", type=click.Choice(["exact", "fast"]), default="fast", show_default=True,
              help="How JPEGs of an image-folder --data are decoded (fast: at the DCT scale the model needs).")
def eval_cmd(model, weights, data_path, calib_data, samples, method, limit, threads, workdir, json_path,
             max_accuracy_drop, max_agreement_loss, budget_target, decode) -> None:
    """Accuracy of PyTorch FP32 vs ONNX FP32 / FP16 / INT8 QDQ over a labelled set."""
    from dataclasses import replace
    from pathlib import Path

    if json_path:
        check_writable(json_path, "--json")  # before minutes of evaluation, not after
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
