"""Sweeps: one notebook run over a grid of parameters, as a parent run and one child run
per point (``mlnb sweep`` / :func:`sweep`).

Everything is checked before any run exists: the grid (an empty grid, lists of unequal
length under ``mode="zip"``, a malformed YAML file), every point's parameters against the
notebook (names its ``parameters`` cell lacks are refused unless ``allow_unknown_params``;
``strict_params`` checks types too), the kernel (for Dask on each worker, where the notebook
runs, not here), ``cwd``, the checks, the sort expression and,
for Dask, that the scheduler answers. Then the parent run is created (tag
``mlnb.sweep=1``, params = the grid spec) and every child up front as ``queued`` with
``parent_run_id`` = the parent, so the store shows the whole sweep at once. Each child is
executed by :func:`mlnb.jobs.runner.run_notebook` attached to its queued run, either in local
worker processes (one kernel each) or on a Dask cluster, where a worker runs the notebook
into a temporary store and ships the finished run back (:mod:`mlnb.store.transfer`): the
executors of :mod:`mlnb.jobs.executors`.

The parent ends ``finished`` if every child finished, else ``failed``; ``killed`` when the
sweep is interrupted (Ctrl-C), which also cancels the children not started, stops the
running kernels and marks those children ``killed``: none stays ``queued`` or ``running``.
A sweep none of whose children finished raises :class:`~mlnb.errors.SweepFailedError`
(carrying the result) rather than returning, so a script cannot carry on as if it had run.

The grid itself is parsed and expanded by :mod:`mlnb.jobs.grid`. See docs/jobs.md.
"""

from __future__ import annotations

import contextlib
import os
import random as random_module
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.checks.gates import record_checks
from mlnb.conventions import (
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_OK,
    SWEEP_CANCELLED_TAG,
    SWEEP_INDEX_TAG,
    SWEEP_TAG,
)
from mlnb.errors import InvalidInputError, MlnbError, SweepFailedError
from mlnb.jobs.executors import Plan, Progress, connect_dask, no_interrupts, run_dask, run_local
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
    executor: str = "local",
) -> Plan:
    from mlnb.jobs import runner
    from mlnb.store.hashing import hash_file

    nb_path = Path(notebook).expanduser().absolute()
    nb = read_notebook(nb_path)
    wanted = kernel or nb.metadata.get("kernelspec", {}).get("name")
    # for Dask the kernel is looked up where the notebook runs: on each worker
    dask = executor == "dask" and wanted
    kernel_name = str(wanted) if dask else runner.check_kernel(wanted)
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
    return Plan(
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
    from mlnb.jobs.engine import wants_progress_bar
    from mlnb.jobs.runner import _open_store
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
        executor=executor,
    )  # fmt: skip
    st = _open_store(store)
    client = None
    try:
        client = connect_dask(scheduler) if executor == "dask" else None
        show = wants_progress_bar() if progress is None else progress
        return _execute(st, plan, workers, fail_fast, sort, checks, client, show, started)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _execute(
    st: Store,
    plan: Plan,
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
    progress: Progress | None = None
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
        progress = Progress(st, parent, len(children), show)
        if client is None:
            outcomes = run_local(st, plan, children, workers, fail_fast, progress)
        else:
            outcomes = run_dask(st, plan, children, client, fail_fast, progress)
        progress.close()
        failed_checks = _apply_checks(st, outcomes, checks)
        status = "finished" if all(o["status"] == "finished" for o in outcomes) else "failed"
    except KeyboardInterrupt:
        status = "killed"
        raise
    finally:
        with no_interrupts():
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


def _create_children(st: Store, plan: Plan, parent: str) -> list[dict[str, Any]]:
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
