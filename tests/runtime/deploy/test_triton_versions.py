"""A new version folder in a Triton model repository is taken up without losing a request.

The Kubernetes manifests run tritonserver with ``--model-control-mode=poll``: dropping ``NAME/2`` next
to ``NAME/1`` on the shared repository makes every replica load version 2, switch to it, and unload
version 1. Shown here on the real tritonserver that nvidia-pytriton bundles, with the one model of a
dnx repository it can run (the Python-backend preprocessing model: the bundled server has no
onnxruntime or TensorRT backend), under a client keeping 8 requests in flight.
"""

from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (dnx[triton])")
http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (dnx[triton])")

from dnx.runtime.serve.repository import RepositoryOptions, export_repository

MODEL = "fmnist_preprocess"
pytestmark = pytest.mark.slow


@pytest.fixture
def poll_server(tmp_path, fmnist_onnx, servers):
    """tritonserver (PyTriton's binary) polling a repository that holds version 1 of the preprocessing model."""
    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu", max_batch=8))
    for other in ("fmnist", "fmnist_image"):  # need the onnxruntime backend, which the bundled server lacks
        shutil.rmtree(repo / other)
    proc, port, log = servers.start_tritonserver(tmp_path, repo, "--model-control-mode=poll",
                                                 "--repository-poll-secs=1", "--exit-timeout-secs=5")
    client = http.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        servers.wait_ready(lambda: client.is_model_ready(MODEL, "1"), proc, log, "tritonserver")
        yield client, repo, proc, log, port
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_version_2_replaces_version_1_under_load(poll_server, servers):
    from dnx.data.preprocess import bundled_photos

    client, repo, proc, log, port = poll_server
    photo = bundled_photos()[0].read_bytes()
    stop, results, lock = threading.Event(), [], threading.Lock()

    def worker() -> None:
        own = http.InferenceServerClient(f"127.0.0.1:{port}")
        image = http.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[photo]], dtype=object))
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                answer = own.infer(MODEL, [image])
                outcome = answer.get_response()["model_version"]
            except Exception as exc:  # noqa: BLE001  (counted as lost)
                outcome = f"lost: {type(exc).__name__}: {exc}"
            with lock:
                results.append(outcome)
        own.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)
        stage = repo.parent / "stage"  # built beside the repository, renamed in whole
        shutil.copytree(repo / MODEL / "1", stage)
        os.rename(stage, repo / MODEL / "2")
        servers.wait_ready(lambda: client.is_model_ready(MODEL, "2") and not client.is_model_ready(MODEL, "1"),
                           proc, log, "tritonserver (version 2 in, version 1 out)")
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    lost = [r for r in results if r.startswith("lost")]
    assert not lost, lost[:3]
    assert {"1", "2"} <= set(results) and results[-1] == "2", set(results)
    assert len(results) > 50
