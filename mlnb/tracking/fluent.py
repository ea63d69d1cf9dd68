"""Run lifecycle and the ``log_*`` API, in the names MLflow users know.

A process has a stack of active runs (the top is where module-level ``log_*`` calls go).
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
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from mlnb.store.core import DB_FILENAME, ENV_STORE, Store, find_store_dir, store_not_found
from mlnb.store.liveness import HEARTBEAT_INTERVAL_S, acquire_run_lock, release_run_lock
from mlnb.tracking import collect

ENV_RUN_ID = "MLNB_RUN_ID"
# Set by `mlnb run --experiment`: the job chose the experiment, the notebook may not.
ENV_JOB_EXPERIMENT = "MLNB_JOB_EXPERIMENT"
FLUSH_INTERVAL_S = 0.1
QUEUE_LIMIT = 200_000
BATCH_LIMIT = 50_000
MAX_STEP = validation.MAX_STEP
WAKE_EVERY_MASK = 8_192 - 1

_lock = threading.RLock()
_stack: list[ActiveRun] = []
_stores: dict[Path, Store] = {}
_explicit_store: Store | None = None
_writers: dict[int, MetricWriter] = {}
_attached_env_run: str | None = None
_uncaught = False
_end_hooks: list[Callable[[ActiveRun, str], None]] = []
_flush_hooks: list[Callable[[], None]] = []
BatchListener = Callable[[Store, Sequence[tuple[int, str, int, float, float]]], None]
_batch_listeners: list[BatchListener] = []
_kernel_notebook: str | None = None  # this kernel's notebook ("" when none), looked up once
_hooks_installed = False


# -- the store behind the module-level API --------------------------------------------------


def get_store(*, create: bool = True) -> Store:
    """The store the module-level API uses: the one given to ``set_store``, else the
    project's store (``$MLNB_STORE`` or the nearest ``.mlnb/``), created on first use.
    Readers pass ``create=False``: with no store yet, ``StoreNotFoundError`` says where it
    looked (reads never create a store)."""
    if _explicit_store is not None and not _explicit_store.closed:
        return _explicit_store
    where = find_store_dir()
    with _lock:
        store = _stores.get(where)
        if store is None or store.closed:
            if not create and not (where / DB_FILENAME).is_file():
                raise store_not_found(where / DB_FILENAME, discovered=not os.environ.get(ENV_STORE))
            store = _stores[where] = Store(where)
        return store


def set_store(store: Store | str | os.PathLike[str] | None) -> Store | None:
    """Use this store (or path) for the module-level API; ``None`` returns to discovery."""
    global _explicit_store
    _explicit_store = store if isinstance(store, Store) or store is None else Store(store)
    return _explicit_store


def _writer_for(store: Store) -> MetricWriter:
    with _lock:
        writer = _writers.get(id(store))
        if writer is None or writer.store is not store:
            writer = _writers[id(store)] = MetricWriter(store)
        return writer


def add_batch_listener(listener: BatchListener) -> None:
    """Call ``listener(store, rows)`` in the metric writer thread with every batch of
    points ``(run_rowid, key, step, value, time)`` just written (live plots use it: it
    costs ``log_metric`` nothing). A listener that raises is removed."""
    _batch_listeners.append(listener)


def remove_batch_listener(listener: BatchListener) -> None:
    """Stop calling a listener added with ``add_batch_listener``."""
    with contextlib.suppress(ValueError):
        _batch_listeners.remove(listener)


def add_end_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Call ``hook(run, status)`` just before a run of this process ends (the notebook
    extension stores lineage there); it may still log to the run."""
    if hook not in _end_hooks:
        _end_hooks.append(hook)


def remove_end_hook(hook: Callable[[ActiveRun, str], None]) -> None:
    """Stop calling a hook added with ``add_end_hook``."""
    with contextlib.suppress(ValueError):
        _end_hooks.remove(hook)


