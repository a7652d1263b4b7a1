"""The checked-in JSON Schemas are the dataclasses' own, and they agree with Python's readers on the
manifests the C++ parser is tested with (runtime/cpp/tests/manifest_cases.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dnx.schemas import jsonschema as generator

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_schemas_are_the_generated_ones():
    files = sorted(p.name for p in generator.FOLDER.glob("*.schema.json"))
    assert files == sorted(f"{stem}.schema.json" for stem in generator.DOCUMENTS)
    for stem, text in generator.generated().items():
        assert generator.schema_path(stem).read_text() == text, (
            f"{stem}.schema.json is stale: run python -m dnx.schemas.jsonschema")
    assert generator.main(["--check"]) == 0


@pytest.mark.parametrize("stem", sorted(generator.DOCUMENTS))
def test_each_schema_is_valid_draft_2020_12_and_versioned(stem):
    schema = generator.load_schema(stem)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].startswith("urn:dnx:") and schema["$id"].endswith(":1")


def _manifest_cases():
    spec = importlib.util.spec_from_file_location("manifest_cases", ROOT / "runtime/cpp/tests/manifest_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cpp_fixture_cases_are_judged_alike_by_schema_and_reader(tmp_path):
    cases = _manifest_cases()
    judged = cases.cases()  # raises when the JSON Schema, the reader and the expectation disagree
    assert len(judged) >= 60 and sum(c["valid"] for c in judged) >= 12
    folder = cases.write_cases(tmp_path)
    index = json.loads((folder / "index.json").read_text())
    assert all((folder / c["file"]).is_file() for c in index)
    assert {c["kind"] for c in index} == {"onnx", "engine"}


def test_committed_bench_and_budget_results_follow_their_schemas():
    bench = jsonschema.Draft202012Validator(generator.load_schema("bench"))
    budget = jsonschema.Draft202012Validator(generator.load_schema("budget"))
    results = ROOT / "benchmarks" / "results"
    reports = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    bench_reports = [r for r in reports if isinstance(r, dict) and r.get("schema") == "dnx.bench/1"]
    assert len(bench_reports) >= 3
    for report in bench_reports:
        bench.validate(report)
    runs = json.loads((results / "accuracy_budget.json").read_text())["runs"]
    assert runs
    for run in runs:
        budget.validate(run["budget"])
