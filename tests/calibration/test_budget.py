"""Accuracy-budgeted INT8 (issue 16) on real onnxruntime: units, a budget plain INT8 meets, an impossible one."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from dnx.calibration.budget import Budget, Metrics, calibrate_with_budget, quantizable_units, split_halves
from dnx.calibration.qdq import qdq_summary
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.core.errors import DnxError
from dnx.schemas.manifest import manifest_of, read_manifest
from dnx.models import ASSETS

CALIB = ASSETS / "fashion_mnist_calib512.npz"
DENSENET_BC22_UNITS = ["stem", *(f"features.denseblock{b}.denselayer{i}" for b in (1,) for i in (1, 2, 3)),
                       "features.transition1", *(f"features.denseblock2.denselayer{i}" for i in (1, 2, 3)),
                       "features.transition2", *(f"features.denseblock3.denselayer{i}" for i in (1, 2, 3)),
                       "classifier"]


@pytest.fixture(scope="module")
def eval_npz(tmp_path_factory):
    """The first 200 shipped test images: a 100/100 split keeps every test here well under a minute."""
    data = shipped_fashion_mnist_test()
    path = tmp_path_factory.mktemp("budget") / "eval200.npz"
    np.savez(path, images=data.images[:200], labels=data.labels[:200])
    return path


def test_units_of_a_dnx_densenet_are_its_modules(fmnist_onnx):
    proto = onnx.load(str(fmnist_onnx))
    units = quantizable_units(proto, manifest_of(proto, fmnist_onnx))
    assert list(units) == DENSENET_BC22_UNITS
    layer = units["features.denseblock2.denselayer3"]
    assert {"/features/denseblock2/denselayer3/conv1/Conv", "/features/denseblock2/denselayer3/conv2/Conv",
            "/features/denseblock2/denselayer3/norm1/BatchNormalization"} <= set(layer)
    assert "/features/transition1/pool/AveragePool" in units["features.transition1"]
    assert units["classifier"] == ["/features/norm5/BatchNormalization", "/classifier/Gemm"]
    # every Conv/Gemm belongs to exactly one unit
    weighted = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert sorted(weighted) == sorted(n for names in units.values() for n in names if n in weighted)


def test_units_of_a_dnx_densenet_whose_node_lost_its_name(fmnist_onnx):
    """A folded conv without a node name is placed by its weight initializer's name."""
    proto = onnx.load(str(fmnist_onnx))
    conv = next(n for n in proto.graph.node if n.name == "/features/denseblock1/denselayer1/conv2/Conv")
    conv.name = ""
    units = quantizable_units(proto, manifest_of(proto, fmnist_onnx))
    assert list(units) == DENSENET_BC22_UNITS  # the layer keeps its other, named nodes
    # an unnamed node cannot be excluded (exclusion is by name), so it is in no unit
    assert "" not in {n for names in units.values() for n in names}


