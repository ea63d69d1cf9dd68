"""The kernel side of a headless job (mlnb.tracking.job), called in this process as the
runner calls it in a job's kernel; tests/jobs/test_runner.py runs them in real kernels."""

from __future__ import annotations

import pytest

import mlnb
from mlnb.errors import CaptureError
from mlnb.jobs import engine
from mlnb.tracking import job


def test_job_hooks_are_called_by_their_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 5: the runner's kernel code named modules by hand-written strings
    (`sys.modules.get("mlnb.tracking.fluent")`) inside `except: pass`; it now calls the
    hooks through the module that defines them, binds no name in the notebook's
    namespace, and an error in a hook reaches the caller."""
    monkeypatch.delenv("MLNB_RUN_ID", raising=False)
    for code in (engine.PRELUDE, engine.FINALIZE):
        assert "except" not in code and "sys.modules" not in code
    namespace: dict[str, object] = {}
    with pytest.raises(CaptureError, match="MLNB_RUN_ID"):  # start_job() ran
        exec(engine.PRELUDE, namespace)
    exec(engine.FINALIZE, namespace)  # finish_job() with nothing to do
    assert set(namespace) == {"__builtins__"}
    assert job.__name__ in engine.PRELUDE and "finish_job()" in engine.FINALIZE


def test_start_job_without_a_job_run_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a job ($MLNB_RUN_ID unset) the hook says so instead of recording nothing."""
    monkeypatch.delenv("MLNB_RUN_ID", raising=False)
    with pytest.raises(CaptureError, match="MLNB_RUN_ID is not set"):
        job.start_job()


def test_start_job_records_the_job_runs_environment(
    store: mlnb.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start_job captures for the run named by $MLNB_RUN_ID; finish_job waits for it."""
    run_id = store.create_run(name="job")
    monkeypatch.setenv("MLNB_RUN_ID", run_id)
    monkeypatch.setenv("MLNB_CAPTURE", "packages")
    job.start_job()
    job.finish_job()
    assert store.get_run(run_id).environment is not None


def test_start_job_turns_a_capture_failure_into_an_error(
    store: mlnb.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad $MLNB_CAPTURE is a CaptureError saying what was not recorded."""
    monkeypatch.setenv("MLNB_RUN_ID", store.create_run(name="job"))
    monkeypatch.setenv("MLNB_CAPTURE", "gitt")
    with pytest.raises(CaptureError, match=r"gitt.*were not recorded"):
        job.start_job()


def test_finish_job_ends_the_notebooks_own_runs_not_the_jobs(
    store: mlnb.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the last cell the runs the notebook started are ended (the kernel is shut
    down without atexit) and their metrics stored; the job's run is left to the runner."""
    run_id = store.create_run(name="job")
    monkeypatch.setenv("MLNB_RUN_ID", run_id)
    attached = mlnb.start_run(capture=False)  # attaches to the job's run
    assert attached.run_id == run_id
    child = mlnb.start_run("inner", nested=True, capture=False)
    child.log_metric("loss", 0.5)
    job.finish_job()
    assert mlnb.active_run() is attached
    assert store.get_run(child.run_id).status == "finished"
    assert store.get_run(child.run_id).metrics == {"loss": 0.5}
    assert store.get_run(run_id).status == "running"
