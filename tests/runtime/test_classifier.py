"""dnx.load() -> Classifier on real onnxruntime and OpenVINO, with the shipped trained model."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest

import dnx
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.data.preprocess import bundled_photos, preprocess_array
from dnx.core.errors import DnxError
from dnx.runtime.artifact import Artifact, open_artifact
from dnx.runtime.selection import choose_backend
from dnx.runtime.classifier import InvalidInput, Prediction



def _eval_predictions(path: Path, images: np.ndarray) -> np.ndarray:
    """What `dnx eval` computes for an artifact: preprocess_array, then onnxruntime in chunks of 250."""
    from dnx.runtime.backends.base import run_in_batches
    from dnx.runtime.backends.onnxruntime_runner import OnnxRuntimeRunner

    pre = open_artifact(path).preprocess
    with OnnxRuntimeRunner(path) as runner:
        return run_in_batches(runner, preprocess_array(images, pre), 250).argmax(axis=1)


@pytest.mark.parametrize("which", ["fmnist_onnx", "fmnist_int8_onnx"])
def test_predict_equals_eval_on_5000_shipped_test_images(which, request):
    path = request.getfixturevalue(which)
    data = shipped_fashion_mnist_test()
    with dnx.load(path, backend="onnxruntime") as clf:
        top1 = np.array([row[0].index for row in clf.predict(data.images, top_k=1)])
    assert len(top1) == 5000
    assert np.array_equal(top1, _eval_predictions(path, data.images))
    assert (top1 == data.labels).mean() > 0.9  # the shipped model's accuracy, not noise


def test_every_input_form_gives_the_same_answer(fmnist_onnx):
    from PIL import Image

    photo = bundled_photos()[1]
    img = Image.open(photo)
    img.load()
    # decoded images (PIL, arrays) are taken as they are, so they equal encoded ones under the exact decode
    with dnx.load(fmnist_onnx, backend="onnxruntime", decode="exact") as clf:
        ref = clf.predict(str(photo), top_k=3)[0]
        forms = [photo, photo.read_bytes(), img, np.asarray(img), [photo.read_bytes()]]
        for form in forms:
            assert clf.predict(form, top_k=3)[0] == ref
        batch = clf.preprocess([photo, photo])
        assert batch.shape == (2, 1, 28, 28) and batch.dtype == np.float32
        assert clf.predict(batch, top_k=3) == [ref, ref]
        assert all(isinstance(p, Prediction) for p in ref)
        assert abs(sum(p.probability for p in clf.predict(photo, top_k=10)[0]) - 1) < 1e-6
        grey_stack = shipped_fashion_mnist_test().images[:4]  # (N, 28, 28) uint8
        assert len(clf.predict(grey_stack)) == 4


def test_info_records_the_artifact_and_the_backend_choice(fmnist_onnx, fmnist_int8_onnx):
    with dnx.load(fmnist_onnx, backend="onnxruntime", threads=1) as clf:
        info = clf.info()
    assert info["backend"] == "onnxruntime" and info["device"] == "cpu" and info["backend_reason"] == "asked for"
    assert info["precision"] == "fp32" and info["sha256"] and info["input"]["shape"] == ["N", 1, 28, 28]
    assert info["labels"][9] == "Ankle boot" and info["preprocess"]["image_size"] == 28
    assert info["manifest"]["model"]["name"] == "densenet_bc22_fmnist"
    with dnx.load(fmnist_int8_onnx, device="cpu") as clf:
        info = clf.info()
    assert info["precision"] == "int8" and info["calibration_target"] == "onnxruntime"
    assert info["backend"] in ("openvino", "onnxruntime") and "INT8 placed for onnxruntime" in info["backend_reason"]


def _artifact(**kw) -> Artifact:
    from dnx.models.registry import Preprocess

    base = dict(path=Path("m.onnx"), kind="onnx", sha256="0", precision="fp32",
                preprocess=Preprocess(28, 28, (0.5,), (0.5,), 1), labels=None, input_name="input",
                input_shape=(None, 1, 28, 28), num_classes=10, calibration_target=None)
    return Artifact(**{**base, **kw})


def test_auto_rule_on_a_cpu(monkeypatch):
    """The rule reads OpenVINO's availability from the backend table's row."""
    from dnx.runtime.backends import table

    for placement in ("tensorrt", "onnxruntime", "openvino", None):
        art = _artifact(precision="int8" if placement else "fp32", calibration_target=placement)
        monkeypatch.setattr(table, "openvino_available", lambda: (True, ""))
        chosen = choose_backend(art, device="cpu")
        assert chosen.backend == "openvino" and "fastest installed" in chosen.reason
        assert chosen.row.name == "openvino-cpu"
        monkeypatch.setattr(table, "openvino_available", lambda: (False, "openvino is not installed"))
        chosen = choose_backend(art, device="cpu")
        assert chosen.backend == "onnxruntime" and "openvino is not installed" in chosen.reason
        assert chosen.row.name == "onnxruntime-cpu"
    engine = choose_backend(_artifact(kind="engine", path=Path("m.engine")))
    assert (engine.backend, engine.device) == ("tensorrt", "cuda")
    with pytest.raises(DnxError, match="only backend='tensorrt'"):
        choose_backend(_artifact(kind="engine"), backend="onnxruntime")
    with pytest.raises(DnxError, match="dnx build"):
        choose_backend(_artifact(), backend="tensorrt")
    with pytest.raises(DnxError, match="backend must be one of"):
        choose_backend(_artifact(), backend="tvm")


def test_foreign_onnx_needs_preprocessing(fmnist_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(fmnist_onnx))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(DnxError, match="no dnx manifest.*mean, std, image_size"):
        dnx.load(foreign)
    with pytest.raises(DnxError, match="give all of mean, std and image_size"):
        dnx.load(foreign, mean=[0.5])
    with pytest.raises(DnxError, match="takes 1 channels"):
        dnx.load(foreign, mean=[0.5] * 3, std=[0.5] * 3, image_size=28)
    with dnx.load(foreign, backend="onnxruntime", mean=[0.286], std=[0.353], image_size=28,
                  labels=[f"c{i}" for i in range(10)]) as clf:
        assert clf.info()["dnx_artifact"] is False
        assert clf.predict(bundled_photos()[0], top_k=1)[0][0].label.startswith("c")
    with pytest.raises(DnxError, match="2 labels given for a model with 10 classes"):
        dnx.load(foreign, mean=[0.286], std=[0.353], image_size=28, labels=["a", "b"])


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "ONNX|onnx"),
    (b"\x08\x07garbage" * 10, "ONNX|onnx"),
])
def test_missing_and_corrupt_artifacts_are_refused(tmp_path, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DnxError, match=message):
        dnx.load(path)


def test_other_file_kinds_are_refused(tmp_path):
    (tmp_path / "m.txt").write_text("hi")
    with pytest.raises(DnxError, match="cannot tell what it is"):
        dnx.load(tmp_path / "m.txt")
    with pytest.raises(DnxError, match="not a file"):
        dnx.load(tmp_path)


def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_images_and_batches_get_one_line_errors(fmnist_onnx):
    from PIL import Image

    jpeg = bundled_photos()[0].read_bytes()
    with dnx.load(fmnist_onnx, backend="onnxruntime", max_pixels=1_000_000) as clf:
        cases = [
            (b"", "empty"),
            (b"not an image at all", "not an image Pillow can read"),
            (jpeg[: len(jpeg) // 3], "cannot be decoded"),
            (_png((2000, 1000)), "over the 1,000,000 limit"),
            (Image.new("F", (8, 8)), "32-bit or float"),  # 16-bit grey PNGs are scaled (tests/data/test_decode.py)
            ([np.zeros((8, 8, 2), np.uint8)], "expected \\(H, W\\)"),
            (np.zeros((8, 8), np.float64), "must be uint8"),
            (np.zeros((0, 8), np.uint8), "empty"),
            ({"x": 1}, "cannot classify a dict"),
            ([], "no images given"),
            (np.zeros((2, 3, 28, 28), np.float32), r"shape \(2, 3, 28, 28\).*\(N, 1, 28, 28\)"),
            (np.full((1, 1, 28, 28), np.nan, np.float32), "NaN"),
        ]
        for image, message in cases:
            with pytest.raises(InvalidInput, match=message):
                clf.predict(image)
        for k in (0, 11, 2.5, True):
            with pytest.raises(InvalidInput, match="top_k must be an integer from 1 to 10"):
                clf.predict(jpeg, top_k=k)
        with pytest.raises(InvalidInput, match="float32"):
            clf.logits(np.zeros((1, 1, 28, 28), np.float64))
        assert len(clf.predict(_png((1, 1)), top_k=1)[0]) == 1  # a 1x1 image is tiny, not invalid
        assert len(clf.predict(jpeg)[0]) == 5  # and the classifier still works after every refusal


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_threads_sharing_one_classifier_match_serial_calls(fmnist_onnx, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install 'dnx[openvino]')")
    data = shipped_fashion_mnist_test()
    images = [data.images[i] for i in range(16)]
    with dnx.load(fmnist_onnx, backend=backend, threads=1) as clf:
        serial = [clf.logits(clf.preprocess(img)) for img in images]
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                results[t] = [(i % 16, clf.logits(clf.preprocess(images[i % 16]))) for i in range(t, t + 200)]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors
    assert sum(len(r) for r in results.values()) == 1600
    for rows in results.values():
        for i, logits in rows:
            assert np.array_equal(logits, serial[i])
    summary = clf.timings.summary()
    assert summary["inference"]["count"] >= 1600 and summary["preprocess"]["p99_ms"] >= summary["preprocess"]["p50_ms"]
