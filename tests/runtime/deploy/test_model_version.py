"""`dnx serve` says which artifact version answered: /v1/model's version section and X-Model-Version."""

from __future__ import annotations

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is not installed (dnx[test])")
pytest.importorskip("fastapi", reason="dnx[serve] is not installed")

from dnx.data.preprocess import bundled_photos
from dnx.runtime.artifact import open_artifact
from dnx.runtime.serve.process import ServeProcess


@pytest.mark.parametrize("name", [None, "2026-12-02.opset17"])
def test_model_endpoint_and_header_name_the_version(fmnist_onnx, name):
    sha = open_artifact(fmnist_onnx).sha256
    args = ("--model-version", name) if name else ()
    with ServeProcess(fmnist_onnx, "--max-batch", "1", *args) as server:
        info = httpx.get(f"{server.url}/v1/model", timeout=30).json()
        r = httpx.post(f"{server.url}/v1/classify", content=bundled_photos()[0].read_bytes(),
                       headers={"content-type": "image/jpeg"}, timeout=60)
    want = name or sha[:12]
    assert info["version"] == {"name": want, "sha256": sha}
    assert r.status_code == 200 and r.headers["x-model-version"] == want
