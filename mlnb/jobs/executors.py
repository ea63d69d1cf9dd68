"""Sweep executors: they run a sweep's queued children, each by
:func:`mlnb.jobs.runner.run_notebook` attached to its queued run, and return one outcome
per child. The local executor (:func:`run_local`) runs them in worker processes, one kernel
each, and stops them cleanly on Ctrl-C or ``fail_fast``; the Dask executor
(:func:`run_dask`) runs each child on a Dask worker into a temporary store and ships the
finished run back as a bundle (:mod:`mlnb.store.transfer`); there the kernel is checked on
the worker, a child is ``running`` from its start on a worker, cancelling a task kills its
kernel, and a child whose worker was lost runs again once. Both take the same arguments:
the store, the :class:`Plan` (what every child shares), the children, how to run them and
the :class:`Progress` line. :mod:`mlnb.jobs.sweeps` plans a sweep and calls one of them.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.conventions import EXIT_FAILED, EXIT_INTERRUPTED, RETRIES_TAG, RETRY_REASON_TAG
from mlnb.errors import InvalidInputError, MlnbError
from mlnb.records import JobError
from mlnb.store import Store
from mlnb.store.liveness import acquire_run_lock, release_run_lock

START_RETRIES = 2  # kernel starts retried per child (the port race of parallel kernels)
STOP_GRACE_S = 20.0  # how long stopped workers get to mark their runs before SIGKILL
DASK_CONNECT_TIMEOUT = "5s"
DASK_WATCH_S = 0.5  # how often a Dask task looks whether it was cancelled


@dataclass
class Plan:
    """What every child of a sweep shares, planned and checked by :mod:`mlnb.jobs.sweeps`
    before any run exists."""

    nb_path: Path
    notebook_hash: str
    points: list[dict[str, Any]]
    fixed: dict[str, Any]
    spec: dict[str, Any]
    kernel: str | None
    cwd: str | None
    name: str
    experiment: str | None
    tags: dict[str, Any]
    cell_timeout: float | None
    start_timeout: float
    declared: frozenset[str] | None  # the parameters cell's names (None: unreadable)
    allow_unknown: bool

    def split(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A child's values as (params, unknown): names the notebook does not declare are
        injected (``allow_unknown``) but recorded as tags, as a job records them."""
        if self.declared is None:
            return dict(values), {}
        known = {k: v for k, v in values.items() if k in self.declared}
        return known, {k: v for k, v in values.items() if k not in self.declared}


# -- progress ------------------------------------------------------------------------------


