"""Headless jobs: run a notebook with papermill as one tracked run.

:func:`run_notebook` checks its inputs, creates the run row, then executes the notebook in
a fresh kernel that knows the run's id (``$MLNB_RUN_ID`` and the injected papermill
parameter ``mlnb_run_id``), so ``%track start`` / ``mlnb.start_run()`` inside the notebook
attach to that run instead of starting another. The run's final status comes from what
papermill raised, never from the output notebook's metadata (which says ``exception:
null`` after a dead kernel or a timeout); what stopped it is a :class:`JobError` (cell,
first line, exception, last frames). The notebook's parameters are read and checked by
:mod:`mlnb.jobs.params`; the kernel is driven by the papermill engine of
:mod:`mlnb.jobs.engine`, which also reads the output notebook. See docs/jobs.md.

papermill, nbformat and nbclient are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlnb.conventions import (
    ENV_JOB_EXPERIMENT,
    ENV_NOTEBOOK,
    ENV_RUN_ID,
    ENV_STORE,
    ENV_TEST,
    EXIT_DEAD_KERNEL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    JOB_TAG,
    KERNEL_START_ERROR_TAG,
    KERNEL_START_RETRIES_TAG,
    NOTEBOOK_HASH_TAG,
    WARNING_TAG,
)
from mlnb.errors import InvalidInputError, MlnbError
from mlnb.jobs.engine import (
    ENGINE_NAME,
    Holder,
    cell_timings,
    input_index,
    job_error,
    kernel_start_failed,
    mark_stopped,
    quiet_papermill,
    register_engine,
    wants_progress_bar,
)
from mlnb.jobs.params import (
    RUN_ID_PARAMETER,
    Param,
    check_parameters,
    has_parameters_cell,
    language_of,
    quiet_warnings,
    read_notebook,
    readable_parameters,
    unknown_param_tags,
)
from mlnb.records import JobError
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from mlnb.store.core import Store
from mlnb.store.hashing import hash_file
from mlnb.store.liveness import acquire_run_lock, release_run_lock
from mlnb.tracking.fluent import StoreLike, resolve_store

__all__ = [
    "JobError",
    "JobResult",
    "check_kernel",
    "run_notebook",
]


CELL_SECONDS = "job/cell_seconds"
SNAPSHOT_DIR = "notebook"  # artifacts `notebook/<name>.ipynb`: the notebook as run


@dataclass(frozen=True)
class JobResult:
    """The outcome of :func:`run_notebook`; ``notes`` say what the run's ``mlnb.warning``
    tag says (e.g. parameters that could not be checked)."""

    run_id: str
    status: str
    output: Path | None
    error: JobError | None
    duration: float
    exit_code: int
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every cell ran (``exit_code == 0``)."""
        return self.exit_code == EXIT_OK


# -- checks before running ---------------------------------------------------------------


def check_kernel(name: str | None) -> str:
    """The kernel to run a notebook in, resolved as jupyter_client resolves it (``python``
    is ``python3``) and checked to be installed (an InvalidInputError names the installed
    ones)."""
    if not name:
        raise InvalidInputError(
            "the notebook names no kernel (metadata.kernelspec); pass kernel=, e.g. 'python3'"
        )
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name=name)  # maps the names as it will when it starts
    try:
        manager.kernel_spec  # noqa: B018 (reading it looks the kernel up)
    except NoSuchKernel:
        known = ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"
        raise InvalidInputError(
            f"no kernel named {name!r} is installed; installed: {known} (pass another "
            f"with --kernel / kernel=, or install it: `jupyter kernelspec list` shows them)"
        ) from None
    return str(manager.kernel_name)


# -- running -----------------------------------------------------------------------------


def _open_store(store: StoreLike | None, *, create: bool = True) -> Store:
    """The store of a job, by the rule of every ``store=`` (``resolve_store``): it must be
    on disk, since the job's kernel is another process."""
    st = resolve_store(store, create=create)
    if st.db_path is None:
        raise InvalidInputError(
            "a notebook job needs a store on disk (its kernel is another process); "
            "an in-memory store cannot be used"
        )
    return st


