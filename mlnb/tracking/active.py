"""The runs a process is logging to: ``ActiveRun`` (logging, ending), the ``ProcessState``
that holds them (``state``: every live run, the main thread's stack, the stores the
module-level API opened, the metric writers, the hooks extensions register), each thread's
and task's stack of active runs (a ``ContextVar``), the store the module-level API uses
(``get_store``, ``resolve_store``, ``set_store``), and ending runs (``end_run``).

The fluent API (``tracking.fluent``) starts runs, logs to the active one and installs the
process hooks (heartbeat, exit, signals, fork); it re-exports the public names here.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeAlias

from mlnb.conventions import ENV_STORE
from mlnb.errors import InvalidInputError, MlnbError, MlnbWarning, RunNotFoundError, RunStateError
from mlnb.records import TERMINAL_STATUSES, Artifact, DatasetRef, RunRecord
from mlnb.store import inputs as validation
from mlnb.store import runs as store_runs
from mlnb.store.core import DB_FILENAME, Store, find_store_dir, store_not_found
from mlnb.store.liveness import release_run_lock
from mlnb.tracking import writer as metric_writer
from mlnb.tracking.writer import BatchListener, MetricWriter

MAX_STEP = validation.MAX_STEP
WAKE_EVERY_MASK = 8_192 - 1


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
        self.uncaught: type[BaseException] | None = None  # what ended the script
        self.end_hooks: list[Callable[[ActiveRun, str], None]] = []
        self.ended_hooks: list[Callable[[ActiveRun, str], None]] = []
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
        end_all("finished")
        with self.lock:
            context_runs.set(None)
            self.explicit_store = None
            for store in self.stores.values():
                store.close()
            self.stores.clear()
            for key, writer in list(self.writers.items()):
                if writer.store.closed:
                    del self.writers[key]
            self.live.clear()
            self.attached_env_run = None
            self.uncaught = None
            self.kernel_notebook = None
            self.end_hooks.clear()
            self.ended_hooks.clear()
            self.flush_hooks.clear()
            self.batch_listeners.clear()


state = ProcessState()
# The active runs of a thread or task other than the main thread's (None: none of its own).
context_runs: ContextVar[tuple[ActiveRun, ...] | None] = ContextVar(
    "mlnb_active_runs", default=None
)
# The run ``use_run`` handed to this thread or task: a plain start_run there leaves it open.
handed_run: ContextVar[ActiveRun | None] = ContextVar("mlnb_handed_run", default=None)


def run_stack() -> Sequence[ActiveRun]:
    """This thread's or task's stack of active runs (the main thread's, when it has none
    of its own)."""
    own = context_runs.get()
    if own is not None:
        return own
    return state.main_stack if threading.get_ident() == state.main_thread_id else ()


def push(run: ActiveRun) -> None:
    own = context_runs.get()
    if own is None and threading.get_ident() == state.main_thread_id:
        state.main_stack.append(run)
    else:
        context_runs.set((*(own or ()), run))


def pop_from(index: int) -> None:
    """Take the runs from ``index`` up off this context's stack."""
    own = context_runs.get()
    if own is None and threading.get_ident() == state.main_thread_id:
        del state.main_stack[index:]
    else:
        context_runs.set((own or ())[:index])


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
    return open_path(where, create=create)


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
    return open_path(Path(store), create=create)


def open_path(path: Path, *, create: bool) -> Store:
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


def writer_for(store: Store) -> MetricWriter:
    with state.lock:
        writer = state.writers.get(id(store))
        if writer is None or writer.store is not store:
            writer = state.writers[id(store)] = MetricWriter(store, state.batch_listeners)
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


def add_ended_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Call ``hook(run, status)`` just after a run of this process ended: its points
    stored, its final status written (logging to MLflow through a buffer store pushes
    the run there: mlnb.interop.buffer)."""
    if hook not in state.ended_hooks:
        state.ended_hooks.append(hook)


def remove_ended_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Stop calling a hook added with ``add_ended_hook``."""
    with contextlib.suppress(ValueError):
        state.ended_hooks.remove(hook)


def add_flush_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` first in every :func:`flush` (the notebook extension writes the
    cells it buffered there)."""
    if hook not in state.flush_hooks:
        state.flush_hooks.append(hook)


def remove_flush_hook(hook: Callable[[], None]) -> None:
    """Stop calling a hook added with ``add_flush_hook``."""
    with contextlib.suppress(ValueError):
        state.flush_hooks.remove(hook)


# -- the runs ------------------------------------------------------------------------------------


class ActiveRun:
    """A run this process is logging to. A context manager: leaving the block ends the run
    (``finished``; ``failed`` on an exception, which propagates; ``killed`` on Ctrl-C)."""

    def __init__(self, store: Store, run_id: str, *, owned_lock: int | None) -> None:
        self.store = store
        self.run_id = run_id
        self._rowid, _ = store_runs.run_rowid(store.file, run_id)
        self._writer = writer_for(store)
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
        if self.status != "running":
            self._check_open()
        store_runs.log_param(self.store.file, self.run_id, key, value, rowid=self._rowid)

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
        if n >= metric_writer.QUEUE_LIMIT:  # backpressure; raises, queuing nothing, if the
            # store fails
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
        error = run._writer.unstored(run._rowid, run.run_id, run._refused_at_call)
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
    for hook in list(state.ended_hooks):
        try:
            hook(run, run.status)
        except Exception as exc:  # the run has ended and is stored: only the hook's work is lost
            import warnings

            warnings.warn(
                f"mlnb: after run {run.run_id[:8]} ended: {type(exc).__name__}: {exc}",
                MlnbWarning,
                stacklevel=3,
            )
    if error is not None:
        raise error


def active_run() -> ActiveRun | None:
    """The run module-level ``log_*`` calls of this thread or asyncio task go to, or None.
    A new thread has none (``use_run`` hands it one); a run ended elsewhere is skipped."""
    stack = run_stack()
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
        stack = run_stack()
        if target in stack:
            index = stack.index(target)
            ending = [*reversed(stack[index:])]
            pop_from(index)
        for item in ending:
            try:
                _finish(item, status)
            except MlnbError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def end_all(status: str) -> None:
    with state.lock:
        owned = [r for r in state.live_runs() if r._pid == os.getpid()]
        for run in reversed(owned):
            with contextlib.suppress(Exception):
                _finish(run, status)
        state.main_stack.clear()
        state.live.clear()
