"""Measurements of the start-up section; runs inside ``.bench-venv``, one task a process.

Usage: ``python startup_worker.py TASK '{"json": "args"}'``, run from a git repository
(``startup.py`` copies this file into one as its ``train.py``, so that both tools see the
script they run inside a repository). Self-contained on purpose: it prints one
``BENCH-RESULT {...}`` line, as ``_common.emit`` does.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

RESULT_PREFIX = "BENCH-RESULT "


def summarize(samples_ns: list[int]) -> dict:
    us = sorted(s / 1000 for s in samples_ns)
    return {
        "n": len(us),
        "p50_us": statistics.median(us),
        "p99_us": us[min(len(us) - 1, round(0.99 * len(us)))],
        "mean_us": statistics.fmean(us),
    }


def pairs(start, end, n: int) -> dict:
    """The first start+end pair of the process apart (it fills caches), then ``n`` pairs."""
    ns = time.perf_counter_ns
    t0 = ns()
    start()
    end()
    first = ns() - t0
    for _ in range(2):  # warm-up
        start()
        end()
    out = [0] * n
    for i in range(n):
        t0 = ns()
        start()
        end()
        out[i] = ns() - t0
    return {"first_us": first / 1000, **summarize(out)}


def task_mlnb_pairs(args: dict) -> dict:
    import mlnb

    mlnb.get_store()  # creates the store (migrations) before the first pair, as MLflow's is
    return pairs(mlnb.start_run, mlnb.end_run, args["n"])


def task_mlflow_pairs(args: dict) -> dict:
    mlflow = _mlflow(args)
    return pairs(mlflow.start_run, mlflow.end_run, args["n"])


def params(log_param, n: int) -> dict:
    ns = time.perf_counter_ns
    for i in range(20):  # warm-up
        log_param(f"w{i}", i)
    out = [0] * n
    for i in range(n):
        key = f"p{i}"
        t0 = ns()
        log_param(key, i)
        out[i] = ns() - t0
    return summarize(out)


def task_mlnb_params(args: dict) -> dict:
    import mlnb

    with mlnb.start_run() as run:
        result = params(mlnb.log_param, args["n"])
    stored = len(mlnb.get_run(run.run_id).params)
    return {**result, "params_stored": stored, "raw": raw_inserts(args["store"], args["n"])}


def raw_inserts(store: str, n: int) -> dict:
    """The floor: one plain ``INSERT`` of a param row a statement (autocommit, so one
    committed transaction each) with ``sqlite3`` on the same file, with mlnb's pragmas."""
    import glob
    import sqlite3

    path = sorted(glob.glob(f"{store}/**/*.db", recursive=True))[0]
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
        conn.execute(f"PRAGMA {pragma}")
    rowid = conn.execute("SELECT max(id) FROM runs").fetchone()[0]
    sql = "INSERT INTO params (run, key, value, type, value_num) VALUES (?, ?, ?, ?, ?)"
    ns = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        values = (rowid, f"raw{i}", str(i), "int", float(i))
        t0 = ns()
        conn.execute(sql, values)
        out[i] = ns() - t0
    conn.close()
    return summarize(out)


def task_mlflow_params(args: dict) -> dict:
    mlflow = _mlflow(args)
    with mlflow.start_run():
        return params(mlflow.log_param, args["n"])


def _mlflow(args: dict):
    import logging

    import mlflow

    for name in ("alembic", "mlflow", "sqlalchemy", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(f"sqlite:///{args['db']}")
    mlflow.set_experiment("startup")
    return mlflow


def main() -> None:
    task, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    fn = globals().get(f"task_{task}")
    if fn is None:
        raise SystemExit(f"unknown task {task!r}")
    result = fn(json.loads(raw))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
