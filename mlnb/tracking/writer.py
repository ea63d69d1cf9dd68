"""The background metric writer: one per store and process, it drains a bounded queue of
metric points into the store in batches (every ~100 ms, and when asked), so ``log_metric``
costs microseconds and never waits on the database unless the queue is full
(backpressure, never a silent drop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from mlnb.errors import MlnbError, RunNotFoundError, StoreError
from mlnb.store.core import Store
from mlnb.store.metrics import insert_metrics

FLUSH_INTERVAL_S = 0.1
QUEUE_LIMIT = 200_000
BATCH_LIMIT = 50_000

BatchListener = Callable[[Store, Sequence[tuple[int, str, int, float, float]]], None]


@dataclasses.dataclass
class Refusal:
    """Points of one run that the store refused (see ``mlnb.store.metrics.insert_metrics``)."""

    points: int
    error: MlnbError
    reported: bool = False  # raised by a flush() already (the run's end reports it again)


class MetricWriter:
    """Drains queued metric points into the store in batches from a daemon thread.

    Two kinds of failure are kept apart. One the whole store has (a full disk, a read-only
    store) leaves every point queued, is kept in ``last_error``, raised by :meth:`drain`
    and :meth:`flush`, and raised to a producer waiting for room, so nothing blocks
    forever; the next drain that succeeds stores the queue. Points the store refused for
    one run (its run was purged, or the database will not take them) are dropped and
    counted in ``refused`` for that run, whose end reports them; other runs' points are
    stored.
    """

    def __init__(self, store: Store, listeners: list[BatchListener]) -> None:
        self.store = store
        self.listeners = listeners  # called with each batch written; one that raises is removed
        self.queue: deque[tuple[int, str, int, float, float]] = deque()
        self.last_error: BaseException | None = None
        self.failures = 0  # drains that failed so far: a producer waiting for room watches it
        self.refused: dict[int, Refusal] = {}  # by run rowid
        self.run_ids: dict[int, str] = {}  # run rowid -> run id, for messages
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlnb-metric-writer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Ask the writer to drain now rather than at its next tick."""
        self._wake.set()

    def wait_for_room(self) -> None:
        """Backpressure: a producer that filled the queue waits until the writer has
        drained half of it. Raises the writer's error instead when a drain that ended
        after the wait began has failed (or the writer stopped): the queue stays as it is,
        bounded, and the next successful drain stores it."""
        failures = self.failures
        self._wake.set()
        while len(self.queue) > QUEUE_LIMIT // 2:
            if self.failures != failures:
                raise self._stuck(self.last_error)
            if not self._thread.is_alive():
                raise StoreError(
                    f"the metric writer of {self.store.location} has stopped (the store was "
                    f"closed); {len(self.queue):,} queued metric points were not stored"
                )
            time.sleep(0.001)

    def _stuck(self, error: BaseException | None) -> MlnbError:
        kind = type(error) if isinstance(error, StoreError) else StoreError
        cause = str(error) if isinstance(error, MlnbError) else f"{type(error).__name__}: {error}"
        return kind(
            f"{cause}; {len(self.queue):,} metric points are queued (as many as the queue "
            "holds) and the next flush stores them once the store can take them"
        )

    def _loop(self) -> None:
        while True:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            if self.store.closed:
                return
            try:
                self.drain()
            except Exception:  # kept queued and in last_error; retried, raised by flush()
                time.sleep(1.0)

    def drain(self) -> None:
        """Write everything queued so far, in the calling thread, after any batch the
        background thread is writing. Raises when the store cannot take it (the points
        stay queued)."""
        queue = self.queue
        with self._drain_lock:  # taken even when the queue looks empty: a batch popped by
            while queue:  # the background thread is not on disk until it is released
                pop = queue.popleft  # only the drain lock holder pops: len() items are there
                batch = [pop() for _ in range(min(len(queue), BATCH_LIMIT))]
                try:
                    refused = insert_metrics(self.store.file, batch)
                except BaseException as exc:
                    queue.extendleft(reversed(batch))
                    if isinstance(exc, Exception):
                        self.last_error = exc
                        self.failures += 1
                    raise
                if refused:
                    batch = self._refuse(batch, refused)
                for listener in tuple(self.listeners):
                    try:
                        listener(self.store, batch)
                    except Exception:  # a viewer's bug must not stop metrics being written
                        with contextlib.suppress(ValueError):
                            self.listeners.remove(listener)
            self.last_error = None

    def _refuse(
        self, batch: list[tuple[int, str, int, float, float]], refused: Mapping[int, MlnbError]
    ) -> list[tuple[int, str, int, float, float]]:
        """Count the refused runs' points; returns the points that were stored."""
        stored = []
        counts: dict[int, int] = {}
        for row in batch:
            if row[0] in refused:
                counts[row[0]] = counts.get(row[0], 0) + 1
            else:
                stored.append(row)
        for rowid, points in counts.items():
            before = self.refused.get(rowid)
            self.refused[rowid] = Refusal(points + (before.points if before else 0), refused[rowid])
        return stored

    def refusal_error(self, rowid: int, refusal: Refusal) -> MlnbError:
        """The error that tells a run's owner which of its points were not stored."""
        run = self.run_ids.get(rowid, f"#{rowid}")[:8]
        return type(refusal.error)(
            f"{refusal.points:,} metric points of run {run} were not stored: {refusal.error}"
        )

    def flush(self) -> None:
        """:meth:`drain`, then raise (once) for points the store refused since the last
        flush."""
        self.drain()
        fresh = [(rowid, r) for rowid, r in self.refused.items() if not r.reported]
        if fresh:
            errors = [self.refusal_error(rowid, r) for rowid, r in fresh]
            for _, refusal in fresh:
                refusal.reported = True
            kinds = {type(e) for e in errors}
            kind = kinds.pop() if len(kinds) == 1 else StoreError
            raise kind("; ".join(str(e) for e in errors))

    def unstored(self, rowid: int, run_id: str, refused_at_call: int) -> MlnbError | None:
        """Drain; what of one run's points could not be stored, if any: points the store
        refused, points still queued because the store fails, and ``refused_at_call`` points
        ``log_metric`` did not queue for that reason."""

        stuck: MlnbError | None = None
        try:
            self.drain()
        except MlnbError as exc:
            stuck = exc
        refusal = self.refused.pop(rowid, None)
        if refusal is None and stuck is None and not refused_at_call:
            return None
        if refusal is not None:
            error = self.refusal_error(rowid, refusal)
            if isinstance(error, RunNotFoundError):
                return error
            kind: type[MlnbError] = type(error)
            problems = [str(error)]
        else:
            kind = type(stuck) if isinstance(stuck, StoreError) else StoreError
            problems = []
        if stuck is not None:
            queued = sum(1 for row in self.queue if row[0] == rowid)
            problems.append(
                f"{queued:,} metric points of run {run_id[:8]} are still queued: {stuck}; "
                "mlnb.flush() stores them once the store can take them"
            )
        if refused_at_call:
            problems.append(
                f"log_metric refused {refused_at_call:,} point(s) of run {run_id[:8]} "
                "because the store could not take any"
            )
        return kind("; ".join(problems))
