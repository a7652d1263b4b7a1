"""Report formats: JSON valid against dnx/schemas/json/bench.schema.json, CSV, Markdown, rich tables, the plot."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest

from dnx.benchmarks import report
from dnx.benchmarks.harness import BenchConfig, run_bench
from dnx.core.errors import DnxError, MissingDependencyError


@pytest.fixture(scope="module")
def result():
    # onnxruntime-cuda is unavailable on CPU machines and runs on GPU ones: the formats must handle both.
    config = BenchConfig(target="densenet_bc22_fmnist",
                         backends=("torch-cpu", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt-cuda"),
                         batches=(1, 2), iterations=3, warmup_s=0.0, samples=6)
    return run_bench(config)


def test_json_validates_against_the_schema(result, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = report.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    path = tmp_path / "bench.json"
    report.write_json(result, path)
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["schema"] == "dnx.bench/1" == schema["properties"]["schema"]["const"]
    statuses = {r["backend"]: r["status"] for r in doc["results"]}
    assert statuses["torch-cpu"] == statuses["onnxruntime-cpu"] == "ok" and statuses["tensorrt-cuda"] == "unavailable"
    ort = next(r for r in doc["results"] if r["backend"] == "onnxruntime-cpu")
    assert [e["batch"] for e in ort["latency"]] == [1, 2] and ort["parity"]["passed"] is True
    assert ort["latency"][0]["end_to_end"]["iterations"] == 3
    assert doc["machine"]["cpu"] and "onnxruntime" in doc["machine"]["versions"]


def test_schema_rejects_a_wrong_document(result):
    jsonschema = pytest.importorskip("jsonschema")
    doc = report.to_json(result)
    doc["results"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, report.load_schema())


def test_csv_has_a_row_per_backend_and_batch(result, tmp_path):
    path = tmp_path / "bench.csv"
    report.write_csv(result, path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert tuple(rows[0]) == report.CSV_COLUMNS
    ort = [r for r in rows if r["backend"] == "onnxruntime-cpu"]
    assert [r["batch"] for r in ort] == ["1", "2"] and all(float(r["median_ms"]) > 0 for r in ort)
    trt = [r for r in rows if r["backend"] == "tensorrt-cuda"]
    assert len(trt) == 1 and trt[0]["status"] == "unavailable" and trt[0]["reason"]


def test_markdown_has_machine_tables_and_unavailable_rows(result, tmp_path):
    path = tmp_path / "bench.md"
    report.write_markdown(result, path)
    text = path.read_text()
    assert text.startswith("## densenet_bc22_fmnist")
    assert "Machine:" in text and result.machine["cpu"] in text
    assert "| onnxruntime-cpu | fp32 |" in text and "| tensorrt-cuda | unavailable:" in text
    assert "top-1 agreement" in text


def test_rich_tables_render(result):
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(report.latency_table(result))
    console.print(report.parity_table(result))
    text = console.export_text()
    assert "onnxruntime-cpu" in text and "unavailable" in text and "pass" in text


def test_plot_is_written(result, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    report.plot(result, path)
    data = path.read_bytes()
    assert len(data) > 10_000 and data.startswith(b"\x89PNG")


def test_plot_without_matplotlib_names_the_extra(result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'dnx\[plot\]'"):
        report.plot(result, tmp_path / "bench.png")
    assert not (tmp_path / "bench.png").exists()


def test_plot_rejects_an_unknown_format(result, tmp_path):
    with pytest.raises(DnxError, match=".png"):
        report.plot(result, tmp_path / "bench.txt")
