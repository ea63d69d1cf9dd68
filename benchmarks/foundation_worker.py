"""Measurements for the foundation benchmark; runs inside ``.bench-venv``, one task a process.

Usage: ``python foundation_worker.py TASK '{"json": "args"}'``. The result is printed as
one JSON line prefixed with ``BENCH-RESULT``. The orchestrator is ``run.py``; nothing here
is meant to be run by hand except for debugging.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

from _common import emit, summarize_ns

N_PARAMS = 20
N_METRICS = 10
METRIC_KEYS = [f"m{k}" for k in range(N_METRICS)]


# --------------------------------------------------------------------------- shared data


def run_data(i: int) -> tuple[dict[str, str], dict[str, float]]:
    """Params and metrics of the i-th run of the query benchmark (identical for both tools)."""
    rng = random.Random(i)
    params = {f"p{j}": f"v{rng.randrange(10)}" for j in range(N_PARAMS)}
    metrics = {f"m{k}": rng.random() for k in range(N_METRICS)}
    return params, metrics


def bulk_points(n: int) -> list[tuple[str, float, int]]:
    """(key, value, step) of the bulk benchmark: 10 keys, n / 10 steps each."""
    rng = random.Random(0)
    return [(METRIC_KEYS[i % N_METRICS], rng.random(), i // N_METRICS) for i in range(n)]


# --------------------------------------------------------------------------- tool set-up


def setup_mlnb(store: str):
    os.environ["MLNB_STORE"] = store
    import mlnb

    return mlnb


def setup_mlflow(workdir: str):
    import logging

    import mlflow

    for name in ("alembic", "mlflow", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(f"sqlite:///{Path(workdir, 'mlflow.db')}")
    return mlflow


def store_db(store: str) -> Path:
    dbs = sorted(Path(store).rglob("*.db"))
    if not dbs:
        raise RuntimeError(f"no .db file under {store}")
    return dbs[0]


def count_metrics_mlnb(store: str, run_id: str | None = None) -> int:
    con = sqlite3.connect(store_db(store))
    try:
        if run_id is None:
            return con.execute("SELECT count(*) FROM metrics").fetchone()[0]
        return con.execute(
            "SELECT count(*) FROM metrics JOIN runs ON runs.id = metrics.run WHERE runs.run_id = ?",
            (run_id,),
        ).fetchone()[0]
    finally:
        con.close()


# --------------------------------------------------------------------------- tasks


def task_facts(args: dict) -> dict:
    import importlib.metadata as md

    facts = {
        "python": sys.version.split()[0] + f" ({sys.implementation.name})",
        "sqlite": sqlite3.sqlite_version,
    }
    import mlnb

    facts["mlnb_file"] = mlnb.__file__
    for dist in ("mlnb", "mlflow", "pandas", "sqlite-utils", "sqlalchemy"):
        try:
            facts[dist] = md.version(dist)
        except md.PackageNotFoundError:
            facts[dist] = "not installed"
    return facts


def task_mlnb_calls(args: dict) -> dict:
    """start+end pairs, per-call log_param and log_metric, and the flush at end_run."""
    mlnb = setup_mlnb(args["store"])
    ns = time.perf_counter_ns
    n_pairs, n_params, n_metric = args["pairs"], args["params"], args["metric_calls"]

    # warm-up: the first start_run creates the store and applies the migrations
    for _ in range(3):
        mlnb.start_run(name="warm", experiment="bench")
        mlnb.end_run()

    pair_ns = [0] * n_pairs
    for i in range(n_pairs):
        t0 = ns()
        mlnb.start_run(name=f"r{i}", experiment="bench")
        mlnb.end_run()
        pair_ns[i] = ns() - t0

    mlnb.start_run(name="params", experiment="bench")
    param_ns = [0] * n_params
    for i in range(n_params):
        key = f"p{i}"
        t0 = ns()
        mlnb.log_param(key, i)
        param_ns[i] = ns() - t0
    mlnb.end_run()

    run = mlnb.start_run(name="metrics", experiment="bench")
    keys = METRIC_KEYS
    metric_ns = [0] * n_metric
    value = 0.5
    for i in range(n_metric):
        key = keys[i % 10]
        step = i // 10
        t0 = ns()
        mlnb.log_metric(key, value, step=step)
        metric_ns[i] = ns() - t0
    t0 = ns()
    mlnb.end_run()
    flush_s = (ns() - t0) / 1e9
    stored = count_metrics_mlnb(args["store"], run.run_id)
    return {
        "start_end": summarize_ns(pair_ns),
        "log_param": summarize_ns(param_ns),
        "log_metric": summarize_ns(metric_ns),
        "end_run_flush_s": flush_s,
        "metric_rows_stored": stored,
    }


def task_mlnb_pairs(args: dict) -> dict:
    """start+end pairs only (run with different settings, e.g. ``MLNB_CAPTURE=none``)."""
    mlnb = setup_mlnb(args["store"])
    ns = time.perf_counter_ns
    for _ in range(3):
        mlnb.start_run(name="warm", experiment="bench")
        mlnb.end_run()
    pair_ns = [0] * args["pairs"]
    for i in range(args["pairs"]):
        t0 = ns()
        mlnb.start_run(name=f"r{i}", experiment="bench")
        mlnb.end_run()
        pair_ns[i] = ns() - t0
    return {"start_end": summarize_ns(pair_ns)}


def task_mlflow_calls(args: dict) -> dict:
    mlflow = setup_mlflow(args["workdir"])
    ns = time.perf_counter_ns
    n_pairs, n_params, n_metric = args["pairs"], args["params"], args["metric_calls"]

    mlflow.set_experiment("bench")  # creates the database (alembic migrations)
    for _ in range(3):
        mlflow.start_run(run_name="warm")
        mlflow.end_run()

    pair_ns = [0] * n_pairs
    for i in range(n_pairs):
        t0 = ns()
        mlflow.start_run(run_name=f"r{i}")
        mlflow.end_run()
        pair_ns[i] = ns() - t0

    mlflow.start_run(run_name="params")
    param_ns = [0] * n_params
    for i in range(n_params):
        key = f"p{i}"
        t0 = ns()
        mlflow.log_param(key, i)
        param_ns[i] = ns() - t0
    mlflow.end_run()

    mlflow.start_run(run_name="metrics")
    metric_ns = [0] * n_metric
    value = 0.5
    for i in range(n_metric):
        key = METRIC_KEYS[i % 10]
        step = i // 10
        t0 = ns()
        mlflow.log_metric(key, value, step=step)
        metric_ns[i] = ns() - t0
    mlflow.end_run()
    return {
        "start_end": summarize_ns(pair_ns),
        "log_param": summarize_ns(param_ns),
        "log_metric": summarize_ns(metric_ns),
    }


def task_mlnb_bulk(args: dict) -> dict:
    mlnb = setup_mlnb(args["store"])
    points = bulk_points(args["points"])
    mlnb.start_run(name="warm", experiment="bulk")
    mlnb.end_run()
    run = mlnb.start_run(name="bulk", experiment="bulk")
    log_metric = mlnb.log_metric
    t0 = time.perf_counter()
    for key, value, step in points:
        log_metric(key, value, step=step)
    t_logged = time.perf_counter()
    mlnb.end_run()
    t1 = time.perf_counter()
    stored = count_metrics_mlnb(args["store"], run.run_id)
    return {
        "points": len(points),
        "seconds": t1 - t0,
        "loop_seconds": t_logged - t0,
        "end_run_seconds": t1 - t_logged,
        "points_per_s": len(points) / (t1 - t0),
        "rows_stored": stored,
    }


def task_mlflow_bulk(args: dict) -> dict:
    mlflow = setup_mlflow(args["workdir"])
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    points = bulk_points(args["points"])
    batch = args.get("batch", 1000)
    mlflow.set_experiment("bulk")
    client = MlflowClient()
    with mlflow.start_run(run_name="warm") as warm:
        client.log_batch(warm.info.run_id, metrics=[Metric("w", 0.0, 0, 0)])
    with mlflow.start_run(run_name="bulk") as run:
        run_id = run.info.run_id
        t0 = time.perf_counter()
        for start in range(0, len(points), batch):
            ts = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, ts, s) for k, v, s in points[start : start + batch]],
                synchronous=True,
            )
        t1 = time.perf_counter()
    stored = sum(len(client.get_metric_history(run_id, k)) for k in METRIC_KEYS)
    return {
        "points": len(points),
        "batch": batch,
        "seconds": t1 - t0,
        "points_per_s": len(points) / (t1 - t0),
        "rows_stored": stored,
    }


def task_sqlite_bulk(args: dict) -> dict:
    """Raw ``executemany`` into the schema that mlnb's own migrations create."""
    import sqlite_utils

    from mlnb.store.migrations import migrations

    path = Path(args["workdir"], "raw.db")
    db = sqlite_utils.Database(path)
    migrations().apply(db)
    db.execute("INSERT INTO experiments (id, name, created_at) VALUES (1, 'bulk', 0)")
    db.execute(
        "INSERT INTO runs (id, run_id, experiment_id, name, status, start_time)"
        " VALUES (1, 'r', 1, 'bulk', 'running', 0)"
    )
    db.conn.commit()
    db.close()

    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(f"PRAGMA foreign_keys={'ON' if args['foreign_keys'] else 'OFF'}")
    sql = "INSERT INTO metrics (run, key, step, value, timestamp) VALUES (?, ?, ?, ?, ?)"
    now = time.time()
    rows = [(1, k, s, v, now) for k, v, s in bulk_points(args["points"])]
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    con.executemany(sql, rows)
    con.execute("COMMIT")
    t1 = time.perf_counter()
    stored = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    con.close()
    return {
        "points": len(rows),
        "seconds": t1 - t0,
        "points_per_s": len(rows) / (t1 - t0),
        "rows_stored": stored,
        "foreign_keys": args["foreign_keys"],
    }


