"""`dnx triton serve` under hostile clients (issue 22: #3, #4, #6 and the Must-show load tests).

Real tritonserver (PyTriton's), real tritonclient HTTP and gRPC clients and raw sockets, loopback
only, every load bounded in count and time. Each server is the CLI in a subprocess, stopped by PID.
Counts: *answered* (a result), *refused* (an answer that says no: Triton's 404 for an unloaded
model, a refused connection), *lost* (a request sent and never answered: closed connection, reset,
timeout) — lost must be 0.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (dnx[triton])")
http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (dnx[triton])")
grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (dnx[triton])")

from tritonclient.utils import InferenceServerException

import dnx
from dnx.data.preprocess import bundled_photos

CLI = [sys.executable, "-c", "import sys; from dnx.cli import main; main(sys.argv[1:])"]
SHM = Path("/dev/shm")


@pytest.fixture(scope="module")
def served(fmnist_onnx, tmp_path_factory, servers):
    """One server for the bad-input cases: a 50 ms queue delay, so concurrent requests share batches."""
    server = servers.dnx_triton_serve(fmnist_onnx, tmp_path_factory.mktemp("triton") / "serve.log",
                                      "--queue-delay-us", "50000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(fmnist_onnx):
    with dnx.load(fmnist_onnx, backend="onnxruntime") as clf:
        yield clf


def _jpeg() -> bytes:
    return next(p for p in bundled_photos() if p.suffix.lower() in (".jpg", ".jpeg")).read_bytes()


def _image_input(module, blob: bytes):
    inp = module.InferInput("IMAGE", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([blob], dtype=object).reshape(1, 1))
    return inp


def _float_input(module, x: np.ndarray):
    inp = module.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def _stats(client, model: str) -> tuple[int, int]:
    s = client.get_inference_statistics(model)["model_stats"][0]  # HTTP: JSON already
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


def _settled_stats(client, model: str, before: tuple[int, int], inferences: int, timeout: float = 5.0):
    """The counters once they count ``inferences`` more than ``before`` and stop moving. Triton reports a
    composing model's statistics after its execution returns, which can be after the ensemble's response
    reached the client: read at once, the last batch may not be counted yet."""
    deadline = time.monotonic() + timeout
    now = _stats(client, model)
    while now[0] - before[0] < inferences and time.monotonic() < deadline:
        time.sleep(0.05)
        now = _stats(client, model)
    time.sleep(0.2)  # anything still in flight (a request counted twice would show here)
    return _stats(client, model)


# -- #4: a bad request fails alone --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nan-tensor", "not-an-image"])
def test_one_bad_request_among_8_concurrent_fails_alone(served, reference, kind):
    rng = np.random.default_rng(4)
    photo = _jpeg()
    with http.InferenceServerClient(served.http_url, concurrency=8) as client:
        before = _stats(client, "fmnist_network")
        if kind == "nan-tensor":
            xs = [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(8)]
            xs[3][0, 0, 5, 5] = np.nan
            futures = [client.async_infer("fmnist", [_float_input(http, x)]) for x in xs]
            want = [reference.logits(x) if i != 3 else None for i, x in enumerate(xs)]
        else:
            blobs = [photo] * 8
            blobs[3] = b"GIF89a but not really an image"
            futures = [client.async_infer("fmnist_image", [_image_input(http, b)]) for b in blobs]
            want = [reference.logits(reference.preprocess([photo]))] * 8
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.get_result().as_numpy("logits"))
            except InferenceServerException as exc:
                outcomes.append(exc)
        after = _settled_stats(client, "fmnist_network", before, 7)
    bad = outcomes.pop(3)
    assert isinstance(bad, InferenceServerException) and bad.status() == "400", bad
    want.pop(3)
    assert all(isinstance(o, np.ndarray) for o in outcomes), outcomes
    assert max(float(np.abs(o - w).max()) for o, w in zip(outcomes, want)) <= 1e-5
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 7 and executions < 7  # the 7 good requests were batched, without the bad one


# -- #6: bad inputs are one line, INVALID_ARGUMENT, no traceback or server path -------------------

def _bad_inputs(harness) -> dict[str, tuple[str, object]]:
    photo = _jpeg()
    nan = np.zeros((2, 1, 28, 28), np.float32)
    nan[1, 0, 0, 0] = np.nan
    inf = np.zeros((1, 1, 28, 28), np.float32)
    inf[0, 0, 3, 3] = np.inf
    return {"non-image-bytes": ("fmnist_image", b"\x00\x01 definitely not an image"),
            "truncated-jpeg": ("fmnist_image", photo[: len(photo) // 3]),
            "png-bomb": ("fmnist_image", harness.bomb_png()),
            "nan-tensor": ("fmnist", nan), "inf-tensor": ("fmnist", inf)}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_inputs_are_one_line_invalid_argument(served, harness, protocol):
    module = http if protocol == "http" else grpc
    url = served.http_url if protocol == "http" else served.grpc_url
    with module.InferenceServerClient(url) as client:
        for case, (model, payload) in _bad_inputs(harness).items():
            inp = _float_input(module, payload) if isinstance(payload, np.ndarray) else _image_input(module, payload)
            with pytest.raises(InferenceServerException) as caught:
                client.infer(model, [inp])
            exc = caught.value
            message = exc.message()
            assert exc.status() == ("400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"), (case, exc)
            assert "\n" not in message.strip() and "Traceback" not in message, (case, message)
            assert ".py" not in message and "/tmp" not in message and "site-packages" not in message, (case, message)
        # and the server goes on serving
        photo = _jpeg()
        assert client.infer("fmnist_image", [_image_input(module, photo)]).as_numpy("logits").shape == (1, 10)


# -- Must-show: slow clients ----------------------------------------------------------------------

def test_slow_clients_do_not_hold_up_others(served, reference):
    """16 sockets each declare a 100 kB body and trickle it; meanwhile 40 normal requests are made.

    Bounded: 40 requests 0.2 s apart (about 10 s of trickling), each with a 10 s timeout. Counts answered /
    refused / lost for the normal clients (lost must be 0, and all are answered), then what the slow sockets got."""
    host, port = served.http_url.split(":")
    slow = []
    for _ in range(16):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"POST /v2/models/fmnist/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{")
        slow.append(s)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for s in slow:
                try:
                    s.send(b" ")
                except OSError:
                    pass

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    counts: Counter = Counter()
    x = np.random.default_rng(6).standard_normal((1, 1, 28, 28)).astype(np.float32)
    want = reference.logits(x)
    started = time.monotonic()
    try:
        for _ in range(40):
            try:
                with http.InferenceServerClient(served.http_url, network_timeout=10) as client:
                    got = client.infer("fmnist", [_float_input(http, x)]).as_numpy("logits")
                counts["answered" if np.abs(got - want).max() <= 1e-5 else "wrong"] += 1
            except InferenceServerException as exc:
                counts["refused" if exc.status() in ("400", "404", "429", "503") else "lost"] += 1
            except OSError:
                counts["lost"] += 1
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        dripper.join()
        for s in slow:
            s.close()
    print(f"slow clients: normal requests {dict(counts)} in {elapsed:.1f} s")  # -s shows it
    # each normal request answered within its 10 s network timeout (else it counts as lost): none was
    # queued behind the slow ones
    assert counts == Counter(answered=40), counts


# -- #3 and Must-show: SIGTERM under load -----------------------------------------------------------

def _classify(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ConnectionRefusedError) or "failed to connect" in text or "Connection refused" in text:
        return "refused"
    if isinstance(exc, InferenceServerException) and (exc.status() in ("404", "StatusCode.NOT_FOUND")
                                                      or "unknown model" in text):
        return "refused"
    return "lost"


def test_sigterm_under_load_drains_and_leaves_nothing(fmnist_onnx, tmp_path, servers):
    """16 clients (HTTP and gRPC, float and image models), each keeping one request in flight on its
    own connection until the server says no. SIGTERM after 2 s: every request in flight then is
    answered, later ones are refused, none is lost; exit 0 with no crash, and the server's processes,
    shared memory and localized model folders are all gone. Bounded: 16 clients, about 10 s."""
    server = servers.dnx_triton_serve(fmnist_onnx, tmp_path / "serve.log")
    assert len(server.tree.processes) >= 3 and server.tree.folders and server.tree.shm_prefix  # not vacuous
    photo = _jpeg()
    x = np.random.default_rng(3).standard_normal((1, 1, 28, 28)).astype(np.float32)
    records: list[tuple[float, float, str]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        module = grpc if i % 2 else http
        url = server.grpc_url if i % 2 else server.http_url
        model, inp = (("fmnist_image", _image_input(module, photo)) if i % 4 < 2
                      else ("fmnist", _float_input(module, x)))
        with module.InferenceServerClient(url) as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    c.infer(model, [inp])
                    outcome = "answered"
                except Exception as exc:  # noqa: BLE001  (classified below)
                    outcome = _classify(exc) + ": " + str(exc)[:120]
                with lock:
                    records.append((sent, time.monotonic(), outcome))
                if outcome != "answered":
                    return  # told to go away (or lost): a client stops sending to this server

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(2)
    signalled = time.monotonic()
    code = server.stop(signal.SIGTERM)
    for t in threads:
        t.join(30)
    log = server.log.read_text()
    kinds = Counter(r[2].split(":")[0] for r in records)
    in_flight = [r for r in records if r[0] < signalled < r[1]]
    print(f"SIGTERM under load: {dict(kinds)}, {len(in_flight)} in flight at the signal, exit {code}")  # -s shows it
    assert code == 0, log[-2000:]
    assert "Signal (11)" not in log and "Traceback" not in log, log[-3000:]
    assert "did not stop cleanly" not in log, log[-2000:]  # the drain stopped it; the sweep had nothing to do
    assert kinds["lost"] == 0, [r[2] for r in records if r[2].startswith("lost")][:5]
    assert in_flight and all(r[2] == "answered" for r in in_flight), Counter(r[2][:80] for r in in_flight)
    assert kinds["answered"] > 16 and kinds["refused"] >= 1, kinds
    assert server.left_behind() == {"processes": [], "shared_memory": [], "folders": []}


def test_sigterm_to_the_whole_process_group_leaves_nothing(fmnist_onnx, tmp_path, servers):
    """A terminal's Ctrl-C or `kill -- -PGID` signals tritonserver and its stubs too, and the stubs'
    helpers die: nothing is promised for requests in flight then, but the server exits 0 and leaves no
    process, shared memory or folder behind."""
    # its own process group, not pytest's
    server = servers.dnx_triton_serve(fmnist_onnx, tmp_path / "serve.log", new_session=True)
    os.killpg(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log.read_text()[-2000:]
    assert server.left_behind() == {"processes": [], "shared_memory": [], "folders": []}
    assert "Traceback" not in server.log.read_text()
