"""Run lifecycle and the ``log_*`` API, in the names MLflow users know.

Each thread and asyncio task has a stack of active runs (the top is where module-level
``log_*`` calls go), kept in a ``ContextVar``: a new thread starts with none, as in MLflow
>= 2.14, and ``use_run`` hands a run to one. The main thread keeps one stack for all its
contexts, because IPython runs an async cell in a task of its own and the next cell must
still see the run it started. Everything else the process holds (stores, writers, hooks)
is in one ``ProcessState``, ``state``, whose ``reset()`` tests use.

Params, tags and artifacts are written at once; metrics go through one background writer
per store and process, which drains a bounded queue in batches every ~100 ms, at
``end_run``, at exit and on SIGTERM, so ``log_metric`` costs microseconds and never waits
on the database (unless the queue is full: backpressure, never a silent drop).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeAlias

from mlnb.conventions import ENV_JOB_EXPERIMENT, ENV_RUN_ID, ENV_STORE
from mlnb.errors import (
    InvalidInputError,
    MlnbError,
    MlnbWarning,
    RunNotFoundError,
    RunStateError,
    StoreError,
)
from mlnb.records import TERMINAL_STATUSES, Artifact, DatasetRef, RunRecord
from mlnb.store import inputs as validation
from mlnb.store.core import DB_FILENAME, Store, find_store_dir, store_not_found
from mlnb.store.liveness import HEARTBEAT_INTERVAL_S, acquire_run_lock, release_run_lock
from mlnb.tracking import collect

FLUSH_INTERVAL_S = 0.1
QUEUE_LIMIT = 200_000
BATCH_LIMIT = 50_000
MAX_STEP = validation.MAX_STEP
WAKE_EVERY_MASK = 8_192 - 1

BatchListener = Callable[[Store, Sequence[tuple[int, str, int, float, float]]], None]


class ProcessState:
    """What one process holds besides the runs' own stacks: the main thread's stack of
    active runs, every run not yet ended (in any thread: the heartbeat, exit and SIGTERM
    reach them all), the stores the module-level API opened, the metric writers, the
    hooks and listeners extensions registered, the process hooks (atexit, excepthook,
    SIGTERM) and the heartbeat thread. One object, so that ``reset()`` can put it back as
    a fresh process has it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.main_thread_id = threading.main_thread().ident
        self.main_stack: list[ActiveRun] = []
        self.live: dict[int, ActiveRun] = {}  # id(run) -> run, in start order
        self.stores: dict[Path, Store] = {}
        self.explicit_store: Store | None = None
        self.writers: dict[int, MetricWriter] = {}
        self.attached_env_run: str | None = None
        self.uncaught = False
        self.end_hooks: list[Callable[[ActiveRun, str], None]] = []
        self.flush_hooks: list[Callable[[], None]] = []
        self.batch_listeners: list[BatchListener] = []
        self.kernel_notebook: str | None = None  # this kernel's notebook ("" when none)
        self.hooks_installed = False  # atexit, excepthook, SIGTERM: installed once
        self.previous_excepthook = sys.excepthook  # what those hooks hand on to
        self.previous_sigterm: Any = None
        self.heartbeat: threading.Thread | None = None  # its thread (none in a forked child)

    def live_runs(self) -> tuple[ActiveRun, ...]:
        """Every run this process started or resumed and has not ended, in any thread."""
        return tuple(r for r in list(self.live.values()) if not r.ended)

    def reset(self) -> None:
        """End every run of the process (``finished``), close the stores the module-level
        API opened and forget them, ``set_store(None)``, and drop hooks, listeners and the
        writers of closed stores. The process hooks (atexit, SIGTERM) stay installed."""
        _end_all("finished")
        with self.lock:
            _context_runs.set(None)
            self.explicit_store = None
            for store in self.stores.values():
                store.close()
            self.stores.clear()
            for key, writer in list(self.writers.items()):
                if writer.store.closed:
                    del self.writers[key]
            self.live.clear()
            self.attached_env_run = None
            self.uncaught = False
            self.kernel_notebook = None
            self.end_hooks.clear()
            self.flush_hooks.clear()
            self.batch_listeners.clear()


