"""The mlflow_interop section: pushing runs to a real MLflow tracking server and pulling
them back, against copying a run the way mlflow-export-import does, with the MLflow client.

    python benchmarks/mlflow_interop.py [--quick] [--out docs/benchmarks.md]

A real ``mlflow server`` (SQLite backend, served artifacts, one worker) is started on
127.0.0.1 and stopped by its PID. A local store holds one finished run with 10,000 metric
rows (10 metrics × 1,000 steps), 20 params, 5 tags and one artifact. In a fresh process
of the dev venv (where ``mlnb[mlflow]`` is installed):

- ``mlnb.mlflow_push`` of that run into a new experiment (budget < 5 s on loopback), then
  again (nothing new: what the server has is checked, nothing sent);
- ``mlnb.mlflow_pull`` of it into a new store, then again;
- the copy of the same run, already on the server, into another experiment as
  mlflow-export-import copies a run with the client: ``get_run``, ``get_metric_history``
  per metric, ``create_run``, ``log_batch`` in chunks within MLflow's limits (100 params
  or tags, 1,000 metrics a request), the artifact downloaded and uploaded,
  ``set_terminated``.

Each is repeated (3 times, 1 with ``--quick``) on a new run, and the median is shown. The
MLflow client's import (~2 s) is paid once before the timings and shown apart.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    command_block,
    dev_python,
    fmt_time,
    load_average,
    log,
    run_section_worker,
    section_main,
    table,
    verdict,
)

NAME = "mlflow_interop"
BUDGET_S = 5.0
METRICS, STEPS, PARAMS = 10, 1000, 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A real ``mlflow server`` in its own process group; returns it and its URI."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow = Path(dev_python()).parent / "mlflow"
    with (folder / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError((folder / "server.log").read_text()[-3000:])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def _log_run(store: Any, experiment: str) -> str:
    import mlnb

    with mlnb.start_run("bench", experiment=experiment, store=store, capture=False) as run:
        run.log_params({f"p{i}": i / 7 for i in range(PARAMS)})
        run.set_tags({f"t{i}": f"value {i}" for i in range(5)})
        for step in range(STEPS):
            run.log_metrics({f"m{k}": (step + k) / STEPS for k in range(METRICS)}, step=step)
        run.log_artifact(b"x" * 10_000, name="model/weights.bin")
    return run.run_id


def _export_import_copy(client: Any, source_id: str, experiment_id: str, tmp: Path) -> str:
    """Copy one run as mlflow-export-import does: read it whole through the client, create
    the copy, log its data in batches within MLflow's limits, copy the artifacts."""
    from mlflow.entities import Metric, Param, RunTag

    run = client.get_run(source_id)
    points = [
        Metric(m.key, m.value, m.timestamp, m.step)
        for key in run.data.metrics
        for m in client.get_metric_history(source_id, key)
    ]
    copy = client.create_run(experiment_id, start_time=run.info.start_time,
                             run_name=run.info.run_name)  # fmt: skip
    target = copy.info.run_id
    params = [Param(k, v) for k, v in run.data.params.items()]
    tags = [RunTag(k, v) for k, v in run.data.tags.items() if not k.startswith("mlflow.")]
    for start in range(0, len(params), 100):
        client.log_batch(target, params=params[start : start + 100])
    for start in range(0, len(tags), 100):
        client.log_batch(target, tags=tags[start : start + 100])
    for start in range(0, len(points), 1000):
        client.log_batch(target, metrics=points[start : start + 1000])
    local = client.download_artifacts(source_id, "", str(tmp))
    client.log_artifacts(target, local)
    client.set_terminated(target, run.info.status, end_time=run.info.end_time)
    return str(target)


