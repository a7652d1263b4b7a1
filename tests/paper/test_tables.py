"""Tables 1 and 2 of the paper, computed from dnx's models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dnx.core.errors import DnxError
from dnx.models import get_config
from dnx.paper.tables import table1, table2, table2_markdown

TABLE2 = {  # the paper's rows (CIFAR, Table 2): label -> printed parameter count
    "DenseNet (L=40, k=12)": 1_000_000, "DenseNet (L=100, k=12)": 7_000_000,
    "DenseNet (L=100, k=24)": 27_200_000, "DenseNet-BC (L=100, k=12)": 800_000,
    "DenseNet-BC (L=250, k=24)": 15_300_000, "DenseNet-BC (L=190, k=40)": 25_600_000,
}


def test_table2_has_the_six_configurations_within_the_papers_rounding():
    rows = table2()
    assert {r.label: r.paper_params for r in rows} == TABLE2
    for r in rows:
        assert r.within_rounding, r  # the paper prints 0.1M steps
        assert r.difference == r.dnx_params - r.paper_params


def test_table2_counts_are_the_built_models_parameters():
    import torch

    row = next(r for r in table2() if r.model == "densenet_bc100_k12")
    with torch.device("meta"):
        model = get_config("densenet_bc100_k12").build()
    assert row.dnx_params == sum(p.numel() for p in model.parameters()) == 769_162


def test_table1_matches_the_papers_densenet121_and_264_columns():
    t = table1()
    assert t.models == ("densenet121", "densenet169", "densenet201", "densenet264")
    sizes = [size for _, size, _ in t.rows]
    assert sizes == ["112×112", "56×56", "56×56", "56×56", "28×28", "28×28", "28×28", "14×14", "14×14",
                     "14×14", "7×7", "7×7", "1×1", "1×1"]
    spec = {(name, size): specs for name, size, specs in t.rows}
    assert spec[("Dense Block (3)", "14×14")] == tuple(f"[1×1 conv, 3×3 conv] × {n}" for n in (24, 32, 48, 64))
    assert spec[("Dense Block (4)", "7×7")] == tuple(f"[1×1 conv, 3×3 conv] × {n}" for n in (16, 32, 32, 48))
    assert spec[("Convolution", "112×112")][0] == "7×7 conv, stride 2"
    assert spec[("Transition Layer (1)", "28×28")][0] == "2×2 average pool, stride 2"
    assert "| DenseNet-121 (k=32) |" in t.markdown()


def test_table1_refuses_models_with_other_stages():
    with pytest.raises(DnxError, match="other stages"):
        table1(["densenet121", "densenet40_k12"])


def test_markdown_and_json_from_the_cli():
    out = subprocess.run([sys.executable, "-m", "dnx.cli", "paper", "tables", "--json"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["table2"]) == 6 and data["table1"]["rows"][0]["output_size"] == "112×112"
    md = table2_markdown(table2())
    assert md.count("\n") == 8 and "| DenseNet-BC (L=190, k=40) |" in md
