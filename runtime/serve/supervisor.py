"""Running ``dnx serve``: one process, or a supervisor and ``--workers N`` worker processes.

The listening socket is bound here, before the model loads (``SO_REUSEADDR``: a port whose previous
server was killed can be reused at once; a taken port is a one-line error). Then:

- one worker: this process loads the model and runs uvicorn on the socket;
- N workers: N spawned processes each load the model and run uvicorn on the same socket (the kernel
  spreads connections). Each reports "ready" or its one-line load error through a pipe; one failure
  stops the others and ends the command with that line (exit 1). On SIGTERM/SIGINT the supervisor
  passes the signal on, waits for every worker's graceful stop, removes the shared metrics folder
  and only then returns: it never exits before its workers. A worker that dies on its own stops the
  service (exit 1), leaving restarts to the process manager above (systemd, Kubernetes).

Both return the tally of classify requests received and answered (summed over the workers).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time

from dnx.core.errors import DnxError, DnxError as Error
from dnx.runtime.serve.process import bind_listener
from dnx.runtime.serve.service import ServeConfig, Service
from dnx.runtime.serve.http import build_app, close_when_stopping
from dnx.runtime.serve.metrics import MULTIPROC_ENV

GRACEFUL_S = 30  # uvicorn's wait for requests in flight after a stop signal (Kubernetes' grace period exceeds it)
START_TIMEOUT_S = 600  # a worker's model load and warm-up


def _uvicorn_server(app, config: ServeConfig):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                         timeout_graceful_shutdown=GRACEFUL_S, lifespan="on"))


def _ignore_reraise() -> None:
    # uvicorn re-raises a captured SIGINT/SIGTERM after its graceful shutdown (restoring the handlers it
    # found first), which would end this process with a signal status; a completed graceful stop is a
    # success, so the handlers it restores ignore that re-raise.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _run_here(config: ServeConfig, sock: socket.socket, multiprocess: bool, ready=None) -> dict:
    """Load the model, then serve on ``sock`` until a stop signal; ``ready()`` is called once loaded."""

    service = Service(config, multiprocess=multiprocess)
    try:
        service.open()  # load errors surface here as one line, before anything is served
        if ready is not None:
            ready()
        holder = []
        app = close_when_stopping(build_app(config, service), lambda: holder[0].should_exit)
        server = _uvicorn_server(app, config)
        holder.append(server)
        _ignore_reraise()  # only now: a signal during the model load still stops the process at once
        server.run(sockets=[sock])
    finally:
        service.close()
    if not server.started:
        raise DnxError(f"the service did not start on {config.host}:{config.port} (see the log above)")
    return {"received": service.received, "answered": service.answered}


def _worker_main(config: ServeConfig, sock: socket.socket, conn) -> None:
    """A worker process: report ("ready") or ("failed", line), serve, report ("done", tally)."""

    try:
        tally = _run_here(config, sock, multiprocess=True, ready=lambda: conn.send(("ready",)))
    except Error as exc:
        conn.send(("failed", str(exc)))
        raise SystemExit(1) from None
    conn.send(("done", tally))


def serve(config: ServeConfig) -> dict:
    """Serve until SIGINT/SIGTERM; return after a graceful stop (requests in flight answered) with the
    count of classify requests received and answered."""
    config.validate()
    sock = bind_listener(config.host, config.port)
    if config.port == 0:
        config = dataclasses.replace(config, port=sock.getsockname()[1])
    with sock:
        if config.workers == 1:
            return _run_here(config, sock, multiprocess=False)
        return _supervise(config, sock)


class _Stop:
    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum, frame) -> None:
        self.signal = signum


def _supervise(config: ServeConfig, sock: socket.socket) -> dict:
    import multiprocessing
    import shutil
    import tempfile

    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    metrics_dir = tempfile.mkdtemp(prefix="dnx-serve-metrics-")
    old_env = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers before they import prometheus
    ctx = multiprocessing.get_context("spawn")
    workers = []
    try:
        for i in range(config.workers):
            receive, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, args=(config, sock, send), name=f"dnx-serve-worker-{i}")
            proc.start()
            send.close()
            workers.append((proc, receive))
        failure = _wait_ready(workers, stop)
        if failure is None:
            sock.close()  # the workers hold it now; once they stop, nothing listens
            while stop.signal is None and all(p.is_alive() for p, _ in workers):
                time.sleep(0.2)
            if stop.signal is None:
                dead = next(p for p, _ in workers if not p.is_alive())
                failure = f"worker {dead.name} died (exit code {dead.exitcode}); the service stopped"
        return _stop_all(workers, failure)
    finally:
        for proc, _ in workers:  # never leave a worker behind, whatever happened above
            if proc.is_alive():
                proc.kill()
                proc.join()
        if old_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = old_env
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _ignore_reraise()


def _wait_ready(workers, stop: _Stop) -> str | None:
    """None once every worker is ready; else the first failure's line (or None on a stop signal)."""
    waiting = {id(p): (p, conn) for p, conn in workers}
    deadline = time.monotonic() + START_TIMEOUT_S
    while waiting and stop.signal is None:
        if time.monotonic() > deadline:
            return f"the workers did not load the model within {START_TIMEOUT_S} s"
        for key, (proc, conn) in list(waiting.items()):
            if conn.poll(0.05):
                try:
                    message = conn.recv()
                except EOFError:  # it died before saying why (e.g. killed while loading)
                    proc.join(5)
                    message = ("failed", f"worker {proc.name} exited with code {proc.exitcode} while loading the model")
                if message[0] == "failed":
                    return message[1]
                del waiting[key]
            elif not proc.is_alive():
                return f"worker {proc.name} exited with code {proc.exitcode} while loading the model"
    return None


def _stop_all(workers, failure: str | None) -> dict:
    for proc, _ in workers:
        if proc.is_alive():
            # SIGTERM whatever stopped us: a second SIGINT (a terminal's Ctrl-C already reached the whole
            # process group) would make uvicorn skip its graceful stop
            os.kill(proc.pid, signal.SIGTERM)
    tally = {"received": 0, "answered": 0}
    for proc, conn in workers:
        proc.join(GRACEFUL_S + 15)
        if proc.is_alive():
            proc.kill()
            proc.join()
        while conn.poll():
            try:
                message = conn.recv()
            except EOFError:
                break
            if message[0] == "done":
                for key in tally:
                    tally[key] += message[1][key]
    if failure is not None:
        raise DnxError(failure)
    return tally
