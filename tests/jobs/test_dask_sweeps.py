"""Sweeps on a Dask cluster, hardened (issue 16 item 4): a running count, Ctrl-C that stops
the workers' kernels, the kernel checked on the workers, a lost worker's child run again
once. One real ``LocalCluster`` (two worker processes) serves the module; its workers see a
kernel the test process does not (``JUPYTER_PATH``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

import mlnb
from mlnb.errors import SweepFailedError
from mlnb.store import Store

pytestmark = [
    pytest.mark.slow,
    # distributed warns about the machine, not about mlnb (a busy disk, a port in use)
    pytest.mark.filterwarnings("ignore:::distributed"),
]

MLNB = [sys.executable, "-m", "mlnb"]
WORKER_KERNEL = "mlnb-worker-only"

# Each attempt appends "<kernel pid> <worker pid>" to its marker file; the first `long`
# attempts then sleep a minute (long enough to be stopped or lost), later ones finish.
STEP = """\
import os, time
import mlnb
with open(marker, "a") as f:
    f.write(f"{os.getpid()} {os.getppid()}\\n")
attempt = len(Path(marker).read_text().splitlines())
time.sleep(60 if attempt <= long else 0)
mlnb.log_metric("attempt", attempt)
"""


def _kernelspec(jupyter: Path, name: str) -> None:
    spec = jupyter / "kernels" / name
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": name, "language": "python"})
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    distributed = pytest.importorskip("distributed")
    jupyter = tmp_path_factory.mktemp("worker-jupyter")
    _kernelspec(jupyter, WORKER_KERNEL)
    cl = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None, env={"JUPYTER_PATH": str(jupyter)},
    )  # fmt: skip
    try:
        yield cl
    finally:
        cl.close()


@pytest.fixture
def notebook(tmp_path: Path) -> str:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('marker = ""\nlong = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from pathlib import Path\n" + STEP)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "step.ipynb"
    nbformat.write(nb, str(path))
    return str(path)


def _attempts(marker: Path) -> list[tuple[int, int]]:
    """(kernel pid, worker pid) of each attempt so far: whole lines only. The marker
    exists from the kernel's ``open()``, before its line is written at ``close()``."""
    text = marker.read_text() if marker.exists() else ""
    lines = [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]
    return [(int(a), int(b)) for a, b in lines]


def _inside(markers: list[Path]) -> int:
    """How many children have written their attempt (are inside their cell)."""
    return sum(bool(_attempts(m)) for m in markers)


