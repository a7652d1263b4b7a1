"""TensorRTRunner's own control flow against stand-ins: NOT TensorRT, NOT CUDA.

The execution context, CUDA graph, stream and events are recorders, and buffers are CPU tensors.
These tests prove the order of dnx's calls (shape changes, graph captures and replays, which device
is current); that TensorRT and CUDA accept them needs a GPU (test_tensorrt_gpu.py).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest

from dnx.core.errors import DnxError
from dnx.runtime.backends.tensorrt_compat import TensorRTError
from dnx.schemas.engine_manifest import ENGINE_SCHEMA, EngineManifest, rebuild_command_with
from dnx.runtime.backends.tensorrt_runner import TensorRTRunner


def _engine_manifest(build_command: str) -> EngineManifest:
    return EngineManifest.from_dict({"schema": ENGINE_SCHEMA, "tensorrt_version": "10.16.1.11",
                                     "gpu": {"compute_capability": "8.9"}, "build_command": build_command})

PROFILE = {"min": [1, 3, 4, 4], "opt": [2, 3, 4, 4], "max": [8, 3, 4, 4]}
BUILD = "dnx build m.onnx --precision fp16 --max-batch 8 -o m.fp16.engine"


class Recorder:
    """The event log shared by the stand-ins; ``cuda.current`` is the device torch has current."""

    def __init__(self, cuda):
        self.cuda, self.events, self.capturing = cuda, [], None


class FakeContext:
    def __init__(self, rec: Recorder, fail_in_capture: bool = False):
        self.rec, self.shape, self.fail_in_capture = rec, None, fail_in_capture

    def set_input_shape(self, name, shape):
        self.rec.events.append(("set_shape", tuple(shape), self.rec.cuda.current))
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return (self.shape[0], 10)

    def execute_async_v3(self, stream_handle):
        if self.rec.capturing is not None:
            if self.fail_in_capture:
                return False
            self.rec.capturing.shape = self.shape
            self.rec.events.append(("capture", self.shape, id(self.rec.capturing)))
        else:
            self.rec.events.append(("enqueue", self.shape, self.rec.cuda.current))
        return True


class FakeGraph:
    rec: Recorder

    def __init__(self):
        self.shape = None

    def replay(self):
        self.rec.events.append(("replay", self.shape, id(self)))


@pytest.fixture
def active_runner(fake_cuda, monkeypatch, tmp_path):
    """``make(cuda_graph, device)``: a TensorRTRunner in the state ``_setup`` leaves it, on stand-ins."""
    import torch

    rec = Recorder(fake_cuda)
    FakeGraph.rec = rec

    @contextlib.contextmanager
    def capture(graph, stream=None, capture_error_mode=None):
        rec.capturing = graph
        try:
            yield
        finally:
            rec.capturing = None

    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", capture)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())

    def make(cuda_graph=False, device=0, fail_in_capture=False):
        runner = TensorRTRunner(tmp_path / "m.fp16.engine", device=device, cuda_graph=cuda_graph)
        event = types.SimpleNamespace(record=lambda stream: None, synchronize=lambda: None,
                                      elapsed_time=lambda other: 1.5)
        runner._context = FakeContext(rec, fail_in_capture)
        runner._loaded = types.SimpleNamespace(logger=types.SimpleNamespace(errors=lambda: []))
        runner._inputs = [{"name": "input", "mode": "input", "shape": [-1, 3, 4, 4], "dtype": "float32",
                           "profile": PROFILE}]
        runner._outputs = [{"name": "logits", "mode": "output", "shape": [-1, 10], "dtype": "float32"}]
        runner._device_buffers = {"input": torch.zeros(8 * 48), "logits": torch.zeros(80)}
        runner._host_buffers = {"input": torch.zeros(8 * 48), "logits": torch.zeros(80)}
        runner._stream = types.SimpleNamespace(synchronize=lambda: None, cuda_stream=7)
        runner._events = (event, event)
        runner.manifest = _engine_manifest(build_command=BUILD)
        runner.is_active = True
        return runner, rec

    return make


def batch(n):
    return {"input": np.ones((n, 3, 4, 4), np.float32)}


def assert_no_replay_after_the_context_changed(events):
    """TensorRT's rule for CUDA graphs: the context must not change between capture and replay."""
    captured_at = {}
    for i, event in enumerate(events):
        if event[0] == "capture":
            captured_at[event[2]] = i
        if event[0] == "replay":
            since = events[captured_at[event[2]]:i]
            assert not any(e[0] == "set_shape" for e in since), f"replayed {event} after a shape change: {events}"


def test_cuda_graphs_across_shapes_recapture_instead_of_replaying_a_stale_graph(active_runner):
    runner, rec = active_runner(cuda_graph=True)
    for n in (8, 2, 8, 8):  # A -> B -> A -> A
        runner.infer(batch(n))
    assert_no_replay_after_the_context_changed(rec.events)
    kinds = [(e[0], e[1][0]) for e in rec.events]
    assert kinds == [("set_shape", 8), ("enqueue", 8), ("capture", 8), ("replay", 8),
                     ("set_shape", 2), ("enqueue", 2), ("capture", 2), ("replay", 2),
                     ("set_shape", 8), ("enqueue", 8), ("capture", 8), ("replay", 8),
                     ("replay", 8)]  # an unchanged shape replays the graph it has


