"""Issue 22, the Python API and the Batcher: D4 (a bad row fails alone), D7 (Pillow errors on odd images
are InvalidInput), D8 (the certificate covers the preprocessing; one validating reader), D11 (foreign ONNX
outputs), D13 (no CUDA device: exit 2), D16 (Batcher callback errors reach the waiters)."""

from __future__ import annotations

import io
import json
import shutil
import threading

import numpy as np
import pytest

import dnx
from dnx.core.errors import DnxError
from dnx.runtime.artifact import UnverifiedArtifact
from dnx.runtime.batching import Batcher
from dnx.runtime.classifier import InvalidInput

FOREIGN = {"mean": [0.5], "std": [0.25], "image_size": 28}


@pytest.fixture(scope="module")
def clf(fmnist_onnx):
    with dnx.load(fmnist_onnx, backend="onnxruntime") as c:
        c.warm_up(range(1, 9))
        yield c


def _good_rows(clf, n: int) -> np.ndarray:
    from dnx.data.preprocess import bundled_photos

    return clf.preprocess([p for p in bundled_photos()] * 2)[:n]


# -- D4 / D16: the Batcher ------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    ("nan", "NaN or infinite"), ("float64", "float32 input, got float64"), ("shape", "has shape (1, 27, 28)"),
    ("list", "got a list"),
])
def test_a_bad_row_fails_alone_and_its_batch_mates_are_served(clf, bad, message):
    rows = _good_rows(clf, 7)
    expected = clf.logits(rows)
    bad_row = {"nan": np.full((1, 28, 28), np.nan, np.float32), "float64": rows[0].astype(np.float64),
               "shape": np.zeros((1, 27, 28), np.float32), "list": [[0.0]]}[bad]
    with Batcher(clf, max_batch=8, max_delay_ms=200) as batcher:  # a long window: all 8 would share a batch
        futures = [batcher.submit(r) for r in rows[:4]]
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            batcher.submit(bad_row)
        futures += [batcher.submit(r) for r in rows[4:]]
        got = np.stack([f.result(timeout=30) for f in futures])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert max(f.timing["batch_size"] for f in futures) > 1


def test_a_batch_that_fails_is_retried_one_by_one(clf, monkeypatch):
    """A backend fault on one input (not caught by the submit checks) fails only that input."""
    rows = _good_rows(clf, 6)
    poison = rows[2].copy()
    poison[0, 0, 0] = 1234.5  # finite, the right shape: passes submit; the stand-in backend refuses it
    real = clf.logits

    def logits(batch):
        if np.any(batch[:, 0, 0, 0] == 1234.5):
            raise RuntimeError("backend fault on one input")
        return real(batch)

    monkeypatch.setattr(clf, "logits", logits)
    with Batcher(clf, max_batch=8, max_delay_ms=200) as batcher:
        futures = [batcher.submit(r) for r in (*rows[:2], poison, *rows[3:])]
        outcomes = []
        for f in futures:
            try:
                f.result(timeout=30)
                outcomes.append("ok")
            except RuntimeError:
                outcomes.append("failed")
    assert outcomes == ["ok", "ok", "failed", "ok", "ok", "ok"]


def test_on_batch_errors_reach_the_waiters_and_the_worker_survives(clf):
    calls = []

    def on_batch(size, waits):
        calls.append(size)
        if len(calls) == 1:
            raise ValueError("metrics backend down")

    row = _good_rows(clf, 1)[0]
    with Batcher(clf, max_batch=4, max_delay_ms=1, on_batch=on_batch) as batcher:
        with pytest.raises(ValueError, match="metrics backend down"):
            batcher.submit(row).result(timeout=30)
        assert batcher.submit(row).result(timeout=30).shape == (10,)  # the worker is still there
    assert len(calls) == 2


# -- D7: images Pillow cannot convert or load are InvalidInput ------------------------------------

def _tiff(mode: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (16, 16)).save(buf, format="TIFF")
    return buf.getvalue()