def _wait_for(what: str, ok: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _statuses(store: Path) -> dict[str, str]:
    with Store(store) as st:
        runs = st.search_runs(None, order_by="name")
    return dict(zip(runs["name"], runs["status"], strict=True))


def _sweep_cli(store: Path, notebook: str, markers: list[Path], cluster: Any) -> Any:
    return subprocess.Popen(
        [*MLNB, "--store", str(store), "sweep", notebook,
         "-g", "marker=" + ",".join(map(str, markers)), "-p", "long", "9",
         "--executor", "dask", "--scheduler", cluster.scheduler_address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _kill_kernels(markers: list[Path]) -> None:
    for marker in markers:
        for pid, _ in _attempts(marker):
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()


def test_dask_sweep_shows_its_children_running(cluster: Any, notebook: str, tmp_path: Path) -> None:
    """Issue 16 item 4, defect 2: a Dask child stayed ``queued`` in the store until its
    bundle arrived, so `mlnb runs` showed no running count. Failed before the fix (only the
    parent was running)."""
    store, markers = tmp_path / "s", [tmp_path / f"m{i}" for i in range(3)]
    proc = _sweep_cli(store, notebook, markers, cluster)
    try:
        _wait_for("two children inside their cells", lambda: _inside(markers) == 2)
        _wait_for(
            "the store to show them running",
            lambda: sorted(_statuses(store).values()).count("running") == 3,
            timeout=10,
        )
        assert sorted(_statuses(store).values()) == ["queued", "running", "running", "running"]
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_kernels(markers)


def test_dask_sweep_ctrl_c_stops_the_kernels_on_the_workers(
    cluster: Any, notebook: str, tmp_path: Path
) -> None:
    """Issue 16 item 4, defect 1: Ctrl-C cancelled the Dask futures, but a task already
    running kept its kernel to the end on the worker. Failed before the fix (both kernels
    were still alive)."""
    store, markers = tmp_path / "s", [tmp_path / f"m{i}" for i in range(3)]
    proc = _sweep_cli(store, notebook, markers, cluster)
    try:
        _wait_for("two children inside their cells", lambda: _inside(markers) == 2)
        kernels = [psutil.Process(pid) for m in markers for pid, _ in _attempts(m)]
        assert len(kernels) == 2
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        _gone, alive = psutil.wait_procs(kernels, timeout=15)
        assert not alive, "kernels still running on the workers after Ctrl-C"
        assert set(_statuses(store).values()) == {"killed"}  # the parent and 3 children
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_kernels(markers)


def test_dask_sweep_checks_the_kernel_on_the_workers(
    cluster: Any, notebook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 item 4, defect 3: the kernel name was checked on the client only, so a
    kernel only the workers have was refused, and one only the client has failed each child
    with no word of where. Failed before the fix (InvalidInputError on the client)."""
    client_jupyter = tmp_path / "client-jupyter"
    _kernelspec(client_jupyter, "mlnb-client-only")
    monkeypatch.setenv("JUPYTER_PATH", str(client_jupyter))
    with Store(tmp_path / "s") as st:
        ok = mlnb.sweep(
            notebook, {"marker": [str(tmp_path / "a")]}, parameters={"long": 0},
            kernel=WORKER_KERNEL, executor="dask", scheduler=cluster.scheduler_address,
            store=st,
        )  # fmt: skip
        assert ok.status == "finished", ok
        with pytest.raises(SweepFailedError) as info:
            mlnb.sweep(
                notebook, {"marker": [str(tmp_path / "b")]}, parameters={"long": 0},
                kernel="mlnb-client-only", executor="dask",
                scheduler=cluster.scheduler_address, store=st,
            )  # fmt: skip
        child = info.value.result.children[0]
        assert child.status == "failed" and child.error is not None
        assert "no kernel named 'mlnb-client-only'" in child.error.message
        assert "on Dask worker tcp://127.0.0.1:" in child.error.message
        assert st.get_run(child.run_id).tags["mlnb.error.message"] == child.error.message
        assert not (tmp_path / "b").exists()  # refused before any kernel started


def test_dask_child_whose_worker_is_lost_runs_again_once(
    cluster: Any, notebook: str, tmp_path: Path
) -> None:
    """Issue 16 item 4, defect 4: a worker lost mid-task had Dask run the child again
    silently (up to three times). Now it runs again once, recorded (``mlnb.retries`` and the
    reason); a second loss fails the child saying so. Failed before the fix (no tag)."""
    once, twice = tmp_path / "once", tmp_path / "twice"
    longs = {once: 1, twice: 2}  # attempts that sleep, each of them killed below
    result: dict[str, Any] = {}

    def run() -> None:
        with Store(tmp_path / "s") as st:
            try:
                result["r"] = mlnb.sweep(
                    notebook, {"marker": [str(once), str(twice)], "long": [1, 2]},
                    mode="zip", executor="dask", scheduler=cluster.scheduler_address,
                    store=st,
                )  # fmt: skip
            except BaseException as exc:  # reported below
                result["r"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while thread.is_alive() and time.monotonic() < deadline:
            for marker, long in longs.items():
                for n, (kernel, worker) in enumerate(_attempts(marker), 1):
                    if n <= long and worker not in killed:
                        assert worker != os.getpid()
                        killed.add(worker)
                        psutil.Process(worker).kill()  # the worker first: then the kernel
                        psutil.wait_procs([psutil.Process(kernel)], timeout=0.1)
                        if psutil.pid_exists(kernel):
                            psutil.Process(kernel).kill()
            time.sleep(0.2)
        thread.join(timeout=60)
    finally:
        _kill_kernels([once, twice])
    outcome = result["r"]
    assert not isinstance(outcome, BaseException), outcome
    with Store(tmp_path / "s") as st:
        first, second = outcome.children
        rec = st.get_run(first.run_id)
        assert first.status == "finished" and rec.metrics["attempt"] == 2
        assert rec.tags["mlnb.retries"] == "1"
        assert "lost" in rec.tags["mlnb.retry_reason"]
        assert second.status == "failed" and second.error is not None
        assert "lost twice" in second.error.message
        assert st.get_run(second.run_id).tags["mlnb.retries"] == "1"
    assert len(_attempts(twice)) >= 2
