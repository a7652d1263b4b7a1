"""``dnx serve`` as a child process on a free loopback port: what the tests, the load benchmark and
``make demo`` start. Waits for ``/readyz``, fails fast (with the server's log) if the process exits,
and stops with SIGTERM, then SIGKILL after a timeout.

    python -m dnx.runtime.serve.process MODEL.onnx   # start, classify one bundled photo, stop
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dnx.core.errors import DnxError
from dnx.data.preprocess import bundled_photos


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports free on ``host`` now (all bound at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def bind_listener(host: str, port: int, option: str = "--port", backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), or a one-line DnxError when the port is
    taken. ``SO_REUSEADDR``, as uvicorn and tritonserver set it: a port whose last server was killed
    (its connections in TIME_WAIT) can be listened on again at once, and only a live listener refuses."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise DnxError(f"cannot listen on {host}:{port} ({option}): {exc.strerror}; choose another {option} "
                       "or stop what uses it") from None
    return sock


def check_port_free(host: str, port: int, option: str = "--port") -> int:
    """``port`` if a server could listen on it now (a free one for 0), checked the way the server will
    bind it (``SO_REUSEADDR``); a one-line DnxError when it is taken. For servers that bind it themselves."""
    with bind_listener(host, port, option, backlog=1) as probe:
        return probe.getsockname()[1]


class ServeProcess:
    def __init__(self, artifact: str | Path | None, *args: str, timeout: float = 300, port: int | None = None) -> None:
        import httpx

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # artifact None: the args name it (``--config FILE`` with an ``artifact`` line)
        where = [] if artifact is None else [str(artifact)]
        cmd = [sys.executable, "-m", "dnx.cli", "serve", *where, "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise DnxError(f"dnx serve exited with {self.proc.returncode}: {self.proc.stderr.read().strip()}")
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
        except BaseException:  # Ctrl-C while waiting: the caller has no handle to stop the child with
            self.stop(signal.SIGKILL)
            raise
        self.stop(signal.SIGKILL)
        raise DnxError(f"dnx serve did not become ready within {timeout:.0f} s")

    def rss_mib(self) -> float:
        """The server's resident memory (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise DnxError("VmRSS not found in /proc")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _demo(artifact: str) -> None:
    import json

    import httpx

    photo = bundled_photos()[0]
    with ServeProcess(artifact) as server:
        print(f"dnx serve {artifact} is ready on {server.url}")
        r = httpx.post(f"{server.url}/v1/classify?top_k=3", content=photo.read_bytes(),
                       headers={"content-type": "image/jpeg"}, timeout=60)
        print(f"POST /v1/classify ({photo.name}) -> {r.status_code}")
        print(json.dumps(r.json(), indent=1))
        code = server.stop()
    print(f"stopped with SIGTERM, exit code {code}")
    if r.status_code != 200 or code != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        raise SystemExit("usage: python -m dnx.runtime.serve.process ARTIFACT  "
                         "(start dnx serve, classify one photo, stop)")
    _demo(sys.argv[1])
