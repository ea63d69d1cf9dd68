"""Sweeps: the grid (pure), then `mlnb sweep` / `mlnb.sweep` with real kernels, worker
processes, SIGINT and a real Dask LocalCluster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import mlnb
from mlnb.errors import InvalidInputError
from mlnb.jobs.grid import Distribution, expand_grid, load_grid_file, parse_grid_arg
from mlnb.jobs.runner import run_notebook
from mlnb.store import Store
from tests.conftest import REPO

NOTEBOOKS = REPO / "tests" / "notebooks"
TRAIN = str(NOTEBOOKS / "job_train.ipynb")
STEP = str(NOTEBOOKS / "sweep_step.ipynb")
MLNB = [sys.executable, "-m", "mlnb"]


def mlnb_cli(store: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MLNB, "--store", str(store), *args], capture_output=True, text=True, timeout=timeout
    )


def table(store: Path, flt: str | None = None) -> dict[str, list]:
    with Store(store) as st:
        return st.search_runs(flt, order_by="name")


# -- the grid --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=0.001,0.01,0.1", ("lr", [0.001, 0.01, 0.1])),
        ("depth=3,5", ("depth", [3, 5])),
        ("flag=true,False,None", ("flag", [True, False, None])),
        ("model=rf, logreg", ("model", ["rf", "logreg"])),
        ("layers=[[64, 32], [128]]", ("layers", [[64, 32], [128]])),
        ("name=['a,b', c]", ("name", ["a,b", "c"])),
        ("lr=loguniform(1e-4, 1e-1)", ("lr", Distribution("loguniform", 1e-4, 1e-1))),
    ],
)
def test_parse_grid_arg_reads_values_like_papermill(text: str, expected: tuple) -> None:
    assert parse_grid_arg(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "NAME=VALUES"),
        ("lr=", "no values"),
        ("2x=1,2", "identifier"),
        ("lr=[1, 2", "YAML"),
        ("lr=loguniform(0, 1)", "> 0"),
        ("lr=uniform(2, 1)", "low < high"),
        ("n=randint(1.5, 3)", "integers"),
    ],
)
def test_parse_grid_arg_refuses_bad_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_grid_arg(text)


def test_expand_grid_product_zip_and_their_errors() -> None:
    grid = {"lr": [0.1, 0.2], "depth": [3, 5]}
    assert expand_grid(grid) == [
        {"lr": 0.1, "depth": 3}, {"lr": 0.1, "depth": 5},
        {"lr": 0.2, "depth": 3}, {"lr": 0.2, "depth": 5},
    ]  # fmt: skip
    assert expand_grid(grid, mode="zip") == [{"lr": 0.1, "depth": 3}, {"lr": 0.2, "depth": 5}]
    assert expand_grid({"lr": 0.5, "d": [1, 2]}) == [{"lr": 0.5, "d": 1}, {"lr": 0.5, "d": 2}]
    with pytest.raises(InvalidInputError, match="equal length.*lr: 2, depth: 3"):
        expand_grid({"lr": [1, 2], "depth": [1, 2, 3]}, mode="zip")
    with pytest.raises(InvalidInputError, match="empty"):
        expand_grid({})
    with pytest.raises(InvalidInputError, match="no values"):
        expand_grid({"lr": []})
    with pytest.raises(InvalidInputError, match="more than 10,000"):
        expand_grid({"a": list(range(200)), "b": list(range(200))})
    with pytest.raises(InvalidInputError, match="random=N"):
        expand_grid({"lr": Distribution("uniform", 0, 1)})


def test_random_sampling_is_reproducible_with_a_seed() -> None:
    grid = {"lr": [0.001, 0.01, 0.1, 1.0], "depth": [2, 3, 4, 5, 6]}
    first = expand_grid(grid, random=6, seed=7)
    assert first == expand_grid(grid, random=6, seed=7)
    assert first != expand_grid(grid, random=6, seed=8)
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 6  # distinct points
    full = expand_grid(grid)
    assert all(p in full for p in first)
    with pytest.raises(InvalidInputError, match="more than the grid's 20 points"):
        expand_grid(grid, random=21, seed=1)
    ranges = {"lr": Distribution("loguniform", 1e-4, 1e-1), "depth": [3, 5]}
    drawn = expand_grid(ranges, random=50, seed=3)
    assert drawn == expand_grid(ranges, random=50, seed=3)
    assert all(1e-4 <= p["lr"] <= 1e-1 and p["depth"] in (3, 5) for p in drawn)
    assert min(p["lr"] for p in drawn) < 1e-3 < max(p["lr"] for p in drawn)  # log scale


def test_load_grid_file_accepts_a_mapping_or_points_and_refuses_bad_yaml(tmp_path: Path) -> None:
    f = tmp_path / "g.yaml"
    f.write_text("lr: [0.01, 0.1]\ndepth: 3\nwd: loguniform(1e-5, 1e-2)\n")
    assert load_grid_file(f) == {
        "lr": [0.01, 0.1], "depth": [3], "wd": Distribution("loguniform", 1e-5, 1e-2)
    }  # fmt: skip
    f.write_text("- {lr: 0.1, depth: 3}\n- {lr: 0.2}\n")
    assert load_grid_file(f) == [{"lr": 0.1, "depth": 3}, {"lr": 0.2}]
    for text, message in [("lr: [0.1\n", "not valid YAML"), ("- 1\n- 2\n", "mapping"),
                          ("just text", "must map"), ("lr: []", "no values")]:  # fmt: skip
        f.write_text(text)
        with pytest.raises(InvalidInputError, match=message):
            load_grid_file(f)


# -- usage errors: before any run -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-g", "nope=1,2"), "the parameters cell of job_train.ipynb defines no 'nope'"),
        (("-g", "epoch=1,2"), "did you mean 'epochs'?"),  # issue 11 item 1
        (("-g", "lr=0.1", "-p", "epoch", "2"), "did you mean 'epochs'?"),
        (("-g", "epochs=1,many", "--strict-params"), "epochs"),
        (("-g", "lr=0.1,0.2", "-g", "epochs=1,2,3", "--mode", "zip"), "equal length"),
        (("-g", "lr=0.1", "-p", "lr", "0.2"), "both swept and fixed"),
        (("--from-file", "grid.yaml"), "not valid YAML"),
        ((), "the grid is empty"),
        (("-g", "lr=0.1", "--check", "metrics.acc >"), "expected"),
        (("-g", "lr=0.1", "--sort", "metrics.acc sideways"), "sideways"),
        (("-g", "lr=0.1", "--executor", "dask"), "--scheduler"),
    ],
)
def test_usage_errors_exit_2_before_any_run(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    Path("grid.yaml").write_text("lr: [0.1, 0.2\n")
    proc = mlnb_cli(tmp_path / "s", "sweep", TRAIN, *args, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert table(tmp_path / "s")["run_id"] == []


def test_an_unreachable_dask_scheduler_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    started = time.monotonic()
    proc = mlnb_cli(
        tmp_path / "s", "sweep", TRAIN, "-g", "lr=0.1,0.2", "--executor", "dask",
        "--scheduler", "tcp://127.0.0.1:9", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr
    assert time.monotonic() - started < 60
    assert table(tmp_path / "s")["run_id"] == []


# -- real sweeps --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_2x2_grid_on_two_workers_makes_a_parent_and_four_children(tmp_path: Path) -> None:
    proc = mlnb_cli(
        tmp_path / "s", "sweep", TRAIN, "-g", "lr=0.1,0.5", "-g", "epochs=1,2", "-j", "2",
        "-e", "grid", "-t", "team=a", "-p", "model", "rf", "--sort", "metrics.loss",
        "--check", "metrics.acc > 0.55",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = table(tmp_path / "s")
    assert runs["name"] == ["job_train sweep", *(f"job_train-{i}" for i in range(1, 5))]
    parent = runs["run_id"][0]
    assert runs["status"] == ["finished"] * 5 and runs["experiment"] == ["grid"] * 5
    assert runs["tags.mlnb.sweep"][0] == "1" and runs["params.grid.lr"][0] == [0.1, 0.5]
    assert runs["parent_run_id"] == [None] + [parent] * 4
    assert runs["tags.team"] == ["a"] * 5
    children = {(lr, ep): i for i, (lr, ep) in enumerate(
        zip(runs["params.lr"], runs["params.epochs"], strict=True)) if i}  # fmt: skip
    assert sorted(children) == [(0.1, 1), (0.1, 2), (0.5, 1), (0.5, 2)]
    for (lr, epochs), i in children.items():
        assert runs["params.model"][i] == "rf"
        assert runs["metrics.acc"][i] == pytest.approx(0.5 + lr)
        assert runs["metrics.loss"][i] == pytest.approx((1 - lr) ** epochs)
        assert runs["tags.mlnb.check.0"][i] == "pass: metrics.acc > 0.55"
        with Store(tmp_path / "s") as st:  # and as a row of the checks table, as mlnb run does
            [check] = st.get_checks(runs["run_id"][i], kind="check")
            assert (check.name, check.passed, check.value) == (
                "metrics.acc > 0.55",
                True,
                pytest.approx(0.5 + lr),
            )
    # the table is sorted by the loss, smallest first
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("job", "run_id"))]
    shown = [line.split()[1] for line in proc.stdout.splitlines()[1:5]]
    order = sorted(range(1, 5), key=lambda i: runs["metrics.loss"][i])
    assert shown == [runs["name"][i] for i in order], lines
    assert "finished" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_zip_mode_through_the_api_runs_the_pairs(store: Store) -> None:
    result = mlnb.sweep(
        STEP, {"score": [0.1, 0.2], "seconds": [0, 0.1]}, mode="zip", workers=2, store=store,
        checks=["metrics.score > 0.15"],
    )  # fmt: skip
    assert result.exit_code == 3 and result.status == "finished"
    assert [c.params for c in result.children] == [
        {"score": 0.1, "seconds": 0}, {"score": 0.2, "seconds": 0.1}
    ]  # fmt: skip
    assert [c.failed_checks for c in result.children] == [("metrics.score > 0.15",), ()]
    for child in result.children:
        rec = store.get_run(child.run_id)
        assert rec.parent_run_id == result.run_id and rec.metrics["score"] == child.params["score"]
        assert "job/sweep_step.ipynb" in {a.path for a in rec.artifacts}
    assert store.get_run(result.run_id).params["sweep.mode"] == "zip"


@pytest.mark.slow
def test_a_failing_child_fails_the_sweep_and_the_others_finish(tmp_path: Path) -> None:
    """Issue 11 item 3: the failed child's line names the cell, its first source line,
    the exception and the last frame of the traceback."""
    proc = mlnb_cli(tmp_path / "s", "sweep", STEP, "-g", "fail=false,true,false", "-j", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = table(tmp_path / "s")
    assert runs["status"] == ["failed", "finished", "failed", "finished"]
    assert runs["tags.mlnb.error.name"][2] == "ValueError"
    assert "1 not finished" in proc.stdout
    why = f"{runs['run_id'][2][:8]} failed: cell 2 `import time`: ValueError: asked to fail"
    assert why in proc.stderr  # why, as `mlnb run` says
    assert 'raise ValueError("asked to fail")' in proc.stderr  # the last frame


@pytest.mark.slow
def test_allow_unknown_params_sweeps_names_the_notebook_lacks_as_tags(tmp_path: Path) -> None:
    """Issue 11 item 1: `mlnb sweep --allow-unknown-params` injects grid names that the
    parameters cell lacks and records them as tags, not params."""
    proc = mlnb_cli(tmp_path / "s", "sweep", STEP, "-g", "score=0.5", "-g", "extra=1,2",
                    "--allow-unknown-params")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = table(tmp_path / "s")  # the parent, then its children
    assert runs["name"] == ["sweep_step sweep", "sweep_step-1", "sweep_step-2"]
    assert runs["status"] == ["finished"] * 3
    assert "params.extra" not in runs
    assert runs["tags.mlnb.unknown_param.extra"] == [None, "1", "2"]
    assert runs["params.score"][1:] == [0.5, 0.5] and runs["params.fail"][1:] == [False, False]


@pytest.mark.slow
def test_sweep_sort_key_no_child_has_gets_a_note(tmp_path: Path) -> None:
    """Issue 11 item 6: `--sort "metrics.acuracy desc"` sorted nothing, silently."""
    proc = mlnb_cli(
        tmp_path / "s", "sweep", STEP, "-g", "score=1,2", "--sort", "metrics.scroe desc"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: no run has metric 'scroe'; did you mean 'score'?" in proc.stderr.splitlines()


@pytest.mark.slow
def test_fail_fast_stops_the_rest(tmp_path: Path) -> None:
    grid = tmp_path / "points.yaml"
    grid.write_text(
        "- {fail: true}\n- {seconds: 120}\n- {seconds: 120}\n- {seconds: 120}\n- {seconds: 120}\n"
    )
    started = time.monotonic()
    proc = mlnb_cli(tmp_path / "s", "sweep", STEP, "--from-file", str(grid), "-j", "2",
                    "--fail-fast")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - started < 90
    runs = table(tmp_path / "s")
    assert runs["status"][0] == "failed"  # the parent
    assert runs["status"][1] == "failed"  # the child that failed
    assert set(runs["status"][2:]) == {"killed"}  # stopped or never started
    assert set(runs["tags.mlnb.sweep.cancelled"][2:]) <= {"fail_fast", None}


def _kernels_of(pid: int) -> list[psutil.Process]:
    """The kernels among the descendants of process ``pid``."""
    kernels = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            if "ipykernel" in " ".join(child.cmdline()):
                kernels.append(child)
    return kernels


@pytest.mark.slow
def test_ctrl_c_kills_the_sweep_its_children_and_their_kernels(tmp_path: Path) -> None:
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [*MLNB, "--store", str(store), "sweep", STEP, "-g", "seconds=120,121,122,123", "-j", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if store.exists() and len(table(store, "status = 'running'")["run_id"]) == 3:
                break  # the parent and two children
            time.sleep(0.3)
        else:
            raise AssertionError("the children never started")
        # a child is `running` from its claim; its kernel starts after the child's first
        # store writes (which may wait for the store's lock): wait for both kernels
        kernels = _kernels_of(proc.pid)
        while len(kernels) < 2:
            assert time.monotonic() < deadline, f"the kernels never started: {kernels}"
            time.sleep(0.1)
            kernels = _kernels_of(proc.pid)
        assert len(kernels) == 2
        time.sleep(1.5)  # inside the cells now
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    runs = table(store)
    assert runs["status"] == ["killed"] * 5, runs["status"]
    _gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert not alive


@pytest.mark.slow
def test_run_notebook_attaches_to_a_queued_run_only(store: Store) -> None:
    parent = store.create_run(name="p")
    queued = store.create_run(name="q", status="queued", parent_run_id=parent)
    store.log_params(queued, {"score": 0.3})
    result = run_notebook(STEP, parameters={"score": 0.3}, run_id=queued, store=store)
    rec = store.get_run(queued)
    assert result.run_id == queued and rec.status == "finished" and rec.name == "q"
    assert rec.parent_run_id == parent and rec.metrics["score"] == 0.3
    with pytest.raises(InvalidInputError, match="finished; a job can only attach to a queued"):
        run_notebook(STEP, run_id=queued, store=store)
    fresh = run_notebook(STEP, run_id="a" * 32, parent_run_id=parent, store=store)
    assert store.get_run(fresh.run_id).parent_run_id == parent and fresh.run_id == "a" * 32


FLAKY = """\
import os, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(1)  # the first start dies before replying, as in the port race
from ipykernel.kernelapp import launch_new_instance
sys.argv = [sys.argv[0], *sys.argv[2:]]
launch_new_instance()
"""


@pytest.mark.slow
def test_a_kernel_that_dies_at_start_is_started_again_and_recorded(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir = tmp_path / "jupyter" / "kernels" / "flaky"
    spec_dir.mkdir(parents=True)
    (tmp_path / "flaky.py").write_text(FLAKY)
    argv = [sys.executable, str(tmp_path / "flaky.py"), str(tmp_path / "marker"),
            "-f", "{connection_file}"]  # fmt: skip
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "flaky", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    with pytest.raises(Exception, match="died|respond"):
        run_notebook(STEP, kernel="flaky", store=store, start_timeout=20)
    (tmp_path / "marker").unlink()
    result = run_notebook(STEP, kernel="flaky", store=store, start_retries=2, start_timeout=20)
    rec = store.get_run(result.run_id)
    assert rec.status == "finished" and rec.tags["mlnb.kernel_start_retries"] == "1"
    assert "Kernel died" in rec.tags["mlnb.kernel_start_error"]


@pytest.mark.slow
def test_a_dask_sweep_lands_children_with_metrics_and_artifacts(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    import warnings

    # distributed warns about the machine, not about mlnb ("Port 8787 is already in use",
    # "Creating scratch directories is taking a surprisingly long time" on a busy disk);
    # with filterwarnings=error those would fail the test at random, so warnings raised by
    # distributed's own modules, and only those, are ignored while the cluster lives. (None
    # was raised in our runs here; the filter is for a loaded CI machine.)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"distributed(\.|$)")
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
        try:
            with Store(tmp_path / "s") as st:
                result = mlnb.sweep(
                    TRAIN, {"lr": [0.1, 0.5], "epochs": [2]}, executor="dask",
                    scheduler=cluster.scheduler_address, store=st, experiment="remote",
                )  # fmt: skip
                assert result.exit_code == 0 and result.status == "finished"
                assert len(result.children) == 2
                for child in result.children:
                    rec = st.get_run(child.run_id)
                    assert rec.status == "finished" and rec.parent_run_id == result.run_id
                    assert rec.experiment == "remote" and rec.source == TRAIN
                    lr = child.params["lr"]
                    assert rec.metrics["acc"] == pytest.approx(0.5 + lr)
                    steps = [s for s, _, _ in st.history(child.run_id, "loss")]
                    assert steps == [0, 1]
                    art = rec.artifact_path("job/job_train.ipynb")
                    assert '"mlnb_run_id"' in Path(art).read_text()
                again = st.search_runs(f"parent_run_id = '{result.run_id}'")
                assert len(again["run_id"]) == 2
        finally:
            cluster.close()


@pytest.mark.slow
@pytest.mark.parametrize("ci", [False, True])
def test_a_progress_line_on_a_terminal_only_without_ci(tmp_path: Path, ci: bool) -> None:
    import pty

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    proc = subprocess.run(
        [*MLNB, "--store", str(tmp_path / "s"), "sweep", STEP, "-g", "score=1,2"],
        stdout=subprocess.PIPE, stderr=follower, text=True, env=env, timeout=300,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(leader, 65536):
            seen += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert (b"2/2 done, 0 failed" in seen) is not ci, seen[-500:]


def test_a_queued_run_held_by_another_process_is_not_taken(store: Store) -> None:
    from mlnb.store.liveness import acquire_run_lock, release_run_lock

    queued = store.create_run(name="q", status="queued")
    fd = acquire_run_lock(store.locks_dir, queued)  # as a worker that claimed it would
    try:
        with pytest.raises(InvalidInputError, match="being run by another process"):
            run_notebook(STEP, run_id=queued, store=store)
    finally:
        release_run_lock(store.locks_dir, queued, fd)
    rec = store.get_run(queued)
    assert rec.status == "queued" and "mlnb.error.name" not in rec.tags


UNGUARDED = """\
import mlnb