def run_notebook(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    name: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    kernel: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    cell_timeout: float | None = None,
    start_timeout: float = 60,
    log_output: bool = False,
    strict_params: bool = False,
    allow_unknown_params: bool = False,
    store: StoreLike | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    start_retries: int = 0,
    progress_bar: bool | None = None,
) -> JobResult:
    """Run the notebook at ``path`` headless (papermill) as one tracked run.

    ``parameters`` override the defaults of the cell tagged ``parameters``. A name that
    cell does not assign is refused (the message suggests the close one), since the run
    would record a value the notebook never used; ``allow_unknown_params`` injects such
    values anyway, as papermill does, and records them as the tags
    ``mlnb.unknown_param.<name>``, not as params. ``strict_params`` also refuses values of
    the wrong type. In a language papermill cannot introspect (R, ...), the values are
    injected after the ``parameters`` cell unchecked, with a note (``notes`` and the tag
    ``mlnb.warning``). Bad input
    raises :class:`~mlnb.errors.InvalidInputError` before any run row or kernel exists.
    The executed notebook is written to ``output`` (default: a temporary file) and stored
    with the run as the artifact ``job/<notebook name>.ipynb``. ``cwd`` defaults to the
    notebook's folder, ``kernel`` to the notebook's own. Returns a :class:`JobResult`
    whose ``exit_code`` is 0 (finished), 1 (a cell raised), 124 (a cell timed out) or
    138 (the kernel died); the run is never left ``running``.

    ``run_id`` runs the job as that run: a ``queued`` run (a sweep's child) is moved to
    ``running`` and keeps its name, experiment and parent; an id the store does not know
    creates the run with that id. ``parent_run_id`` makes a new run a child. A kernel that
    fails to start (the port race "Kernel died before replying to kernel_info", an address
    in use, a start timeout) is started again up to ``start_retries`` times; the tag
    ``mlnb.kernel_start_retries`` records how many were needed. ``progress_bar`` overrides
    the default (a bar when stderr is a terminal and ``$CI`` is unset).
    """
    nb_path = Path(path).expanduser().absolute()
    given = dict(parameters or {})
    nb = read_notebook(nb_path)
    kernel_name = check_kernel(kernel or nb.metadata.get("kernelspec", {}).get("name"))
    known = readable_parameters(nb, kernel_name)
    unknown = check_parameters(
        given, known, where=nb_path, has_cell=has_parameters_cell(nb), strict=strict_params,
        allow_unknown=allow_unknown_params,
    )  # fmt: skip
    notes = _parameter_notes(nb, known, given, kernel_name)
    work_dir = Path(cwd).expanduser().absolute() if cwd is not None else nb_path.parent
    if not work_dir.is_dir():
        raise InvalidInputError(f"working directory {work_dir} does not exist")
    if cell_timeout is not None and not cell_timeout > 0:
        raise InvalidInputError(
            f"cell_timeout must be a positive number of seconds, got {cell_timeout!r}"
        )
    if not isinstance(start_retries, int) or start_retries < 0:
        raise InvalidInputError(f"start_retries must be an int >= 0, got {start_retries!r}")
    used = {p.name: p.default for p in known or [] if p.source and _is_literal(p)}
    used.update({k: v for k, v in given.items() if k not in unknown})
    run_tags = {**(tags or {}), **unknown_param_tags(unknown)}
    if notes:
        run_tags[WARNING_TAG] = " ".join(notes)
    st = _open_store(store)
    exists = _check_run_id(st, run_id, parent_run_id)
    spec = JobSpec(
        nb_path=nb_path, nb=nb,
        output=Path(output).expanduser().absolute() if output is not None else None,
        used=used, given=given, name=name, experiment=experiment, tags=run_tags,
        kernel_name=kernel_name, work_dir=work_dir, cell_timeout=cell_timeout,
        start_timeout=start_timeout, log_output=log_output, run_id=run_id, exists=exists,
        parent_run_id=parent_run_id, start_retries=start_retries,
        progress_bar=wants_progress_bar() if progress_bar is None else progress_bar,
    )  # fmt: skip
    result = _run(st, spec)
    return dataclasses.replace(result, notes=(*notes, *result.notes))


def _parameter_notes(
    nb: Any, known: list[Param] | None, given: Mapping[str, Any], kernel: str
) -> list[str]:
    """What the run should say about how its parameters reached the notebook."""
    if not given:
        return []
    if not has_parameters_cell(nb):
        return [
            "the notebook has no cell tagged 'parameters': papermill injected the "
            "parameters at the top, where the notebook's own assignments may override them"
        ]
    if known is None:
        return [
            f"papermill cannot read the parameters cell of {language_of(nb)} notebooks "
            f"(kernel {kernel}): the parameters were not checked against it; they were "
            f"injected after it, as papermill does"
        ]
    return []


