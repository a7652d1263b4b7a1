"""Micro-batching: concurrent single-image requests grouped into one inference call.

A ``Batcher`` runs one worker thread in front of a :class:`~dnx.runtime.classifier.Classifier`. Callers
``submit`` a preprocessed (C, H, W) input and get a ``concurrent.futures.Future`` of its logits row. The
worker takes the first waiting input, then keeps collecting until ``max_batch`` inputs are in hand or
``max_delay_ms`` has passed since that first one, runs one inference, and hands each caller its own
row. Inputs are checked at ``submit`` (shape, dtype, NaN), so a bad input fails alone; should a batch
still fail, its inputs are retried one by one and only the failing one gets the exception. An error of
the ``on_batch`` callback reaches that batch's callers; the worker keeps serving. The queue is bounded:
a full queue raises :class:`Overloaded` at once instead of blocking (a service answers 503).

``close()`` stops accepting, finishes everything already queued, and joins the worker.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from dnx.core.errors import DnxError
from dnx.runtime.classifier import InvalidInput


class Overloaded(DnxError):
    """The request queue is full; retry later."""


@dataclass
class _Item:
    x: np.ndarray
    future: Future
    enqueued: float


class Batcher:
    def __init__(self, classifier, max_batch: int = 8, max_delay_ms: float = 5.0, max_queue: int = 256,
                 on_batch=None) -> None:
        """``on_batch(size, queue_wait_seconds_per_item)`` is called after each batch (for metrics)."""
        limit = classifier.artifact.max_batch
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise DnxError(f"max_batch must be a positive integer, got {max_batch!r}")
        if limit is not None and max_batch > limit:
            raise DnxError(f"max_batch {max_batch} is larger than the artifact's largest batch {limit}")
        if not (isinstance(max_delay_ms, (int, float)) and 0 <= max_delay_ms <= 10_000):
            raise DnxError(f"max_delay_ms must be from 0 to 10000, got {max_delay_ms!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise DnxError(f"max_queue must be a positive integer, got {max_queue!r}")
        self.classifier = classifier
        self.max_batch, self.max_delay = max_batch, max_delay_ms / 1e3
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self._on_batch = on_batch
        self._closed = False
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="dnx-batcher", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Inputs waiting for a batch (approximate, as any queue size read from another thread)."""
        return self._queue.qsize()

    def submit(self, x: np.ndarray) -> Future:
        """Queue one preprocessed (C, H, W) float32 input; the future resolves to its logits row and,
        once resolved, has ``future.timing`` = {queue, inference (seconds), batch_size}.

        The input is checked here, before it can join a batch (a bad input fails alone, never its
        batch-mates): anything but a finite float32 array of the model's (C, H, W) shape raises
        :class:`~dnx.runtime.classifier.InvalidInput`."""
        want = self.classifier.input_chw
        if not isinstance(x, np.ndarray):
            raise InvalidInput(f"the batcher takes one preprocessed image, a float32 numpy array of shape "
                               f"({', '.join(map(str, want))}), got a {type(x).__name__}")
        if x.dtype != np.float32:
            raise InvalidInput(f"the batcher takes float32 input, got {x.dtype}; preprocess with "
                               "classifier.preprocess (or cast) first")
        if x.shape != want:
            raise InvalidInput(f"input has shape {x.shape}; the batcher takes one ({', '.join(map(str, want))}) image")
        if not np.isfinite(x).all():
            raise InvalidInput("input holds NaN or infinite values")
        future: Future = Future()
        with self._lock:  # no submit may slip in after close() has queued its stop marker
            if self._closed:
                raise Overloaded("the batcher is shutting down")
            try:
                self._queue.put_nowait(_Item(x, future, time.perf_counter()))
            except queue.Full:
                raise Overloaded(f"request queue is full ({self._queue.maxsize} waiting); retry later") from None
        return future

    def predict(self, image, top_k: int = 5):
        """One image through the batcher: preprocess here, infer batched, top-k here."""
        x = self.classifier.preprocess(image)
        rows = [self.submit(row).result() for row in x]
        return self.classifier.postprocess(np.stack(rows), top_k)

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # after every accepted item: they are all served first
        self._worker.join(timeout)

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- worker -------------------------------------------------------------------------------
    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, stop = [first], False
        deadline = first.enqueued + self.max_delay
        while len(batch) < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._collect(first)
            live = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if live:
                try:
                    self._serve(live)
                except BaseException as exc:  # noqa: BLE001  every waiter hears of it; the worker keeps serving
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(exc)

    def _serve(self, live: list[_Item]) -> None:
        started = time.perf_counter()
        waits = [started - item.enqueued for item in live]
        for w in waits:
            self.classifier.timings.record("queue", w)
        x = np.stack([item.x for item in live])
        try:
            logits = self._logits(x, len(live))
        except Exception:
            if len(live) == 1:
                raise
            # the inputs were checked at submit, so this is rare (a backend fault): one at a time, so
            # only the input that fails gets the error
            logits = None
        infer_s = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(len(live), waits)  # before the results: its error reaches the waiters
        if logits is None:
            for item, wait in zip(live, waits):
                try:
                    row = self._logits(item.x[None], 1)[0]
                except Exception as exc:  # noqa: BLE001
                    item.future.set_exception(exc)
                else:
                    item.future.timing = {"queue": wait, "inference": time.perf_counter() - started, "batch_size": 1}
                    item.future.set_result(row)
            return
        for item, row, wait in zip(live, logits, waits):
            # where this caller's time went, read by services that report per-request stages
            item.future.timing = {"queue": wait, "inference": infer_s, "batch_size": len(live)}
            item.future.set_result(row)

    def _logits(self, x: np.ndarray, n: int) -> np.ndarray:
        logits = self.classifier.logits(x)
        if len(logits) != n:
            raise DnxError(f"the backend returned {len(logits)} rows for a batch of {n}")
        return logits