def test_odd_pil_images_are_invalid_input_or_classified(clf, tmp_path):
    from PIL import Image

    from dnx.data.preprocess import bundled_photos

    with pytest.raises(InvalidInput, match="image is 0x0: it has no pixels"):
        clf.predict(Image.new("L", (0, 0)))
    with pytest.raises(InvalidInput):
        clf.predict(_tiff("LAB"))  # no LAB -> L conversion in Pillow
    closed = Image.new("L", (28, 28))
    closed.close()
    with pytest.raises(InvalidInput):
        clf.predict(closed)
    png = tmp_path / "t.png"
    Image.new("L", (64, 64), 128).save(png)
    (tmp_path / "cut.png").write_bytes(png.read_bytes()[:60])
    lazy = Image.open(tmp_path / "cut.png")  # not loaded: the truncation shows on first use
    with pytest.raises(InvalidInput):
        clf.predict(lazy)
    lazy.close()
    assert len(clf.predict(Image.new("LA", (28, 28)))[0]) == 5  # LA converts to grey
    assert len(clf.predict(Image.open(bundled_photos()[0]))[0]) == 5  # a lazily opened good file loads


# -- D8: the certificate covers the preprocessing; one validating reader ---------------------------

def _edited(src, dst, edit) -> None:
    """``src`` with its embedded manifest edited by ``edit(manifest)`` and no sidecar."""
    import onnx

    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == "dnx.manifest":
            manifest = json.loads(prop.value)
            edit(manifest)
            prop.value = json.dumps(manifest)
    onnx.save(proto, str(dst))


def _set(**fields):
    return lambda m: m["preprocess"].update(fields)


@pytest.mark.parametrize("edit, message", [
    (_set(std=[0.0]), r"preprocess.std\[0\] must be > 0, got 0.0"),
    (_set(mean=100), r"preprocess.mean must be an array, got 100"),
    (_set(mean=[100.0]), r"preprocess.mean\[0\] must be <= 1, got 100.0"),
    (_set(interpolation="lanczos"), r'preprocess.interpolation must be one of .*got "lanczos"'),
    (_set(in_channels=3, mean=[0.5] * 3, std=[0.25] * 3),
     r"input.shape \(N, 1, 28, 28\) does not match .*\(3 channels"),
    (_set(image_size=32), r"does not match the preprocess entry \(1 channels, 32x32\)"),
    (_set(mean=[0.5, 0.5]), r"preprocess.mean needs one value per input channel \(1\), got 2"),
    (lambda m: m["preprocess"].pop("resize_size"), r"preprocess.resize_size is missing"),
])
def test_a_broken_preprocess_entry_is_one_line_at_load(fmnist_onnx, tmp_path, edit, message):
    _edited(fmnist_onnx, tmp_path / "m.onnx", edit)
    for unverified in (False, True):  # refused before the certificate is even considered
        with pytest.raises(DnxError, match=message) as info:
            dnx.load(tmp_path / "m.onnx", backend="onnxruntime", allow_unverified=unverified)
        assert "\n" not in str(info.value) and "re-export the model" in str(info.value)


def test_a_valid_but_edited_preprocess_entry_voids_the_certificate(fmnist_onnx, tmp_path):
    _edited(fmnist_onnx, tmp_path / "m.onnx", _set(mean=[0.3]))
    with pytest.raises(UnverifiedArtifact, match="its preprocessing changed after it was verified"):
        dnx.load(tmp_path / "m.onnx", backend="onnxruntime")
    with dnx.load(tmp_path / "m.onnx", backend="onnxruntime", allow_unverified=True) as c:
        assert c.info()["verified"] is False and c.artifact.preprocess.mean == (0.3,)
    # an untouched copy without its sidecar still holds: the certificate travels inside the file
    shutil.copy(fmnist_onnx, tmp_path / "same.onnx")
    with dnx.load(tmp_path / "same.onnx", backend="onnxruntime") as c:
        assert c.info()["verified"] is True


def test_a_certificate_without_the_preprocessing_is_refused(fmnist_onnx, tmp_path):
    _edited(fmnist_onnx, tmp_path / "m.onnx", lambda m: m["certificate"].pop("preprocess"))
    with pytest.raises(UnverifiedArtifact, match="does not cover the preprocessing"):
        dnx.load(tmp_path / "m.onnx", backend="onnxruntime")