class Progress:
    """One line on stderr, redrawn: done / failed / running / queued children."""

    def __init__(self, st: Store, parent: str, total: int, show: bool) -> None:
        self.st, self.parent, self.total, self.show = st, parent, total, show
        self.last = 0.0

    def update(self, *, force: bool = False) -> None:
        if not self.show or (not force and time.monotonic() - self.last < 0.5):
            return
        self.last = time.monotonic()
        counts = self.st.child_status_counts(self.parent)
        done = self.total - counts.get("queued", 0) - counts.get("running", 0)
        failed = done - counts.get("finished", 0)
        width = 24
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r[{bar}] {done}/{self.total} done, {failed} failed, "
            f"{counts.get('running', 0)} running, {counts.get('queued', 0)} queued "
        )
        sys.stderr.flush()

    def close(self) -> None:
        """The last state, and a new line (once)."""
        if self.show:
            with contextlib.suppress(MlnbError):
                self.update(force=True)
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.show = False


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not cut the clean-up short (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# -- the local executor: worker processes ---------------------------------------------------

_busy = False  # in a worker: whether a child is running (a SIGTERM then stops it)


def _worker_init(pid_dir: str) -> None:
    """In each worker process: Ctrl-C at the terminal is the sweep's to handle, not the
    workers'; SIGTERM from the sweep stops the running child (its run is marked killed and
    its kernel stopped)."""
    import psutil  # noqa: F401  (now: the SIGTERM handler must not be the one to import it)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    Path(pid_dir, str(os.getpid())).touch()


def _on_sigterm(signum: int, frame: Any) -> None:
    """Stop at once: kill the kernel, then leave without unwinding. (Unwinding through
    nbclient's event loop left ZMQ sockets open, and the worker then hung at exit for the
    whole grace period.) The sweep marks the child's run ``killed``; the OS releases its
    liveness lock.

    A second SIGTERM is ignored: the pool sends one to every worker when another exits
    (``terminate_broken``), and arriving while this handler imported psutil it failed the
    child with "partially initialized module 'psutil'" instead of stopping it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _busy:
        _kill_kernels()
    os._exit(0)


def _kill_kernels() -> None:
    """Stop this worker's kernels (its child processes) at once."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _outcome(child: Mapping[str, Any], result: Any) -> dict[str, Any]:
    err = result.error
    return {
        "index": child["index"],
        "run_id": child["run_id"],
        "point": child["point"],
        "status": result.status,
        "exit_code": result.exit_code,
        "error": None if err is None else dataclasses.astuple(err),
    }


def _failed_outcome(child: Mapping[str, Any], exc: BaseException, code: int) -> dict[str, Any]:
    return {
        "index": child["index"],
        "run_id": child["run_id"],
        "point": child["point"],
        "status": "killed" if code == EXIT_INTERRUPTED else "failed",
        "exit_code": code,
        "error": (type(exc).__name__, str(exc), None),
    }


def _local_child(task: dict[str, Any]) -> dict[str, Any]:
    """Run one child in a worker process, attached to its queued run."""
    global _busy
    from mlnb.jobs.runner import run_notebook

    child = task["child"]
    _busy = True
    # a forkserver worker was forked with the environment and folder of the sweep's first
    # call: take this call's (a notebook may have changed os.environ in between)
    os.environ.clear()
    os.environ.update(task["environ"])
    os.chdir(task["workdir"])
    try:
        result = run_notebook(
            task["notebook"],
            parameters={**task["fixed"], **child["point"]},
            run_id=child["run_id"],
            store=task["store"],
            kernel=task["kernel"],
            cwd=task["cwd"],
            cell_timeout=task["cell_timeout"],
            start_timeout=task["start_timeout"],
            start_retries=START_RETRIES,
            progress_bar=False,
            allow_unknown_params=task["allow_unknown"],
        )
        return _outcome(child, result)
    except MlnbError as exc:
        with contextlib.suppress(Exception), Store(task["store"]) as st:
            st.set_status(child["run_id"], "failed", only_from=("queued", "running"))
            error = JobError(type(exc).__name__, str(exc), None).to_tags()
            st.set_tags(child["run_id"], error, check_state=False)
        return _failed_outcome(child, exc, EXIT_FAILED)
    except KeyboardInterrupt as exc:
        return _failed_outcome(child, exc, EXIT_INTERRUPTED)
    finally:
        _busy = False


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Worker processes started meanwhile do not import the caller's ``__main__``.

    Under ``forkserver`` and ``spawn`` multiprocessing runs the main script again in each
    new process (as ``__mp_main__``, so that functions defined there can be unpickled): a
    script calling :func:`sweep` without an ``if __name__ == "__main__":`` guard then ran
    its sweep again in every worker. Our workers run only this module's functions on plain
    data and need nothing from ``__main__``, so while they start the main module shows
    neither a file nor a module spec, which is what multiprocessing reads to decide what
    to re-import (as in an interactive session, where there is none). Other threads see the
    main module without ``__file__`` for those few milliseconds.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _worker_context() -> Any:
    """Workers are forked from a clean server process that imported papermill once
    ("forkserver": no threads or open store inherited, no import per worker), else spawned
    (where there is no fork)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mlnb.jobs.sweeps", "papermill", "nbclient", "jupyter_client"])
    return ctx


def run_local(
    st: Store,
    plan: Plan,
    children: list[dict[str, Any]],
    workers: int,
    fail_fast: bool,
    progress: Progress,
) -> list[dict[str, Any]]:
    import concurrent.futures as cf

    pid_dir = tempfile.mkdtemp(prefix="mlnb-sweep-")
    ctx = _worker_context()
    pool = cf.ProcessPoolExecutor(
        min(workers, len(children)), mp_context=ctx, initializer=_worker_init,
        initargs=(pid_dir,),
    )  # fmt: skip
    base = {
        "notebook": str(plan.nb_path), "fixed": plan.fixed, "store": str(st.root.absolute()),
        "environ": dict(os.environ), "workdir": os.getcwd(),
        "kernel": plan.kernel, "cwd": plan.cwd, "cell_timeout": plan.cell_timeout,
        "start_timeout": plan.start_timeout, "allow_unknown": plan.allow_unknown,
    }  # fmt: skip
    with _main_module_hidden():  # the workers start on the first submits
        futures = {pool.submit(_local_child, {**base, "child": c}): c for c in children}
    outcomes: dict[int, dict[str, Any]] = {}
    stopped = False
    try:
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                child = futures[fut]
                try:
                    outcome = fut.result()
                except BaseException as exc:  # a worker died (killed, out of memory)
                    outcome = _failed_outcome(child, exc, EXIT_FAILED)
                outcomes[child["index"]] = outcome
                if fail_fast and outcome["status"] != "finished" and not stopped:
                    stopped = True
                    _stop_workers(pool, futures, pid_dir)
                    pending = set()
            progress.update()
    except KeyboardInterrupt:
        with no_interrupts():
            _stop_workers(pool, futures, pid_dir)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for pid_file in Path(pid_dir).iterdir():
            pid_file.unlink()
        os.rmdir(pid_dir)
    for fut, child in futures.items():  # stopped by fail_fast: what the workers said, if any
        if child["index"] not in outcomes:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                outcomes[child["index"]] = fut.result()
            else:
                stop = KeyboardInterrupt("stopped by fail_fast")
                outcomes[child["index"]] = _failed_outcome(child, stop, EXIT_INTERRUPTED)
    return [outcomes[c["index"]] for c in children]


def _stop_workers(pool: Any, futures: Mapping[Any, Any], pid_dir: str) -> None:
    """Cancel the children not started and stop the running ones: SIGTERM to each worker
    (which marks its run killed and stops its kernel), SIGKILL to any still there after
    ``STOP_GRACE_S``."""
    for fut in futures:
        fut.cancel()
    pids = [int(p.name) for p in Path(pid_dir).iterdir() if p.name.isdigit()]
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    closer.join(STOP_GRACE_S)
    if closer.is_alive():
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        closer.join(5)


# -- the Dask executor ----------------------------------------------------------------------


def connect_dask(scheduler: str | None) -> Any:
    """A Dask client on ``scheduler``, or a clear error (before any run exists)."""
    if not scheduler:
        raise InvalidInputError(
            "executor 'dask' needs the scheduler's address (--scheduler tcp://HOST:8786)"
        )
    try:
        from distributed import Client
    except ImportError:
        raise InvalidInputError(
            "the dask executor needs dask and distributed: pip install 'mlnb[dask]'"
        ) from None
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise InvalidInputError(
            f"cannot reach the Dask scheduler at {scheduler} within {DASK_CONNECT_TIMEOUT} "
            f"({type(exc).__name__}: {exc}); is it running, and is the address right?"
        ) from None


def _dask_child(task: dict[str, Any]) -> dict[str, Any]:
    """On a Dask worker: say the child started (the sweep marks it ``running``), check its
    kernel here, run it into a temporary store (the user's store may not be reachable from
    here) and return the finished run as a bundle (mlnb.store.transfer). A cancelled task
    (Ctrl-C, ``fail_fast``, a second lost worker) has its kernel killed by a watcher."""
    from distributed import get_worker

    from mlnb.jobs.runner import run_notebook
    from mlnb.store.hashing import hash_file
    from mlnb.store.transfer import export_run

    child = task["child"]
    worker = get_worker()
    where = f"Dask worker {worker.address} (host {socket.gethostname()}, pid {os.getpid()})"
    worker.log_event(task["topic"], {"run_id": child["run_id"], "worker": where})
    done = threading.Event()
    watcher = threading.Thread(
        target=_stop_when_cancelled, args=(worker, worker.get_current_task(), child, done),
        daemon=True,
    )  # fmt: skip
    watcher.start()
    try:
        with tempfile.TemporaryDirectory(prefix="mlnb-dask-") as tmp:
            nb_path = Path(task["notebook"])
            if not (nb_path.is_file() and hash_file(nb_path) == task["notebook_hash"]):
                nb_path = Path(tmp, "notebook", nb_path.name)  # not here (or another version)
                nb_path.parent.mkdir()
                nb_path.write_bytes(task["notebook_bytes"])
            cwd = task["cwd"] if task["cwd"] and Path(task["cwd"]).is_dir() else None
            try:
                _check_kernel_here(task["kernel"] or _kernel_of(nb_path), where)
            except MlnbError as exc:
                return {"outcome": _failed_outcome(child, exc, EXIT_FAILED), "bundle": None}
            with Store(Path(tmp, "store")) as st:
                try:
                    result = run_notebook(
                        nb_path,
                        parameters={**task["fixed"], **child["point"]},
                        run_id=child["run_id"],
                        name=child["name"],
                        experiment=task["experiment"],
                        tags=child["tags"],
                        store=st,
                        kernel=task["kernel"],
                        cwd=cwd,
                        cell_timeout=task["cell_timeout"],
                        start_timeout=task["start_timeout"],
                        start_retries=START_RETRIES,
                        progress_bar=False,
                        allow_unknown_params=task["allow_unknown"],
                    )
                except MlnbError as exc:
                    return {"outcome": _failed_outcome(child, exc, EXIT_FAILED), "bundle": None}
                # the notebook the user gave, not the copy this worker may have run
                st.set_source(child["run_id"], task["notebook"], notebook=task["notebook"])
                bundle = export_run(st, child["run_id"])
    finally:
        done.set()
    bundle["run"]["parent_run_id"] = task["parent_run_id"]
    return {"outcome": _outcome(child, result), "bundle": bundle}


def _kernel_of(nb_path: Path) -> str | None:
    from mlnb.jobs.params import read_notebook

    name = read_notebook(nb_path).metadata.get("kernelspec", {}).get("name")
    return None if name is None else str(name)


def _check_kernel_here(kernel: str | None, where: str) -> None:
    """The kernel is looked up where the notebook runs: a worker that lacks it fails the
    child naming the worker."""
    from mlnb.jobs.runner import check_kernel

    try:
        check_kernel(kernel)
    except InvalidInputError as exc:
        raise InvalidInputError(f"on {where}: {exc}") from None


def _stop_when_cancelled(worker: Any, key: Any, child: Mapping[str, Any], done: Any) -> None:
    """In a thread beside a Dask task: once the scheduler has cancelled the task (Dask
    cannot stop a running task's thread), kill the child's kernel, which ends the task.
    The kernel is the worker's child process that carries the child's run id."""
    import psutil

    from mlnb.conventions import ENV_RUN_ID

    while not done.wait(DASK_WATCH_S):
        state = worker.state.tasks.get(key)
        if state is not None and state.state not in ("cancelled", "released", "forgotten"):
            continue
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(ENV_RUN_ID) == child["run_id"]:
                    proc.kill()
        return


def run_dask(
    st: Store,
    plan: Plan,
    children: list[dict[str, Any]],
    client: Any,
    fail_fast: bool,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Run the children as Dask tasks. Each task says when it starts on a worker (an event
    on the topic ``mlnb-sweep-<parent>``): the child becomes ``running`` here, held by this
    process (its liveness lock) until its bundle arrives. A second start of one child means
    the worker running it was lost and Dask ran it again: recorded (``mlnb.retries``); a
    third fails the child (its task cancelled). Ctrl-C and ``fail_fast`` cancel the tasks,
    and each running task's watcher then kills its kernel on the worker."""
    parent = st.get_run(children[0]["run_id"]).parent_run_id if children else None
    topic = f"mlnb-sweep-{parent}"
    base = {
        "notebook": str(plan.nb_path), "notebook_hash": plan.notebook_hash,
        "notebook_bytes": plan.nb_path.read_bytes(), "fixed": plan.fixed,
        "experiment": st.get_run(parent).experiment if parent else plan.experiment,
        "kernel": plan.kernel, "cwd": plan.cwd, "cell_timeout": plan.cell_timeout,
        "start_timeout": plan.start_timeout, "parent_run_id": parent,
        "allow_unknown": plan.allow_unknown, "topic": topic,
    }  # fmt: skip
    starts: collections.deque[dict[str, Any]] = collections.deque()
    client.subscribe_topic(topic, lambda event: starts.append(event[1]))
    futures = {
        client.submit(_dask_child, {**base, "child": c}, key=f"mlnb-{c['run_id']}", pure=False): c
        for c in children
    }
    sweep = _DaskSweep(st, plan, futures)
    try:
        pending = set(futures)
        while pending:
            while starts:
                sweep.started(starts.popleft())
            done = [f for f in pending if f.done()]
            for fut in done:
                pending.discard(fut)
                sweep.ended(futures[fut], fut)
            pending = {f for f in pending if futures[f]["index"] not in sweep.outcomes}
            progress.update()
            if fail_fast and any(o["status"] != "finished" for o in sweep.outcomes.values()):
                client.cancel(list(pending))
                break
            if not done:
                time.sleep(0.1)
    except KeyboardInterrupt:
        with no_interrupts(), contextlib.suppress(Exception):
            client.cancel(list(futures))
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
        sweep.release_all()
    for child in children:
        if child["index"] not in sweep.outcomes:
            sweep.outcomes[child["index"]] = _failed_outcome(
                child, KeyboardInterrupt("stopped by fail_fast"), EXIT_INTERRUPTED
            )
    return [sweep.outcomes[c["index"]] for c in children]


class _DaskSweep:
    """What the client knows of a Dask sweep's children: where each started, the liveness
    locks it holds for the running ones, and the outcomes so far."""

    def __init__(self, st: Store, plan: Plan, futures: Mapping[Any, dict[str, Any]]) -> None:
        self.st, self.plan = st, plan
        self.by_run = {c["run_id"]: c for c in futures.values()}
        self.future_of = {c["run_id"]: f for f, c in futures.items()}
        self.workers: dict[str, list[str]] = {}  # run id -> where each attempt started
        self.locks: dict[str, Any] = {}  # run id -> the liveness lock this process holds
        self.outcomes: dict[int, dict[str, Any]] = {}  # by the child's index

    def started(self, event: Mapping[str, Any]) -> None:
        run_id, where = event["run_id"], event["worker"]
        child = self.by_run.get(run_id)
        if child is None or child["index"] in self.outcomes:
            return
        attempts = self.workers.setdefault(run_id, [])
        attempts.append(where)
        if len(attempts) == 1:
            with contextlib.suppress(OSError):
                self.locks[run_id] = acquire_run_lock(self.st.locks_dir, run_id)
            self.st.claim_queued_run(run_id, source=str(self.plan.nb_path))
        elif len(attempts) == 2:
            reason = f"{attempts[0]} was lost while running it; run again on {attempts[1]}"
            self.st.set_tags(run_id, {RETRIES_TAG: 1, RETRY_REASON_TAG: reason}, check_state=False)
        else:
            self.future_of[run_id].cancel()
            message = (
                f"the Dask worker running it was lost twice ({attempts[0]}, then "
                f"{attempts[1]}); not run a third time. Check the workers' memory and logs"
            )
            self.failed(child, ("WorkerLost", message, None), EXIT_FAILED)

    def ended(self, child: dict[str, Any], fut: Any) -> None:
        """A task is over: import its bundle, or record why the child failed."""
        from mlnb.store.transfer import import_run

        if child["index"] in self.outcomes:
            return
        try:
            payload = fut.result()
        except Exception as exc:  # the task itself failed on the worker (or KilledWorker)
            self.failed(child, (type(exc).__name__, str(exc), None), EXIT_FAILED)
            return
        if payload["bundle"] is None:
            outcome = payload["outcome"]
            self.failed(child, tuple(outcome["error"]), outcome["exit_code"])
            return
        run_id = child["run_id"]
        # a running child is the sweep's placeholder, as a queued one is: the bundle
        # completes it (import_run takes a run's attributes only from a queued one)
        self.st.set_status(run_id, "queued", only_from=("running",))
        try:
            import_run(self.st, payload["bundle"])
        except MlnbError as exc:
            self.failed(child, (type(exc).__name__, str(exc), None), EXIT_FAILED)
            return
        self.release(run_id)
        self.outcomes[child["index"]] = payload["outcome"]

    def failed(self, child: dict[str, Any], error: tuple[Any, ...], code: int) -> None:
        run_id = child["run_id"]
        self.st.set_status(run_id, "failed", only_from=("queued", "running"))
        self.st.set_tags(run_id, JobError(*error).to_tags(), check_state=False)
        self.release(run_id)
        self.outcomes[child["index"]] = {
            "index": child["index"], "run_id": run_id, "point": child["point"],
            "status": "failed", "exit_code": code, "error": error,
        }  # fmt: skip

    def release(self, run_id: str) -> None:
        lock = self.locks.pop(run_id, None)
        if lock is not None:
            release_run_lock(self.st.locks_dir, run_id, lock)

    def release_all(self) -> None:
        for run_id in list(self.locks):
            self.release(run_id)
