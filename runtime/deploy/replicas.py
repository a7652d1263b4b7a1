"""Replicas of ``dnx serve`` or ``dnx triton serve`` on loopback, behind haproxy, replaced the way a
Kubernetes Deployment with ``maxSurge: 1, maxUnavailable: 0`` replaces pods.

The backend has one slot more than there are replicas (the surge slot, kept in ``maint``). A rolling
update starts the new version in the free slot, waits until haproxy's checks see it up, drains an old
slot through the admin socket, waits for its requests to finish, stops it with SIGTERM (the server
answers what it holds), and the drained slot becomes the free one. :meth:`Fleet.kill` is the other
event: SIGKILL (nothing answered, connections reset), then a restart, as a kubelet would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dnx.core.errors import DnxError
from dnx.runtime.deploy.haproxy import HAProxy
from dnx.runtime.serve.process import free_ports

KINDS = ("serve", "triton")
TRITON_MODEL = "fmnist"


@dataclass(frozen=True)
class Version:
    artifact: Path
    name: str  # what /v1/model and X-Model-Version report (dnx serve)


def health_path(kind: str) -> str:
    return "/readyz" if kind == "serve" else f"/v2/models/{TRITON_MODEL}/ready"


def pytriton_env() -> dict[str, str]:
    """PyTriton's tritonserver links libraries shipped beside pytriton (nvidia_pytriton.libs); a venv that
    reaches them through a .pth file (a worktree's) does not put them on the loader's path by itself."""
    import importlib.util

    env = dict(os.environ)
    spec = importlib.util.find_spec("pytriton")
    if spec and spec.origin:
        libs = Path(spec.origin).parent.parent / "nvidia_pytriton.libs"
        if libs.is_dir():
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH")) if p)
    return env


class Replica:
    """One server process on ``port`` (Triton also takes the next two ports' worth: grpc, metrics)."""

    def __init__(self, kind: str, version: Version, port: int, log: Path) -> None:
        self.kind, self.version, self.port = kind, version, port
        cli = [sys.executable, "-m", "dnx.cli"]
        if kind == "serve":
            cmd = [*cli, "serve", str(version.artifact), "--port", str(port), "--threads", "1", "--max-batch", "8",
                   "--max-queue", "256", "--model-version", version.name]
            env = None
        else:
            grpc, metrics = free_ports(2)
            cmd = [*cli, "triton", "serve", str(version.artifact), "--name", TRITON_MODEL, "--backend", "onnxruntime",
                   "--threads", "1", "--http-port", str(port), "--grpc-port", str(grpc),
                   "--metrics-port", str(metrics), "--max-batch", "8", "--queue-delay-us", "2000"]
            env = pytriton_env()
        with log.open("ab") as out:  # its own process group: SIGKILL takes the whole replica, as a container's death
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.log = log

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        url = f"http://127.0.0.1:{self.port}{health_path(self.kind)}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DnxError(f"{self.kind} replica on port {self.port} exited with {self.proc.returncode}: "
                               f"{self.log.read_text()[-800:]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise DnxError(f"{self.kind} replica on port {self.port} was not ready within {timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """SIGTERM: to the server process, which stops its children (as Kubernetes signals PID 1).
        SIGKILL: to the whole process group (tritonserver included), as when a container dies."""
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class Fleet:
    """``n`` replicas of ``version`` behind haproxy, plus one free (surge) slot."""

    def __init__(self, kind: str, version: Version, n: int, workdir: Path) -> None:
        if kind not in KINDS or n < 1:
            raise DnxError(f"kind must be one of {KINDS} and n >= 1")
        self.kind, self.workdir = kind, workdir
        ports = free_ports(n + 2)
        self.slots = {f"s{i}": ports[i] for i in range(n + 1)}
        self.replicas: dict[str, Replica] = {}
        self.events: list[dict] = []
        try:
            for name in list(self.slots)[:n]:
                self.replicas[name] = Replica(kind, version, self.slots[name], workdir / f"{name}.log")
            for replica in self.replicas.values():
                replica.wait_ready()
            self.free = f"s{n}"
            self.proxy = HAProxy(workdir, ports[n + 1], self.slots, health_path(kind), disabled=(self.free,))
            for name in self.replicas:
                self.proxy.wait_status(name, "UP")
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return self.proxy.url

    def _note(self, what: str, **details) -> None:
        self.events.append({"t": time.monotonic(), "event": what, **details})

    def kill(self, name: str, restart_after_s: float = 2.0) -> None:
        """SIGKILL ``name``; restart it (same slot, same version) after ``restart_after_s``."""
        replica = self.replicas[name]
        replica.stop(signal.SIGKILL)
        self._note("sigkill", slot=name)
        time.sleep(restart_after_s)
        self.replicas[name] = Replica(self.kind, replica.version, replica.port, self.workdir / f"{name}.log")
        self.replicas[name].wait_ready()
        self.proxy.wait_status(name, "UP")
        self._note("restarted", slot=name)

    def rolling_update(self, version: Version) -> None:
        """Replace every replica by one of ``version``, one at a time (surge first, then drain and stop)."""
        for old in list(self.replicas):
            new = self.free
            replica = Replica(self.kind, version, self.slots[new], self.workdir / f"{new}.log")
            replica.wait_ready()
            self.replicas[new] = replica
            self.proxy.set_state(new, "ready")
            self.proxy.wait_status(new, "UP")
            self._note("surge-ready", slot=new, version=version.name)
            self.proxy.set_state(old, "drain")
            self.proxy.wait_idle(old)
            code = self.replicas.pop(old).stop(signal.SIGTERM)
            self.proxy.set_state(old, "maint")
            self._note("drained-stopped", slot=old, exit_code=code)
            self.free = old

    def close(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        if getattr(self, "proxy", None) is not None:
            self.proxy.stop()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