# -- D11: foreign ONNX outputs ----------------------------------------------------------------------

def _foreign(path, head: str, declared: bool = True) -> None:
    """A one-input 1x28x28 classifier whose output is shaped by ``head``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])
    w = numpy_helper.from_array(rng.standard_normal((10, 1, 28, 28)).astype(np.float32) * 0.01, "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"])]  # (N, 10, 1, 1)
    inits = [w]
    shape = {"n10x1x1": ["N", 10, 1, 1], "n10x2": ["N", 10, 2], "n": ["N"], "two": ["N", 10]}[head]
    if head == "n10x1x1":
        nodes[0].output[0] = "y"
    elif head == "n10x2":
        inits.append(numpy_helper.from_array(np.array([0, 10, 2], np.int64), "s"))
        nodes += [helper.make_node("Concat", ["c", "c"], ["cc"], axis=3),
                  helper.make_node("Reshape", ["cc", "s"], ["y"])]
    elif head == "n":
        nodes += [helper.make_node("ReduceSum", ["c"], ["y"], keepdims=0)]
        inits.append(numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"))
        nodes[-1].input.append("axes")
    else:
        nodes += [helper.make_node("Flatten", ["c"], ["y"]), helper.make_node("Relu", ["y"], ["z"])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape if declared else None)]
    if head == "two":
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "g", [x], outs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_a_1x1_conv_head_is_squeezed(tmp_path):
    from PIL import Image

    _foreign(tmp_path / "m.onnx", "n10x1x1")
    with dnx.load(tmp_path / "m.onnx", backend="onnxruntime", **FOREIGN) as c:
        assert c.artifact.num_classes == 10
        top = c.predict(Image.new("L", (28, 28), 200), top_k=10)[0]
        assert len(top) == 10 and abs(sum(p.probability for p in top) - 1) < 1e-5


@pytest.mark.parametrize("head, declared, message", [
    ("n10x2", True, r"output y has shape \(N, 10, 2\); dnx runs classifiers whose output is logits"),
    ("n", True, r"output y has shape \(N\); dnx runs classifiers"),
    ("two", True, r"the model has 2 outputs \(y, z\)"),
    ("n10x2", False, r"the model's output has shape \(1, 10, 2\) for a batch of 1"),  # found at warm-up
])
def test_other_outputs_are_refused_at_load_in_one_line(tmp_path, head, declared, message):
    _foreign(tmp_path / "m.onnx", head, declared)
    with pytest.raises(DnxError, match=message) as info:
        dnx.load(tmp_path / "m.onnx", backend="onnxruntime", **FOREIGN)
    assert "\n" not in str(info.value)


# -- D13: --device cuda without a GPU is a missing device (exit 2) ---------------------------------

def test_device_cuda_without_a_gpu_exits_2(fmnist_onnx, harness, tmp_path):
    from dnx.runtime.backends.table import TABLE

    if TABLE["onnxruntime-cuda"].available()[0]:
        pytest.skip("this machine has a CUDA device for onnxruntime")
    for backend in ("auto", "onnxruntime"):
        r = harness.run_dnx(["serve", str(fmnist_onnx), "--device", "cuda", "--backend", backend, "--port", "0"],
                            tmp_path)
        assert r.code == 2 and r.escaped is None, r.stderr
        assert len(r.stderr.strip().splitlines()) == 2 and "cuda" in r.stderr.lower()  # "loading ..." + the error


def test_concurrent_batcher_use_is_safe_with_bad_rows_mixed_in(clf):
    """Eight threads, one of them submitting NaN rows: the seven others all get their results."""
    rows = _good_rows(clf, 7)
    expected = clf.logits(rows)
    results, errors = {}, []

    def caller(i):
        try:
            if i == 7:
                batcher.submit(np.full((1, 28, 28), np.nan, np.float32))
            else:
                results[i] = batcher.submit(rows[i]).result(timeout=30)
        except InvalidInput as exc:
            errors.append(str(exc))

    with Batcher(clf, max_batch=8, max_delay_ms=50) as batcher:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == ["input holds NaN or infinite values"]
    np.testing.assert_allclose(np.stack([results[i] for i in range(7)]), expected, rtol=0, atol=1e-4)