def _foreign_onnx(path):
    """A tiny torchvision-like CNN exported with plain torch.onnx.export: no dnx manifest, exporter's names."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    torch.onnx.export(model, (torch.randn(2, 1, 28, 28),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    return path


def test_foreign_onnx_units_are_named_weighted_nodes(tmp_path, eval_npz):
    from dnx.models.registry import Preprocess

    path = _foreign_onnx(tmp_path / "foreign.onnx")
    proto = onnx.load(str(path))
    units = quantizable_units(proto, None)
    weighted = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(weighted) == 3 and units == {name: [name] for name in weighted}
    pre = Preprocess(28, 28, (0.5,), (0.5,), 1)
    report = calibrate_with_budget(path, tmp_path / "foreign.int8.onnx", CALIB, eval_npz, max_accuracy_drop=100,
                                   target="onnxruntime", samples=16, preprocess=pre, latency_s=0.1)
    assert report["units"] == "node-names" and report["unit_count"] == 3 and report["met"]


def test_budget_met_by_plain_int8_keeps_everything_quantized(fmnist_onnx, eval_npz, tmp_path):
    out = tmp_path / "fm.int8.onnx"
    report = calibrate_with_budget(fmnist_onnx, out, CALIB, eval_npz, max_accuracy_drop=5.0, max_agreement_loss=5.0,
                                   samples=64, latency_s=0.1)
    assert report["met"] and report["float_units"] == [] and report["sensitivity"] == []
    assert report["search"]["evaluations"] == 3  # plain INT8 on the search half, plain and chosen held apart
    assert report["result"]["held_apart_meets_budget"]
    summary = qdq_summary(onnx.load(str(out)))
    assert summary["conv_inputs_dequantized"] == summary["conv"] == 21  # every Conv reads INT8
    manifest = read_manifest(out)
    assert manifest.calibration.budget.to_dict() == json.loads(json.dumps(report))
    assert json.loads(out.with_name(out.name + ".json").read_text())["calibration"]["budget"]["met"]
    assert [p["float_units"] for p in report["pareto"]["points"]] == [0]


def test_impossible_budget_is_one_line_and_writes_the_best_graph(eval_npz, tmp_path):
    """No graph can be 5 points *better* than FP32: every unit is tried, the best graph is written, exit 1.
    (The tiny foreign model's 3 units keep this CLI run short; its argv is what a user types.)"""
    source, out = _foreign_onnx(tmp_path / "foreign.onnx"), tmp_path / "foreign.budget.onnx"
    run = subprocess.run([sys.executable, "-m", "dnx.cli", "calibrate", str(source), "--data", str(CALIB),
                          "--samples", "16", "--mean", "0.5", "--std", "0.5", "--image-size", "28",
                          "--eval-data", str(eval_npz), "--max-accuracy-drop", "-5", "-o", str(out)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stderr
    message = [line for line in run.stderr.splitlines() if line.startswith("dnx:") and "note:" not in line]
    assert len(message) == 1 and "accuracy drop <= -5 pt) not met" in message[0] and str(out) in message[0]
    budget = read_manifest(out).calibration.budget.to_dict()
    assert not budget["met"] and len(budget["sensitivity"]) == 3
    # 0 .. 2 float units tried (all 3 in float would be the FP32 graph)
    assert [p["float_units"] for p in budget["pareto"]["points"]] == [0, 1, 2]
    assert budget["search"]["evaluations"] == 1 + 3 + 2 + 2
    # the Q/DQ graph is whole: every DequantizeLinear reads a QuantizeLinear or a constant
    proto = onnx.load(str(out))
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    inits = {i.name for i in proto.graph.initializer}
    assert all(producers.get(n.input[0]) == "QuantizeLinear" or n.input[0] in inits
               for n in proto.graph.node if n.op_type == "DequantizeLinear")
    assert "accuracy vs latency" in run.stdout


def test_budget_options_need_each_other(fmnist_onnx, eval_npz, tmp_path):
    def calibrate(*args):
        return subprocess.run([sys.executable, "-m", "dnx.cli", "calibrate", str(fmnist_onnx), "--data", str(CALIB),
                               "-o", str(tmp_path / "x.onnx"), *args], capture_output=True, text=True, timeout=120,
                              check=False)

    assert "add --eval-data" in calibrate("--max-accuracy-drop", "1").stderr
    assert "need a budget" in calibrate("--eval-data", str(eval_npz)).stderr
    assert "drop --exclude" in calibrate("--eval-data", str(eval_npz), "--max-accuracy-drop", "1",
                                         "--exclude", "Concat").stderr
    assert not (tmp_path / "x.onnx").exists()


def test_split_halves_is_seeded_and_disjoint():
    a, b = split_halves(11, seed=3)
    assert len(a) == 5 and len(b) == 6 and not set(a) & set(b) and sorted([*a, *b]) == list(range(11))
    assert all((x == y).all() for x, y in zip(split_halves(11, 3), (a, b)))


def test_eval_shows_the_budget_row(eval_npz, tmp_path):
    out = tmp_path / "eval.json"
    run = subprocess.run([sys.executable, "-m", "dnx.cli", "eval", "--data", str(eval_npz), "--samples", "32",
                          "--workdir", str(tmp_path / "w"), "--json", str(out), "--max-accuracy-drop", "5"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert rows[-1]["label"] == "ONNX INT8 + 0 float units (tensorrt)" and rows[-1]["samples"] == 200
    assert "ONNX INT8 + 0 float units" in run.stdout


def test_the_search_wants_one_standard_error_to_spare():
    # 2,500 images, 5 disagreements (agreement loss 0.2 pt), accuracy 0.04 pt below FP32: 1 SE = sqrt(5)/25 pt
    m = Metrics(accuracy=0.9196, reference_accuracy=0.92, agreement=0.998, cosine=1.0, nmse=0.0, images=2500)
    assert m.standard_error == pytest.approx(100 * 5 ** 0.5 / 2500)
    assert Budget(max_agreement_loss=0.2).met(m) and not Budget(max_agreement_loss=0.2).met(m, margin_se=1)
    assert Budget(max_agreement_loss=0.3).met(m, margin_se=1)  # 0.2 + 0.089 <= 0.3
    assert Budget(max_accuracy_drop=0.04).met(m) and not Budget(max_accuracy_drop=0.1).met(m, margin_se=1)
    with pytest.raises(DnxError, match="give a budget"):
        Budget()