state = ProcessState()
# The active runs of a thread or task other than the main thread's (None: none of its own).
_context_runs: ContextVar[tuple[ActiveRun, ...] | None] = ContextVar(
    "mlnb_active_runs", default=None
)
# The run ``use_run`` handed to this thread or task: a plain start_run there leaves it open.
_handed_run: ContextVar[ActiveRun | None] = ContextVar("mlnb_handed_run", default=None)
_get_ident = threading.get_ident


def _stack() -> Sequence[ActiveRun]:
    """This thread's or task's stack of active runs (the main thread's, when it has none
    of its own)."""
    own = _context_runs.get()
    if own is not None:
        return own
    return state.main_stack if threading.get_ident() == state.main_thread_id else ()


def _push(run: ActiveRun) -> None:
    own = _context_runs.get()
    if own is None and threading.get_ident() == state.main_thread_id:
        state.main_stack.append(run)
    else:
        _context_runs.set((*(own or ()), run))


def _pop_from(index: int) -> None:
    """Take the runs from ``index`` up off this context's stack."""
    own = _context_runs.get()
    if own is None and threading.get_ident() == state.main_thread_id:
        del state.main_stack[index:]
    else:
        _context_runs.set((own or ())[:index])


@contextlib.contextmanager
def use_run(run: ActiveRun | None) -> Iterator[ActiveRun | None]:
    """Make ``run`` the active run of this thread or asyncio task for the block, e.g. in a
    worker thread: ``with mlnb.use_run(run): mlnb.log_metric(...)``. The block has a stack
    of its own (``None``: an empty one, so a task can start runs that do not finish
    another task's); leaving it restores the one before. The run is not ended: its owner
    ends it, and a ``start_run()`` in the block leaves it open (``nested=True`` makes the
    new run its child)."""
    if run is not None and not isinstance(run, ActiveRun):
        raise InvalidInputError(
            f"use_run takes the ActiveRun that start_run returned (or None), got "
            f"{type(run).__name__}; to log to a run by id, use start_run(run_id=...)"
        )
    if run is not None and run.ended:
        raise RunStateError(
            f"run {run.run_id[:8]} is {run.status}; it cannot be handed to another thread "
            "or task. Start a new run, or resume it with start_run(run_id=...)"
        )
    token = _context_runs.set(() if run is None else (run,))
    handed = _handed_run.set(run)
    try:
        yield run
    finally:
        _handed_run.reset(handed)
        _context_runs.reset(token)


# -- the store behind the module-level API --------------------------------------------------


StoreLike: TypeAlias = "Store | str | os.PathLike[str]"
"""What every public function's ``store=`` takes: a ``Store``, or the path of a store's
folder (or of its ``.db`` file)."""


def get_store(*, create: bool = True) -> Store:
    """The store the module-level API uses: the one given to ``set_store``, else the
    project's store (``$MLNB_STORE`` or the nearest ``.mlnb/``), created on first use.
    Readers pass ``create=False``: with no store yet, ``StoreNotFoundError`` says where it
    looked (reads never create a store)."""
    explicit = state.explicit_store
    if explicit is not None and not explicit.closed:
        return explicit
    where = find_store_dir()
    if not create and not (where / DB_FILENAME).is_file():
        raise store_not_found(where / DB_FILENAME, discovered=not os.environ.get(ENV_STORE))
    return _open_path(where, create=create)


def resolve_store(store: StoreLike | None, *, create: bool) -> Store:
    """The store a public function with ``store=`` uses, by one rule for all of them: a
    ``Store`` as given; a path, the store there; ``None``, :func:`get_store` (the one given
    to ``set_store``, else the project's). A path opens one ``Store`` per file and process,
    shared with the module-level API, so a read sees what this process logged to it.
    Readers pass ``create=False``: where there is no store, ``StoreNotFoundError`` says
    where it looked (reads never create a store); writers pass ``create=True``."""
    if isinstance(store, Store):
        return store
    if store is None:
        return get_store(create=create)
    return _open_path(Path(store), create=create)


