"""``dnx triton serve``: ``dnx.load`` inside a real Triton Inference Server, through PyTriton.

PyTriton (``nvidia-pytriton``) ships a real ``tritonserver`` with its Python backend. The server
owns the network protocols (KServe v2 over HTTP and gRPC, Prometheus metrics, the statistics
extension) and Triton's dynamic batcher; each batch it forms is handed to this process, where one
:class:`dnx.runtime.classifier.Classifier` runs it on the artifact's backend (onnxruntime or
OpenVINO on a CPU, TensorRT on a GPU).

Models served (NAME: the artifact's file stem unless given):
- ``NAME``: float32 (N, C, H, W) network input -> logits (N, classes), names and dims as
  ``dnx triton export`` writes them for the same artifact;
- ``NAME_image``: one encoded image (BYTES) per row -> logits and the top-1 label, with dnx's
  preprocessing from the manifest.
Both are ensembles that check each request alone before Triton batches ``NAME_network``, the
Classifier bound through PyTriton (:mod:`dnx.runtime.serve.triton_front`): a bad request is answered
INVALID_ARGUMENT in one line and never fails the requests batched with it.

Only loopback by default. The process tree is tritonserver (a child) and its Python-backend stubs
(grandchildren); :meth:`TritonServer.stop` stops them all and is safe to call twice.

Stopping drains. Asked to stop, tritonserver (2.51) first waits for every HTTP connection to close,
serving what keeps arriving on them, and when its exit timeout ends with inferences still in flight it
exits hard (``Signal (11)``, stubs left running, requests answered by a closed connection). So
:meth:`TritonServer.stop` first unloads the models through Triton's repository API: requests already
in flight are answered, new ones get Triton's one-line 404 ("unknown model"), and only then is the
server stopped, with nothing in flight. Whatever a crash would still leave (stub processes, their
shared memory, the folders Triton localized models into) is recorded while the server runs and
removed after it has stopped (:mod:`dnx.runtime.serve.triton_process`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnx.core.errors import DnxError, require
from dnx.runtime.serve.triton_front import LABEL_OUTPUT, NETWORK_SUFFIX, front_models, load_front_models
from dnx.runtime.serve.triton_process import ServerTree, become_subreaper
from dnx.runtime.classifier import load
from dnx.runtime.serve.process import check_port_free
from dnx.runtime.serve.repository import network_spec, RepositoryOptions

IMAGE_SUFFIX = "_image"


class TritonServeError(DnxError):
    """Triton could not start or stopped on its own; the message carries its log tail."""


@dataclass(frozen=True, kw_only=True)
class TritonServeConfig:
    """What ``dnx triton serve`` runs. Ports 0 mean "any free port" (chosen before the server starts)."""

    artifact: str
    model_name: str | None = None  # default: the artifact's file stem
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    backend: str = "auto"
    device: str = "auto"
    threads: int | None = None
    max_batch: int = 8
    dynamic_batching: bool = True
    queue_delay_us: int = 100
    preferred_batch: tuple[int, ...] = ()
    instances: int = 1
    image_model: bool = True
    allow_unverified: bool = False  # serve an artifact whose parity certificate failed or is missing
    exit_timeout_s: int = 5  # in-flight requests get this long at shutdown

    def validate(self) -> TritonServeConfig:
        ports = (("http_port", self.http_port), ("grpc_port", self.grpc_port), ("metrics_port", self.metrics_port))
        for name, port in ports:
            if not 0 <= port <= 65535:
                raise DnxError(f"{name} must be from 0 to 65535, got {port}", param=name)
        fixed = [p for _, p in ports if p]
        if len(set(fixed)) != len(fixed):
            raise DnxError(f"http_port, grpc_port and metrics_port must differ, got {[p for _, p in ports]}",
                           param=tuple(name for name, _ in ports))
        # (holds, message, the fields it is about): the CLI writes their flags in their place
        checks = [(self.max_batch >= 1, f"max_batch must be >= 1, got {self.max_batch}", "max_batch"),
                  (0 <= self.queue_delay_us <= 10_000_000, "queue_delay_us must be from 0 to 10000000",
                   "queue_delay_us"),
                  (all(1 <= b <= self.max_batch for b in self.preferred_batch),
                   f"preferred_batch sizes must be from 1 to max_batch {self.max_batch}",
                   ("preferred_batch", "max_batch")),
                  (1 <= self.instances <= 64, f"instances must be from 1 to 64, got {self.instances}", "instances"),
                  (1 <= self.exit_timeout_s <= 600, "exit_timeout_s must be from 1 to 600 s", "exit_timeout_s")]
        for ok, message, params in checks:
            if not ok:
                raise DnxError(message, param=params)
        return self


def _free_port(host: str, port: int, option: str) -> int:
    """``port`` if it can be bound on ``host`` (a free one for 0); a one-line error when it is taken."""

    return check_port_free(host, port, option)


@contextlib.contextmanager
def server_library_path() -> Iterator[None]:
    """Put this interpreter's LIBDIR first on LD_LIBRARY_PATH while tritonserver is being started.

    The Python-backend stub links ``libpython3.X.so.1.0`` by name; under an interpreter that is not the
    system's (pyenv, conda) the loader finds the system's libpython first and the stub fails at model
    load ("'_thread.RLock' object has no attribute '_recursion_count'"). PyTriton copies os.environ
    into the server's environment at start, so the change is made there and undone afterwards.
    """
    import pytriton

    libdir = sysconfig.get_config_var("LIBDIR")
    # PyTriton takes its wheel's libraries folder for an editable install's when its site-packages is not
    # this interpreter's own (a venv layered on another's packages by a .pth file): name the real one.
    wheel_libs = Path(pytriton.__file__).resolve().parents[1] / "nvidia_pytriton.libs"
    before = os.environ.get("LD_LIBRARY_PATH")
    parts = (libdir, str(wheel_libs) if wheel_libs.is_dir() else None, before)
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in parts if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


def log_tail(path: Path, lines: int = 4) -> str:
    """The last error lines of a tritonserver log (its last lines if none is marked as an error), on one line."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    # NVML/CUDA complaints are expected on a machine without a GPU and say nothing about the failure.
    noise = ("NVML", "CudaDriverHelper", "CUDA driver", "libcuda",
             "config modification time")  # the last: PyTriton's generated configs, harmless
    errors = [t for t in text if t[:1] == "E" and not any(n in t for n in noise)]
    return " | ".join(line.strip()[:300] for line in (errors or text)[-lines:]) or "(empty server log)"