def add_flush_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` first in every :func:`flush` (the notebook extension writes the
    cells it buffered there)."""
    if hook not in _flush_hooks:
        _flush_hooks.append(hook)


def remove_flush_hook(hook: Callable[[], None]) -> None:
    """Stop calling a hook added with ``add_flush_hook``."""
    with contextlib.suppress(ValueError):
        _flush_hooks.remove(hook)


def flush(store: Store | None = None) -> None:
    """Wait until everything logged so far is on disk: queued metrics (to ``store``, or to
    all stores), buffered notebook lineage, and the environment and git capture of runs
    started so far."""
    for hook in list(_flush_hooks):
        hook()
    collect.wait_for_capture()
    if store is not None:
        _writer_for(store).flush()
        return
    for key, writer in list(_writers.items()):
        if writer.store.closed:  # its points cannot be stored any more: said once, dropped
            del _writers[key]
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
                for listener in tuple(_batch_listeners):
                    try:
                        listener(self.store, batch)
                    except Exception:  # a viewer's bug must not stop metrics being written
                        _batch_listeners.remove(listener)
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
    for hook in list(_end_hooks):
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
    store: Store | None = None,
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
    global _attached_env_run
    _install_hooks()
    st = store or get_store()
    job_run = pending_job_run()
    if run_id is None and job_run:
        run_id, _attached_env_run = job_run, job_run
        if experiment is not None and not os.environ.get(ENV_JOB_EXPERIMENT):
            st.set_experiment(job_run, experiment)  # the job left the choice to the notebook
    with _lock:
        if nested:
            if parent_run_id is None and _stack:
                parent_run_id = _stack[-1].run_id
            if experiment is None and parent_run_id is not None:  # children stay with it
                experiment = st.get_run(parent_run_id).experiment
        else:
            for old in reversed(_stack):
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
        _stack.append(active)
    _Heartbeat.ensure()
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
    for active in _stack:
        if active.run_id == run_id:
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
        global _kernel_notebook
        if _kernel_notebook is None:  # asking the Jupyter server may take up to a second
            from mlnb.capture.notebook import find_notebook_path

            found = find_notebook_path(getattr(main, "__dict__", None))
            _kernel_notebook = str(found) if found else ""
        return _kernel_notebook or None
    return str(Path(path).absolute()) if path else None


def pending_job_run() -> str | None:
    """The run id in ``$MLNB_RUN_ID`` (set by ``mlnb run``) that this process has not
    attached to yet: the next ``start_run()`` will resume it."""
    env_run = os.environ.get(ENV_RUN_ID)
    return env_run if env_run and _attached_env_run != env_run else None


def active_run() -> ActiveRun | None:
    """The run module-level ``log_*`` calls go to, or None."""
    return _stack[-1] if _stack else None


def end_run(status: str = "finished", *, run: ActiveRun | None = None) -> None:
    """End the active run (or ``run``) with ``status``: finished, failed, killed."""
    if status not in TERMINAL_STATUSES:
        raise InvalidInputError(
            f"end_run status must be one of {', '.join(sorted(TERMINAL_STATUSES))}: {status!r}"
        )
    with _lock:
        target = run or (_stack[-1] if _stack else None)
        if target is None:
            return
        # ending a parent ends its nested children first; every one is ended even when
        # one of them reports points it lost (the first such error is raised at the end)
        errors: list[MlnbError] = []
        ending = [target]
        if target in _stack:
            index = _stack.index(target)
            ending = [*reversed(_stack[index:])]
            del _stack[index:]
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
    run = _stack[-1] if _stack else _active_or_start()
    run.log_metric(key, value, step)


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


class _Heartbeat:
    """One daemon thread per process that stamps the active runs' heartbeat."""

    thread: threading.Thread | None = None
    pid = 0

    @classmethod
    def ensure(cls) -> None:
        if cls.thread is not None and cls.pid == os.getpid() and cls.thread.is_alive():
            return
        cls.pid = os.getpid()
        cls.thread = threading.Thread(target=cls._loop, name="mlnb-heartbeat", daemon=True)
        cls.thread.start()

    @staticmethod
    def _loop() -> None:
        while True:
            time.sleep(HEARTBEAT_INTERVAL_S)
            by_store: dict[int, tuple[Store, list[str]]] = {}
            for run in list(_stack):
                if not run.ended and not run.store.closed:
                    by_store.setdefault(id(run.store), (run.store, []))[1].append(run.run_id)
            for st, ids in by_store.values():
                with contextlib.suppress(Exception):
                    st.heartbeat(ids)


def _end_all(status: str) -> None:
    with _lock:
        owned = [r for r in _stack if r._pid == os.getpid()]
        for run in reversed(owned):
            with contextlib.suppress(Exception):
                _finish(run, status)
        _stack.clear()


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        flush()
    _end_all("failed" if _uncaught else "finished")


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    global _uncaught
    _uncaught = True
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook


def _on_sigterm(signum: int, frame: Any) -> None:
    _end_all("killed")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


_previous_sigterm: Any = None


def _install_hooks() -> None:
    """At the first run: atexit flush, uncaught-exception detection, SIGTERM handling."""
    global _hooks_installed, _previous_excepthook, _previous_sigterm
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    _register_multiprocessing_flush()
    if sys.excepthook is sys.__excepthook__:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            current = signal.getsignal(signal.SIGTERM)
            if current in (signal.SIG_DFL, None) or callable(current):
                _previous_sigterm = current
                signal.signal(signal.SIGTERM, _on_sigterm)


def _after_fork_in_child() -> None:
    """A forked child keeps the parent's runs to log to, but not their ownership."""
    global _writers
    _writers = {}
    for run in _stack:
        run._writer = _writer_for(run.store)
        run._writer.run_ids[run._rowid] = run.run_id
        run._lock_fd = None
    _Heartbeat.thread = None


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
]