def _open_path(path: Path, *, create: bool) -> Store:
    """This process's open ``Store`` on the folder (or ``.db`` file) at ``path``."""
    key = path.expanduser().absolute()
    if key.name == DB_FILENAME and not key.is_dir():  # a store's file: keyed by its folder
        key = key.parent
    with state.lock:
        store = state.stores.get(key)
        if store is None or store.closed:
            store = state.stores[key] = Store(key, create=create)
        return store


def set_store(store: StoreLike | None) -> Store | None:
    """Use this store (or path) for the module-level API; ``None`` returns to discovery."""
    state.explicit_store = None if store is None else resolve_store(store, create=True)
    return state.explicit_store


def _writer_for(store: Store) -> MetricWriter:
    with state.lock:
        writer = state.writers.get(id(store))
        if writer is None or writer.store is not store:
            writer = state.writers[id(store)] = MetricWriter(store)
        return writer


def add_batch_listener(listener: BatchListener) -> None:
    """Call ``listener(store, rows)`` in the metric writer thread with every batch of
    points ``(run_rowid, key, step, value, time)`` just written (live plots use it: it
    costs ``log_metric`` nothing). A listener that raises is removed."""
    state.batch_listeners.append(listener)


def remove_batch_listener(listener: BatchListener) -> None:
    """Stop calling a listener added with ``add_batch_listener``."""
    with contextlib.suppress(ValueError):
        state.batch_listeners.remove(listener)


def add_end_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Call ``hook(run, status)`` just before a run of this process ends (the notebook
    extension stores lineage there); it may still log to the run."""
    if hook not in state.end_hooks:
        state.end_hooks.append(hook)


def remove_end_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Stop calling a hook added with ``add_end_hook``."""
    with contextlib.suppress(ValueError):
        state.end_hooks.remove(hook)