def task_mlnb_populate(args: dict) -> dict:
    mlnb = setup_mlnb(args["store"])
    n = args["runs"]
    data = [run_data(i) for i in range(n)]
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(data):
        mlnb.start_run(name=f"r{i}", experiment="query")
        mlnb.log_params(params)
        mlnb.log_metrics(metrics, step=0)
        mlnb.end_run()
    t1 = time.perf_counter()
    return {"runs": n, "seconds": t1 - t0, "per_run_ms": (t1 - t0) / n * 1e3}


def task_mlflow_populate(args: dict) -> dict:
    """Through ``MlflowClient``: create_run, one log_batch (20 params + 10 metrics), terminate."""
    mlflow = setup_mlflow(args["workdir"])
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    n = args["runs"]
    data = [run_data(i) for i in range(n)]
    client = MlflowClient()
    exp_id = client.create_experiment("query")
    t0 = time.perf_counter()
    for i, (params, metrics) in enumerate(data):
        run_id = client.create_run(exp_id, run_name=f"r{i}").info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in params.items()],
            synchronous=True,
        )
        client.set_terminated(run_id)
    t1 = time.perf_counter()
    del mlflow
    return {"runs": n, "seconds": t1 - t0, "per_run_ms": (t1 - t0) / n * 1e3}


