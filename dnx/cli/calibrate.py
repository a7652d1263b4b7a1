"""`dnx calibrate`: INT8 Q/DQ graphs, with or without an accuracy budget."""

from __future__ import annotations

from pathlib import Path

import click

from dnx.calibration.budget import BudgetNotMetError, calibrate_with_budget
from dnx.calibration.qdq import TARGETS, calibrate_qdq
from dnx.cli.common import make_console, print_notes, report_certificate
from dnx.cli.group import cli
from dnx.cli.options import decode_option, method_option, output_option, preprocess_options
from dnx.core.errors import DnxError
from dnx.core.tables import new_table
from dnx.schemas.manifest import read_manifest


@cli.command("calibrate")
@click.argument("model", type=click.Path())
@click.option("--data", "data_path", required=True, type=click.Path(),
              help="Image folder (recursive), .npy/.npz array, or IDX file/folder.")
@click.option("--target", type=click.Choice(TARGETS), default="tensorrt",
              show_default=True, help="Place Q/DQ for the engine that will run the file (openvino: NNCF's "
              "placement, pip install 'dnx[openvino]').")
@method_option()
@click.option("--samples", default=512, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--exclude", multiple=True, help="Node name or op type to leave in float (repeatable).")
@click.option("--high-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Precision of the unquantized ops (fp16: TensorRT's 'best' mode).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--cache", "cache_path", type=click.Path(), help="Calibration cache (default: OUT.calib.json).")
@preprocess_options()
@click.option("--eval-data", type=click.Path(),
              help="Labelled set (IDX folder, class folders, .npz) for an accuracy budget: half searches, half checks.")
@click.option("--max-accuracy-drop", type=float,
              help="Budget: keep the fewest units (dense layers, transitions, ...) in float so top-1 accuracy is "
                   "within this many points of FP32.")
@click.option("--max-agreement-loss", type=float,
              help="Budget: top-1 agreement with FP32 at least 100 minus this many points.")
@click.option("--budget-plot", type=click.Path(), help="Write the budget's accuracy-vs-latency plot (.png/.svg/.pdf).")
@decode_option("the calibration images, recorded in the output's manifest", default_text="the model's")
@output_option("Output (default: MODEL.int8.onnx for --target tensorrt, the file `dnx build --precision int8` "
                   "makes; MODEL.int8-onnxruntime.onnx / MODEL.int8-openvino.onnx for onnxruntime / openvino; .best "
                   "instead of .int8 with --high-precision fp16).")
def calibrate_cmd(model, data_path, target, method, samples, seed, exclude, high_precision, batch_size,
                  cache_path, preprocess, eval_data, max_accuracy_drop, max_agreement_loss, budget_plot,
                  decode, output) -> None:
    """Calibrate INT8 and write a Q/DQ ONNX graph (with a budget: the fewest float units that meet it)."""
    src = Path(model)
    suffix = ("best" if high_precision == "fp16" else "int8") + ("" if target == "tensorrt" else f"-{target}")
    output = output or str(src.with_name(f"{src.stem}.{suffix}.onnx"))
    if max_accuracy_drop is not None or max_agreement_loss is not None or eval_data or budget_plot:
        if decode is not None:
            raise DnxError("--decode is not available with an accuracy budget; calibrate with the model's decode")
        _calibrate_with_budget(src, output, data_path, eval_data, max_accuracy_drop, max_agreement_loss,
                               budget_plot, exclude, {"target": target, "method": method, "samples": samples,
                                                      "seed": seed,
                                                      "high_precision": high_precision, "cache_path": cache_path,
                                                      "batch_size": batch_size,
                                                      "preprocess": preprocess})
        return
    with make_console().status("calibrating..."):
        result = calibrate_qdq(src, output, data_path, target=target, method=method, samples=samples, seed=seed,
                               exclude=exclude, high_precision=high_precision,
                               cache_path=cache_path, batch_size=batch_size,
                               preprocess=preprocess, decode=decode)
    print_notes(result.notes)
    how = (f"reused calibration cache {result.cache_path}" if result.cache_hit
           else f"ranges cached in {result.cache_path}")
    click.echo(f"wrote {result.path}: INT8 Q/DQ for {target}, {result.manifest['calibration']['method']} "
               f"on {result.samples} samples, {result.seconds:.1f} s ({how})")
    report_certificate(result.path, result.manifest)


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
               f"{held['agreement']:.2%}, budget "
               f"{'met' if report['result']['held_apart_meets_budget'] else 'NOT met'}; "
               f"latency {chosen['latency']['median_ms']:.3f} ms "
               f"vs plain INT8 {points[0]['latency']['median_ms']:.3f} ms "
               f"and FP32 {fp32_ms:.3f} ms ({report['pareto']['backend']}, batch 1); "
               f"{report['search']['evaluations']} evaluations in {report['search']['seconds']:.0f} s")

    report_certificate(output, read_manifest(output).to_dict())  # the chosen graph's parity check, as without a budget


def _pareto_table(report: dict):
    table = new_table(f"accuracy vs latency, search half ({report['eval_data']['search']} images), "
                      f"{report['pareto']['backend']} batch 1; "
                      f"FP32 {report['pareto']['fp32_latency']['median_ms']:.3f} ms",
                      ("float units", "added", "accuracy", "drop", "agreement", "median ms", "transposes", "Pareto",
                       "budget"),
                      left=("added",))
    for p in report["pareto"]["points"]:
        table.add_row(str(p["float_units"]), p["added"] or "(plain INT8)", f"{p['accuracy']:.2%}",
                      f"{p['accuracy_drop_pt']:+.2f} pt", f"{p['agreement']:.2%}", f"{p['latency']['median_ms']:.3f}",
                      str(p["transposes"]), "*" if p["pareto_optimal"] else "", "met" if p["meets_budget"] else "-")
    return table
