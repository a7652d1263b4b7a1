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
    """Old backend names still run, each with one deprecation note; the outputs carry the table's names."""
    out = tmp_path / "r.json"
    result = dnx("bench", "densenet_bc22_fmnist", "--backends", "ort-cpu,ort-cuda,trt", *FAST,
                 "--json", str(out), "--csv", str(tmp_path / "r.csv"), "--markdown", str(tmp_path / "r.md"))
    assert result.returncode == 0, result.stderr
    assert "unavailable: no CUDA device found" in result.stdout
    doc = json.loads(out.read_text())
    assert {r["backend"]: r["status"] for r in doc["results"]} == {
        "onnxruntime-cpu": "ok", "onnxruntime-cuda": "unavailable", "tensorrt-cuda": "unavailable"}
    assert doc["config"]["backends"] == ["onnxruntime-cpu", "onnxruntime-cuda", "tensorrt-cuda"]
    notes = [line for line in result.stderr.splitlines() if "deprecated" in line]
    assert notes == ["dnx: note: backend name 'ort-cpu' is deprecated; use 'onnxruntime-cpu'",
                     "dnx: note: backend name 'ort-cuda' is deprecated; use 'onnxruntime-cuda'",
                     "dnx: note: backend name 'trt' is deprecated; use 'tensorrt-cuda'"]
    assert "ort-cpu" not in (tmp_path / "r.csv").read_text() + (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.csv").stat().st_size > 0 and (tmp_path / "r.md").stat().st_size > 0


@no_cuda
def test_only_unavailable_backends_exit_non_zero(tmp_path):
    out = tmp_path / "r.json"
    result = dnx("bench", "densenet_bc22_fmnist", "--backends", "onnxruntime-cuda,tensorrt-cuda", *FAST,
                 "--json", str(out))
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


def test_e2e_times_the_request_on_the_users_photos(tmp_path, fmnist_onnx):
    from PIL import Image

    from dnx.data.preprocess import bundled_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, path in enumerate(bundled_photos()[:2]):
        Image.open(path).convert("RGB").resize((1200, 900)).save(photos / f"{i}.jpg", quality=90)
    out = tmp_path / "e2e.json"
    result = dnx("bench", str(fmnist_onnx), "--e2e", str(photos), "--threads", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    (row,) = data["sizes"].values()
    for path in ("dnx exact", "dnx fast", "PIL", "torchvision.io"):
        stages = row["paths"][path]
        assert stages["total"]["p50_ms"] > 0 and "inference" in stages, path
    assert row["paths"]["dnx fast"]["decode"]["p50_ms"] < row["paths"]["dnx exact"]["decode"]["p50_ms"]
    assert "| dnx fast |" in result.stdout and data["machine"]["cpu"]
    assert dnx("bench", "--e2e", str(photos)).returncode == 1  # no artifact: one-line error
