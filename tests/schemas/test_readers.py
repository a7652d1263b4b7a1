"""Every reader: a valid document round-trips to the same JSON; each bad field is one line naming it."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from dnx.core.documents import SchemaError
from dnx.core.errors import DnxError
from dnx.models.registry import Preprocess, get_config
from dnx.schemas.bench_report import BenchReport
from dnx.schemas.budget_report import BudgetReport
from dnx.schemas.certificate import Certificate
from dnx.schemas.engine_manifest import (
    ENGINE_SUFFIXES, EngineManifest, EngineMismatchError, is_engine_path, parse_engine_manifest)
from dnx.schemas.manifest import ArtifactManifest, model_manifest, parse_manifest
from dnx.schemas.preprocess import manual_preprocess

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def _cases():
    spec = importlib.util.spec_from_file_location("manifest_cases", ROOT / "runtime/cpp/tests/manifest_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _cases()


def _edited(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    CASES._set(path, value)(doc)
    return doc


def _refused(read, doc, field: str) -> str:
    with pytest.raises(DnxError) as info:
        read(doc)
    message = str(info.value)
    assert "\n" not in message and field in message, message
    if isinstance(info.value, SchemaError):
        assert info.value.field == field
    return message


# -- artifact manifest ------------------------------------------------------------------------------

def test_manifest_round_trips_as_written():
    doc = CASES.onnx_manifest()
    manifest = ArtifactManifest.from_dict(doc, "m.onnx.json")
    assert manifest.to_dict() == doc
    assert manifest.preprocess == Preprocess(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 3, decode="fast")
    assert manifest.label_names == ["cat", "dog", "fox"] and manifest.certificate.verdict == "passed"
    assert parse_manifest(json.dumps(doc), "x").to_dict() == doc


def test_what_export_writes_reads_back():
    cfg = get_config("densenet_bc22_fmnist")
    doc = model_manifest(cfg, "random-init:seed=0", None, "input", "logits", None, 17, "incremental")
    assert ArtifactManifest.from_dict(doc).to_dict() == json.loads(json.dumps(doc))


def test_an_older_manifest_without_decode_or_certificate_still_reads():
    doc = CASES.onnx_manifest()
    del doc["certificate"], doc["preprocess"]["decode"], doc["sha256"]
    manifest = ArtifactManifest.from_dict(doc)
    assert manifest.preprocess.decode == "exact" and manifest.certificate is None


@pytest.mark.parametrize("path, value, field", [
    ("schema", "dnx.manifest/2", "schema"),
    ("precision", "fp64", "precision"),
    ("input.shape", ["N", 3, 224], "input.shape"),
    ("input.layout", "NHWC", "input.layout"),
    ("preprocess.std[2]", -1, "preprocess.std[2]"),
    ("preprocess.mean[0]", 123.7, "preprocess.mean[0]"),
    ("preprocess.mean", [0.5], "preprocess.mean"),
    ("preprocess.interpolation", "lanczos", "preprocess.interpolation"),
    ("preprocess.image_size", 256, "input.shape"),
    ("labels.names", [1], "labels.names[0]"),
    ("certificate.verdict", "maybe", "certificate.verdict"),
    ("calibration", {"target": "tvm"}, "calibration.target"),
    ("weights", {"path": None}, "weights.id"),
    ("source", {"path": "x.onnx", "sha256": "nope"}, "source.sha256"),
    ("sha256", "z" * 64, "sha256"),
])
def test_each_bad_manifest_field_is_named(path, value, field):
    message = _refused(lambda d: ArtifactManifest.from_dict(d, "m.onnx.json"),
                       _edited(CASES.onnx_manifest(), path, value), field)
    assert message.startswith(f"m.onnx.json: {field} ") and message.endswith("re-export the model with `dnx export`")


def test_manifest_text_that_is_not_json_or_not_an_object():
    with pytest.raises(DnxError, match=r"^m.json: is not valid JSON \(.*\); re-export"):
        parse_manifest("{", "m.json")
    with pytest.raises(DnxError, match=r"^m.json is not a dnx manifest \(a JSON list"):
        parse_manifest("[1]", "m.json")


# -- engine manifest --------------------------------------------------------------------------------

def test_engine_manifest_round_trips_and_holds_its_source_manifest():
    doc = CASES.engine_manifest()
    engine = EngineManifest.from_dict(doc)
    assert engine.to_dict() == doc
    assert engine.source_manifest.preprocess.image_size == 224 and engine.batch_profile.max_batch == 32
    assert engine.digest_problem("ab" * 32) is None
    assert "replaced without its sidecar" in engine.digest_problem("cd" * 32)
    assert EngineManifest.from_dict({**doc, "engine_sha256": None}).digest_problem("cd" * 32) is None


@pytest.mark.parametrize("path, value, field", [
    ("tensorrt_version", ..., "tensorrt_version"),
    ("gpu.compute_capability", "eight", "gpu.compute_capability"),
    ("hardware_compat", "any", "hardware_compat"),
    ("version_compat", "yes", "version_compat"),
    ("batch_profile.max_batch", 0, "batch_profile.max_batch"),
    ("inputs[0].shape", "x", "inputs[0].shape"),
    ("engine_sha256", "12", "engine_sha256"),
    ("source_onnx.manifest.preprocess.std[0]", 0, "source_onnx.manifest.preprocess.std[0]"),
])
def test_each_bad_engine_field_is_named(path, value, field):
    doc = _edited(CASES.engine_manifest(), path, value)
    message = _refused(lambda d: parse_engine_manifest(json.dumps(d), "m.engine.json"), doc, field)
    assert message.startswith(f"m.engine.json: {field} ")
    assert message.endswith("rebuild it on this machine with `dnx build m.onnx --precision fp16`")
    with pytest.raises(EngineMismatchError):
        parse_engine_manifest(json.dumps(doc), "m.engine.json")


def test_engine_suffixes_are_one_case_insensitive_list():
    assert ENGINE_SUFFIXES == (".engine", ".plan", ".trt")
    assert all(is_engine_path(p) for p in ("m.engine", "M.PLAN", "dir/m.Trt"))
    assert not any(is_engine_path(p) for p in ("m.onnx", "m.engine.json", "engine"))


# -- certificate ------------------------------------------------------------------------------------

def test_certificate_round_trips_and_names_bad_fields():
    doc = CASES.onnx_manifest()["certificate"]
    assert Certificate.from_dict(doc).to_dict() == doc
    _refused(Certificate.from_dict, {**doc, "content_sha256": "abc"}, "content_sha256")
    _refused(Certificate.from_dict, {**doc, "cases": {"random": 1}}, "cases.random")


# -- preprocessing ----------------------------------------------------------------------------------

def test_preprocess_reads_what_it_writes():
    pre = get_config("densenet121").preprocess
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert pre.to_dict()["mean"] == [0.485, 0.456, 0.406]  # JSON's own types


@pytest.mark.parametrize("kwargs, field", [
    ({"std": (0.2, 0.0, 0.2)}, "std[1]"),
    ({"mean": (0.5, 0.5)}, "mean"),
    ({"mean": (1.5, 0.5, 0.5)}, "mean[0]"),
    ({"std": (0.5,)}, "std"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 5000}, "image_size"),
    ({"interpolation": "lanczos"}, "interpolation"),
    ({"mean": "abc"}, "mean"),
])
def test_manual_preprocess_obeys_the_manifest_rules(kwargs, field):
    args = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "image_size": 224, **kwargs}
    with pytest.raises(SchemaError) as info:
        manual_preprocess(**args)
    assert info.value.field == field and "\n" not in str(info.value)


def test_manual_preprocess_defaults():
    assert manual_preprocess((0.5,), (0.25,), 28) == Preprocess(28, 28, (0.5,), (0.25,), 1)
    assert manual_preprocess([0.5] * 3, [0.25] * 3, 224).resize_size == 256


# -- reports ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet_bc22_fmnist"])
def test_committed_bench_reports_round_trip(name):
    doc = json.loads((RESULTS / f"{name}.json").read_text())
    report = BenchReport.from_dict(doc, f"{name}.json")
    expected = {**doc, "machine": {"isa_flags": None, **doc["machine"]}}  # older reports lack the field
    assert report.to_dict() == expected


def test_bench_report_names_bad_fields():
    doc = json.loads((RESULTS / "densenet121.json").read_text())
    _refused(BenchReport.from_dict, _edited(doc, "results[0].status", "maybe"), "results[0].status")
    _refused(BenchReport.from_dict, _edited(doc, "config.batches", []), "config.batches")
    _refused(BenchReport.from_dict, _edited(doc, "model.misspelt", 1), "model.misspelt")


def test_committed_budget_reports_round_trip_and_name_bad_fields():
    runs = json.loads((RESULTS / "accuracy_budget.json").read_text())["runs"]
    for run in runs:
        assert BudgetReport.from_dict(run["budget"]).to_dict() == run["budget"]
    doc = runs[0]["budget"]
    _refused(BudgetReport.from_dict, _edited(doc, "pareto.points[0].latency.median_ms", -1),
             "pareto.points[0].latency.median_ms")
    _refused(BudgetReport.from_dict, _edited(doc, "target", "tvm"), "target")
    # and inside a manifest, where calibrate_with_budget stores it
    manifest = {**CASES.onnx_manifest(), "calibration": {"target": "tensorrt", "budget": _edited(doc, "met", "yes")}}
    _refused(ArtifactManifest.from_dict, manifest, "calibration.budget.met")
