"""Replicas behind a real haproxy on loopback lose nothing when one is SIGKILLed or all are replaced.

dnx serve and dnx triton serve, three replicas each of the shipped Fashion-MNIST model (v1 = opset 17,
v2 = opset 18, both exported with `dnx export densenet_bc22_fmnist`), a real HTTP client keeping 32
requests in flight (bounded at 60 s). Numbers: `make scale-demo` (benchmarks/scale_demo.py).
"""

from __future__ import annotations

import shutil

import pytest

if shutil.which("haproxy") is None and not __import__("pathlib").Path("/usr/sbin/haproxy").exists():
    pytest.skip("haproxy is not installed (make haproxy-deps)", allow_module_level=True)
pytest.importorskip("httpx", reason="httpx is not installed (dnx[test])")

from dnx.benchmarks.scale_demo import MAX_SECONDS, export_versions, run
from dnx.runtime.deploy.haproxy import haproxy_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    return export_versions(tmp_path_factory.mktemp("versions"))


def check(row: dict) -> None:
    assert row["sent"] > 200, row  # the load really ran through the event
    assert row["lost"] == 0, row  # every request answered 200 or 503 with Retry-After
    assert row["load_seconds"] <= MAX_SECONDS + 35, row  # bounded (plus requests in flight at the end)


def test_serve_replicas_survive_sigkill_with_haproxy_retrying(versions, tmp_path):
    row = run("serve", "sigkill", *versions, tmp_path, replicas=3)
    check(row)
    assert [e["event"] for e in row["events"]] == ["sigkill", "restarted"]
    assert row["versions_answered"] == {"v1": row["ok_200"]}


def test_serve_rolling_update_replaces_every_replica_without_loss(versions, tmp_path):
    row = run("serve", "rolling", *versions, tmp_path, replicas=3)
    check(row)
    stopped = [e for e in row["events"] if e["event"] == "drained-stopped"]
    assert len(stopped) == 3 and all(e["exit_code"] == 0 for e in stopped)  # each drained, then a clean exit
    assert set(row["versions_answered"]) == {"v1", "v2"}  # /v1/model's version, seen by the client


@pytest.mark.parametrize("event", ["sigkill", "rolling"])
def test_triton_replicas_lose_nothing(versions, tmp_path, event):
    pytest.importorskip("pytriton", reason="nvidia-pytriton is not installed (dnx[triton])")
    row = run("triton", event, *versions, tmp_path, replicas=3)
    check(row)


def test_config_retries_idempotent_classification_and_checks_readiness(tmp_path):
    text = haproxy_config(8080, {"s0": 9000, "s1": 9001}, "/readyz", tmp_path / "admin.sock", disabled=("s1",))
    assert "retry-on conn-failure empty-response response-timeout" in text
    assert "option redispatch 1" in text and "option http-buffer-request" in text
    assert "tune.bufsize 65536" in text and "option http-server-close" in text
    assert "option httpchk GET /readyz" in text
    assert "server s1 127.0.0.1:9001 check disabled" in text and "bind 127.0.0.1:8080" in text