def test_without_cuda_graphs_every_run_is_a_plain_launch(active_runner):
    runner, rec = active_runner()
    for n in (8, 2, 8):
        runner.infer(batch(n))
    assert [e[0] for e in rec.events] == ["set_shape", "enqueue", "set_shape", "enqueue", "set_shape", "enqueue"]


def test_a_launch_refused_during_capture_is_a_cuda_graph_error(active_runner):
    """Not only CUDA's RuntimeError: TensorRT's own refusal inside the capture becomes the same clear error."""
    runner, rec = active_runner(cuda_graph=True, fail_in_capture=True)
    with pytest.raises(TensorRTError, match=r"capturing .* as a CUDA graph failed .*run without cuda_graph") as info:
        runner.infer(batch(4))
    assert info.value.code == "cuda-graph" and rec.capturing is None and runner._graph is None


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_split_methods_run_on_the_runners_device(active_runner, cuda_graph):
    """load_inputs / execute / infer_device, as the latency code calls them, with device 1 current."""
    runner, rec = active_runner(cuda_graph=cuda_graph, device=1)
    runner.load_inputs(batch(4))
    runner.execute()
    runner.load_inputs(batch(2))
    assert runner.infer_device() == 1.5e-3
    assert runner.fetch_outputs()["logits"].shape[0] == 2
    assert rec.cuda.current is None  # restored after each call
    device_events = [e for e in rec.events if e[0] in ("set_shape", "enqueue")]
    assert device_events and all(e[2] == 1 for e in device_events), rec.events
    assert runner.cuda_stream is runner._stream


def test_execute_before_load_inputs_is_refused(active_runner):
    runner, _ = active_runner()
    with pytest.raises(DnxError, match=r"call load_inputs\(feed\) before execute\(\)"):
        runner.execute()


@pytest.mark.parametrize("n, hint", [(9, BUILD.replace("--max-batch 8", "--max-batch 9")),
                                     (0, "dnx build m.onnx --precision fp16 --max-batch 8 --min-batch 0 -o "
                                         "m.fp16.engine")])
def test_a_batch_outside_the_profile_names_one_rebuild_flag(active_runner, n, hint):
    runner, _ = active_runner()
    with pytest.raises(DnxError, match="rebuild it with") as info:
        runner.load_inputs(batch(n), check=False)
    assert str(info.value).endswith(f"rebuild it with `{hint}`")
    assert str(info.value).count("--max-batch") == 1


def test_rebuild_command_with_replaces_a_flag_given_in_either_form():
    manifest = _engine_manifest(build_command="dnx build 'my model.onnx' --max-batch=8 --calib-data imgs -o m.engine")
    assert rebuild_command_with(manifest, "--max-batch", 64) == \
        "dnx build 'my model.onnx' --calib-data imgs --max-batch 64 -o m.engine"
    assert rebuild_command_with(None, "--min-batch", 1) == "dnx build MODEL.onnx --min-batch 1"


def test_inspect_engine_loads_and_inspects_on_the_device_asked_for(tmp_path, fake_cuda, fake_trt, monkeypatch):
    import sys

    from dnx.runtime.tensorrt import inspect as trt_inspect

    (tmp_path / "m.engine").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())
    seen = []

    def load_engine(trt, path, manifest, device=0):
        seen.append(("load", fake_cuda.current))
        return types.SimpleNamespace(engine=object(), io=[], warnings=[])

    monkeypatch.setattr(trt_inspect, "load_engine", load_engine)  # inspect's own reference (imported at its top)
    monkeypatch.setattr(trt_inspect, "engine_layers",
                        lambda trt, engine: seen.append(("layers", fake_cuda.current)) or [])
    info = trt_inspect.inspect_engine(tmp_path / "m.engine", device=1)
    assert seen == [("load", 1), ("layers", 1)] and info["layers"]["count"] == 0


def test_latency_records_cuda_events_on_the_runners_stream(monkeypatch):
    """End to end and compute: events go on the runner's own stream, not on torch's default one."""
    import torch

    from dnx.runtime.backends.latency import measure_latency
    from dnx.runtime.backends.base import Runner, TensorMeta

    streams = []

    class Event:
        def __init__(self, enable_timing=False):
            pass

        def record(self, stream=None):
            streams.append(stream)

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return 1.0

    own = object()

    class StreamRunner(Runner):
        name, uses_cuda, cuda_stream, device_resident = "stream-runner", True, own, True

        def input_metadata(self):
            return {"input": TensorMeta("input", (None, 3), np.dtype(np.float32))}

        def output_names(self):
            return ["logits"]

        def _infer(self, feed):
            return {"logits": feed["input"]}

        def load_inputs(self, feed, check=True):
            pass

        def infer_device(self):
            return None

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: pytest.fail("events recorded on torch's stream"))
    with StreamRunner() as runner:
        m = measure_latency(runner, {"input": np.zeros((1, 3), np.float32)}, warmup_s=0.0, iterations=3,
                            cuda_events=True)
    assert m.timer == "cuda-event" and m.compute.iterations == m.end_to_end.iterations == 3
    assert streams and all(s is own for s in streams)