@dataclass(frozen=True)
class JobSpec:
    """One notebook job as ``run_notebook`` checked it: what to run, with which values,
    as which run, and how. Everything in it has been validated; ``_run`` only runs it."""

    nb_path: Path  # the notebook, absolute
    nb: Any  # the notebook as read (nbformat), for cell numbers and lineage
    output: Path | None  # where the executed notebook goes (None: a temporary file)
    used: dict[str, Any]  # the params the run records: the values the notebook used
    given: dict[str, Any]  # the values passed, injected by papermill
    name: str | None
    experiment: str | None
    tags: dict[str, Any]
    kernel_name: str
    work_dir: Path
    cell_timeout: float | None
    start_timeout: float
    log_output: bool
    run_id: str | None  # the run to attach to (None: a new one)
    exists: bool  # whether run_id names a queued run of the store
    parent_run_id: str | None
    start_retries: int
    progress_bar: bool


def _check_run_id(st: Store, run_id: str | None, parent_run_id: str | None) -> bool:
    """Whether ``run_id`` names a queued run of the store (False: a new run); anything
    else is refused before a kernel starts."""
    if parent_run_id is not None:
        st.resolve_run_id(parent_run_id)  # RunNotFoundError names it
    if run_id is None:
        return False
    if not isinstance(run_id, str) or not run_id.strip() or not run_id.isalnum():
        raise InvalidInputError(f"run_id must be letters and digits, got {run_id!r}")
    status = st.run_status(run_id)
    if status is None:
        return False
    if status != "queued":
        raise InvalidInputError(
            f"run {run_id[:8]} is {status}; a job can only attach to a queued run"
        )
    return True


def _is_literal(p: Param) -> bool:
    return bool(p.type) and (p.default is not None or p.source == "None")


