"""The kernel side of a headless job (``mlnb run``, a sweep's child, ``mlnb reproduce``).

:mod:`mlnb.jobs.runner` executes a notebook in a fresh kernel and calls two hooks there,
outside the notebook's cells: :func:`start_job` before the first cell and
:func:`finish_job` after the last. They are plain functions with one import path
(:data:`HOOKS_MODULE`), and they raise :class:`~mlnb.errors.CaptureError` when they cannot
do their work: the runner records the message in the run's ``mlnb.warning`` tag and the
job goes on. A capture that stops working (after a module moves, say) then shows in every
job's record instead of vanishing.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from mlnb.conventions import ENV_RUN_ID
from mlnb.errors import CaptureError, MlnbError, MlnbWarning
from mlnb.tracking import collect, fluent

HOOKS_MODULE = __name__  # what the runner imports in the kernel

__all__ = ["HOOKS_MODULE", "finish_job", "start_job"]


def start_job() -> None:
    """Before the first cell: record, for the job's run (``$MLNB_RUN_ID``), the kernel's
    own environment (its Python and packages, which may differ from the runner's; in the
    background) and the git state of its working directory, with the parts
    ``$MLNB_CAPTURE`` names."""
    run_id = os.environ.get(ENV_RUN_ID)
    if not run_id:
        raise CaptureError(
            f"${ENV_RUN_ID} is not set in the kernel: it names the job's run (the "
            "runner sets it), so nothing was recorded"
        )
    with _failures_raised("its environment and git state were not recorded"):
        parts = collect.resolve_parts(None)
        collect.start_capture(fluent.get_store(), run_id, parts, os.getcwd())


def finish_job() -> None:
    """After the last cell (the kernel is then shut down at once, without its atexit
    handlers): store every queued metric, end the runs the notebook started itself (the
    job's run is the runner's to end), and wait for the environment capture."""
    job_run = os.environ.get(ENV_RUN_ID)
    with _failures_raised("what the kernel had queued may not be recorded"):
        fluent.flush()
        for run in reversed(fluent.state.live_runs()):  # every thread's and task's runs
            if run.run_id != job_run:
                fluent.end_run("finished", run=run)
        fluent.flush()


@contextlib.contextmanager
def _failures_raised(consequence: str) -> Iterator[None]:
    """Turn what a job's kernel would only warn about (nobody reads its stderr) and mlnb's
    errors into one :class:`CaptureError` for the runner to record; other warnings pass."""
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MlnbWarning)
        try:
            yield
        except MlnbError as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
    for w in caught:
        if issubclass(w.category, MlnbWarning):
            problems.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problems:
        raise CaptureError(f"{'; '.join(problems)} ({consequence})")
