"""Property tests: dnx's loaders of its own formats never let anything but a DnxError out.

Formats: the ONNX manifest (embedded JSON and the sidecar), the engine sidecar, the calibration
cache, IDX files and ``.npz`` arrays (labelled sets and calibration data). Inputs are random bytes,
random JSON, and valid documents with fields replaced by random values.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnx.core.errors import DnxError

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5),
    max_leaves=20)


def _json_text(value) -> str:
    return json.dumps(value, allow_nan=True)


def _mutated(document: dict, draw) -> dict:
    """``document`` with one (possibly nested) field replaced by a random JSON value or removed."""
    doc = json.loads(json.dumps(document))
    keys = list(doc)
    key = draw(st.sampled_from(keys))
    if isinstance(doc[key], dict) and doc[key] and draw(st.booleans()):
        inner = draw(st.sampled_from(list(doc[key])))
        doc[key][inner] = draw(json_values)
    elif draw(st.booleans()):
        del doc[key]
    else:
        doc[key] = draw(json_values)
    return doc


def _document(data, good: dict) -> bytes:
    """Random bytes, random JSON, or ``good`` with a field broken."""
    kind = data.draw(st.sampled_from(["bytes", "json", "mutated"]))
    if kind == "bytes":
        return data.draw(st.binary(max_size=200))
    value = data.draw(json_values) if kind == "json" else _mutated(good, data.draw)
    return _json_text(value).encode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def onnx_model():
    """A tiny valid graph whose manifest the fuzzer replaces."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph)


GOOD_MANIFEST = {"schema": "dnx.manifest/1", "precision": "fp32",
                 "preprocess": {"image_size": 28, "resize_size": 28, "mean": [0.5], "std": [0.25],
                                "in_channels": 1, "interpolation": "bilinear"}}


def _manifest_loaders(proto, path: Path):
    from dnx.schemas.manifest import ArtifactManifest, manifest_of, preprocess_from_manifest

    manifest = manifest_of(proto, path, required=True)
    assert isinstance(manifest, ArtifactManifest)
    pre = preprocess_from_manifest(manifest)
    assert pre.image_size >= 1 and all(s > 0 for s in pre.std)


@st.composite
def manifest_texts(draw) -> str | bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return _json_text(draw(json_values))
    return _json_text(_mutated(GOOD_MANIFEST, draw))


@SETTINGS
@given(text=manifest_texts(), embedded=st.booleans())
def test_onnx_manifest(text, embedded, folder, onnx_model):
    from dnx.schemas.manifest import METADATA_KEY, sidecar_path

    proto = type(onnx_model)()
    proto.CopyFrom(onnx_model)
    path = folder / "m.onnx"
    side = sidecar_path(path)
    side.unlink(missing_ok=True)
    if embedded:
        entry = proto.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    else:
        side.write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        _manifest_loaders(proto, path)
    except DnxError:
        pass


GOOD_ENGINE = {"schema": "dnx.engine/1", "tensorrt_version": "10.8.0", "gpu": {"compute_capability": "8.9"},
               "precision": "fp16", "batch_profile": {"min_batch": 1, "opt_batch": 8, "max_batch": 32}}


@SETTINGS
@given(data=st.data())
def test_engine_sidecar(data, folder):

    from dnx.schemas.engine_manifest import ENGINE_SCHEMA, EngineManifest, read_engine_manifest

    engine = folder / "e.engine"
    engine.write_bytes(b"\x00" * 16)
    good = {**GOOD_ENGINE, "schema": ENGINE_SCHEMA}
    text = _document(data, good)
    (folder / "e.engine.json").write_bytes(text)
    try:
        manifest = read_engine_manifest(engine, required=True)
        assert isinstance(manifest, EngineManifest)
    except DnxError:
        pass


@pytest.mark.parametrize("gpu", [None, 5])
def test_engine_sidecar_gpu_not_an_object(gpu, folder):
    from dnx.schemas.engine_manifest import ENGINE_SCHEMA, read_engine_manifest

    (folder / "g.engine").write_bytes(b"\x00" * 16)
    (folder / "g.engine.json").write_text(json.dumps({**GOOD_ENGINE, "schema": ENGINE_SCHEMA, "gpu": gpu}))
    with pytest.raises(DnxError, match="g.engine.json: gpu must be an object, got "):
        read_engine_manifest(folder / "g.engine")


@SETTINGS
@given(data=st.data())
def test_calibration_cache(data, folder):
    """A damaged cache is never fatal: it is recomputed."""
    from dnx.calibration.qdq import CACHE_SCHEMA, _load_cache

    key = {"source_sha256": "a", "data_fingerprint": "b", "method": "entropy", "target": "tensorrt", "samples": 4}
    good = {"schema": CACHE_SCHEMA, "key": key, "ranges": {"CLS": "TensorsData", "data": {}}}
    path = folder / "c.calib.json"
    path.write_bytes(_document(data, good))
    ranges = _load_cache(path, key)
    assert ranges is None or (isinstance(ranges, dict) and ranges.get("CLS") == "TensorsData")


@st.composite
def idx_files(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    dtype = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, draw(st.integers(0, 255))]))
    ndim = draw(st.integers(0, 5))
    dims = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), min_size=ndim, max_size=ndim))
    header = bytes([draw(st.sampled_from([0, 1])), 0, dtype, ndim]) + struct.pack(f">{ndim}I", *dims)
    return header[:draw(st.integers(0, len(header)))] if draw(st.booleans()) else header + draw(st.binary(max_size=64))


@SETTINGS
@given(content=idx_files(), gz=st.booleans())
def test_idx(content, gz, folder):
    import gzip

    from dnx.data.datasets import read_idx

    path = folder / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    path.write_bytes(gzip.compress(content) if gz and content[:1] != b"\xff" else content)
    try:
        arr = read_idx(path)
        assert isinstance(arr, np.ndarray)
    except DnxError:
        pass


arrays = st.one_of(
    st.builds(lambda shape, dtype: np.zeros(shape, dtype),
              st.lists(st.integers(0, 4), min_size=0, max_size=5).map(tuple),
              st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.int8, np.bool_, "U3"])),
    st.lists(st.floats(width=32), max_size=4).map(lambda v: np.asarray(v, np.float32)),
)


@st.composite
def npz_files(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "zip", "npz"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(draw(st.sampled_from(["images.npy", "labels.npy", "x"])), draw(st.binary(max_size=100)))
        return buf.getvalue()
    names = draw(st.lists(st.sampled_from(["images", "labels", "classes", "other"]), max_size=4, unique=True))
    np.savez(buf, **{name: draw(arrays) for name in names})
    return buf.getvalue()


@SETTINGS
@given(content=npz_files())
def test_npz(content, folder):
    from dnx.calibration.data import open_calibration_data
    from dnx.data.datasets import load_labelled
    from dnx.models import get_config

    path = folder / "d.npz"
    path.write_bytes(content)
    try:
        data = load_labelled(path)
        assert len(data.images) == len(data.labels) and (len(data.labels) == 0 or data.labels.min() >= 0)
    except DnxError:
        pass
    try:
        data = open_calibration_data(path, get_config("densenet_bc22_fmnist").preprocess, samples=2)
        if len(data):
            batch = data.batch(0, 2)
            assert batch.dtype == np.float32 and np.isfinite(batch).all()
    except DnxError:
        pass