def _run(st: Store, spec: JobSpec) -> JobResult:
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    register_engine()
    started = time.monotonic()
    notebook_hash = hash_file(spec.nb_path)
    run_tags = {**spec.tags, JOB_TAG: "1", NOTEBOOK_HASH_TAG: notebook_hash}
    import uuid

    run_id = spec.run_id or uuid.uuid4().hex
    try:
        lock = acquire_run_lock(st.locks_dir, run_id)  # the runner keeps the run alive
    except OSError:
        raise InvalidInputError(f"run {run_id[:8]} is being run by another process") from None
    if spec.exists:  # before the try below: a run we did not take is not ours to end
        try:
            _claim_queued(st, run_id, str(spec.nb_path))
        except BaseException:
            release_run_lock(st.locks_dir, run_id, lock)
            raise
    status = "failed"
    error: JobError | None = None
    exit_code = EXIT_FAILED
    holder = Holder()
    hook_notes: list[str] = []
    tmp: tempfile.TemporaryDirectory[str] | None = None
    out_path: Path | None = None
    final_nb: Any = None
    try:
        if spec.exists:
            st.set_tags(run_id, run_tags)
        else:
            st.create_run(
                run_id=run_id,
                name=spec.name or spec.nb_path.stem,
                experiment=spec.experiment,
                tags=run_tags,
                source=str(spec.nb_path),
                parent_run_id=spec.parent_run_id,
            )
        st.log_params(run_id, spec.used)
        # The notebook as it was run: `mlnb reproduce` re-executes this, not today's file.
        st.log_artifact(
            run_id, spec.nb_path, name=f"{SNAPSHOT_DIR}/{spec.nb_path.name}", kind="notebook"
        )
        if spec.output is None:
            tmp = tempfile.TemporaryDirectory(prefix="mlnb-job-")
            out_path = Path(tmp.name) / spec.nb_path.name
        else:
            out_path = spec.output
            out_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            ENV_RUN_ID: run_id,
            ENV_NOTEBOOK: str(spec.nb_path),
            ENV_STORE: str(st.root.absolute()),
        }
        # A run created beforehand (a sweep's child) keeps the experiment it was created in,
        # with its parent; otherwise `--experiment` wins over the notebook's own choice.
        chosen = st.get_run(run_id).experiment if spec.exists else spec.experiment
        if chosen is not None:
            env[ENV_JOB_EXPERIMENT] = chosen
        else:
            env.pop(ENV_JOB_EXPERIMENT, None)
        try:
            for attempt in range(spec.start_retries + 1):
                holder = Holder()
                try:
                    with quiet_papermill(bool(spec.given)):
                        final_nb = papermill.execute_notebook(
                            str(spec.nb_path),
                            str(out_path),
                            parameters={**spec.given, RUN_ID_PARAMETER: run_id},
                            engine_name=ENGINE_NAME,
                            kernel_name=spec.kernel_name,
                            cwd=str(spec.work_dir),
                            execution_timeout=spec.cell_timeout,
                            start_timeout=spec.start_timeout,
                            log_output=spec.log_output,
                            progress_bar=spec.progress_bar,
                            request_save_on_cell_execute=False,
                            shutdown_kernel="immediate",
                            mlnb_holder=holder,
                            mlnb_env=env,
                        )
                    break
                except Exception as exc:
                    if attempt >= spec.start_retries or not kernel_start_failed(exc, holder):
                        raise
                    st.set_tags(run_id, {KERNEL_START_RETRIES_TAG: attempt + 1,
                                         KERNEL_START_ERROR_TAG: f"{type(exc).__name__}: "
                                         f"{exc}"[:500]})  # fmt: skip
                    time.sleep(0.5 * (attempt + 1))
            status, exit_code = "finished", EXIT_OK
        except papermill.PapermillExecutionError as exc:
            final_nb = holder.nb
            ename, evalue = str(exc.ename), str(exc.evalue)
            reply = holder.cell_error
            if ename == "CellExecutionError" and reply is not None:  # no error output: the
                ename, evalue = str(reply.ename), str(reply.evalue)  # kernel's reply says
            error = job_error(ename, evalue, exc.traceback or [], exc.cell_index, spec.nb, final_nb)
            status, exit_code = "failed", EXIT_FAILED
            if holder.timed_out:  # the interrupt after the timeout: the traceback says where
                message = f"cell {error.cell} did not finish within {spec.cell_timeout:g} s"
                error = dataclasses.replace(error, name="Timeout", message=message)
                exit_code = EXIT_TIMEOUT
        except CellTimeoutError:
            final_nb = holder.nb
            where = input_index(holder.cell, spec.nb, final_nb)
            message = f"cell {where} did not finish within {spec.cell_timeout:g} s" + (
                " and went on after the interrupt" if holder.timed_out else ""
            )
            error = job_error("Timeout", message, [], holder.cell, spec.nb, final_nb)
            mark_stopped(final_nb, holder.cell, error)
            status, exit_code = "failed", EXIT_TIMEOUT
        except DeadKernelError as exc:
            final_nb = holder.nb
            message = f"the kernel died: {exc}".strip()
            error = job_error("DeadKernelError", message, [], holder.cell, spec.nb, final_nb)
            mark_stopped(final_nb, holder.cell, error)
            status, exit_code = "crashed", EXIT_DEAD_KERNEL
        if final_nb is not None and status != "finished" and exit_code != EXIT_FAILED:
            with quiet_warnings():  # papermill wrote nothing after a timeout/dead kernel
                writer: Any = nbformat.write
                writer(final_nb, str(out_path))
        if holder.hook_problems:
            hook_notes = holder.hook_problems
            warning = " ".join(filter(None, [spec.tags.get(WARNING_TAG), *hook_notes]))
            st.set_tags(run_id, {WARNING_TAG: warning}, check_state=False)
        _record(st, run_id, spec.nb_path, out_path, final_nb, spec.nb, error)
        _record_lineage(st, run_id, spec.nb_path, spec.nb, final_nb)
        if spec.name is not None:  # `%track start` in the notebook renames the run it attaches to
            st.rename_run(run_id, spec.name)
    except KeyboardInterrupt:
        status = "killed"
        raise
    except BaseException as exc:
        status = "failed"
        if error is None:
            with contextlib.suppress(Exception):
                st.set_tags(run_id, JobError(type(exc).__name__, str(exc), None).to_tags())
        raise
    finally:
        with contextlib.suppress(Exception):
            if status == "finished":  # keep a status the notebook chose itself
                st.set_status(run_id, status, only_from=("running", "crashed"))
            else:
                st.set_status(run_id, status, only_from=("running", "crashed", "finished"))
        release_run_lock(st.locks_dir, run_id, lock)
        if tmp is not None:
            tmp.cleanup()
    stored = st.get_run(run_id)
    artifact = f"job/{spec.nb_path.stem}.ipynb"
    final_output: Path | None = out_path if spec.output is not None else None
    if final_output is None and artifact in {a.path for a in stored.artifacts}:
        final_output = Path(stored.artifact_path(artifact))
    return JobResult(
        run_id=run_id,
        status=stored.status,
        output=final_output,
        error=error,
        duration=time.monotonic() - started,
        exit_code=exit_code,
        notes=tuple(hook_notes),
    )


