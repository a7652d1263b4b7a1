"""`dnx triton serve`: a real tritonserver (PyTriton) on ephemeral loopback ports, driven by tritonclient.

One server per module, started as the CLI in a subprocess (like PyTriton's own L0 tests) so that
shutdown by signal and the process tree it leaves can be checked; the last test stops it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (dnx[triton])")
http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (dnx[triton])")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (dnx[triton])")

from tritonclient.utils import InferenceServerException

import dnx

CLI = [sys.executable, "-c", "import sys; from dnx.cli import main; main(sys.argv[1:])"]
MAX_BATCH = 8


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(fmnist_onnx, tmp_path_factory, servers):
    served = servers.dnx_triton_serve(fmnist_onnx, tmp_path_factory.mktemp("triton_serve") / "serve.log",
                                      "--max-batch", str(MAX_BATCH), "--queue-delay-us", "2000")
    try:
        yield served
    finally:
        served.stop(signal.SIGINT)


@pytest.fixture(scope="module")
def reference(fmnist_onnx):
    """The in-process classifier on the same backend as the server."""
    with dnx.load(fmnist_onnx, backend="onnxruntime") as clf:
        yield clf


def batch_of(reference) -> np.ndarray:
    from dnx.data.preprocess import bundled_photos

    photos = reference.preprocess([p.read_bytes() for p in bundled_photos()[:2]])
    noise = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    return np.concatenate([photos, noise])


def test_http_logits_equal_in_process(server, reference):
    x = batch_of(reference)
    with http.InferenceServerClient(server.http_url) as client:
        inp = http.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("fmnist", [inp]).as_numpy("logits")
    assert got.shape == (5, 10)
    assert np.abs(got - reference.logits(x)).max() <= 1e-5


def test_grpc_logits_equal_in_process(server, reference):
    x = batch_of(reference)
    with grpc.InferenceServerClient(server.grpc_url) as client:
        inp = grpc.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("fmnist", [inp]).as_numpy("logits")
    assert np.abs(got - reference.logits(x)).max() <= 1e-5


def test_metadata_and_config_as_exported(server, fmnist_onnx, tmp_path):
    from dnx.runtime.serve.repository import RepositoryOptions, export_repository
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    export_repository([fmnist_onnx], tmp_path / "repo", RepositoryOptions(kind="cpu", ensemble=False))
    exported = text_format.Parse((tmp_path / "repo" / "fmnist" / "config.pbtxt").read_text(),
                                 model_config_pb2.ModelConfig())
    with http.InferenceServerClient(server.http_url) as client:
        meta = client.get_model_metadata("fmnist")
        config = client.get_model_config("fmnist")
        network = client.get_model_config("fmnist_network")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("input", "FP32", [-1, 1, 28, 28])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [("logits", "FP32", [-1, 10])]
    # the live model has the names, dims and batch size `dnx triton export` writes for the same artifact
    assert config["max_batch_size"] == exported.max_batch_size == MAX_BATCH
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in config["input"]] == \
        [(t.name, list(t.dims)) for t in exported.input]
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in config["output"]] == \
        [(t.name, list(t.dims)) for t in exported.output]
    # fmnist is the ensemble that checks each request; Triton batches its network step
    assert config["platform"] == "ensemble"
    assert network["dynamic_batching"]["max_queue_delay_microseconds"] == 2000


def test_image_model_answers_labels_like_predict(server, reference):
    from dnx.data.preprocess import bundled_photos

    photos = [p.read_bytes() for p in bundled_photos()[:3]]
    with grpc.InferenceServerClient(server.grpc_url) as client:
        inp = grpc.InferInput("IMAGE", [len(photos), 1], "BYTES")
        inp.set_data_from_numpy(np.array(photos, dtype=object).reshape(-1, 1))
        result = client.infer("fmnist_image", [inp])
    want = reference.predict(photos, top_k=1)
    assert [b.decode() for b in result.as_numpy("label").reshape(-1)] == [row[0].label for row in want]
    assert np.abs(result.as_numpy("logits") - reference.logits(reference.preprocess(photos))).max() <= 1e-5


def test_wrong_shape_or_dtype_gets_tritons_error_and_serving_goes_on(server, reference):
    x = batch_of(reference)
    with http.InferenceServerClient(server.http_url) as client:
        wrong_shape = http.InferInput("input", [1, 1, 27, 27], "FP32")
        wrong_shape.set_data_from_numpy(np.zeros((1, 1, 27, 27), np.float32))
        with pytest.raises(InferenceServerException, match="(?i)shape"):
            client.infer("fmnist", [wrong_shape])
        wrong_dtype = http.InferInput("input", [1, 1, 28, 28], "FP64")
        wrong_dtype.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.float64))
        with pytest.raises(InferenceServerException, match="(?i)data-type|datatype|FP64"):
            client.infer("fmnist", [wrong_dtype])
        too_big = http.InferInput("input", [MAX_BATCH + 1, 1, 28, 28], "FP32")
        too_big.set_data_from_numpy(np.zeros((MAX_BATCH + 1, 1, 28, 28), np.float32))
        with pytest.raises(InferenceServerException, match="(?i)batch"):
            client.infer("fmnist", [too_big])
        ok = http.InferInput("input", list(x.shape), "FP32")
        ok.set_data_from_numpy(x)
        assert np.abs(client.infer("fmnist", [ok]).as_numpy("logits") - reference.logits(x)).max() <= 1e-5


def test_concurrent_requests_are_batched_by_triton(server, reference):
    x = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    with grpc.InferenceServerClient(server.grpc_url) as client:
        before = client.get_inference_statistics("fmnist_network", as_json=True)["model_stats"][0]
        inp = grpc.InferInput("input", [1, 1, 28, 28], "FP32")
        inp.set_data_from_numpy(x)
        done, results = threading.Semaphore(0), []

        def callback(result, error):
            results.append(error or result)
            done.release()

        for _ in range(16):
            client.async_infer("fmnist", [inp], callback)
        for _ in range(16):
            assert done.acquire(timeout=30)
        # Triton records a batch's statistics after it has sent the responses: poll (bounded) until all
        # 16 are counted rather than race the last batch's bookkeeping. Zero counts are absent from the
        # JSON (protobuf leaves out default values).
        deadline = time.monotonic() + 10
        while True:
            after = client.get_inference_statistics("fmnist_network", as_json=True)["model_stats"][0]
            inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
            if inferences >= 16 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert not [r for r in results if isinstance(r, InferenceServerException)]
    want = reference.logits(x)
    assert all(np.abs(r.as_numpy("logits") - want).max() <= 1e-5 for r in results)
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 16 and executions < 16  # the dynamic batcher merged requests


def test_ports_in_use_is_one_line(fmnist_onnx):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([*CLI, "triton", "serve", str(fmnist_onnx), "--http-port", str(port), "--grpc-port", "0",
                              "--metrics-port", "0"], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("dnx: cannot listen on 127.0.0.1:") and "--http-port" in last


def test_sigterm_stops_cleanly_and_leaves_no_process(server):
    """The last test that uses the shared server: it stops it."""
    tree = descendants(server.proc.pid)
    assert tree, "the server has child processes (tritonserver, backend stubs)"
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.log.read_text()[-2000:]
    deadline = time.monotonic() + 10
    while [p for p in tree if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in tree if alive(p)], f"left behind: {[p for p in tree if alive(p)]}"
    assert "stopped" in server.log.read_text()


def test_start_failure_message_is_the_servers_reason(tmp_path):
    from dnx.runtime.serve.triton import _summary, log_tail

    log = tmp_path / "tritonserver.log"
    log.write_text("I1201 starting\nE1201 server.cc] \"CudaDriverHelper has not been initialized.\"\n"
                   "E1201 main.cc] \"failed to start GRPC service: Socket '127.0.0.1:8001' already in use\"\n"
                   "I1201 exiting\n")
    assert log_tail(log) == "E1201 main.cc] \"failed to start GRPC service: Socket '127.0.0.1:8001' already in use\""
    text = ("[400] load failed for model 'fmnist': Model initialize error: Traceback (most recent call last):\n"
            "  File \"model.py\", line 419, in initialize\nAttributeError: '_thread.RLock' object has no attribute "
            "'_recursion_count'\n\nAt:\n  model.py(454): initialize\n")
    assert _summary(text) == ("[400] load failed for model 'fmnist': Model initialize error: ... AttributeError: "
                              "'_thread.RLock' object has no attribute '_recursion_count'")


@pytest.mark.parametrize(("changes", "message"), [
    ({"http_port": 9000, "grpc_port": 9000}, "must differ"),
    ({"http_port": 70000}, "^http_port must be from 0 to 65535"),
    ({"max_batch": 4, "preferred_batch": (8,)}, "^preferred_batch sizes must be from 1 to max_batch 4"),
    ({"instances": 0}, "^instances"),
])
def test_serve_config_refuses_bad_values(changes, message):
    from dnx.core.errors import DnxError
    from dnx.runtime.serve.triton import TritonServeConfig

    with pytest.raises(DnxError, match=message):
        TritonServeConfig(artifact="m.onnx", **changes).validate()