print("the script body ran", flush=True)
result = mlnb.sweep({notebook!r}, {grid!r}, workers=2, store={store!r})
print("sweep", result.status, [c.status for c in result.children], flush=True)
"""


def run_script(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "sweep_script.py"
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


@pytest.mark.slow
def test_sweep_works_from_a_script_without_a_main_guard(tmp_path: Path) -> None:
    """Issue 11 item 2: mlnb.sweep(...) from a script without `if __name__ == "__main__":`
    re-ran the script in each worker (multiprocessing's RuntimeError), failed every child
    with "the sweep stopped", and the script still exited 0."""
    store = str(tmp_path / "s")
    proc = run_script(
        tmp_path, UNGUARDED.format(notebook=STEP, grid={"score": [0.1, 0.2]}, store=store)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("the script body ran") == 1, proc.stdout  # workers never re-run it
    assert "RuntimeError" not in proc.stderr and "bootstrapping" not in proc.stderr
    assert "sweep finished ['finished', 'finished']" in proc.stdout
    runs = table(Path(store))
    assert runs["status"] == ["finished"] * 3
    assert sorted(runs["metrics.score"][1:]) == [0.1, 0.2]


@pytest.mark.slow
def test_sweep_whose_children_all_failed_raises_and_the_cli_exits_1(tmp_path: Path) -> None:
    """Issue 11 item 2: a sweep whose every child failed returned quietly, so a script
    calling mlnb.sweep(...) exited 0. Now it raises SweepFailedError (with the result);
    `mlnb sweep` prints the table and exits 1, not 2 (a usage error)."""
    store = str(tmp_path / "s")
    proc = run_script(
        tmp_path, UNGUARDED.format(notebook=STEP, grid={"fail": [True, True]}, store=store)
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SweepFailedError: no child of sweep 'sweep_step' (" in proc.stderr
    assert ") finished (2 failed)" in proc.stderr
    assert "ValueError: asked to fail" in proc.stderr  # why, without opening the store
    assert "sweep failed" not in proc.stdout  # the script did not go on as if it had run
    cli = mlnb_cli(tmp_path / "s2", "sweep", STEP, "-g", "fail=true,true", "-j", "2")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "0 finished, 2 not finished" in cli.stdout
    assert table(tmp_path / "s2")["status"] == ["failed"] * 3


@pytest.mark.slow
def test_sweep_failed_error_carries_the_result(store: Store) -> None:
    """Issue 11 item 2: the caller that catches the error still has every child."""
    from mlnb.errors import SweepFailedError

    with pytest.raises(SweepFailedError) as caught:
        mlnb.sweep(STEP, {"fail": [True]}, store=store)
    result = caught.value.result
    assert result.status == "failed" and result.exit_code == 1
    assert [c.status for c in result.children] == ["failed"]
    assert result.children[0].error is not None
    assert result.children[0].error.name == "ValueError"
