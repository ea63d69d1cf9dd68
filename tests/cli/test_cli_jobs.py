"""`mlnb run` and `mlnb params` as a user types them (real kernels through papermill)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlnb.formatting import escape_markdown
from mlnb.store import Store
from tests.conftest import REPO

NOTEBOOKS = REPO / "tests" / "notebooks"
MLNB = [sys.executable, "-m", "mlnb"]


def mlnb(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MLNB, "--store", str(store), *args], capture_output=True, text=True, timeout=300
    )


def runs(store: Path) -> dict[str, list]:
    with Store(store) as st:
        return st.search_runs()


def test_params_lists_names_types_defaults_and_help(tmp_path: Path) -> None:
    proc = mlnb(tmp_path / "s", "params", str(NOTEBOOKS / "job_train.ipynb"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "type", "default", "help"]
    assert lines[1].split()[:3] == ["lr", "float", "0.1"] and "learning rate" in lines[1]
    assert "model" in proc.stdout and "which model to fit" in proc.stdout


@pytest.mark.slow
def test_run_with_parameters_and_a_passing_check(tmp_path: Path) -> None:
    proc = mlnb(
        tmp_path / "s", "run", str(NOTEBOOKS / "job_train.ipynb"), "-p", "lr", "0.5",
        "-y", "epochs: 2", "--name", "nightly", "--check", "metrics.acc >= 0.9",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished" in proc.stdout and "check passed: metrics.acc >= 0.9" in proc.stdout
    table = runs(tmp_path / "s")
    assert table["name"] == ["nightly"] and table["params.lr"] == [0.5]
    assert table["params.epochs"] == [2] and table["tags.mlnb.check.0"] == [
        "pass: metrics.acc >= 0.9"
    ]


@pytest.mark.slow
def test_a_failing_check_exits_3_and_is_recorded(tmp_path: Path) -> None:
    proc = mlnb(
        tmp_path / "s", "run", str(NOTEBOOKS / "job_train.ipynb"), "--check", "metrics.acc > 0.99"
    )
    assert proc.returncode == 3
    assert "check FAILED: metrics.acc > 0.99" in proc.stdout
    assert runs(tmp_path / "s")["tags.mlnb.check.0"] == ["fail: metrics.acc > 0.99"]


@pytest.mark.slow
def test_a_failing_cell_exits_1(tmp_path: Path) -> None:
    proc = mlnb(tmp_path / "s", "run", str(NOTEBOOKS / "job_fail.ipynb"))
    assert proc.returncode == 1
    assert runs(tmp_path / "s")["status"] == ["failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "missing.ipynb"), "missing.ipynb"),
        (("run", str(NOTEBOOKS / "job_train.ipynb"), "-y", "a: ["), "cannot read parameters"),
        (("run", str(NOTEBOOKS / "job_train.ipynb"), "--strict-params", "-p", "epochs", "many"),
         "epochs"),
        (("run", str(NOTEBOOKS / "job_train.ipynb"), "--check", "metrics.acc >"), "expected"),
        # issue 11 item 1: an unknown name is refused, with the close one
        (("run", str(NOTEBOOKS / "job_train.ipynb"), "-p", "epoch", "2"),
         "the parameters cell of job_train.ipynb defines no 'epoch'; did you mean 'epochs'?"),
        (("run", str(NOTEBOOKS / "out_of_order.ipynb"), "-p", "lr", "0.2"),
         "out_of_order.ipynb has no cell tagged 'parameters'"),
        # issue 11 item 15: a missing kernel is named, not "introspection not implemented"
        (("run", str(NOTEBOOKS / "papermill" / "notimplemented_translator.ipynb"), "-p", "msg",
          "hi"), "no kernel named 'r' is installed; installed: "),
    ],
)  # fmt: skip
def test_usage_and_parameter_errors_exit_2_and_record_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Issue 11 items 1 and 15 added their cases: refused before anything runs."""
    proc = mlnb(tmp_path / "s", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert runs(tmp_path / "s")["run_id"] == []


@pytest.mark.slow
def test_allow_unknown_params_runs_a_notebook_without_a_parameters_cell_recording_tags(
    tmp_path: Path,
) -> None:
    """Issue 11 item 1: the value injected at the top is recorded as a tag, not a param
    (the notebook's own assignment may override it), and the run says why."""
    proc = mlnb(tmp_path / "s", "run", str(NOTEBOOKS / "out_of_order.ipynb"), "-p", "lr", "0.2",
                "--allow-unknown-params")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = runs(tmp_path / "s")
    assert table["status"] == ["finished"]
    assert "params.lr" not in table
    assert table["tags.mlnb.unknown_param.lr"] == ["0.2"]
    assert "no cell tagged 'parameters'" in table["tags.mlnb.warning"][0]


@pytest.mark.slow
def test_a_kernelspec_named_python_runs_as_under_papermill(tmp_path: Path) -> None:
    """Issue 11 item 13: papermill's test_autosave.ipynb (kernelspec `python`) exited 2."""
    proc = mlnb(tmp_path / "s", "run", str(NOTEBOOKS / "papermill" / "test_autosave.ipynb"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs(tmp_path / "s")["status"] == ["finished"]


@pytest.mark.slow
def test_run_show_and_report_say_which_cell_failed_how_and_where(tmp_path: Path) -> None:
    """Issue 11 item 3: `mlnb run` printed a JobError repr (sometimes with message='');
    run, show and report now print the cell, its first line, the exception and the last
    frames. Also `%track metric accuracy=acc` logs the variable's value inside a job."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in [
        "%load_ext mlnb\nacc = 0.9\n%track metric accuracy=acc",
        "def f():\n    return 1 / 0", "def g():\n    return f()", "g()  # the call",
    ]]  # fmt: skip
    path = tmp_path / "frames.ipynb"
    nbformat.write(nb, path)
    store = tmp_path / "s"
    proc = mlnb(store, "run", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    headline = "cell 3 `g()  # the call`: ZeroDivisionError: division by zero"
    assert headline in proc.stderr and "JobError(" not in proc.stderr
    assert "----> 2     return 1 / 0" in proc.stderr  # the last frame
    table = runs(store)
    assert table["metrics.accuracy"] == [0.9]
    run_id = table["run_id"][0]
    shown = mlnb(store, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert headline in shown.stdout and "----> 2     return 1 / 0" in shown.stdout
    report = mlnb(store, "report", run_id, "--no-plots")
    assert report.returncode == 0, report.stderr
    # Markdown: the headline is user text, escaped there (issue 10 item 10)
    assert f"status failed ({escape_markdown(headline)})" in report.stdout
    assert "----> 2     return 1 / 0" in report.stdout


@pytest.mark.slow
def test_mlnb_test_does_not_warn_about_notebooks_without_a_parameters_cell(
    tmp_path: Path,
) -> None:
    """Issue 11 item 16: `mlnb test` printed papermill's "Input notebook does not contain
    a cell with tag 'parameters'" for every such notebook."""
    folder = tmp_path / "nbs"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / "out_of_order.ipynb", folder)
    proc = mlnb(tmp_path / "s", "test", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "does not contain a cell with tag" not in proc.stdout + proc.stderr


def _in_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; its exit code and output."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # 24 rows x 80 columns, as a terminal window has (a fresh pty is 0 x 0: tqdm draws nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("ci", [False, True])
def test_a_progress_bar_shows_on_a_terminal_unless_ci_is_set(tmp_path: Path, ci: bool) -> None:
    shutil.copy(NOTEBOOKS / "job_train.ipynb", tmp_path / "train.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MLNB_STORE"] = str(tmp_path / "store")
    if ci:
        env["CI"] = "true"
    code, out = _in_terminal([sys.executable, "-m", "mlnb", "run", "train.ipynb"], env, tmp_path)
    assert code == 0, out
    assert ("Executing:" in out) is not ci, out  # tqdm's bar, as papermill labels it
    if not ci:
        assert "6/6" in out  # every cell counted: 5 and papermill's injected parameters
