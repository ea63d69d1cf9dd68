"""The prediction log's writer: a sampled share of served requests queued in memory and
written to the store in batches by a daemon thread, as metrics are (``tracking.writer``).

The request path only draws a random number and, for a sampled request, appends a tuple
to a bounded deque: it never touches SQLite and never waits. When the store cannot keep
up (the queue is full) a sampled request is counted in ``dropped`` instead of queued —
memory stays bounded and the service keeps answering; ``/metrics`` and ``/version`` show
the count. :meth:`close` (the service's shutdown, after in-flight requests ended) writes
everything queued, so a graceful SIGTERM loses nothing.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from mlnb.store.predictions import Prediction, insert_predictions

if TYPE_CHECKING:
    from mlnb.store import Store

log = logging.getLogger("mlnb.serve")

DEFAULT_RATE = 0.1  # a tenth of requests: enough for drift, cheap (docs/serving.md)
QUEUE_LIMIT = 10_000  # requests waiting to be written
FLUSH_INTERVAL_S = 0.5
BATCH_LIMIT = 1_000


class PredictionLog:
    """Sampled requests of one service, written to ``store`` off the request path."""

    def __init__(self, store: Store, *, rate: float = DEFAULT_RATE,
                 queue_limit: int = QUEUE_LIMIT) -> None:  # fmt: skip
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the prediction log rate must be between 0 and 1, not {rate}")
        self.store = store
        self.rate = rate
        self.queue_limit = queue_limit
        self.queue: deque[Prediction] = deque()
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._random = random.random
        self._lock = threading.Lock()  # one drainer at a time
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="mlnb-prediction-log",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def sampled(self) -> bool:
        """Whether this request goes into the log (a draw against the rate)."""
        return self.rate > 0 and (self.rate >= 1 or self._random() < self.rate)

    def add(self, request_id: str, model: str, version: int, alias: str | None,
            columns: list[str], rows: list[list[Any]], outputs: list[Any],
            latency_ms: float) -> bool:  # fmt: skip
        """Queue a sampled request (never blocks); False when the queue is full (counted
        in ``dropped``)."""
        if len(self.queue) >= self.queue_limit or self._closed:
            self.dropped += 1
            return False
        self.queue.append(Prediction(request_id, model, version, alias, columns, rows,
                                     outputs, latency_ms, time.time()))  # fmt: skip
        return True

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self.drain()
            except Exception as exc:  # kept queued; tried again at the next tick
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("the prediction log could not be written: %s", exc)
                time.sleep(1.0)

    def drain(self) -> int:
        """Write everything queued now, in batches; returns the rows written. On an
        error the batch goes back to the front of the queue."""
        done = 0
        queue = self.queue
        with self._lock:
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH_LIMIT))]
                try:
                    insert_predictions(self.store.file, batch)
                except BaseException:
                    queue.extendleft(reversed(batch))
                    raise
                done += len(batch)
                self.written += len(batch)
            self.last_error = None
        return done

    def close(self, *, timeout: float = 30.0) -> None:
        """Stop sampling, write what is queued (retrying while the store is busy, up to
        ``timeout``) and stop the thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.drain()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    log.error("%d logged predictions were not written: %s", len(self.queue), exc)
                    return
                time.sleep(0.2)
