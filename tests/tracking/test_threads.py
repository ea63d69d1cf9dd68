"""The active run per thread and asyncio task (issue 12 item 4), and the process state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import mlnb
from mlnb.errors import InvalidInputError
from mlnb.store import Store
from mlnb.tracking import fluent as tracking
from tests.conftest import run_python


def in_thread(target: Callable[[], Any]) -> Any:
    """Run ``target`` in a new thread; return its result or raise its exception."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    return out.get("result")


def test_new_thread_sees_no_active_run(store: Store) -> None:
    """Issue 12 item 4: the run stack was process-wide, so a worker thread logged into
    whatever run the main thread had open (MLflow >= 2.14: a new thread has none)."""
    with mlnb.start_run("main") as run:
        assert in_thread(mlnb.active_run) is None
        assert mlnb.active_run() is run


def test_run_started_in_a_thread_does_not_end_the_main_threads_run(store: Store) -> None:
    """Issue 12 item 4: a thread's start_run finished the main thread's run (one stack)."""
    with mlnb.start_run("main") as main:

        def work() -> str:
            with mlnb.start_run("worker") as worker:
                mlnb.log_metric("loss", 0.5)
                return worker.run_id

        worker_id = in_thread(work)
        assert mlnb.active_run() is main and main.status == "running"
        mlnb.log_metric("acc", 0.9)
    assert mlnb.get_run(main.run_id).metrics == {"acc": 0.9}
    assert mlnb.get_run(worker_id).metrics == {"loss": 0.5}


def test_use_run_hands_a_run_to_a_worker_thread(store: Store) -> None:
    """Issue 12 item 4: the one documented way to log into the caller's run from a thread."""
    with mlnb.start_run("main") as run:

        def work() -> None:
            with mlnb.use_run(run):
                assert mlnb.active_run() is run
                mlnb.log_metric("loss", 0.25)
                mlnb.log_param("worker", "yes")
            assert mlnb.active_run() is None

        in_thread(work)
        assert run.status == "running"  # handing a run over does not end it
    rec = mlnb.get_run(run.run_id)
    assert (rec.status, rec.metrics, rec.params) == ("finished", {"loss": 0.25}, {"worker": "yes"})


def test_start_run_in_a_use_run_block_leaves_the_handed_run_open(store: Store) -> None:
    """Issue 12 item 4: a worker's plain start_run must not finish the caller's run it
    was handed (a run started while another is active finishes the old one)."""
    with mlnb.start_run("main") as run:

        def work() -> tuple[str | None, str]:
            with mlnb.use_run(run):
                with mlnb.start_run("sibling") as sibling:
                    mlnb.log_metric("loss", 0.5)
                with mlnb.start_run("child", nested=True) as child:
                    pass
                after = mlnb.active_run()
                assert after is run
                return mlnb.get_run(child.run_id).parent_run_id, sibling.run_id

        parent, sibling_id = in_thread(work)
        assert run.status == "running" and parent == run.run_id
    assert mlnb.get_run(sibling_id).metrics == {"loss": 0.5}
    assert mlnb.get_run(run.run_id).status == "finished"


def test_two_threads_each_with_their_own_run_do_not_mix(store: Store) -> None:
    """Issue 12 item 4: with one process-wide stack, two workers' points landed in
    whichever run was started last."""
    barrier = threading.Barrier(2, timeout=30)
    ids: dict[str, str] = {}

    def work(name: str) -> None:
        with mlnb.start_run(name) as run:
            ids[name] = run.run_id
            barrier.wait()  # both runs are open now
            for step in range(50):
                mlnb.log_metric("value", float(len(name)), step=step)
                mlnb.set_tag("owner", name)
            barrier.wait()

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "bbb")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for name, run_id in ids.items():
        rec = mlnb.get_run(run_id)
        history = mlnb.get_store().history(run_id, "value")
        assert rec.status == "finished" and rec.tags["owner"] == name
        assert len(history) == 50 and {value for _, value, _ in history} == {float(len(name))}


def test_two_asyncio_tasks_with_handed_runs_do_not_mix(store: Store) -> None:
    """Issue 12 item 4: the stack is per asyncio task as well: two tasks interleaving at
    each await log into their own runs."""
    runs = {n: mlnb.start_run(n, nested=True) for n in ("a", "bbb")}

    async def work(name: str) -> None:
        with mlnb.use_run(runs[name]):
            for step in range(20):
                mlnb.log_metric("value", float(len(name)), step=step)
                await asyncio.sleep(0)  # the other task runs here

    async def main() -> None:
        await asyncio.gather(work("a"), work("bbb"))

    asyncio.run(main())
    for name, run in runs.items():
        run.end()
        values = {v for _, v, _ in mlnb.get_store().history(run.run_id, "value")}
        assert values == {float(len(name))}


