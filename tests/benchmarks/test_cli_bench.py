"""`dnx bench` on the command line: outputs, unavailable backends, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dnx.benchmarks.harness import cuda_available

FAST = ["--batch", "1", "--iterations", "2", "--warmup", "0", "--samples", "4"]
no_cuda = pytest.mark.skipif(cuda_available(), reason="checks behaviour on a machine without CUDA")


def dnx(*args: str) -> subprocess.CompletedProcess:
    code = f"from dnx.cli import main\nmain({list(args)!r})\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@no_cuda
def test_unavailable_backends_are_reported_and_exit_zero_when_others_ran(tmp_path):
    out = tmp_path / "r.json"
    result = dnx("bench", "densenet_bc22_fmnist", "--backends", "ort-cpu,ort-cuda,trt", *FAST,
                 "--json", str(out), "--csv", str(tmp_path / "r.csv"), "--markdown", str(tmp_path / "r.md"))
    assert result.returncode == 0, result.stderr
    assert "unavailable: no CUDA device found" in result.stdout
    doc = json.loads(out.read_text())
    assert {r["backend"]: r["status"] for r in doc["results"]} == {
        "ort-cpu": "ok", "ort-cuda": "unavailable", "trt": "unavailable"}
    assert (tmp_path / "r.csv").stat().st_size > 0 and (tmp_path / "r.md").stat().st_size > 0


@no_cuda
def test_only_unavailable_backends_exit_non_zero(tmp_path):
    out = tmp_path / "r.json"
    result = dnx("bench", "densenet_bc22_fmnist", "--backends", "ort-cuda,trt", *FAST, "--json", str(out))
    assert result.returncode == 2
    assert "none of the requested backends ran here" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(out.read_text())["results"][0]["status"] == "unavailable"  # still written


def test_user_errors_are_one_line(tmp_path):
    result = dnx("bench", "densenet_bc22_fmnist", "--backends", "ort-gpu")
    assert result.returncode == 1 and "unknown backend" in result.stderr and "Traceback" not in result.stderr
    result = dnx("bench", "densenet_bc22_fmnist", "--batch", "1,x")
    assert result.returncode == 1 and "--batch" in result.stderr
    result = dnx("bench")
    assert result.returncode == 1 and "nothing to benchmark" in result.stderr
    result = dnx("bench", "densenet_bc22_fmnist", "--iterations", "2", "--duration", "1")
    assert result.returncode == 1 and "not both" in result.stderr


def test_plot_option_fails_early_without_matplotlib(tmp_path):
    code = ("import sys\nsys.modules['matplotlib'] = None\nfrom dnx.cli import main\n"
            f"main(['bench', 'densenet_bc22_fmnist', '--plot', {str(tmp_path / 'p.png')!r}])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "dnx[plot]" in result.stderr
