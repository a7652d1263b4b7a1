"""`dnx serve` for real: the CLI in a subprocess on a free loopback port, hit by httpx."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx", reason="httpx is a test dependency (pip install 'dnx[test]')")
pytest.importorskip("fastapi", reason="dnx serve needs pip install 'dnx[serve]'")

from dnx.data.preprocess import bundled_photos  # noqa: E402
from dnx.runtime.serve.process import ServeProcess  # noqa: E402


def _png(size, mode="L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(fmnist_onnx):
    with ServeProcess(fmnist_onnx, "--backend", "onnxruntime", "--max-body-mb", "1") as s:
        yield s


def test_good_requests(server, fmnist_onnx):
    import dnx

    photo = bundled_photos()[0]
    r = httpx.post(f"{server.url}/v1/classify?top_k=3", content=photo.read_bytes(),
                   headers={"content-type": "image/jpeg"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    with dnx.load(fmnist_onnx, backend="onnxruntime") as clf:
        expected = clf.predict(photo, top_k=3)[0]
    assert [(p["label"], p["index"]) for p in body["predictions"][0]] == [(p.label, p.index) for p in expected]
    assert abs(body["predictions"][0][0]["probability"] - expected[0].probability) < 1e-5
    assert set(body["timings_ms"]) == {"decode", "preprocess", "queue", "inference", "postprocess", "total"}

    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in bundled_photos()[:3]]
    r = httpx.post(f"{server.url}/v1/classify", files=files, timeout=30)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3 and len(r.json()["predictions"][0]) == 5
    r = httpx.post(f"{server.url}/v1/classify", content=_png((1, 1)), headers={"content-type": "image/png"})
    assert r.status_code == 200

    model = httpx.get(f"{server.url}/v1/model").json()
    assert model["backend"] == "onnxruntime" and model["precision"] == "fp32" and model["num_classes"] == 10
    assert model["serving"]["max_batch"] == 8 and model["manifest"]["model"]["name"] == "densenet_bc22_fmnist"
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"


@pytest.mark.parametrize("content, ctype, query, status, message", [
    (b"hello", "image/png", "", 400, "not an image Pillow can read"),
    (None, "image/jpeg", "", 400, "cannot be decoded"),  # a truncated JPEG
    (b"", "image/png", "", 400, "body is empty"),
    (b"{}", "application/json", "", 415, "content type application/json is not accepted"),
    (b"x" * (1024 * 1024 + 1), "image/png", "", 413, "over the 1,048,576-byte limit"),
    (None, "image/jpeg", "?top_k=0", 400, "top_k must be from 1 to 10"),
    (None, "image/jpeg", "?top_k=11", 400, "top_k must be from 1 to 10"),
    (None, "image/jpeg", "?top_k=abc", 400, "top_k must be an integer"),
    (b"--x\r\n\r\n", "multipart/form-data; boundary=x", "", 400, "multipart"),
    ("bomb", "image/png", "", 400, "pixels, over the 50,000,000 limit"),
])
def test_bad_requests_get_one_json_line_and_the_service_keeps_serving(server, content, ctype, query, status,
                                                                       message):
    photo = bundled_photos()[0].read_bytes()
    if content is None:
        content = photo[: len(photo) // 3] if query == "" else photo
    elif content == "bomb":
        content = _png((8000, 8000))  # 64 MP of zeros: ~60 kB compressed
    r = httpx.post(f"{server.url}/v1/classify{query}", content=content, headers={"content-type": ctype}, timeout=30)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and message in r.json()["error"] and "\n" not in r.json()["error"]
    ok = httpx.post(f"{server.url}/v1/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=30)
    assert ok.status_code == 200


def test_metrics_count_requests_stages_and_batches(server):
    photo = bundled_photos()[0].read_bytes()
    httpx.post(f"{server.url}/v1/classify", content=photo, headers={"content-type": "image/jpeg"})
    httpx.post(f"{server.url}/v1/classify", content=b"junk", headers={"content-type": "image/png"})
    text = httpx.get(f"{server.url}/metrics").text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line and not line.startswith("#")}
    assert lines['dnx_requests_total{status="200"}'] >= 1 and lines['dnx_requests_total{status="400"}'] >= 1
    for stage in ("decode", "preprocess", "queue", "inference", "postprocess", "total"):
        assert lines[f'dnx_stage_seconds_count{{stage="{stage}"}}'] >= 1
    assert lines["dnx_batch_size_count"] >= 1 and "dnx_queue_depth" in lines and lines["dnx_images_total"] >= 1


def test_overload_is_answered_503_with_retry_after(fmnist_onnx):
    photo = bundled_photos()[0].read_bytes()
    with ServeProcess(fmnist_onnx, "--backend", "onnxruntime", "--max-queue", "1", "--max-batch", "1") as s:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: client.post(f"{s.url}/v1/classify", content=photo,
                                                          headers={"content-type": "image/jpeg"}), range(48)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1" and "max-queue" in refused.json()["error"]


def test_sigterm_mid_load_answers_every_accepted_request_and_exits_0(fmnist_onnx):
    photo = bundled_photos()[0].read_bytes()
    s = ServeProcess(fmnist_onnx, "--backend", "onnxruntime", "--max-delay-ms", "20")
    outcomes: list[str] = []
    first_answer = threading.Event()

    def one(_):
        try:
            r = httpx.post(f"{s.url}/v1/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
            first_answer.set()
            return f"status {r.status_code}"
        except httpx.ConnectError:
            return "refused"  # the listener was closed: explicitly not accepted
        except httpx.TransportError as exc:
            return f"no answer: {type(exc).__name__}"  # checked against the server's tally below

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, i) for i in range(200)]
        first_answer.wait(60)
        code = s.stop(signal.SIGTERM)
        outcomes = [f.result() for f in futures]
    log = s.proc.stderr.read()
    assert code == 0, log
    # The server's own tally: every classify request its handler received was answered...
    received, answered = map(int, re.search(r"answered (\d+) of (\d+) classify requests", log).groups()[::-1])
    assert answered == received
    # ...and every answer reached its client. A client whose connection the server never read a request
    # from (still in the kernel's accept backlog when the listener closed, or a keep-alive connection
    # closed once stopping) sees a connect, read or protocol error: that request was refused before any
    # work, never dropped after it (the tally above counts every request a handler started).
    assert sum(o.startswith("status") for o in outcomes) == answered, outcomes
    assert set(outcomes) <= {"status 200", "refused", "no answer: ReadError", "no answer: RemoteProtocolError"}
    assert "status 200" in outcomes
    assert s.proc.poll() is not None


def test_port_in_use_and_missing_artifact_are_one_line_errors(fmnist_onnx, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "dnx.cli", "serve", str(fmnist_onnx), "--port", str(port)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "dnx.cli", "serve", str(tmp_path / "nope.onnx"), "--port", "0"],
                       capture_output=True, text=True, timeout=120, env=env)
    # one line, and no "loading" line before it
    assert r.returncode == 1 and r.stderr == f"dnx: artifact {tmp_path / 'nope.onnx'} does not exist\n"