def test_asyncio_tasks_with_their_own_stack_start_their_own_runs(store: Store) -> None:
    """Issue 12 item 4: ``use_run(None)`` gives a task a stack of its own, so two tasks
    can each start (and end) a run without finishing the other's."""
    ids: dict[str, str] = {}

    async def work(name: str) -> None:
        with mlnb.use_run(None), mlnb.start_run(name) as run:
            ids[name] = run.run_id
            for step in range(20):
                mlnb.log_metric("value", float(len(name)), step=step)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(work("a"), work("bbb"))

    asyncio.run(main())
    for name, run_id in ids.items():
        rec = mlnb.get_run(run_id)
        values = {v for _, v, _ in mlnb.get_store().history(run_id, "value")}
        assert rec.status == "finished" and values == {float(len(name))}
    assert mlnb.active_run() is None


def test_main_thread_run_started_in_a_task_outlives_the_task(store: Store) -> None:
    """Issue 12 item 4: IPython runs an async cell in a task of its own, and a ContextVar
    set in that task is gone after the cell; the main thread keeps one stack across tasks
    so the next cell still sees the run."""

    async def cell() -> mlnb.ActiveRun:
        await asyncio.sleep(0)
        return mlnb.start_run("async cell")

    run = asyncio.run(cell())
    assert mlnb.active_run() is run
    mlnb.log_metric("loss", 1.0)
    run.end()
    assert mlnb.get_run(run.run_id).metrics == {"loss": 1.0}


def test_use_run_refuses_what_is_not_an_active_run(store: Store) -> None:
    """Issue 12 item 4: a run id or an ended run cannot be handed over."""
    with pytest.raises(InvalidInputError, match="ActiveRun"), mlnb.use_run("abc"):  # type: ignore[arg-type]
        pass
    run = mlnb.start_run("done")
    run.end()
    with pytest.raises(mlnb.MlnbError, match="finished"), mlnb.use_run(run):
        pass


def test_active_run_skips_a_run_ended_by_another_thread(store: Store) -> None:
    """Issue 12 item 4: a worker holding a run the main thread ended has no active run
    (logging there starts a new run instead of failing on the ended one)."""
    run = mlnb.start_run("main")
    ended = threading.Event()
    go = threading.Event()

    def work() -> tuple[Any, str]:
        with mlnb.use_run(run):
            go.set()
            ended.wait(30)
            seen = mlnb.active_run()
            mlnb.log_metric("loss", 0.1)
            fresh = mlnb.active_run()
            assert fresh is not None
            fresh.end()
            return seen, fresh.run_id

    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(out=work()))
    thread.start()
    go.wait(30)
    run.end()
    ended.set()
    thread.join(30)
    seen, fresh_id = result["out"]
    assert seen is None and fresh_id != run.run_id
    assert mlnb.get_run(fresh_id).metrics == {"loss": 0.1}


def test_process_exit_finishes_runs_left_open_in_worker_threads(tmp_path: Path) -> None:
    """Issue 12 item 4: exit ends every run of the process, not only the main thread's."""
    where = tmp_path / "store"
    code = (
        "import threading, mlnb\n"
        f"mlnb.set_store({str(where)!r})\n"
        "def work():\n"
        "    mlnb.start_run('left open')\n"
        "    mlnb.log_metric('loss', 0.5)\n"
        "t = threading.Thread(target=work); t.start(); t.join()\n"
        "print(mlnb.active_run())\n"
    )
    assert run_python(code).stdout.strip() == "None"
    with Store(where) as st:
        (run_id,) = st.search_runs()["run_id"]
        rec = st.get_run(run_id)
    assert (rec.status, rec.metrics) == ("finished", {"loss": 0.5})


def test_state_reset_ends_runs_and_forgets_stores(tmp_path: Path) -> None:
    """Issue 12 item 4: tests reset the process state through one method, not privates."""
    tracking.set_store(tmp_path / "a")
    run = mlnb.start_run("left open")
    in_thread(lambda: mlnb.start_run("thread run"))
    tracking.state.reset()
    assert run.status == "finished" and mlnb.active_run() is None
    assert tracking.state.live_runs() == ()
    assert tracking.state.explicit_store is None and not tracking.state.stores


@pytest.mark.slow
def test_kernel_run_started_in_an_async_cell_is_active_in_later_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 4: ipykernel runs a cell with ``await`` in its own asyncio task; the
    run it starts must still be the active run of the next (synchronous) cell."""
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "store"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(s)
        for s in (
            "import asyncio, threading, mlnb",
            "await asyncio.sleep(0)\nrun = mlnb.start_run('async', experiment='kernels')",
            "assert mlnb.active_run() is run, mlnb.active_run()\nmlnb.log_metric('loss', 0.5)",
            "seen = []\nt = threading.Thread(target=lambda: seen.append(mlnb.active_run()))\n"
            "t.start(); t.join()\nassert seen == [None], seen",
            "mlnb.end_run()",
        )
    ]
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    with Store(tmp_path / "store") as st:
        (run_id,) = st.search_runs(experiment="kernels")["run_id"]
        rec = st.get_run(run_id)
    assert (rec.status, rec.metrics) == ("finished", {"loss": 0.5})
