"""`mlnb run` and `mlnb params` as a user types them (real kernels through papermill)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlnb.store import Store

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
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
    ],
)  # fmt: skip
def test_usage_and_parameter_errors_exit_2_and_record_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    proc = mlnb(tmp_path / "s", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert runs(tmp_path / "s")["run_id"] == []


@pytest.mark.slow
def test_a_notebook_without_a_parameters_cell_runs_with_a_warning_on_the_run(
    tmp_path: Path,
) -> None:
    proc = mlnb(tmp_path / "s", "run", str(NOTEBOOKS / "out_of_order.ipynb"), "-p", "lr", "0.2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = runs(tmp_path / "s")
    assert table["status"] == ["finished"]
    assert "no cell tagged 'parameters'" in table["tags.mlnb.warning"][0]


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
