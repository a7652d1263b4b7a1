"""`dnx serve --config FILE`: a TOML file of serve flags, command-line flags over it, unknown keys refused."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is a test dependency (pip install 'dnx[test]')")
pytest.importorskip("fastapi", reason="dnx serve needs pip install 'dnx[serve]'")

from dnx.core.errors import DnxError  # noqa: E402
from dnx.runtime.serve.config_file import read_serve_config, serve_config_text, write_serve_config  # noqa: E402
from dnx.runtime.serve.process import ServeProcess  # noqa: E402

KEYS = {"max-batch": "max_batch", "max-delay-ms": "max_delay_ms", "backend": "backend", "top-k": "default_top_k"}


def _dnx(*args):
    return subprocess.run([sys.executable, "-m", "dnx.cli", *args], capture_output=True, text=True, timeout=120)


def test_read_and_write(tmp_path):
    path = write_serve_config(tmp_path / "s.toml", {"max-batch": 4, "max-delay-ms": 1.5, "backend": 'on"x',
                                                    "allow-unverified": False, "artifact": "m.onnx"}, ["a comment"])
    text = path.read_text()
    assert text.startswith("# a comment\nartifact = ") and tomllib.loads(text)["backend"] == 'on"x'
    keys = {**KEYS, "allow-unverified": "allow_unverified"}
    values = read_serve_config(path, keys)
    assert values == {"artifact": str(tmp_path / "m.onnx"), "max_batch": 4, "max_delay_ms": 1.5,
                      "backend": 'on"x', "allow_unverified": False}
    (tmp_path / "u.toml").write_text("max_batch = 2\n")  # underscores read as dashes
    assert read_serve_config(tmp_path / "u.toml", KEYS) == {"max_batch": 2}
    with pytest.raises(DnxError, match="non-finite|finite"):
        serve_config_text({"max-delay-ms": float("nan")})


@pytest.mark.parametrize("text, message", [
    ("bogus = 1\n", "unknown key 'bogus'; known: artifact, backend, max-batch"),
    ("max-batch = \n", "not valid TOML"),
    ("[serve]\nmax-batch = 2\n", "tables are not serve settings"),
    ("artifact = 3\n", "artifact must be a path string"),
])
def test_bad_files_one_line(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(DnxError, match=message.replace("[", r"\[")):
        read_serve_config(tmp_path / "c.toml", KEYS)


def test_cli_errors(tmp_path):
    (tmp_path / "c.toml").write_text("max-batchh = 2\n")
    r = _dnx("serve", "--config", str(tmp_path / "c.toml"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown key 'max-batchh'" in r.stderr
    assert "Traceback" not in r.stderr
    (tmp_path / "t.toml").write_text('max-batch = "many"\n')
    r = _dnx("serve", "--config", str(tmp_path / "t.toml"), "model.onnx")
    assert r.returncode == 1 and "--max-batch" in r.stderr and r.stderr.count("\n") == 1
    r = _dnx("serve", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 1 and "no such file" in r.stderr
    r = _dnx("serve")
    assert r.returncode == 1 and "give the ARTIFACT" in r.stderr


def test_config_starts_serve_and_flags_override(fmnist_onnx, tmp_path):
    config = tmp_path / "serve.toml"
    rel = fmnist_onnx.resolve()
    config.write_text(f'artifact = "{rel}"\nbackend = "onnxruntime"\nmax-batch = 6\nmax-delay-ms = 3.5\n'
                      "max-queue = 17\nthreads = 1\n")
    with ServeProcess(None, "--config", str(config), "--max-batch", "3") as server:
        model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
    assert model["backend"] == "onnxruntime"
    assert model["serving"]["max_batch"] == 3  # the command line wins
    assert model["serving"]["max_delay_ms"] == 3.5 and model["serving"]["max_queue"] == 17  # the file's


def test_ov_hint_is_checked_and_reaches_the_openvino_runner(fmnist_onnx, tmp_path):
    from dnx.runtime.serve.service import ServeConfig, Service

    with pytest.raises(DnxError, match="ov_hint throughput applies to OpenVINO only; add --backend openvino"):
        ServeConfig(artifact="m.onnx", ov_hint="throughput").validate()
    with pytest.raises(DnxError, match="ov_hint must be latency or throughput"):
        ServeConfig(artifact="m.onnx", backend="openvino", ov_hint="fast").validate()
    (tmp_path / "h.toml").write_text('backend = "onnxruntime"\nov-hint = "throughput"\n')  # a known key
    r = _dnx("serve", "--config", str(tmp_path / "h.toml"), str(fmnist_onnx))
    assert r.returncode == 1 and "--ov-hint throughput applies to OpenVINO only" in r.stderr
    assert r.stderr.count("\n") == 1

    pytest.importorskip("openvino", reason="the hint is OpenVINO's (pip install 'dnx[openvino]')")
    for hint in ("latency", "throughput"):
        service = Service(ServeConfig(artifact=str(fmnist_onnx), backend="openvino", ov_hint=hint, max_batch=1))
        try:
            service.open()
            assert service.classifier._runner.hint == hint
        finally:
            service.close()
    config = tmp_path / "ov.toml"
    config.write_text(f'artifact = "{fmnist_onnx.resolve()}"\nbackend = "openvino"\nov-hint = "throughput"\n'
                      "max-batch = 1\n")
    with ServeProcess(None, "--config", str(config)) as server:
        model = httpx.get(f"{server.url}/v1/model", timeout=30).json()
    assert model["backend"] == "openvino" and model["serving"]["ov_hint"] == "throughput"
