"""Headless jobs (mlnb.jobs.runner): real kernels through papermill on tests/notebooks/job_*."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlnb.conventions import EXIT_DEAD_KERNEL, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT
from mlnb.errors import InvalidInputError
from mlnb.jobs.params import Param, notebook_parameters
from mlnb.jobs.runner import JobError, check_kernel, run_notebook
from mlnb.store import Store
from tests.conftest import REPO

NOTEBOOKS = REPO / "tests" / "notebooks"


@pytest.fixture
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store, named by $MLNB_STORE as the CLI would see it."""
    folder = tmp_path / "store"
    monkeypatch.setenv("MLNB_STORE", str(folder))
    return folder


def job(name: str, where: Path) -> Path:
    """A copy of a job notebook in the test's folder (jobs run in the notebook's folder)."""
    path = where / f"{name}.ipynb"
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", path)
    return path


def run_ids(store_dir: Path) -> list[str]:
    if not (store_dir / "mlnb.db").exists():
        return []
    with Store(store_dir) as st:
        return list(st.search_runs()["run_id"])


# -- parameters (no kernel) ------------------------------------------------------------


def test_notebook_parameters_reads_names_types_defaults_and_help() -> None:
    params = notebook_parameters(NOTEBOOKS / "job_train.ipynb")
    assert params == [
        Param("lr", "float", 0.1, "learning rate", "0.1"),
        Param("epochs", "int", 3, "", "3"),
        Param("model", "str", "logreg", "which model to fit", '"logreg"'),
        Param("layers", "list", [64, 32], "", "[64, 32]"),
    ]


def test_a_notebook_without_a_parameters_cell_has_none() -> None:
    assert notebook_parameters(NOTEBOOKS / "job_crash.ipynb") == []


def test_an_expression_default_has_no_type_or_value(tmp_path: Path) -> None:
    nb = json.loads((NOTEBOOKS / "job_fail.ipynb").read_text())
    nb["cells"][0]["source"] = "n = 2 * 3  # computed\nsize: int = n + 1"
    path = tmp_path / "expr.ipynb"
    path.write_text(json.dumps(nb))
    assert notebook_parameters(path) == [
        Param("n", "", None, "computed", "2 * 3"),
        Param("size", "int", None, "", "n + 1"),
    ]


# -- refused before anything runs --------------------------------------------------------


def test_a_missing_notebook_is_named_and_creates_no_run(tmp_path: Path, store_dir: Path) -> None:
    missing = tmp_path / "nope.ipynb"
    with pytest.raises(InvalidInputError, match=r"no such notebook: .*nope\.ipynb"):
        run_notebook(missing)
    assert run_ids(store_dir) == []
    with pytest.raises(InvalidInputError, match="nope.ipynb"):
        notebook_parameters(missing)