def _summary(text: str) -> str:
    """A server error that embeds a Python traceback, as its first line and the exception it ends with."""
    head = text.split("Traceback", 1)[0].strip()
    raised = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*\w+(Error|Exception)\b.*:", ln)]
    return " ... ".join(p for p in (head, raised[-1] if raised and "Traceback" in text else "") if p)


class TritonServer:
    """One artifact served by a real tritonserver. Use as a context manager, or ``start()``/``stop()``."""

    def __init__(self, config: TritonServeConfig) -> None:
        self.config = config.validate()
        self.classifier = None
        self.spec = None
        self.ports: dict[str, int] = {}
        self._triton = None
        self._logdir: Path | None = None
        self._tree = ServerTree()
        self._front: dict[str, tuple[dict, dict]] = {}
        self.left_behind: dict[str, int] = {}  # what the last stop had to clean up after tritonserver
        self._lock = threading.Lock()

    # -- facts ---------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.spec.name

    @property
    def network_model_name(self) -> str:
        """The PyTriton-bound Classifier the ensembles call (not meant for clients)."""
        return self.spec.name + NETWORK_SUFFIX

    @property
    def image_model_name(self) -> str | None:
        return self.spec.name + IMAGE_SUFFIX if self.config.image_model and self.spec.max_batch else None

    def url(self, protocol: str = "http") -> str:
        return f"{self.config.host}:{self.ports[protocol]}"

    @property
    def log_path(self) -> Path:
        return self._logdir / "tritonserver.log"

    def alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> TritonServer:
        require("pytriton", "triton", "dnx triton serve")

        c = self.config
        self.ports = {"http": _free_port(c.host, c.http_port, "--http-port"),
                      "grpc": _free_port(c.host, c.grpc_port, "--grpc-port"),
                      "metrics": _free_port(c.host, c.metrics_port, "--metrics-port")}
        if len(set(self.ports.values())) != 3:  # two "any free port" picks can coincide
            raise DnxError(f"the ports chosen collide ({self.ports}); give --http-port/--grpc-port/--metrics-port")
        # The repository export's reading of the artifact: the same model name, tensor names and dims.
        # kind="gpu" only lets an engine through; dnx.load below checks the device for real.
        options = RepositoryOptions(max_batch=c.max_batch, kind="gpu", allow_unverified=c.allow_unverified)
        self.spec = network_spec(c.artifact, options, c.model_name)
        self.classifier = load(c.artifact, backend=c.backend, device=c.device, threads=c.threads,
                               allow_unverified=c.allow_unverified)
        self._logdir = Path(tempfile.mkdtemp(prefix="dnx-triton-"))
        try:
            self._start_triton()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop tritonserver (SIGINT, then kill after PyTriton's wait) and close the model; idempotent."""
        with self._lock:
            triton, self._triton = self._triton, None
            classifier, self.classifier = self.classifier, None
        if triton is not None:
            self._tree.record(os.getpid())
            self._drain(triton)
            triton.stop()
            self.left_behind = self._tree.sweep()
        if classifier is not None:
            classifier.close()
        if self._logdir is not None:
            shutil.rmtree(self._logdir, ignore_errors=True)
            self._logdir = None

    def _drain(self, triton) -> None:
        """Unload the models (the image model first: it may use the network's instance) so that requests
        in flight are answered and new ones refused, bounded by the exit timeout."""
        import tritonclient.http as http

        if not triton.is_alive():
            return
        headers = self._admin_headers(triton)
        # the ensembles first (requests stop entering), then their steps
        names = [n for n in (self.image_model_name, self.model_name) if n] + [
            n for n in self._front if n not in (self.image_model_name, self.model_name)] + [self.network_model_name]
        timeout = float(self.config.exit_timeout_s)
        try:
            with contextlib.closing(http.InferenceServerClient(self.url("http"), network_timeout=timeout)) as admin:
                for name in names:
                    admin.unload_model(name, headers=headers)
                deadline = time.monotonic() + timeout
                while any(admin.is_model_ready(n) for n in names) and time.monotonic() < deadline:
                    time.sleep(0.05)
        except Exception:  # noqa: BLE001  (the server is going away; its own stop below still runs)
            return

    def _admin_headers(self, triton=None) -> dict[str, str]:
        """The header that opens Triton's restricted endpoints (model repository) to this process."""
        from pytriton.triton import TRITON_ACCESS_HEADER

        return {TRITON_ACCESS_HEADER: (triton or self._triton).get_access_token()}

    def _start_triton(self) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

        c, spec = self.config, self.spec
        triton_config = TritonConfig(
            http_address=c.host, http_port=self.ports["http"], grpc_address=c.host, grpc_port=self.ports["grpc"],
            metrics_address=c.host, metrics_port=self.ports["metrics"], exit_timeout_secs=c.exit_timeout_s,
            log_file=self.log_path, log_verbose=0)
        # PyTriton protects statistics with a generated token by default; load generators read it
        # (read-only), so only the endpoints that change the server stay protected.
        security = TritonSecurityConfig(restricted_endpoints=["model-repository", "shared-memory", "trace", "logging"])
        batcher = (DynamicBatcher(max_queue_delay_microseconds=c.queue_delay_us,
                                  preferred_batch_size=list(c.preferred_batch) or None)
                   if c.dynamic_batching else None)
        # max_batch 0 (a fixed-batch graph): Triton must not batch, and dims then include the batch axis.
        batching = spec.max_batch > 0
        model_config = ModelConfig(batching=batching, max_batch_size=spec.max_batch, batcher=batcher)
        out_dtype = np.float16 if spec.output_dtype == "TYPE_FP16" else np.float32
        inputs = [Tensor(name=spec.artifact.input_name, dtype=np.float32, shape=spec.input_dims)]
        label_shape = (1,) if batching else (spec.artifact.input_shape[0], 1)
        outputs = [Tensor(name=spec.output_name, dtype=out_dtype, shape=spec.output_dims),
                   Tensor(name=LABEL_OUTPUT, dtype=bytes, shape=label_shape)]
        self._front = front_models(spec, RepositoryOptions(instances=c.instances, kind="cpu"),
                                   image_model=self.image_model_name is not None)
        with server_library_path():
            self._triton = Triton(config=triton_config, security_config=security)
            # One callable per instance: Triton runs them in parallel; the Classifier is thread-safe.
            self._triton.bind(self.network_model_name, [_network_fn(self.classifier, spec)] * c.instances, inputs,
                              outputs, config=model_config, strict=True)
            try:
                self._triton.run()
                load_front_models(self.url("http"), self._admin_headers(), self._front, timeout_s=120)
            except Exception as exc:  # PyTriton's TimeoutError / validation errors, the server's reasons in the log
                raise TritonServeError(f"tritonserver did not start ({type(exc).__name__}: {_summary(str(exc))}); "
                                       f"server log: {log_tail(self.log_path)}") from None
        if not self._triton.is_alive():
            raise TritonServeError(f"tritonserver exited during start; server log: {log_tail(self.log_path)}")
        self._tree.record(os.getpid())


def _network_fn(classifier, spec) -> Callable:
    """Logits and the top-1 label of each row; the ensembles in front have checked every request."""
    from pytriton.decorators import batch

    labels = classifier.labels

    @batch
    def infer(**inputs):
        logits = classifier.logits(inputs[spec.artifact.input_name])
        top = logits.argmax(axis=-1).reshape(-1)
        names = [(labels[i] if labels and i < len(labels) else str(i)).encode() for i in top]
        return {spec.output_name: logits, LABEL_OUTPUT: np.array(names, dtype=object).reshape(-1, 1)}

    return infer


def serve(config: TritonServeConfig, on_ready: Callable[[TritonServer], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then stop the server cleanly and return (main thread only).

    ``on_ready(server)`` is called once the models are loaded. Raises TritonServeError when the server
    fails to start or stops on its own.
    """
    become_subreaper()  # stubs orphaned by a tritonserver crash stay ours to stop
    stop = threading.Event()
    handlers = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = TritonServer(config)
        try:
            server.start()
        except TritonServeError:
            # Ctrl-C in a terminal reaches tritonserver too: a start it cut short is a stop, not a failure.
            if stop.is_set():
                return
            raise
        try:
            if on_ready is not None:
                on_ready(server)
            while not stop.wait(0.5):
                if not server.alive():
                    raise TritonServeError(f"tritonserver stopped on its own; server log: {log_tail(server.log_path)}")
        finally:
            server.stop()
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
