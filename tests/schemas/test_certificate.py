"""Parity certificates: written by export/convert/calibrate, checked by dnx.load and dnx serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import dnx
from dnx.calibration.qdq import certify
from dnx.schemas.manifest import read_manifest, sidecar_path
from dnx.models.registry import Preprocess
from dnx.runtime.artifact import UnverifiedArtifact


def _copy(src, dst):
    shutil.copy(src, dst)
    shutil.copy(sidecar_path(src), sidecar_path(dst))
    return dst


def test_every_writer_leaves_a_passed_certificate(fmnist_onnx, fmnist_int8_onnx, tmp_path):
    from dnx.calibration.fp16 import convert_fp16

    fp16 = convert_fp16(fmnist_onnx, tmp_path / "fm.fp16.onnx").path
    for path, what in [(fmnist_onnx, "PyTorch"), (fp16, "FP32 ONNX"), (fmnist_int8_onnx, "FP32 ONNX")]:
        cert = read_manifest(path).certificate.to_dict()
        assert cert["verdict"] == "passed" and what in cert["reference"]["what"]
        assert cert["data"]["images"] >= (9 if what == "PyTorch" else 64)  # export: random b1+b3 and 5 photos
        assert cert["data"]["fingerprint"] and cert["machine"]["cpu"] and cert["backend"].startswith("onnxruntime")
        with dnx.load(path, backend="onnxruntime") as clf:
            assert clf.info()["verified"] is True and clf.info()["certificate"]["verdict"] == "passed"
    assert read_manifest(fmnist_int8_onnx).certificate.data["labelled"] is True  # the shipped test split


def _tamper(src, dst):
    """Change one weight of the graph, keep the manifest (and its certificate) as it was."""
    proto = onnx.load(str(src))
    init = next(i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(proto, str(dst))
    return dst


def test_a_tampered_artifact_is_refused_unless_allowed(fmnist_onnx, tmp_path):
    bad = _tamper(fmnist_onnx, tmp_path / "tampered.onnx")  # no sidecar: the embedded certificate decides
    with pytest.raises(UnverifiedArtifact, match="graph changed after it was verified.*--allow-unverified"):
        dnx.load(bad)
    with dnx.load(bad, backend="onnxruntime", allow_unverified=True) as clf:
        info = clf.info()
    assert info["verified"] is False and "graph changed" in info["unverified_reason"]
    swapped = _copy(fmnist_onnx, tmp_path / "swapped.onnx")
    side = json.loads(sidecar_path(swapped).read_text())
    sidecar_path(swapped).write_text(json.dumps({**side, "sha256": "0" * 64}))
    with pytest.raises(UnverifiedArtifact, match="sha256 differs from the sidecar"):
        dnx.load(swapped)


def test_a_failed_or_missing_verification_is_refused(fmnist_int8_onnx, broken_int8_onnx, tmp_path):
    """A broken INT8 file (weight scales x10), certified as such, and a file with no certificate."""
    broken = broken_int8_onnx
    proto = onnx.load(str(broken))
    manifest = read_manifest(fmnist_int8_onnx).to_dict()  # the JSON certify() completes
    pre = Preprocess.from_dict(manifest["preprocess"])
    source = manifest["source"]["path"]
    certify(proto, source, broken, manifest, read_manifest(source), pre)
    assert manifest["certificate"]["verdict"] == "failed" and "flips" in manifest["certificate"]["summary"]
    with pytest.raises(UnverifiedArtifact, match="recorded verification failed"):
        dnx.load(broken)
    with dnx.load(broken, backend="onnxruntime", allow_unverified=True) as clf:
        assert clf.info()["certificate"]["verdict"] == "failed"

    proto = onnx.load(str(fmnist_int8_onnx))
    manifest = read_manifest(fmnist_int8_onnx).to_dict()
    manifest.pop("certificate")
    from dnx.schemas.manifest import embed

    embed(proto, manifest)
    onnx.save(proto, str(tmp_path / "uncertified.onnx"))
    with pytest.raises(UnverifiedArtifact, match="carries no parity certificate"):
        dnx.load(tmp_path / "uncertified.onnx")


def test_serve_refuses_a_tampered_artifact_and_serves_it_on_opt_in(fmnist_onnx, tmp_path):
    from dnx.runtime.serve.process import ServeProcess

    httpx = pytest.importorskip("httpx")
    bad = _tamper(fmnist_onnx, tmp_path / "tampered.onnx")
    r = subprocess.run([sys.executable, "-m", "dnx.cli", "serve", str(bad), "--port", "0"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "graph changed after it was verified" in r.stderr and "Traceback" not in r.stderr
    with ServeProcess(bad, "--allow-unverified", "--backend", "onnxruntime") as server:
        model = httpx.get(f"{server.url}/v1/model").json()
    assert model["verified"] is False and model["certificate"]["verdict"] == "passed"
    assert np.isfinite(model["certificate"]["cases"]["photos b5"]["cosine"])


def test_inspect_shows_the_certificate_and_whether_it_holds(fmnist_int8_onnx, tmp_path):
    def inspect(path):
        return subprocess.run([sys.executable, "-m", "dnx.cli", "inspect", str(path)], capture_output=True, text=True,
                              timeout=120)

    good = inspect(fmnist_int8_onnx)
    assert good.returncode == 0 and "certificate: passed vs the FP32 ONNX" in good.stdout
    assert "top-1 flips" in good.stdout and "verified: yes" in good.stdout
    bad = inspect(_tamper(fmnist_int8_onnx, tmp_path / "tampered.onnx"))
    assert bad.returncode == 0 and "verified: no, its graph changed after it was verified" in bad.stdout