def add_flush_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` first in every :func:`flush` (the notebook extension writes the
    cells it buffered there)."""
    if hook not in state.flush_hooks:
        state.flush_hooks.append(hook)


def remove_flush_hook(hook: Callable[[], None]) -> None:
    """Stop calling a hook added with ``add_flush_hook``."""
    with contextlib.suppress(ValueError):
        state.flush_hooks.remove(hook)


def flush(store: StoreLike | None = None) -> None:
    """Wait until everything logged so far is on disk: queued metrics (to ``store``, or to
    all stores), buffered notebook lineage, and the environment and git capture of runs
    started so far."""
    for hook in list(state.flush_hooks):
        hook()
    collect.wait_for_capture()
    if store is not None:
        _writer_for(resolve_store(store, create=False)).flush()
        return
    for key, writer in list(state.writers.items()):
        if writer.store.closed:  # its points cannot be stored any more: said once, dropped
            state.writers.pop(key, None)
            lost = len(writer.queue)
            writer.queue.clear()
            if lost:
                raise StoreError(
                    f"{lost:,} metric points queued for {writer.store.location} were not "
                    "stored: the store was closed first (mlnb.flush() before closing a "
                    "store stores them)"
                )
            continue
        writer.flush()


# -- the background metric writer -------------------------------------------------------------


@dataclasses.dataclass
class Refusal:
    """Points of one run that the store refused (see ``Store.insert_metrics``)."""

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

    def __init__(self, store: Store) -> None:
        self.store = store
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
                    refused = self.store.insert_metrics(batch)
                except BaseException as exc:
                    queue.extendleft(reversed(batch))
                    if isinstance(exc, Exception):
                        self.last_error = exc
                        self.failures += 1
                    raise
                if refused:
                    batch = self._refuse(batch, refused)
                for listener in tuple(state.batch_listeners):
                    try:
                        listener(self.store, batch)
                    except Exception:  # a viewer's bug must not stop metrics being written
                        with contextlib.suppress(ValueError):
                            state.batch_listeners.remove(listener)
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


# -- runs ------------------------------------------------------------------------------------


class ActiveRun:
    """A run this process is logging to. A context manager: leaving the block ends the run
    (``finished``; ``failed`` on an exception, which propagates; ``killed`` on Ctrl-C)."""

    def __init__(self, store: Store, run_id: str, *, owned_lock: int | None) -> None:
        self.store = store
        self.run_id = run_id
        self._rowid, _ = store.run_rowid(run_id)
        self._writer = _writer_for(store)
        self._next_step: dict[str, int] = store.max_steps(run_id)
        for key in self._next_step:
            self._next_step[key] += 1
        self._writer.run_ids[self._rowid] = run_id
        self._refused_at_call = 0  # points log_metric refused because the store failed
        self._lock_fd = owned_lock
        self._pid = os.getpid()
        self._sampler: Any = None  # a capture.system.SystemSampler when asked for
        self.status = "running"

    # context manager
    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self.ended:
            return
        if exc is None:
            end_run(status_after(None), run=self)
            return
        try:
            end_run(status_after(exc_type), run=self)
        except MlnbError as lost:  # the block's own exception goes on; it carries this note
            add_note = getattr(exc, "add_note", None)  # Python 3.11+
            if add_note is not None:
                add_note(f"mlnb: ending run {self.run_id[:8]}: {lost}")

    def __repr__(self) -> str:
        return f"<mlnb.ActiveRun {self.run_id[:8]} {self.status}>"

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def info(self) -> RunRecord:
        """The run as stored now (params, metrics, tags, artifacts)."""
        self._writer.drain()
        return self.store.get_run(self.run_id)

    def _check_open(self) -> None:
        if self.ended:
            raise RunStateError(
                f"run {self.run_id[:8]} is {self.status}; it cannot be logged to. Start a new "
                "run, or resume this one with start_run(run_id=...)"
            )

    # logging
    def log_param(self, key: str, value: Any) -> None:
        """Log one param (immutable: the same value again is a no-op)."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params, all or nothing."""
        self._check_open()
        self.store.log_params(self.run_id, params)

    def log_metric(
        self, key: str, value: Any, step: int | None = None, *, timestamp: float | None = None
    ) -> None:
        """Queue one metric point; ``step`` defaults to the next step for that key."""
        if self.status != "running":
            self._check_open()
        next_step = self._next_step
        if type(key) is not str or key not in next_step:
            validation.check_key(key, "metric key")
            next_step.setdefault(key, 0)
        if type(value) is not float:
            value = validation.metric_value(key, value)
        if step is None:
            step = next_step[key]
            if step > MAX_STEP:  # the automatic step after step=2**63-1
                raise InvalidInputError(validation.step_out_of_range(key, step))
        elif type(step) is not int or not 0 <= step <= MAX_STEP:
            step = validation.step_value(key, step)
        if timestamp is not None:
            timestamp = validation.timestamp_value(key, timestamp)
        queue = self._writer.queue  # inlined MetricWriter.put: this is the hot path
        n = len(queue)
        if n >= QUEUE_LIMIT:  # backpressure; raises (queuing nothing) if the store fails
            self._wait_for_room(key)
        queue.append((self._rowid, key, step, value, timestamp or time.time()))
        if step >= next_step[key]:
            next_step[key] = step + 1
        if n & WAKE_EVERY_MASK == WAKE_EVERY_MASK:  # a busy loop wakes the writer every
            self._writer.wake()  # 8,192 points

    def _wait_for_room(self, key: str) -> None:
        try:
            self._writer.wait_for_room()
        except MlnbError as exc:
            self._refused_at_call += 1
            raise type(exc)(f"{exc}; this point of metric {key!r} was not queued") from None

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Queue several metrics at once; every value is checked before any is queued."""
        self._check_open()
        checked = [
            (validation.check_key(k, "metric key"), validation.metric_value(k, v))
            for k, v in metrics.items()
        ]
        if step is not None:
            step = validation.step_value(next(iter(metrics), "?"), step)
        now = time.time()
        for key, value in checked:
            self.log_metric(key, value, step, timestamp=now)

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (tags, unlike params, may change)."""
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags at once."""
        self._check_open()
        self.store.set_tags(self.run_id, tags)

    def log_artifact(
        self, source: str | os.PathLike[str] | bytes, name: str | None = None
    ) -> list[Artifact]:
        """Store a file, a folder or bytes with the run (content-addressed: stored once)."""
        self._check_open()
        return self.store.log_artifact(self.run_id, source, name=name)

    def log_figure(
        self, figure: Any = None, name: str = "figure.png", *, dpi: int | None = None
    ) -> Artifact:
        """Store a matplotlib figure (default: the current one) as an image artifact."""
        self._check_open()
        if figure is None:
            plt = sys.modules.get("matplotlib.pyplot")
            if plt is None or not plt.get_fignums():
                raise InvalidInputError("log_figure: no figure given and no current figure")
            figure = plt.gcf()
        if not hasattr(figure, "savefig"):
            raise InvalidInputError(
                f"log_figure needs a matplotlib Figure, got {type(figure).__name__}"
            )
        fmt = Path(name).suffix.lstrip(".") or "png"
        buf = io.BytesIO()
        figure.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
        (art,) = self.store.log_artifact(self.run_id, buf.getvalue(), name=name, kind="figure")
        return art

    def log_data(
        self,
        data: Any,
        name: str | None = None,
        *,
        role: str = "input",
        profile: bool = True,
    ) -> DatasetRef:
        """Record a dataset the run used (``role="input"``) or produced (``"output"``) by
        its content fingerprint, with a schema and a statistical profile for DataFrames.
        Accepts DataFrames, numpy arrays, files, folders, and registered types."""
        self._check_open()
        if role not in ("input", "output"):
            raise InvalidInputError(f"role must be 'input' or 'output', got {role!r}")
        if name is not None:
            validation.check_key(name, "dataset name")
        from mlnb.capture.fingerprints import fingerprint

        fp = fingerprint(data, cache=self.store.file_hash_cache())
        if name is None:
            name = Path(data).name if isinstance(data, (str, os.PathLike)) else "dataset"
        prof = None
        if profile and fp.kind in ("dataframe", "series"):
            from mlnb.capture.profile import profile as make_profile

            prof = make_profile(data)
        self.store.log_dataset(self.run_id, fp, name=name, role=role, profile=prof)
        return next(
            d for d in self.store.get_run(self.run_id).datasets if (d.name, d.role) == (name, role)
        )

    def end(self, status: str = "finished") -> None:
        """End this run (same as ``mlnb.end_run(status)`` for it)."""
        end_run(status, run=self)


def status_after(error: type[BaseException] | BaseException | None) -> str:
    """The status a run ends with after this exception (or none): finished, killed on
    Ctrl-C, failed otherwise."""
    if error is None:
        return "finished"
    kind = error if isinstance(error, type) else type(error)
    return "killed" if issubclass(kind, KeyboardInterrupt) else "failed"


def _finish(run: ActiveRun, status: str) -> None:
    """Flush, write the final status, release the lock. Idempotent. A run some of whose
    points were not stored ends ``failed`` (never ``finished``) and this raises what was
    lost: points the store refused, points still queued because the store fails (a full
    disk), points ``log_metric`` refused for that reason."""
    if run.ended:
        return
    for hook in list(state.end_hooks):
        try:
            hook(run, status)
        except Exception as exc:  # an extension's bookkeeping must not lose the run
            import warnings

            warnings.warn(
                f"mlnb: finishing run {run.run_id[:8]}: {type(exc).__name__}: {exc}",
                MlnbWarning,
                stacklevel=3,
            )
    if run._sampler is not None:
        run._sampler.stop()
        run._sampler = None
    try:
        error = _unstored(run)
        if error is not None and status == "finished":
            status = "failed"
        run.status = status
        if not isinstance(error, RunNotFoundError):  # a purged run: nothing to write
            try:
                run.store.set_status(run.run_id, status)
                tail = f"the run is marked {status}"
            except MlnbError:
                if error is None:
                    raise
                tail = (
                    f"its status ({status}) could not be written either: readers show it as crashed"
                )
            if error is not None:
                error = type(error)(f"{error}; {tail}")
    finally:
        state.live.pop(id(run), None)
        if run._lock_fd is not None:
            release_run_lock(run.store.locks_dir, run.run_id, run._lock_fd)
            run._lock_fd = None
    if error is not None:
        raise error


def _unstored(run: ActiveRun) -> MlnbError | None:
    """Drain the run's writer; what of the run's points could not be stored, if any."""
    writer = run._writer
    stuck: MlnbError | None = None
    try:
        writer.drain()
    except MlnbError as exc:
        stuck = exc
    refusal = writer.refused.pop(run._rowid, None)
    if refusal is None and stuck is None and not run._refused_at_call:
        return None
    if refusal is not None:
        error = writer.refusal_error(run._rowid, refusal)
        if isinstance(error, RunNotFoundError):
            return error
        kind: type[MlnbError] = type(error)
        problems = [str(error)]
    else:
        kind = type(stuck) if isinstance(stuck, StoreError) else StoreError
        problems = []
    if stuck is not None:
        queued = sum(1 for row in writer.queue if row[0] == run._rowid)
        problems.append(
            f"{queued:,} metric points of run {run.run_id[:8]} are still queued: {stuck}; "
            "mlnb.flush() stores them once the store can take them"
        )
    if run._refused_at_call:
        problems.append(
            f"log_metric refused {run._refused_at_call:,} point(s) of run {run.run_id[:8]} "
            "because the store could not take any"
        )
    return kind("; ".join(problems))


def start_run(
    name: str | None = None,
    *,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    source: str | None = None,
    store: StoreLike | None = None,
    capture: bool | str | Collection[str] | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float = 5.0,
) -> ActiveRun:
    """Start a run and make it the active one; use it as a context manager to end it.

    Starting a run while another is active finishes the old one (unless ``nested``, which
    makes the new run a child of the active one). ``run_id`` resumes an existing run; so
    does ``$MLNB_RUN_ID`` (set by ``mlnb run``) the first time a run is started.

    A new run records its environment and git state in the background (``capture``:
    True, False, or part names; default ``$MLNB_CAPTURE`` or all, see docs/capture.md).
    ``system_metrics=True`` (or ``$MLNB_SYSTEM_METRICS=1``) samples CPU, memory and GPU
    use as ``system/*`` metrics every ``system_metrics_interval`` seconds.
    """
    parts = collect.resolve_parts(capture)
    _install_hooks()
    st = resolve_store(store, create=True)
    job_run = pending_job_run()
    if run_id is None and job_run:
        run_id = state.attached_env_run = job_run
        if experiment is not None and not os.environ.get(ENV_JOB_EXPERIMENT):
            st.set_experiment(job_run, experiment)  # the job left the choice to the notebook
    with state.lock:
        stack = _stack()
        if nested:
            top = active_run()
            if parent_run_id is None and top is not None:
                parent_run_id = top.run_id
            if experiment is None and parent_run_id is not None:  # children stay with it
                experiment = st.get_run(parent_run_id).experiment
        else:
            handed = _handed_run.get()
            for old in reversed(list(stack)):
                if old is not handed:
                    end_run("finished", run=old)
        if run_id is not None:
            active = _resume(st, run_id, name=name, tags=tags)
        else:
            source = source or _default_source()
            active = _create(
                st,
                name=name,
                experiment=experiment,
                tags=tags,
                parent_run_id=parent_run_id,
                source=source,
            )
            collect.start_capture(st, active.run_id, parts, os.getcwd())
        if collect.system_metrics_wanted(system_metrics) and active._sampler is None:
            active._sampler = collect.start_system_metrics(
                active.log_metrics, system_metrics_interval
            )
        _push(active)
        state.live[id(active)] = active
    _ensure_heartbeat()
    return active


def _create(st: Store, **kwargs: Any) -> ActiveRun:
    import uuid

    run_id = uuid.uuid4().hex
    st.file.check_writable()
    fd = acquire_run_lock(st.locks_dir, run_id) if st.db_path is not None else None
    try:
        st.create_run(run_id=run_id, **kwargs)
        return ActiveRun(st, run_id, owned_lock=fd)
    except BaseException:
        if fd is not None:
            release_run_lock(st.locks_dir, run_id, fd)
        raise


def _resume(st: Store, ref: str, *, name: str | None, tags: Mapping[str, Any] | None) -> ActiveRun:
    run_id = st.resolve_run_id(ref)
    for active in state.live_runs():  # in any thread: the same object, one lock and writer
        if active.run_id == run_id and active.store is st:
            return active
    fd = None
    if st.db_path is not None:
        with contextlib.suppress(OSError):  # held by the process that runs it (mlnb run)
            fd = acquire_run_lock(st.locks_dir, run_id)
    st.resume_run(run_id, name=name)
    if tags:
        st.set_tags(run_id, tags)
    return ActiveRun(st, run_id, owned_lock=fd)


def _default_source() -> str | None:
    """The script that started the run; in a notebook kernel, the notebook (MLflow records
    ``ipykernel_launcher.py`` there, which says nothing)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if "ipykernel" in sys.modules and (not path or Path(path).name == "ipykernel_launcher.py"):
        if state.kernel_notebook is None:  # asking the Jupyter server may take up to a second
            from mlnb.capture.notebook import find_notebook_path

            found = find_notebook_path(getattr(main, "__dict__", None))
            state.kernel_notebook = str(found) if found else ""
        return state.kernel_notebook or None
    return str(Path(path).absolute()) if path else None


def pending_job_run() -> str | None:
    """The run id in ``$MLNB_RUN_ID`` (set by ``mlnb run``) that this process has not
    attached to yet: the next ``start_run()`` will resume it."""
    env_run = os.environ.get(ENV_RUN_ID)
    return env_run if env_run and state.attached_env_run != env_run else None


def active_run() -> ActiveRun | None:
    """The run module-level ``log_*`` calls of this thread or asyncio task go to, or None.
    A new thread has none (``use_run`` hands it one); a run ended elsewhere is skipped."""
    stack = _stack()
    for run in reversed(stack):
        if not run.ended:
            return run
    return None


def end_run(status: str = "finished", *, run: ActiveRun | None = None) -> None:
    """End the active run (or ``run``) with ``status``: finished, failed, killed."""
    if status not in TERMINAL_STATUSES:
        raise InvalidInputError(
            f"end_run status must be one of {', '.join(sorted(TERMINAL_STATUSES))}: {status!r}"
        )
    with state.lock:
        target = run or active_run()
        if target is None:
            return
        # ending a parent ends its nested children first; every one is ended even when
        # one of them reports points it lost (the first such error is raised at the end)
        errors: list[MlnbError] = []
        ending = [target]
        stack = _stack()
        if target in stack:
            index = stack.index(target)
            ending = [*reversed(stack[index:])]
            _pop_from(index)
        for item in ending:
            try:
                _finish(item, status)
            except MlnbError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _active_or_start() -> ActiveRun:
    run = active_run()
    if run is None or run.ended:
        run = start_run()
    return run


def log_param(key: str, value: Any) -> None:
    """Log a param to the active run (starting one if there is none)."""
    _active_or_start().log_params({key: value})


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params to the active run, all or nothing."""
    _active_or_start().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    """Log a metric point to the active run; ``step`` defaults to the key's next step."""
    own = _context_runs.get()  # _stack() inlined: this is the hot path
    stack: Sequence[ActiveRun] | None = own
    if stack is None:
        stack = state.main_stack if _get_ident() == state.main_thread_id else ()
    run = stack[-1] if stack else _active_or_start()
    try:
        run.log_metric(key, value, step)
    except RunStateError:
        if not run.ended:
            raise
        _active_or_start().log_metric(key, value, step)  # ended by another thread


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several metrics at one step to the active run."""
    _active_or_start().log_metrics(metrics, step)


def set_tag(key: str, value: Any) -> None:
    """Set a tag on the active run."""
    _active_or_start().set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set several tags on the active run."""
    _active_or_start().set_tags(tags)


def log_artifact(source: str | os.PathLike[str] | bytes, name: str | None = None) -> None:
    """Store a file, folder or bytes with the active run."""
    _active_or_start().log_artifact(source, name)


def log_data(
    data: Any, name: str | None = None, *, role: str = "input", profile: bool = True
) -> DatasetRef:
    """Record a dataset the active run used or produced, by content fingerprint (see
    ``ActiveRun.log_data``)."""
    return _active_or_start().log_data(data, name, role=role, profile=profile)


def log_figure(figure: Any = None, name: str = "figure.png", *, dpi: int | None = None) -> None:
    """Store a matplotlib figure (default: the current one) with the active run."""
    _active_or_start().log_figure(figure, name, dpi=dpi)


# -- liveness, exit and signals -----------------------------------------------------------------


def _ensure_heartbeat() -> None:
    """One daemon thread per process stamps the heartbeat of every live run (any thread's)."""
    beat = state.heartbeat
    if beat is not None and beat.is_alive():
        return
    state.heartbeat = threading.Thread(target=_heartbeat_loop, name="mlnb-heartbeat", daemon=True)
    state.heartbeat.start()


def _heartbeat_loop() -> None:
    while True:
        time.sleep(HEARTBEAT_INTERVAL_S)
        by_store: dict[int, tuple[Store, list[str]]] = {}
        for run in state.live_runs():
            if not run.store.closed:
                by_store.setdefault(id(run.store), (run.store, []))[1].append(run.run_id)
        for st, ids in by_store.values():
            with contextlib.suppress(Exception):
                st.heartbeat(ids)


def _end_all(status: str) -> None:
    with state.lock:
        owned = [r for r in state.live_runs() if r._pid == os.getpid()]
        for run in reversed(owned):
            with contextlib.suppress(Exception):
                _finish(run, status)
        state.main_stack.clear()
        state.live.clear()


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        flush()
    _end_all("failed" if state.uncaught else "finished")


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    state.uncaught = True
    state.previous_excepthook(exc_type, exc, tb)


def _on_sigterm(signum: int, frame: Any) -> None:
    _end_all("killed")
    previous = state.previous_sigterm
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_hooks() -> None:
    """At the first run: atexit flush, uncaught-exception detection, SIGTERM handling."""
    if state.hooks_installed:
        return
    state.hooks_installed = True
    atexit.register(_at_exit)
    _register_multiprocessing_flush()
    if sys.excepthook is sys.__excepthook__:
        state.previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            current = signal.getsignal(signal.SIGTERM)
            if current in (signal.SIG_DFL, None) or callable(current):
                state.previous_sigterm = current
                signal.signal(signal.SIGTERM, _on_sigterm)


def _after_fork_in_child() -> None:
    """A forked child keeps the parent's runs to log to, but not their ownership."""
    state.writers = {}
    state.main_thread_id = threading.get_ident()  # the forking thread is the child's main
    for run in state.live_runs():
        run._writer = _writer_for(run.store)
        run._writer.run_ids[run._rowid] = run.run_id
        run._lock_fd = None
    state.heartbeat = None


def _register_multiprocessing_flush() -> None:
    """multiprocessing children end with os._exit (no atexit) and clear inherited
    finalizers, so each child registers, after that clearing, a flush at its exit."""
    from multiprocessing import util

    def in_child(_: object) -> None:
        util.Finalize(None, _flush_quietly, exitpriority=100)

    util.register_after_fork(_register_multiprocessing_flush, in_child)


def _flush_quietly() -> None:
    with contextlib.suppress(Exception):
        flush()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "flush",
    "get_store",
    "log_artifact",
    "log_data",
    "log_figure",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "use_run",
]
