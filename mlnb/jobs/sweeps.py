"""Sweeps: one notebook run over a grid of parameters, as a parent run and one child run
per point (``mlnb sweep`` / :func:`sweep`).

Everything is checked before any run exists: the grid (an empty grid, lists of unequal
length under ``mode="zip"``, a malformed YAML file), every point's parameters against the
notebook (names its ``parameters`` cell lacks are refused unless ``allow_unknown_params``;
``strict_params`` checks types too), the kernel, ``cwd``, the checks, the sort expression and,
for Dask, that the scheduler answers. Then the parent run is created (tag
``mlnb.sweep=1``, params = the grid spec) and every child up front as ``queued`` with
``parent_run_id`` = the parent, so the store shows the whole sweep at once. Each child is
executed by :func:`mlnb.jobs.runner.run_notebook` attached to its queued run, either in local
worker processes (one kernel each) or on a Dask cluster, where a worker runs the notebook
into a temporary store and ships the finished run back (:mod:`mlnb.store.transfer`).

The parent ends ``finished`` if every child finished, else ``failed``; ``killed`` when the
sweep is interrupted (Ctrl-C), which also cancels the children not started, stops the
running kernels and marks those children ``killed``: none stays ``queued`` or ``running``.
A sweep none of whose children finished raises :class:`~mlnb.errors.SweepFailedError`
(carrying the result) rather than returning, so a script cannot carry on as if it had run.

The grid itself is parsed and expanded by :mod:`mlnb.jobs.grid`. See docs/jobs.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random as random_module
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.checks.gates import record_checks
from mlnb.conventions import (
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SWEEP_CANCELLED_TAG,
    SWEEP_INDEX_TAG,
    SWEEP_TAG,
)
from mlnb.errors import InvalidInputError, MlnbError, SweepFailedError
from mlnb.jobs.grid import Distribution, expand_grid
from mlnb.jobs.params import (
    check_parameters,
    has_parameters_cell,
    read_notebook,
    readable_parameters,
    unknown_param_tags,
)
from mlnb.records import JobError
from mlnb.store import Store
from mlnb.store.liveness import acquire_run_lock, release_run_lock
from mlnb.store.query import RunScope, quote_string
from mlnb.tracking.fluent import StoreLike

__all__ = ["ChildResult", "SweepResult", "sweep"]

START_RETRIES = 2  # kernel starts retried per child (the port race of parallel kernels)
STOP_GRACE_S = 20.0  # how long stopped workers get to mark their runs before SIGKILL
DASK_CONNECT_TIMEOUT = "5s"


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildResult:
    """One point of a sweep: its run, the swept values, and how it ended. ``exit_code`` is
    :func:`~mlnb.jobs.runner.run_notebook`'s (0, 1, 124, 138), 130 for a child stopped by an
    interrupt or ``fail_fast``; ``failed_checks`` lists the checks it did not pass."""

    index: int
    run_id: str
    params: dict[str, Any]
    status: str
    exit_code: int
    error: JobError | None = None
    duration: float | None = None
    failed_checks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the child finished and passed its checks."""
        return self.status == "finished" and self.exit_code == 0 and not self.failed_checks