def _time_queries(fn, repeats: int) -> dict:
    t0 = time.perf_counter()
    df = fn()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = fn()
        warm.append(time.perf_counter() - t0)
    warm.sort()
    names = df["name" if "name" in df.columns else "tags.mlflow.runName"]
    return {
        "first_s": first,
        "median_s": warm[len(warm) // 2],
        "min_s": warm[0],
        "repeats": repeats,
        "rows": len(df),
        "columns": len(df.columns),
        "type": type(df).__module__ + "." + type(df).__name__,
        # which runs came back, to check that both tools answer the same
        "names_digest": hashlib.sha256("\n".join(sorted(map(str, names))).encode()).hexdigest(),
    }


def task_mlnb_query(args: dict) -> dict:
    mlnb = setup_mlnb(args["store"])
    # `import mlflow` has already imported pandas; do the same here so that the first call
    # of both tools does the same work. The import itself is reported apart.
    t0 = time.perf_counter()
    import pandas  # noqa: F401

    pandas_import_s = time.perf_counter() - t0
    flt = args["filter"] or None
    res = _time_queries(
        lambda: mlnb.runs(filter=flt, experiment="query", max_results=None), args["repeats"]
    )
    res["pandas_import_s"] = pandas_import_s
    return res


def task_mlflow_query(args: dict) -> dict:
    mlflow = setup_mlflow(args["workdir"])
    exp_id = mlflow.get_experiment_by_name("query").experiment_id
    flt = args["filter"] or ""
    return _time_queries(
        lambda: mlflow.search_runs(
            experiment_ids=[exp_id], filter_string=flt, max_results=args["max_results"]
        ),
        args["repeats"],
    )


def main() -> None:
    task, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    fn = globals().get(f"task_{task}")
    if fn is None:
        raise SystemExit(f"unknown task {task!r}")
    args = json.loads(raw)
    profile = args.pop("profile", None)
    if profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(fn, args)
        prof.dump_stats(profile)
    else:
        result = fn(args)
    emit(result)


if __name__ == "__main__":
    main()
