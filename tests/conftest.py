"""Shared fixtures and the gpu/trt skip rules (skips are printed by `-rs`)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from dnx.runtime.serve.process import free_port


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    cuda = _has_cuda()
    # find_spec only: importing tensorrt (or creating a Runtime) without a driver can crash.
    trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        # markers, not item.keywords: keywords also hold folder names (a checkout in a folder named trt)
        if item.get_closest_marker("gpu") and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none on this machine"))
        if item.get_closest_marker("trt") and not (cuda and trt):
            why = "TensorRT is not installed" if not trt else "no CUDA device"
            item.add_marker(pytest.mark.skip(reason=f"needs real TensorRT and a CUDA device: {why}"))


# -- artifacts of dnx's shipped Fashion-MNIST model, made once per test session -------------------

@pytest.fixture(scope="session")
def fmnist_onnx(tmp_path_factory):
    """dnx's trained DenseNet-BC exported (FP32, dynamic batch, verified) with its manifest."""
    from dnx.export.onnx_export import ExportOptions, export_onnx
    from dnx.models import create_model

    path = tmp_path_factory.mktemp("fmnist") / "fmnist.onnx"
    export_onnx(create_model("densenet_bc22_fmnist"), path, ExportOptions())
    return path


@pytest.fixture(scope="session")
def fmnist_int8_onnx(fmnist_onnx):
    """Its INT8 Q/DQ graph placed for onnxruntime, calibrated on 128 shipped training images."""
    from dnx.calibration.qdq import calibrate_qdq
    from dnx.models import ASSETS

    out = fmnist_onnx.with_name("fmnist.int8-onnxruntime.onnx")
    calibrate_qdq(fmnist_onnx, out, ASSETS / "fashion_mnist_calib512.npz", target="onnxruntime", samples=128)
    return out


@pytest.fixture
def broken_int8_onnx(fmnist_int8_onnx, tmp_path):
    """The INT8 file with every weight DequantizeLinear scale multiplied by 10 (its manifest kept): a
    deliberately broken quantization that parity checks must catch."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(fmnist_int8_onnx))
    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = inits[node.input[1]]
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 10, scale.name))
    path = tmp_path / "broken.int8.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture
def corrupted_int8_onnx(fmnist_int8_onnx, tmp_path):
    """The INT8 file with ONE weight tensor (the middle quantized Conv weight) overwritten by seeded random
    int8 values, its manifest kept: a bad copy or a bit-rotted file that parity checks must catch."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(fmnist_int8_onnx))
    inits = {i.name: i for i in proto.graph.initializer}
    weights = [inits[n.input[0]] for n in proto.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) == 4]
    victim = weights[len(weights) // 2]
    values = numpy_helper.to_array(victim)
    noise = np.random.default_rng(0).integers(-127, 128, values.shape).astype(values.dtype)
    victim.CopyFrom(numpy_helper.from_array(noise, victim.name))
    path = tmp_path / "corrupted.int8.onnx"
    onnx.save(proto, str(path))
    return path


# -- servers the tests start: one readiness loop, one way to lay out PyTriton's tritonserver ------------

def wait_ready(probe, proc: subprocess.Popen, log: Path, what: str, timeout: float = 90) -> None:
    """Poll ``probe()`` until it is true; fail with the server's log if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not become ready: {log.read_text()[-3000:]}")
        try:
            if probe():
                return
        except Exception:  # noqa: BLE001  (not listening yet, or the model or version not known yet)
            pass
        time.sleep(0.3)


def start_tritonserver(work: Path, repo: Path, *flags: str) -> tuple[subprocess.Popen, int, Path]:
    """PyTriton's bundled tritonserver binary (Python backend only) on a loopback HTTP port serving
    ``repo``, laid out as PyTriton does (the backend stub for this Python); returns (process, port, log)."""
    from pytriton.triton import TRITONSERVER_DIST_DIR
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    from dnx.runtime.deploy.replicas import pytriton_env
    from dnx.runtime.serve.triton import server_library_path

    server = work / "server"
    shutil.copytree(TRITONSERVER_DIST_DIR, server, ignore=shutil.ignore_patterns("python_backend_stubs"))
    shutil.copy(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"),
                server / "backends" / "python" / "triton_python_backend_stub")
    port = free_port()
    with server_library_path():
        env = pytriton_env()  # finds nvidia_pytriton.libs where pytriton really lives (a worktree's venv)
        env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                   LD_LIBRARY_PATH=f"{env['LD_LIBRARY_PATH']}:{get_libs_path()}")
    log = work / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(server / "bin" / "tritonserver"), f"--model-repository={repo}",
                                 f"--backend-directory={server / 'backends'}", "--http-address=127.0.0.1",
                                 f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false", *flags],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, port, log


DNX = [sys.executable, "-c", "import sys; from dnx.cli import main; main(sys.argv[1:])"]
SHM = Path("/dev/shm")


class DnxTritonServe:
    """``dnx triton serve ARTIFACT`` (onnxruntime backend) on free loopback ports, ready (the ``fmnist`` and
    ``fmnist_image`` models of dnx's Fashion-MNIST artifact), with its process tree recorded."""

    def __init__(self, artifact: Path, log: Path, *args: str, new_session: bool = False) -> None:
        import tritonclient.http as http

        from dnx.runtime.serve.process import free_ports
        from dnx.runtime.serve.triton_process import ServerTree

        self.ports = free_ports(3)
        self.http_url, self.grpc_url = f"127.0.0.1:{self.ports[0]}", f"127.0.0.1:{self.ports[1]}"
        self.metrics_port, self.log = self.ports[2], log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [*DNX, "triton", "serve", str(artifact), "--backend", "onnxruntime", "--http-port", str(self.ports[0]),
                 "--grpc-port", str(self.ports[1]), "--metrics-port", str(self.ports[2]), *args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session)
        with http.InferenceServerClient(self.http_url) as client:
            try:
                wait_ready(lambda: client.is_model_ready("fmnist") and client.is_model_ready("fmnist_image"),
                           self.proc, log, "dnx triton serve", timeout=120)
            except BaseException:
                self.stop()
                raise
        self.tree = ServerTree()
        self.tree.record(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def left_behind(self) -> dict[str, list]:
        """What this server's tree still holds: live processes, shared memory, localized model folders."""
        shm = sorted(p.name for p in SHM.glob(f"{self.tree.shm_prefix}*")) if self.tree.shm_prefix else []
        return {"processes": self.tree.alive(), "shared_memory": shm,
                "folders": [str(f) for f in self.tree.folders if f.exists()]}


@pytest.fixture(scope="session")
def servers():
    """The helpers above, for the test modules (conftest modules are not importable by name)."""
    return types.SimpleNamespace(wait_ready=wait_ready, start_tritonserver=start_tritonserver,
                                 dnx_triton_serve=DnxTritonServe)
