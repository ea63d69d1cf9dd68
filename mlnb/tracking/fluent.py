"""Run lifecycle and the ``log_*`` API, in the names MLflow users know: ``start_run``,
the module-level ``log_*`` calls (to the active run of this thread or task), ``use_run``,
``flush``, and the process hooks (the heartbeat thread, exit, uncaught exceptions,
SIGTERM, fork).

The runs themselves (``ActiveRun``, ``end_run``) and what the process holds for them
(``state``, whose ``reset()`` tests use; each thread's and task's stack of active runs in a
``ContextVar``; the store the module-level API uses) are in ``tracking.active``; metrics go
through one background writer per store and process (``tracking.writer``), so
``log_metric`` costs microseconds and never waits on the database (unless the queue is
full: backpressure, never a silent drop). The names are re-exported here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlnb.conventions import ENV_JOB_EXPERIMENT, ENV_RUN_ID
from mlnb.errors import (
    InvalidInputError,
    RunStateError,
    StoreError,
)
from mlnb.records import DatasetRef
from mlnb.store import runs as store_runs
from mlnb.store.core import Store
from mlnb.store.liveness import HEARTBEAT_INTERVAL_S, acquire_run_lock, release_run_lock
from mlnb.tracking import collect
from mlnb.tracking.active import (
    ActiveRun,
    StoreLike,
    active_run,
    context_runs,
    end_all,
    end_run,
    get_store,
    handed_run,
    push,
    resolve_store,
    run_stack,
    set_store,
    state,
    status_after,
    writer_for,
)

_get_ident = threading.get_ident


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
    token = context_runs.set(() if run is None else (run,))
    handed = handed_run.set(run)
    try:
        yield run
    finally:
        handed_run.reset(handed)
        context_runs.reset(token)


def flush(store: StoreLike | None = None) -> None:
    """Wait until everything logged so far is on disk: queued metrics (to ``store``, or to
    all stores), buffered notebook lineage, and the environment and git capture of runs
    started so far."""
    for hook in list(state.flush_hooks):
        hook()
    collect.wait_for_capture()
    if store is not None:
        writer_for(resolve_store(store, create=False)).flush()
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
        stack = run_stack()
        if nested:
            top = active_run()
            if parent_run_id is None and top is not None:
                parent_run_id = top.run_id
            if experiment is None and parent_run_id is not None:  # children stay with it
                experiment = st.get_run(parent_run_id).experiment
        else:
            handed = handed_run.get()
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
        push(active)
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


def _active_or_start() -> ActiveRun:
    run = active_run()
    if run is None or run.ended:
        run = start_run()
    return run


def log_param(key: str, value: Any) -> None:
    """Log a param to the active run (starting one if there is none)."""
    own = context_runs.get()  # run_stack() inlined, as in log_metric: this is a hot path
    stack: Sequence[ActiveRun] | None = own
    if stack is None:
        stack = state.main_stack if _get_ident() == state.main_thread_id else ()
    run = stack[-1] if stack else None
    if run is None or run.status != "running":  # none, or ended elsewhere: the usual way
        run = _active_or_start()
    run.log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Log several params to the active run, all or nothing."""
    _active_or_start().log_params(params)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    """Log a metric point to the active run; ``step`` defaults to the key's next step."""
    own = context_runs.get()  # run_stack() inlined: this is the hot path
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
                store_runs.heartbeat(st.file, ids)


def _at_exit() -> None:
    with contextlib.suppress(Exception):
        flush()
    end_all(status_after(state.uncaught))  # Ctrl-C in a script: killed, as inside `with`


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    state.uncaught = exc_type
    state.previous_excepthook(exc_type, exc, tb)


def _on_sigterm(signum: int, frame: Any) -> None:
    end_all("killed")
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
        run._writer = writer_for(run.store)
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

__all__ = [  # the public API, and what the modules above use from the active runs
    "ActiveRun",
    "StoreLike",
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
    "resolve_store",
    "set_store",
    "set_tag",
    "set_tags",
    "start_run",
    "state",
    "status_after",
    "use_run",
]