def test_a_file_that_is_not_a_notebook_is_refused(tmp_path: Path, store_dir: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("print('hello')")
    with pytest.raises(InvalidInputError, match="is not a Jupyter notebook"):
        run_notebook(bad)
    with pytest.raises(InvalidInputError, match="is not a notebook file"):
        run_notebook(tmp_path)
    assert run_ids(store_dir) == []


def test_run_notebook_refuses_an_unknown_parameter_and_suggests_the_close_one(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 1: `-p max_dept 6` was injected, stored as a param next to the
    notebook's own `max_depth`, and the run finished as if it had been used."""
    path = job("job_train", tmp_path)
    with pytest.raises(
        InvalidInputError,
        match=r"the parameters cell of job_train.ipynb defines no 'lrr'; did you mean 'lr'\?",
    ):
        run_notebook(path, parameters={"lrr": 0.5})
    with pytest.raises(InvalidInputError, match=r"defines no 'speed'; its parameters are: lr, "
                       r"epochs, model, layers.*--allow-unknown-params"):  # fmt: skip
        run_notebook(path, parameters={"speed": 0.5}, strict_params=True)
    assert run_ids(store_dir) == []


def test_run_notebook_without_a_parameters_cell_refuses_parameters_saying_how_to_tag_one(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 1: a value injected at the top of a notebook without a parameters
    cell was recorded as a param although the notebook's own assignment overrode it."""
    path = job("job_crash", tmp_path)
    with pytest.raises(InvalidInputError) as info:
        run_notebook(path, parameters={"lr": 0.2})
    text = str(info.value)
    assert "job_crash.ipynb has no cell tagged 'parameters'" in text
    assert "add the tag 'parameters'" in text  # how to tag one
    assert "--allow-unknown-params" in text
    assert run_ids(store_dir) == []


@pytest.mark.slow
def test_run_notebook_allow_unknown_params_injects_them_but_records_them_as_tags(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 1: with allow_unknown_params, papermill's behaviour (injected anyway),
    recorded under mlnb.unknown_param.<name>, never as params."""
    path = job("job_train", tmp_path)
    result = run_notebook(
        path, parameters={"lr": 0.5, "max_dept": 6, "note": "x"}, allow_unknown_params=True
    )
    assert result.exit_code == EXIT_OK, result.error
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
    assert rec.params == {"lr": 0.5, "epochs": 3, "model": "logreg", "layers": [64, 32]}
    assert rec.tags["mlnb.unknown_param.max_dept"] == "6"
    assert rec.tags["mlnb.unknown_param.note"] == "x"
    assert result.output is not None
    executed = json.loads(result.output.read_text())
    assert executed["metadata"]["papermill"]["parameters"]["max_dept"] == 6  # injected


@pytest.mark.parametrize(
    ("key", "value"),
    [("lr", "fast"), ("epochs", 2.5), ("epochs", True), ("model", 3), ("layers", {"a": 1})],
)
def test_strict_params_refuse_values_of_the_wrong_type(
    tmp_path: Path, store_dir: Path, key: str, value: object
) -> None:
    path = job("job_train", tmp_path)
    with pytest.raises(InvalidInputError, match=rf"parameter '{key}' of job_train.ipynb is a"):
        run_notebook(path, parameters={key: value}, strict_params=True)
    assert run_ids(store_dir) == []


def test_values_that_cannot_reach_a_notebook_are_refused(tmp_path: Path, store_dir: Path) -> None:
    path = job("job_train", tmp_path)
    with pytest.raises(InvalidInputError, match="object values cannot be passed"):
        run_notebook(path, parameters={"lr": object()})
    with pytest.raises(InvalidInputError, match="not a valid Python identifier"):
        run_notebook(path, parameters={"my lr": 1})
    with pytest.raises(InvalidInputError, match="no kernel named 'no-such-kernel' is installed"):
        run_notebook(path, kernel="no-such-kernel")
    assert run_ids(store_dir) == []


def test_check_kernel_resolves_names_as_jupyter_client_does() -> None:
    """Issue 11 item 13: a kernelspec named `python` runs under papermill (jupyter_client
    starts `python3` for it) but mlnb refused it."""
    assert check_kernel("python") == "python3"
    assert check_kernel("python3") == "python3"


@pytest.mark.parametrize("kernel", ["ir", "r"])
def test_a_notebook_in_another_language_without_its_kernel_says_the_kernel_is_missing(
    tmp_path: Path, store_dir: Path, kernel: str
) -> None:
    """Issue 11 item 15: an R notebook with a parameters cell was refused with
    "parameters introspection not implemented" instead of naming the missing kernel."""
    nb = json.loads((NOTEBOOKS / "papermill" / "notimplemented_translator.ipynb").read_text())
    nb["metadata"]["kernelspec"]["name"] = kernel
    path = tmp_path / "r.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(InvalidInputError) as info:
        run_notebook(path, parameters={"msg": "hi"})
    assert re.match(
        rf"no kernel named '{kernel}' is installed; installed: .*python3", str(info.value)
    )
    assert run_ids(store_dir) == []


# -- real kernels ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_finishes_with_its_params_metrics_notebook_and_hash_on_one_run(
    tmp_path: Path, store_dir: Path
) -> None:
    path = job("job_train", tmp_path)
    result = run_notebook(path, parameters={"lr": 0.5}, strict_params=True)
    assert (result.status, result.exit_code, result.error) == ("finished", EXIT_OK, None)
    assert run_ids(store_dir) == [result.run_id]  # %track start attached to the job's run
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.status == "finished"
        assert rec.name == "job_train"
        assert rec.experiment == "jobs"  # the notebook's `%track start --experiment jobs`
        assert rec.params == {"lr": 0.5, "epochs": 3, "model": "logreg", "layers": [64, 32]}
        assert rec.metrics["loss"] == pytest.approx(0.125)  # 3 epochs at lr=0.5
        assert rec.metric_steps["loss"] == 2
        assert rec.metrics["acc"] == 1.0
        assert rec.tags["seen_run_id"] == result.run_id  # the injected mlnb_run_id
        assert rec.tags["seen_notebook"] == str(path)  # $MLNB_NOTEBOOK
        assert rec.tags["mlnb.job"] == "1"
        from mlnb.store.hashing import hash_file

        assert rec.tags["mlnb.notebook_hash"] == hash_file(path)
        assert "job/cell_seconds" in rec.metrics
        assert [s for s, _, _ in st.history(result.run_id, "job/cell_seconds")] == [1, 2, 3, 4]
        assert {a.path for a in rec.artifacts} >= {"job/job_train.ipynb"}
        assert result.output is not None
        assert Path(rec.artifact_path("job/job_train.ipynb")) == result.output
        executed = json.loads(result.output.read_text())
        assert executed["metadata"]["papermill"]["parameters"]["lr"] == 0.5
        # the notebook as run, byte for byte (what `mlnb reproduce` re-executes)
        assert Path(rec.artifact_path("notebook/job_train.ipynb")).read_bytes() == (
            path.read_bytes()
        )
        # the kernel recorded its own environment
        assert rec.environment is not None
        assert rec.environment["python"]["version"].startswith(f"{sys.version_info[0]}.")


@pytest.mark.slow
def test_a_job_records_the_git_state_of_its_working_directory(
    tmp_path: Path, store_dir: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    path = job("job_fail", repo)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=repo, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", path.name)
    git("commit", "-q", "-m", "x")
    result = run_notebook(path)  # a failing cell: the capture is still waited for
    assert result.status == "failed"
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.git is not None and rec.git["commit"] == git("rev-parse", "HEAD")
        assert rec.environment is not None
        assert "mlnb.warning" not in rec.tags  # the kernel's hooks ran without a problem


@pytest.mark.slow
def test_a_job_whose_kernel_cannot_capture_says_so_in_its_tags(
    tmp_path: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 5: the kernel prelude ran the capture inside `try: ... except: pass`,
    so a job whose capture failed in the kernel (here `$MLNB_CAPTURE` misspelt; after a
    module move, the import of the hook) recorded no environment and said nothing. The
    run's `mlnb.warning` tag and the result's notes now say what went wrong."""
    monkeypatch.setenv("MLNB_CAPTURE", "environmnet")
    result = run_notebook(job("job_sleep", tmp_path), parameters={"seconds": 0})
    assert result.status == "finished"
    assert any("environmnet" in note for note in result.notes), result.notes
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.environment is None
        assert "environmnet" in rec.tags["mlnb.warning"]
        assert "not recorded" in rec.tags["mlnb.warning"]


@pytest.mark.slow
def test_output_path_is_kept_and_tags_and_experiment_are_used(
    tmp_path: Path, store_dir: Path
) -> None:
    path = job("job_train", tmp_path)
    out = tmp_path / "out" / "executed.ipynb"
    result = run_notebook(path, out, name="n1", experiment="exp", tags={"team": "a"})
    assert result.output == out and out.is_file()
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert (rec.name, rec.experiment, rec.tags["team"]) == (
            "n1",
            "exp",
            "a",
        )  # the runner names the run and its experiment
        assert rec.params["lr"] == 0.1  # the default


@pytest.mark.slow
def test_a_failing_cell_fails_the_run_with_cell_name_and_message(
    tmp_path: Path, store_dir: Path
) -> None:
    result = run_notebook(job("job_fail", tmp_path))
    assert (result.status, result.exit_code) == ("failed", EXIT_FAILED)
    assert result.error is not None
    assert (result.error.name, result.error.message, result.error.cell) == (
        "ZeroDivisionError",
        "division by zero",
        2,  # in the input notebook (papermill's injected cell is not counted)
    )
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.status == "failed"
        assert rec.tags["mlnb.error.cell"] == "2"
        assert rec.tags["mlnb.error.name"] == "ZeroDivisionError"
        assert rec.tags["mlnb.error.message"] == "division by zero"
        assert rec.metrics["before"] == 1.0  # flushed by the runner before the kernel went
        assert "job/job_fail.ipynb" in {a.path for a in rec.artifacts}


@pytest.mark.slow
def test_a_dead_kernel_crashes_the_run_with_exit_138(tmp_path: Path, store_dir: Path) -> None:
    result = run_notebook(job("job_crash", tmp_path))
    assert (result.status, result.exit_code) == ("crashed", EXIT_DEAD_KERNEL)
    assert result.error is not None and result.error.cell == 1
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.status == "crashed"
        assert rec.tags["mlnb.error.name"] == "DeadKernelError"
        assert rec.metrics["before"] == 1.0
        assert "job/job_crash.ipynb" in {a.path for a in rec.artifacts}  # the partial notebook


def error_outputs(executed: Path, source_start: str) -> list[dict]:
    """The error outputs of the executed notebook's cell whose source starts so."""
    nb = json.loads(executed.read_text())
    [cell] = [c for c in nb["cells"] if "".join(c["source"]).startswith(source_start)]
    return [o for o in cell.get("outputs", []) if o["output_type"] == "error"]


@pytest.mark.slow
def test_a_cell_timeout_fails_the_run_with_exit_124(tmp_path: Path, store_dir: Path) -> None:
    """Issue 11 item 14: the saved notebook showed nothing where the job stopped; now the
    interrupted cell shows its KeyboardInterrupt, as papermill's output does."""
    result = run_notebook(job("job_sleep", tmp_path), cell_timeout=2)
    assert (result.status, result.exit_code) == ("failed", EXIT_TIMEOUT)
    assert result.error is not None
    assert (result.error.name, result.error.cell) == ("Timeout", 1)
    assert result.error.source == "import time"
    assert "time.sleep(seconds)" in result.error.traceback  # where it stopped
    assert result.duration < 20
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
        assert rec.status == "failed"
        assert rec.tags["mlnb.error.name"] == "Timeout"
        assert rec.tags["mlnb.error.cell"] == "1"
    assert result.output is not None
    [shown] = error_outputs(result.output, "import time")
    assert shown["ename"] == "KeyboardInterrupt"


@pytest.mark.slow
@pytest.mark.parametrize(
    "source",
    [
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
        "import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    x = 1",
    ],
    ids=["ignores-the-interrupt", "swallows-the-interrupt"],
)
def test_a_cell_that_outlives_the_interrupt_still_shows_where_the_job_stopped(
    tmp_path: Path, store_dir: Path, source: str
) -> None:
    """Issue 11 item 14: a timed-out cell that ignores (or catches) the interrupt stops the
    job all the same, and the saved notebook marks the cell."""
    path = make_notebook(tmp_path / "stuck.ipynb", ["a = 1", source, "never = True"])
    result = run_notebook(path, cell_timeout=2)
    assert (result.status, result.exit_code) == ("failed", EXIT_TIMEOUT)
    assert result.error is not None and (result.error.name, result.error.cell) == ("Timeout", 1)
    assert result.duration < 30
    assert result.output is not None
    [shown] = error_outputs(result.output, "import")
    assert shown["ename"] == "Timeout" and "did not finish within 2 s" in shown["evalue"]
    assert error_outputs(result.output, "never") == []


def make_notebook(path: Path, sources: list[str], **metadata: object) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nb.metadata.update(metadata)
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_usage_error_in_a_job_has_its_message_cell_and_source(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 3: a cell failing with a UsageError (no error output in the cell)
    arrived as JobError(name='CellExecutionError', message='', cell=1) — an empty message
    and, in a notebook without a parameters cell, the wrong cell."""
    path = tmp_path / "line_magic_error.ipynb"
    shutil.copy(NOTEBOOKS / "papermill" / "line_magic_error.ipynb", path)
    result = run_notebook(path)
    assert (result.status, result.exit_code) == ("failed", EXIT_FAILED)
    error = result.error
    assert error is not None
    assert (error.name, error.cell, error.source) == ("UsageError", 0, "%undefined-line-magic")
    assert error.message == "Line magic function `%undefined-line-magic` not found."
    assert str(error).startswith("cell 0 `%undefined-line-magic`: UsageError: Line magic function")
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
    assert JobError.from_tags(rec.tags) == error


@pytest.mark.slow
def test_a_failed_job_keeps_the_last_frames_of_the_traceback(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 3: the error shows the cell's first source line and the last frames
    of the traceback (plain text), not a repr."""
    path = make_notebook(
        tmp_path / "frames.ipynb",
        ["def f():\n    return 1 / 0", "def g():\n    return f()", "\ng()  # the call\nz = 2"],
    )
    result = run_notebook(path)
    error = result.error
    assert error is not None
    assert (error.name, error.message, error.cell) == ("ZeroDivisionError", "division by zero", 2)
    assert error.source == "g()  # the call"  # the first line that is not blank
    assert "return 1 / 0" in error.traceback and "return f()" in error.traceback
    assert "\x1b[" not in error.traceback  # no terminal colours
    text = str(error)
    assert text.splitlines()[0] == "cell 2 `g()  # the call`: ZeroDivisionError: division by zero"
    assert "return 1 / 0" in text
    with Store(store_dir) as st:
        assert JobError.from_tags(st.get_run(result.run_id).tags) == error


@pytest.mark.slow
def test_cell_seconds_count_the_notebooks_own_cells_when_a_cell_fails(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 item 4: job/cell_seconds steps were 1, 2, 4 for cells 0-2: papermill's
    error-marker cells were counted."""
    result = run_notebook(job("job_fail", tmp_path))
    assert result.exit_code == EXIT_FAILED
    with Store(store_dir) as st:
        steps = [s for s, _, _ in st.history(result.run_id, "job/cell_seconds")]
    assert steps == [0, 1, 2]


@pytest.mark.slow
def test_cells_are_counted_as_the_input_file_holds_them_when_it_has_papermill_markers(
    tmp_path: Path, store_dir: Path
) -> None:
    """Issue 11 items 3 and 4: papermill's broken1.ipynb is an earlier output, with its
    error-marker cells; papermill drops them before running, and the error named cell 4 (a
    markdown cell) instead of cell 6 (`assert False`)."""
    path = tmp_path / "broken1.ipynb"
    shutil.copy(NOTEBOOKS / "papermill" / "broken1.ipynb", path)
    result = run_notebook(path)
    assert result.error is not None
    assert (result.error.name, result.error.cell) == ("AssertionError", 6)
    assert result.error.source == "assert False"
    assert result.error.message  # AssertionError() has none: never empty all the same
    with Store(store_dir) as st:
        steps = [s for s, _, _ in st.history(result.run_id, "job/cell_seconds")]
    assert steps == [3, 6]


@pytest.mark.slow
def test_a_notebook_whose_parameters_cannot_be_read_runs_with_injected_values_and_a_note(
    tmp_path: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 15: a notebook in a language papermill cannot introspect (R) could
    not run at all; papermill injects its parameters through the language's translator."""
    from papermill.translators import PythonTranslator, Translator, papermill_translators

    class NoInspection(PythonTranslator):  # a language whose translator cannot inspect
        inspect = Translator.inspect

    monkeypatch.setitem(papermill_translators._translators, "fakelang", NoInspection)
    path = make_notebook(
        tmp_path / "fake.ipynb",
        ["msg = None", "import mlnb\nmlnb.log_metric('n', len(msg))"],
        language_info={"name": "fakelang"},
    )
    nb = json.loads(path.read_text())
    nb["cells"][0]["metadata"]["tags"] = ["parameters"]
    path.write_text(json.dumps(nb))
    result = run_notebook(path, parameters={"msg": "hello"})
    assert result.exit_code == EXIT_OK, result.error
    with Store(store_dir) as st:
        rec = st.get_run(result.run_id)
    assert rec.metrics["n"] == 5.0  # the injected value reached the notebook
    assert rec.params == {"msg": "hello"}
    assert "parameters were not checked" in rec.tags["mlnb.warning"]


# -- the run never stays running ----------------------------------------------------------


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(("raised", "status"), [(KeyboardInterrupt, "killed"), (Boom, "failed")])
def test_an_interrupt_or_an_unexpected_error_ends_the_run_and_propagates(
    tmp_path: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch, raised: type, status: str
) -> None:
    import papermill

    seen: list[str] = []

    def fake_execute(*args: object, parameters: dict[str, str], **kwargs: object) -> None:
        seen.append(parameters["mlnb_run_id"])
        raise raised("stop")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    with pytest.raises(raised):
        run_notebook(job("job_train", tmp_path))
    (run_id,) = run_ids(store_dir)
    assert seen == [run_id]  # the row existed before execution
    with Store(store_dir) as st:
        rec = st.get_run(run_id)
        assert rec.status == status
        assert rec.params["lr"] == 0.1
        if raised is Boom:
            assert rec.tags["mlnb.error.name"] == "Boom"
        assert not (store_dir / "locks" / f"{run_id}.lock").exists()


def test_importing_the_runner_does_not_import_papermill() -> None:
    import subprocess
    import sys

    code = "import mlnb, mlnb.jobs.runner, sys; print('papermill' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_runs_the_notebook_starts_itself_are_finished_with_their_metrics(
    tmp_path: Path, store_dir: Path
) -> None:
    nb = json.loads((NOTEBOOKS / "job_crash.ipynb").read_text())
    nb["cells"] = nb["cells"][:1]
    nb["cells"][0]["source"] = (
        "import mlnb\nmlnb.start_run()\nmlnb.start_run('child', nested=True)\n"
        "mlnb.log_metric('m', 1.0)"
    )
    path = tmp_path / "nested.ipynb"
    path.write_text(json.dumps(nb))
    result = run_notebook(path)
    assert result.exit_code == EXIT_OK
    with Store(store_dir) as st:
        table = st.search_runs()
        by_name = dict(zip(table["name"], table["run_id"], strict=True))
        child = st.get_run(by_name["child"])
        assert (child.status, child.metrics, child.parent_run_id) == (
            "finished",
            {"m": 1.0},
            result.run_id,
        )
        assert st.get_run(result.run_id).status == "finished"
