"""haproxy in front of replicas on loopback: the config, the process, and its runtime API.

The configuration is the one a Kubernetes Service plus readiness probes give, made explicit:
- health checks on the replica's readiness path every 250 ms (down after 1 failure, up after 2);
- ``retry-on conn-failure empty-response response-timeout`` with ``option redispatch 1``: a request
  whose connection was refused (replica gone) or closed without an answer (replica killed mid-request)
  is sent again, to another replica. Classification is idempotent, so a repeat is harmless; 503s
  are not retried (they carry Retry-After: the client decides). ``option http-buffer-request`` makes
  haproxy hold the whole body before it connects: without it a POST whose replica was SIGKILLed was
  not replayed (measured here: 2-8 of ~3,000 requests lost per kill, srv_abrt counted, 0 retries;
  with it 0 lost and the retries show in ``wretr``/``wredis``). ``tune.bufsize 65536``: a request is
  replayed only if it fits in one buffer; a Triton JSON request (about 8 KB) did not at the default
  size, and a SIGKILL then cost 1 request in 1 of 3 runs (502 ``SH--``, not retried);
- ``option http-server-close``: a fresh connection to the replica per request, so a draining replica
  holds no idle keep-alive connection that could be closed under a request;
- drain-aware: a replica is set to ``drain`` through the admin socket (no new requests, those in
  flight finish) before it is stopped, and back to ``ready`` once its successor passes checks.
Needs Debian's ``haproxy`` (``make haproxy-deps``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from dnx.core.errors import DnxError, MissingDependencyError
from dnx.core.fileio import write_bytes_atomic

BACKEND = "replicas"


def haproxy_config(port: int, servers: dict[str, int], health_path: str, admin_socket: Path,
                   disabled: tuple[str, ...] = ()) -> str:
    lines = [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin",
        "    maxconn 4096",
        "    tune.bufsize 65536",  # a Triton JSON request (about 8 KB) must fit whole to be replayed
        "    log stdout format raw local0",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlog-normal",  # only errors, retries and redispatches reach the log
        "    timeout connect 1s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout queue 30s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        "    option http-buffer-request",
        "    option http-server-close",
        "frontend entry",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance leastconn",
        f"    option httpchk GET {health_path}",
        "    http-check expect status 200",
        "    default-server inter 250ms fastinter 250ms downinter 250ms fall 1 rise 2",
    ]
    for name, server_port in servers.items():
        state = " disabled" if name in disabled else ""
        lines.append(f"    server {name} 127.0.0.1:{server_port} check{state}")
    return "\n".join(lines) + "\n"


class HAProxy:
    """haproxy (foreground, ``-db``) with ``servers``; ``command()`` speaks to its admin socket."""

    def __init__(self, workdir: Path, port: int, servers: dict[str, int], health_path: str,
                 disabled: tuple[str, ...] = ()) -> None:
        binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
        if binary is None:
            raise MissingDependencyError("haproxy is not installed: sudo apt-get install haproxy (make haproxy-deps)")
        self.socket_path = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        write_bytes_atomic(self.config_path,
                           haproxy_config(port, servers, health_path, self.socket_path, disabled).encode())
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "haproxy.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(self.config_path)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._answers():  # listeners are bound before the admin socket answers
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DnxError(f"haproxy did not start: {self.log_path.read_text()[-500:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return self.socket_path.exists() and "Pid:" in self.command("show info")
        except OSError:
            return False

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_state(self, server: str, state: str) -> None:
        """``ready``, ``drain`` or ``maint``."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}").strip()
        if answer:
            raise DnxError(f"haproxy refused 'set server {server} state {state}': {answer}")

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` per server: status, scur (current sessions), retries (wretr), redispatches (wredis)."""
        text = self.command("show stat").lstrip("# ")
        rows = [line.split(",") for line in text.splitlines() if line]
        head = rows[0]
        return {r[1]: dict(zip(head, r)) for r in rows[1:] if r[0] == BACKEND}

    def wait_status(self, server: str, prefix: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats()[server]["status"].startswith(prefix):
            if time.monotonic() > deadline:
                raise DnxError(f"haproxy did not see {server} {prefix} within {timeout:.0f} s")
            time.sleep(0.05)

    def wait_idle(self, server: str, timeout: float = 30) -> None:
        """Wait until no request is in flight on ``server`` (after ``drain``)."""
        deadline = time.monotonic() + timeout
        while int(self.stats()[server]["scur"] or 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "HAProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