def worker(task: str, config: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: build runs, push, push again, pull, pull again, and copy."""
    import mlnb
    from mlnb.interop.mlflow import client_for

    uri, repeats = config["uri"], config["repeats"]
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-mlflow-"))
    t0 = time.perf_counter()
    client = client_for(uri)  # imports the MLflow client
    client.search_experiments(max_results=1)
    import_s = time.perf_counter() - t0
    out: dict[str, list[float]] = {k: [] for k in ("push", "repush", "pull", "repull", "copy")}
    for i in range(repeats):
        store = mlnb.Store(work / f"store{i}")
        _log_run(store, f"bench-{i}")
        t0 = time.perf_counter()
        report = mlnb.mlflow_push(uri, store=store)
        out["push"].append(time.perf_counter() - t0)
        assert report.metrics == METRICS * STEPS, report
        t0 = time.perf_counter()
        again = mlnb.mlflow_push(uri, store=store)
        out["repush"].append(time.perf_counter() - t0)
        assert again.metrics == 0 and again.unchanged == 1, again
        there = mlnb.Store(work / f"pulled{i}")
        t0 = time.perf_counter()
        pulled = mlnb.mlflow_pull(uri, experiment=f"bench-{i}", store=there)
        out["pull"].append(time.perf_counter() - t0)
        assert pulled.metrics == METRICS * STEPS, pulled
        t0 = time.perf_counter()
        mlnb.mlflow_pull(uri, experiment=f"bench-{i}", store=there)
        out["repull"].append(time.perf_counter() - t0)
        source = next(iter(report.run_ids.values()))
        experiment_id = client.create_experiment(f"copy-{i}")
        t0 = time.perf_counter()
        _export_import_copy(client, source, experiment_id, work / f"dl{i}")
        out["copy"].append(time.perf_counter() - t0)
    return {"import": import_s, **{k: statistics.median(v) for k, v in out.items()}}


def measure(quick: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="mlnb-bench-mlflow-server-"))
    log(f"mlflow_interop: starting mlflow server in {folder}")
    proc, uri = start_server(folder)
    try:
        before = load_average()
        results = run_section_worker(__file__, "all", {"uri": uri, "repeats": 1 if quick else 3})
        results["load_average"] = f"{before} at start, {load_average()} at end"
        results["repeats"] = 1 if quick else 3
    finally:
        stop_server(proc)
    return results


def render(res: dict[str, Any], command: str) -> str:
    rows = [
        ["`mlnb.mlflow_push`: one run, 10,000 metric rows, 20 params, 5 tags, 1 artifact",
         fmt_time(res["push"]), verdict(res["push"] < BUDGET_S) + " (< 5 s)"],
        ["… pushed again (nothing new: the server's copy is checked, nothing sent)",
         fmt_time(res["repush"]), ""],
        ["`mlnb.mlflow_pull` of that run into a new store", fmt_time(res["pull"]), ""],
        ["… pulled again (nothing new)", fmt_time(res["repull"]), ""],
        ["mlflow-export-import-style copy of the same run with the MLflow client "
         "(read it, create, `log_batch` in chunks, artifacts, `set_terminated`)",
         fmt_time(res["copy"]), ""],
        ["importing the MLflow client and the first request (once per process)",
         fmt_time(res["import"]), ""],
    ]  # fmt: skip
    return "\n".join(
        [
            "## MLflow interop: push and pull against a real tracking server",
            "",
            "A real `mlflow server` (MLflow 3.17.2, SQLite backend, served artifacts, one "
            "worker) on 127.0.0.1, started and stopped by PID. One finished run of "
            f"{METRICS} metrics × {STEPS:,} steps ({METRICS * STEPS:,} rows), {PARAMS} params, "
            "5 tags and a 10 kB artifact, pushed into a new experiment; median of "
            f"{res['repeats']} runs. A push sends params and tags in batches of 100 and metric "
            "points in batches of 1,000 (MLflow's limits), so 10,000 rows are 10 requests; "
            "the export-import-style copy sends the same requests but first reads the run "
            "back from the server, which mlnb reads from its local file instead. A push "
            "again and a pull again read what the server holds (the run, each metric's "
            "history, the artifact list) and send or store nothing. "
            f"Load average: {res['load_average']}.",
            "",
            *command_block(command, "Command:"),
            "",
            table(["what", "time", "budget"], rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="one repeat",
        argv=argv,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