def _claim_queued(st: Store, run_id: str, source: str) -> None:
    """Move a queued run to ``running`` in this process (compare-and-set: two workers
    cannot both take it); its clock starts now."""
    if not st.claim_queued_run(run_id, source=source):
        raise InvalidInputError(f"run {run_id[:8]} is no longer queued (another worker took it?)")


def _record(
    st: Store,
    run_id: str,
    nb_path: Path,
    out_path: Path | None,
    final_nb: Any,
    nb: Any,
    error: JobError | None,
) -> None:
    """Error tags, per-cell timings and the executed notebook, while the run still runs."""
    if error is not None:
        st.set_tags(run_id, error.to_tags(), check_state=False)
    if final_nb is not None:
        now = time.time()
        rowid, _ = store_runs.run_rowid(st.file, run_id)
        store_metrics.insert_metrics(
            st.file,
            [
                (rowid, CELL_SECONDS, cell, seconds, now)
                for cell, seconds in cell_timings(final_nb, nb)
            ],
        )
    if out_path is not None and out_path.is_file():
        st.log_artifact(
            run_id, out_path, name=f"job/{nb_path.stem}.ipynb", kind="notebook", check_state=False
        )


def _record_lineage(st: Store, run_id: str, nb_path: Path, nb: Any, final_nb: Any) -> None:
    """A job runs its notebook from top to bottom: its linearity verdict and
    ``notebook/executed.py`` come from the executed notebook, as ``%track end`` would
    record them from the kernel, for every job (with the magics or without). A verdict
    the notebook recorded itself (it ended the job's run with ``%track end``) is kept.
    papermill's injected-parameters cell is not in the saved notebook: it is left out of
    the verdict and kept in the script (it set the parameters)."""
    from mlnb.capture.notebook import executed_cells, executed_script, linearity

    if final_nb is None or st.get_run(run_id).linearity is not None:
        return
    saved = [c.source for c in nb.cells if c.get("cell_type") == "code"]
    ran = executed_cells(final_nb)
    verdict = linearity(executed_cells(final_nb, skip_tags=("injected-parameters",)), saved)
    st.set_notebook(
        run_id, notebook=str(nb_path), linearity=verdict.verdict, detail=verdict.to_dict()
    )
    script = executed_script(ran, saved).encode()
    st.log_artifact(run_id, script, name=f"{SNAPSHOT_DIR}/executed.py", check_state=False)


# -- notebook tests ---------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookTest:
    """The outcome of one notebook under ``mlnb test``."""

    path: str
    passed: bool
    status: str
    duration: float
    error: JobError | None
    run_id: str | None


def _test_one(path: str, store: str, cell_timeout: float | None) -> NotebookTest:
    os.environ[ENV_TEST] = "1"  # notebooks may shrink their work under test
    started = time.monotonic()
    try:
        result = run_notebook(path, store=store, cell_timeout=cell_timeout)
    except MlnbError as exc:
        error = JobError(type(exc).__name__, str(exc), None)
        return NotebookTest(path, False, "refused", time.monotonic() - started, error, None)
    return NotebookTest(
        path, result.ok, result.status, result.duration, result.error, result.run_id
    )


def find_notebooks(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The ``.ipynb`` files named, or found under the folders named (checkpoints skipped)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts
            )
        elif path.exists():
            found.append(path)
        else:
            raise InvalidInputError(f"no such notebook or folder: {path}")
    return found


def run_notebook_tests(
    paths: Sequence[str | os.PathLike[str]],
    *,
    workers: int = 1,
    cell_timeout: float | None = 600.0,
    store: str | os.PathLike[str] | None = None,
) -> list[NotebookTest]:
    """Execute notebooks as tests (``$MLNB_TEST=1`` in their kernels), ``workers`` at a
    time, each in a fresh process and kernel; runs go to ``store`` (default: a throwaway
    store, so testing does not fill the project's)."""
    import concurrent.futures
    import multiprocessing

    notebooks = find_notebooks(paths)
    with contextlib.ExitStack() as stack:
        if store is None:
            store = stack.enter_context(tempfile.TemporaryDirectory(prefix="mlnb-test-"))
        Store(store).close()  # create it once, before workers race to
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max(1, workers), mp_context=ctx) as pool:
            futures = [
                pool.submit(_test_one, str(nb), str(store), cell_timeout) for nb in notebooks
            ]
            return [f.result() for f in futures]
