"""Batcher: one future per caller, batches by size or timeout, a bounded queue, errors to every waiter."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

import dnx
from dnx.data.datasets import shipped_fashion_mnist_test
from dnx.core.errors import DnxError
from dnx.runtime.batching import Batcher, Overloaded
from dnx.runtime.timings import StageTimings


def test_concurrent_requests_are_batched_and_each_gets_its_own_row(fmnist_onnx):
    images = shipped_fashion_mnist_test().images[:64]
    sizes: list[int] = []
    with dnx.load(fmnist_onnx, backend="onnxruntime") as clf:
        x = clf.preprocess(images)
        expected = clf.logits(x)
        with Batcher(clf, max_batch=8, max_delay_ms=20, on_batch=lambda n, waits: sizes.append(n)) as batcher:
            with ThreadPoolExecutor(16) as pool:
                rows = list(pool.map(lambda row: batcher.submit(row).result(timeout=30), x))
            top = batcher.predict(images[0], top_k=2)
    np.testing.assert_allclose(np.stack(rows), expected, rtol=0, atol=1e-5)  # batch size changes the kernels only
    assert np.array_equal(np.stack(rows).argmax(1), expected.argmax(1))
    assert sum(sizes) == 65 and max(sizes) > 1 and max(sizes) <= 8
    assert top[0][0].index == int(expected[0].argmax())
    assert clf.timings.summary()["queue"]["count"] == 65


class _SlowClassifier:
    """Stands in for a Classifier to test the batcher's own control flow (blocking, failing)."""

    def __init__(self, fail: bool = False) -> None:
        self.artifact = SimpleNamespace(max_batch=None)
        self.input_chw = (1, 2, 2)
        self.timings = StageTimings()
        self.release = threading.Event()
        self.fail = fail

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(10)
        if self.fail:
            raise RuntimeError("backend exploded")
        return batch.reshape(len(batch), -1)


def test_a_full_queue_is_refused_at_once_and_nothing_queued_is_lost():
    clf = _SlowClassifier()
    batcher = Batcher(clf, max_batch=1, max_delay_ms=0, max_queue=2)
    x = np.zeros((1, 2, 2), np.float32)
    first = batcher.submit(x)  # taken by the worker, which then blocks in logits
    while batcher.depth:
        pass
    queued = [batcher.submit(x + i) for i in (1, 2)]
    with pytest.raises(Overloaded, match="queue is full"):
        batcher.submit(x)
    clf.release.set()
    batcher.close()
    assert [f.result(timeout=5)[0] for f in [first, *queued]] == [0, 1, 2]
    with pytest.raises(Overloaded, match="shutting down"):
        batcher.submit(x)


def test_a_failed_inference_reaches_every_waiter_and_the_worker_keeps_going():
    clf = _SlowClassifier(fail=True)
    with Batcher(clf, max_batch=4, max_delay_ms=50) as batcher:
        futures = [batcher.submit(np.zeros((1, 2, 2), np.float32)) for _ in range(3)]
        clf.release.set()
        for f in futures:
            with pytest.raises(RuntimeError, match="exploded"):
                f.result(timeout=5)
        clf.fail = False
        assert batcher.submit(np.ones((1, 2, 2), np.float32)).result(timeout=5).tolist() == [1, 1, 1, 1]


def test_arguments_are_checked_up_front():
    clf = _SlowClassifier()
    for kwargs, message in [({"max_batch": 0}, "max_batch"), ({"max_delay_ms": -1}, "max_delay_ms"),
                            ({"max_queue": 0}, "max_queue")]:
        with pytest.raises(DnxError, match=message):
            Batcher(clf, **kwargs)
    clf.artifact.max_batch = 4
    with pytest.raises(DnxError, match="larger than the artifact's largest batch 4"):
        Batcher(clf, max_batch=8)
    with Batcher(clf, max_batch=2) as batcher, pytest.raises(DnxError, match="batcher takes one"):
        batcher.submit(np.zeros((3, 2, 2), np.float32))
    clf.release.set()