@dataclass(frozen=True)
class SweepResult:
    """The outcome of :func:`sweep`: the parent run's id and status, the children (in the
    ``sort`` order asked for, else in grid order) and the exit code: 0 every child finished
    (and passed the checks), 1 some child did not finish, 3 some child failed a check."""

    run_id: str
    status: str
    children: list[ChildResult]
    exit_code: int
    duration: float
    swept: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Whether ``exit_code`` is 0."""
        return self.exit_code == EXIT_OK


# -- planning -------------------------------------------------------------------------------


@dataclass
class _Plan:
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


def _plan(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    mode: str,
    random: int | None,
    seed: int | None,
    parameters: Mapping[str, Any] | None,
    strict_params: bool,
    allow_unknown_params: bool,
    kernel: str | None,
    cwd: str | os.PathLike[str] | None,
    cell_timeout: float | None,
    start_timeout: float,
    name: str | None,
    experiment: str | None,
    tags: Mapping[str, Any] | None,
) -> _Plan:
    from mlnb.jobs import runner
    from mlnb.store.hashing import hash_file

    nb_path = Path(notebook).expanduser().absolute()
    nb = read_notebook(nb_path)
    kernel_name = runner.check_kernel(kernel or nb.metadata.get("kernelspec", {}).get("name"))
    known = readable_parameters(nb, kernel_name)
    has_cell = has_parameters_cell(nb)
    if random is not None and seed is None:
        seed = random_module.SystemRandom().randrange(2**31)  # recorded, so it can be rerun
    points = expand_grid(grid, mode=mode, random=random, seed=seed)
    fixed = dict(parameters or {})
    swept = sorted({k for p in points for k in p})
    both = sorted(set(swept) & set(fixed))
    if both:
        raise InvalidInputError(f"{', '.join(both)}: both swept and fixed; give each once")
    for point in points:
        check_parameters({**fixed, **point}, known, where=nb_path, has_cell=has_cell,
                         strict=strict_params, allow_unknown=allow_unknown_params)  # fmt: skip
    if cwd is not None and not Path(cwd).expanduser().is_dir():
        raise InvalidInputError(f"working directory {cwd} does not exist")
    if cell_timeout is not None and not cell_timeout > 0:
        raise InvalidInputError(f"cell_timeout must be a positive number, got {cell_timeout!r}")
    spec: dict[str, Any] = {"sweep.notebook": str(nb_path), "sweep.points": len(points)}
    if isinstance(grid, Mapping):
        spec["sweep.mode"] = mode
        for key, values in grid.items():
            spec[f"grid.{key}"] = str(values) if isinstance(values, Distribution) else values
    else:
        spec["sweep.mode"] = "points"
    if random is not None:
        spec["sweep.random"], spec["sweep.seed"] = random, seed
    spec.update({f"fixed.{k}": v for k, v in fixed.items()})
    return _Plan(
        nb_path=nb_path,
        notebook_hash=hash_file(nb_path),
        points=points,
        fixed=fixed,
        spec=spec,
        kernel=kernel,
        cwd=None if cwd is None else str(Path(cwd).expanduser().absolute()),
        name=name or nb_path.stem,
        experiment=experiment,
        tags={**(tags or {})},
        cell_timeout=cell_timeout,
        start_timeout=start_timeout,
        declared=None if known is None else frozenset(p.name for p in known),
        allow_unknown=allow_unknown_params,
    )


# -- the sweep ------------------------------------------------------------------------------


def sweep(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    mode: str = "product",
    random: int | None = None,
    seed: int | None = None,
    workers: int = 1,
    fail_fast: bool = False,
    sort: str | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    name: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    cell_timeout: float | None = None,
    start_timeout: float = 60,
    strict_params: bool = False,
    allow_unknown_params: bool = False,
    checks: Sequence[str] = (),
    store: StoreLike | None = None,
    progress: bool | None = None,
) -> SweepResult:
    """Run ``notebook`` once per point of ``grid`` as children of one parent run.

    ``grid`` maps parameter names to lists of values (or, with ``random=N``, to
    :class:`Distribution` ranges), or is a list of points; ``mode`` is ``"product"`` (every
    combination) or ``"zip"``; ``random=N`` samples N points reproducibly with ``seed``
    (recorded on the parent; drawn when not given). ``parameters`` are fixed for every
    child. Names the notebook's ``parameters`` cell does not assign are refused unless
    ``allow_unknown_params`` (then injected, and recorded as the tags
    ``mlnb.unknown_param.<name>``, not as params); ``strict_params`` also refuses values of
    the wrong type, as :func:`~mlnb.jobs.runner.run_notebook` does. ``workers`` children run at
    once, each in its own process and kernel (``executor="local"``), or on the Dask cluster
    at ``scheduler`` (``executor="dask"``). ``fail_fast`` stops the sweep at the first child
    that does not finish. ``checks`` are filters each finished child must pass (e.g.
    ``"metrics.acc > 0.9"``; results in the tags ``mlnb.check.<i>``). ``sort`` orders the
    returned children (an order_by expression such as ``"metrics.acc desc"``). ``progress``
    shows a progress line on stderr (default: when it is a terminal and ``$CI`` is unset).

    Bad input raises :class:`~mlnb.errors.InvalidInputError` before any run exists. Ctrl-C
    marks the unfinished children and the parent ``killed`` and re-raises
    ``KeyboardInterrupt``. Returns a :class:`SweepResult` (``status`` ``"failed"`` and
    ``exit_code`` 1 when some child did not finish); when no child finished there is nothing
    to use, and :class:`~mlnb.errors.SweepFailedError` is raised instead, its ``result``
    holding the same :class:`SweepResult`. It works from a script without an ``if
    __name__ == "__main__":`` guard: the workers never import ``__main__``.
    """
    from mlnb.jobs.runner import _open_store, _progress_bar
    from mlnb.store.query import compile_filter, compile_order_by

    started = time.monotonic()
    if executor not in ("local", "dask"):
        raise InvalidInputError(f"executor must be 'local' or 'dask', got {executor!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers must be an int >= 1, got {workers!r}")
    for expr in checks:
        compile_filter(expr)
    if sort:
        compile_order_by(sort)
    plan = _plan(
        notebook, grid, mode=mode, random=random, seed=seed, parameters=parameters,
        strict_params=strict_params, allow_unknown_params=allow_unknown_params,
        kernel=kernel, cwd=cwd, cell_timeout=cell_timeout,
        start_timeout=start_timeout, name=name, experiment=experiment, tags=tags,
    )  # fmt: skip
    st = _open_store(store)
    client = None
    try:
        client = _connect_dask(scheduler) if executor == "dask" else None
        show = _progress_bar() if progress is None else progress
        return _execute(st, plan, workers, fail_fast, sort, checks, client, show, started)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _execute(
    st: Store,
    plan: _Plan,
    workers: int,
    fail_fast: bool,
    sort: str | None,
    checks: Sequence[str],
    client: Any,
    show: bool,
    started: float,
) -> SweepResult:
    import uuid

    parent = uuid.uuid4().hex
    lock = acquire_run_lock(st.locks_dir, parent)
    status = "failed"
    progress: _Progress | None = None
    try:
        st.create_run(
            run_id=parent,
            name=f"{plan.name} sweep",
            experiment=plan.experiment,
            tags={**plan.tags, SWEEP_TAG: "1"},
            source=str(plan.nb_path),
        )
        st.log_params(parent, plan.spec)
        children = _create_children(st, plan, parent)
        progress = _Progress(st, parent, len(children), show)
        if client is None:
            outcomes = _run_local(st, plan, children, workers, fail_fast, progress)
        else:
            outcomes = _run_dask(st, plan, children, client, fail_fast, progress)
        progress.close()
        failed_checks = _apply_checks(st, outcomes, checks)
        status = "finished" if all(o["status"] == "finished" for o in outcomes) else "failed"
    except KeyboardInterrupt:
        status = "killed"
        raise
    finally:
        with _no_interrupts():
            if progress is not None and status != "finished":
                progress.close()
            st.set_status(parent, status, only_from=("running",))
            with contextlib.suppress(Exception):
                if status == "killed":
                    _mark_left_over(st, parent, "killed", "interrupted")
                elif fail_fast:
                    _mark_left_over(st, parent, "killed", "fail_fast")
                else:
                    _mark_left_over(st, parent, "failed", "the sweep stopped")
            release_run_lock(st.locks_dir, parent, lock)
    results = _results(st, parent, outcomes, failed_checks, sort)
    if status != "finished":
        code = EXIT_FAILED
    elif any(r.failed_checks for r in results):
        code = EXIT_CHECK_FAILED
    else:
        code = EXIT_OK
    swept = tuple(sorted({k for p in plan.points for k in p}))
    result = SweepResult(parent, st.get_run(parent).status, results, code,
                         time.monotonic() - started, swept)  # fmt: skip
    if results and not any(r.status == "finished" for r in results):
        raise SweepFailedError(_nothing_finished(plan.name, result), result)
    return result


def _nothing_finished(name: str, result: SweepResult) -> str:
    """Why a sweep has no result: how its children ended, the first errors, and where
    to look."""
    counts: dict[str, int] = {}
    for child in result.children:
        counts[child.status] = counts.get(child.status, 0) + 1
    how = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [f"no child of sweep {name!r} ({result.run_id[:8]}) finished ({how})"]
    for child in [c for c in result.children if c.error is not None][:3]:
        err = child.error
        assert err is not None
        where = f"cell {err.cell}: " if err.cell is not None else ""
        lines.append(f"  {child.run_id[:8]} {child.status}: {where}{err.name}: {err.message}")
    lines.append(f"  every child: mlnb runs -f \"parent_run_id = '{result.run_id}'\"")
    return "\n".join(lines)


def _create_children(st: Store, plan: _Plan, parent: str) -> list[dict[str, Any]]:
    import uuid

    width = len(str(len(plan.points)))
    children = []
    for i, point in enumerate(plan.points):
        run_id = uuid.uuid4().hex
        params, unknown = plan.split({**plan.fixed, **point})
        child: dict[str, Any] = {
            "index": i,
            "run_id": run_id,
            "name": f"{plan.name}-{i + 1:0{width}d}",
            "point": point,
            "tags": {**plan.tags, SWEEP_INDEX_TAG: i},
        }
        st.create_run(
            run_id=run_id,
            name=child["name"],
            experiment=plan.experiment,
            tags={**child["tags"], **unknown_param_tags(unknown)},
            parent_run_id=parent,
            source=str(plan.nb_path),
            status="queued",
        )
        st.log_params(run_id, params)
        children.append(child)
    return children


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not cut the clean-up short (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _mark_left_over(st: Store, parent: str, status: str, reason: str) -> None:
    """No child of the sweep stays queued or running once the sweep is over."""
    left = st.run_ids(
        f"parent_run_id = {quote_string(parent)} and status in ('queued', 'running')",
        scope=RunScope(include_deleted=True),
    )
    for run_id in left:
        if st.set_status(run_id, status, only_from=("queued", "running")):
            with contextlib.suppress(MlnbError):
                st.set_tags(run_id, {SWEEP_CANCELLED_TAG: reason}, check_state=False)


def _apply_checks(
    st: Store, outcomes: list[dict[str, Any]], checks: Sequence[str]
) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome["status"] != "finished" or not checks:
            continue
        run_id = outcome["run_id"]
        for rec in record_checks(st, run_id, checks):
            if not rec.passed:
                failed.setdefault(run_id, []).append(rec.name)
    return failed


def _results(
    st: Store,
    parent: str,
    outcomes: list[dict[str, Any]],
    failed_checks: dict[str, list[str]],
    sort: str | None,
) -> list[ChildResult]:
    by_id = {o["run_id"]: o for o in outcomes}
    order = st.run_ids(
        f"parent_run_id = {quote_string(parent)}",
        order_by=sort,
        scope=RunScope(include_deleted=True),
    )
    if not sort:
        order.sort(key=lambda r: by_id[r]["index"] if r in by_id else 0)
    results = []
    for run_id in order:
        o = by_id.get(run_id)
        if o is None:
            continue
        rec = st.get_run(run_id)
        err = o.get("error")
        results.append(
            ChildResult(
                index=o["index"],
                run_id=run_id,
                params=dict(o["point"]),
                status=rec.status,
                exit_code=o["exit_code"],
                error=JobError(*err) if err else None,
                duration=rec.duration,
                failed_checks=tuple(failed_checks.get(run_id, ())),
            )
        )
    return results


# -- progress ------------------------------------------------------------------------------


class _Progress:
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


def _run_local(
    st: Store,
    plan: _Plan,
    children: list[dict[str, Any]],
    workers: int,
    fail_fast: bool,
    progress: _Progress,
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
        with _no_interrupts():
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


def _connect_dask(scheduler: str | None) -> Any:
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
    """On a Dask worker: run one child into a temporary store (the user's store may not
    be reachable from here) and return the finished run as a bundle (mlnb.store.transfer)."""
    from mlnb.jobs.runner import run_notebook
    from mlnb.store.hashing import hash_file
    from mlnb.store.transfer import export_run

    child = task["child"]
    with tempfile.TemporaryDirectory(prefix="mlnb-dask-") as tmp:
        nb_path = Path(task["notebook"])
        if not (nb_path.is_file() and hash_file(nb_path) == task["notebook_hash"]):
            nb_path = Path(tmp, "notebook", nb_path.name)  # not here (or another version)
            nb_path.parent.mkdir()
            nb_path.write_bytes(task["notebook_bytes"])
        cwd = task["cwd"] if task["cwd"] and Path(task["cwd"]).is_dir() else None
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
    bundle["run"]["parent_run_id"] = task["parent_run_id"]
    return {"outcome": _outcome(child, result), "bundle": bundle}


def _run_dask(
    st: Store,
    plan: _Plan,
    children: list[dict[str, Any]],
    client: Any,
    fail_fast: bool,
    progress: _Progress,
) -> list[dict[str, Any]]:
    from distributed import as_completed

    from mlnb.store.transfer import import_run

    parent = st.get_run(children[0]["run_id"]).parent_run_id if children else None
    base = {
        "notebook": str(plan.nb_path), "notebook_hash": plan.notebook_hash,
        "notebook_bytes": plan.nb_path.read_bytes(), "fixed": plan.fixed,
        "experiment": st.get_run(parent).experiment if parent else plan.experiment,
        "kernel": plan.kernel, "cwd": plan.cwd, "cell_timeout": plan.cell_timeout,
        "start_timeout": plan.start_timeout, "parent_run_id": parent,
        "allow_unknown": plan.allow_unknown,
    }  # fmt: skip
    futures = {
        client.submit(_dask_child, {**base, "child": c}, key=f"mlnb-{c['run_id']}", pure=False): c
        for c in children
    }
    outcomes: dict[int, dict[str, Any]] = {}
    try:
        for fut in as_completed(list(futures), loop=client.loop):  # type: ignore[no-untyped-call]
            child = futures[fut]
            try:
                payload = fut.result()
            except Exception as exc:  # the task itself failed on the worker
                payload = {"outcome": _failed_outcome(child, exc, EXIT_FAILED), "bundle": None}
            outcome = payload["outcome"]
            if payload["bundle"] is not None:
                import_run(st, payload["bundle"])
            else:
                st.set_status(child["run_id"], "failed", only_from=("queued", "running"))
                error = JobError(*outcome["error"]).to_tags()
                st.set_tags(child["run_id"], error, check_state=False)
            outcomes[child["index"]] = outcome
            progress.update()
            if fail_fast and outcome["status"] != "finished":
                client.cancel([f for f in futures if not f.done()])
                break
    except KeyboardInterrupt:
        with _no_interrupts(), contextlib.suppress(Exception):
            client.cancel(list(futures))
        raise
    for child in children:
        if child["index"] not in outcomes:
            outcomes[child["index"]] = _failed_outcome(
                child, KeyboardInterrupt("stopped by fail_fast"), EXIT_INTERRUPTED
            )
    return [outcomes[c["index"]] for c in children]
