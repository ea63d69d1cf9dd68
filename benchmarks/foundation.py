"""The foundation section: mlnb's tracking API and store, side by side with MLflow.

``measure(quick)`` runs every measurement in fresh processes of ``.bench-venv`` (the
worker is ``foundation_worker.py``) and returns the raw results; ``render(results)`` turns
them into the markdown of the section. ``run.py`` calls both and writes the section.
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import (
    VENV_PY,
    faster,
    fmt_rate,
    fmt_ratio,
    fmt_time,
    fmt_us,
    load_average,
    log,
    machine_info,
    machine_table,
    mlnb_source_state,
    run_worker,
    snapshot_mlnb,
    table,
    verdict,
    worker_env,
)

NAME = "foundation"
TITLE = "## Foundation (tracking and store)"
WORKER = "foundation_worker.py"
QUERY_FILTER = "params.p0 = 'v3' and metrics.m0 > 0.5"

FULL = {
    "import_repeats": 7,
    "pairs": 200,
    "params": 1000,
    "mlnb_metric_calls": 100_000,
    "mlflow_metric_calls": 1000,
    "bulk_points": 100_000,
    "bulk_rounds": 5,
    "query_runs": 10_000,
    "mlnb_query_repeats": 5,
    "mlflow_query_repeats": 3,
    "mlflow_unfiltered_repeats": 1,
}
QUICK = {
    "import_repeats": 3,
    "pairs": 50,
    "params": 200,
    "mlnb_metric_calls": 20_000,
    "mlflow_metric_calls": 200,
    "bulk_points": 20_000,
    "bulk_rounds": 3,
    "query_runs": 1000,
    "mlnb_query_repeats": 3,
    "mlflow_query_repeats": 3,
    "mlflow_unfiltered_repeats": 1,
}

# Targets from the issue / DESIGN.md "Budgets".
TARGET_IMPORT_S = 0.150
TARGET_LOG_METRIC_SPEEDUP = 1000
TARGET_BULK_VS_RAW = 0.5
TARGET_RUNS_S = 1.0
TARGET_QUERY_SPEEDUP = 10


def _import_time(module: str, repeats: int, workdir: Path, env: dict[str, str]) -> dict:
    """Median in-process import time over fresh interpreters (after one warm-up)."""
    code = (
        "import time, sys\n"
        "t = time.perf_counter()\n"
        f"import {module}\n"
        "t = time.perf_counter() - t\n"
        "heavy = [m for m in ('pandas', 'numpy', 'sqlite_utils', 'sqlalchemy', 'IPython',"
        " 'matplotlib', 'ipywidgets', 'papermill') if m in sys.modules]\n"
        "print(t, len(sys.modules), ','.join(heavy))\n"
    )
    inproc, wall = [], []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = subprocess.run(
            [str(VENV_PY), "-c", code],
            cwd=workdir,
            env=worker_env({**env, "MLNB_STORE": str(workdir / "import-store")}),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        elapsed = time.perf_counter() - t0
        if i == 0:
            continue  # warm-up: byte-compiles and fills the page cache
        inproc.append(float(out[0]))
        wall.append(elapsed)
        modules, heavy = int(out[1]), out[2] if len(out) > 2 else ""
    return {
        "median_s": statistics.median(inproc),
        "min_s": min(inproc),
        "process_wall_median_s": statistics.median(wall),
        "modules_loaded": modules,
        "heavy_modules": heavy,
        "repeats": repeats,
    }


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(quick: bool = False, profile_dir: Path | None = None) -> dict:
    cfg = QUICK if quick else FULL
    res: dict = {"config": cfg, "quick": quick}
    started = time.perf_counter()
    load_start = load_average()
    source_start = mlnb_source_state()

    def prof(task: str) -> dict:
        return {"profile": str(profile_dir / f"{task}.pstats")} if profile_dir else {}

    with tempfile.TemporaryDirectory(prefix="mlnb-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # Measure a frozen copy of mlnb/ as it is now (on PYTHONPATH, ahead of the editable
        # install), so edits made to the work tree during the run cannot mix versions.
        src = snapshot_mlnb(tmp / "src")
        src_env = {"PYTHONPATH": str(src)}
        work = functools.partial(run_worker, env=src_env)

        def workdir(name: str) -> Path:
            d = tmp / name
            d.mkdir()
            return d

        log("versions")
        res["facts"] = work(WORKER, "facts")
        if not res["facts"]["mlnb_file"].startswith(str(src)):
            raise RuntimeError(f"mlnb not imported from the snapshot: {res['facts']['mlnb_file']}")

        log("import time")
        imp_dir = workdir("import")
        res["import"] = {
            "mlnb": _import_time("mlnb", cfg["import_repeats"], imp_dir, src_env),
            "mlflow": _import_time("mlflow", cfg["import_repeats"], imp_dir, src_env),
        }

        log("per-call latency: mlnb")
        d = workdir("calls-mlnb")
        res["calls_mlnb"] = work(
            WORKER,
            "mlnb_calls",
            {
                "store": str(d / "store"),
                "pairs": cfg["pairs"],
                "params": cfg["params"],
                "metric_calls": cfg["mlnb_metric_calls"],
                **prof("mlnb_calls"),
            },
            cwd=d,
        )
        log("start+end with capture off: mlnb")
        d = workdir("pairs-mlnb-nocapture")
        res["pairs_mlnb_nocapture"] = work(
            WORKER,
            "mlnb_pairs",
            {"store": str(d / "store"), "pairs": cfg["pairs"]},
            cwd=d,
            env={**src_env, "MLNB_CAPTURE": "none"},
        )
        log("per-call latency: MLflow")
        d = workdir("calls-mlflow")
        res["calls_mlflow"] = work(
            WORKER,
            "mlflow_calls",
            {
                "workdir": str(d),
                "pairs": cfg["pairs"],
                "params": cfg["params"],
                "metric_calls": cfg["mlflow_metric_calls"],
            },
            cwd=d,
        )

        n = cfg["bulk_points"]
        rounds = cfg["bulk_rounds"]
        log(f"bulk ingest of {n:,} points: mlnb and raw sqlite3, {rounds} interleaved rounds")
        variants = {
            "bulk_mlnb": ("mlnb_bulk", {}),
            "bulk_sqlite_fk1": ("sqlite_bulk", {"foreign_keys": True}),
            "bulk_sqlite_fk0": ("sqlite_bulk", {"foreign_keys": False}),
        }
        samples: dict[str, list[dict]] = {key: [] for key in variants}
        for r in range(rounds):
            for key, (task, extra) in variants.items():
                d = workdir(f"{key}-{r}")
                wargs = {"workdir": str(d), "store": str(d / "store"), "points": n, **extra}
                if task == "mlnb_bulk" and r == 0:
                    wargs.update(prof("mlnb_bulk"))
                samples[key].append(work(WORKER, task, wargs, cwd=d))
        for key, got in samples.items():
            got.sort(key=lambda x: x["points_per_s"])
            res[key] = {**got[len(got) // 2], "rounds": [x["points_per_s"] for x in got]}
        log("bulk ingest: MLflow log_batch")
        d = workdir("bulk-mlflow")
        res["bulk_mlflow"] = work(
            WORKER, "mlflow_bulk", {"workdir": str(d), "points": n, "batch": 1000}, cwd=d
        )

        runs = cfg["query_runs"]
        log(f"populate {runs:,} runs: mlnb")
        dq_mlnb = workdir("query-mlnb")
        res["populate_mlnb"] = work(
            WORKER,
            "mlnb_populate",
            {"store": str(dq_mlnb / "store"), "runs": runs, **prof("mlnb_populate")},
            cwd=dq_mlnb,
        )
        res["populate_mlnb"]["bytes"] = _dir_size(dq_mlnb / "store")
        log(f"populate {runs:,} runs: MLflow (slow)")
        dq_mlflow = workdir("query-mlflow")
        res["populate_mlflow"] = work(
            WORKER, "mlflow_populate", {"workdir": str(dq_mlflow), "runs": runs}, cwd=dq_mlflow
        )
        res["populate_mlflow"]["bytes"] = (dq_mlflow / "mlflow.db").stat().st_size

        for label, flt in (("filtered", QUERY_FILTER), ("unfiltered", "")):
            log(f"query ({label}): mlnb")
            res[f"query_{label}_mlnb"] = work(
                WORKER,
                "mlnb_query",
                {
                    "store": str(dq_mlnb / "store"),
                    "filter": flt,
                    "repeats": cfg["mlnb_query_repeats"],
                    **prof(f"mlnb_query_{label}"),
                },
                cwd=dq_mlnb,
            )
            log(f"query ({label}): MLflow")
            repeats = cfg["mlflow_query_repeats" if flt else "mlflow_unfiltered_repeats"]
            res[f"query_{label}_mlflow"] = work(
                WORKER,
                "mlflow_query",
                {
                    "workdir": str(dq_mlflow),
                    "filter": flt,
                    "repeats": repeats,
                    "max_results": max(100_000, runs),
                },
                cwd=dq_mlflow,
            )

    res["elapsed_s"] = time.perf_counter() - started
    res["machine"] = machine_info(res["facts"])
    res["machine"].update(load_start=load_start, load_end=load_average())
    res["machine"]["mlnb_source"] = source_start["label"]
    return res


# --------------------------------------------------------------------------- markdown


def render(res: dict, command: str) -> str:
    cfg, quick = res["config"], res["quick"]
    facts = res["facts"]
    imp_a, imp_b = res["import"]["mlnb"], res["import"]["mlflow"]
    ca, cb = res["calls_mlnb"], res["calls_mlflow"]
    ba, bb = res["bulk_mlnb"], res["bulk_mlflow"]
    raw_fk, raw_nofk = res["bulk_sqlite_fk1"], res["bulk_sqlite_fk0"]
    raw = max(raw_fk, raw_nofk, key=lambda r: r["points_per_s"])
    qa, qb = res["query_filtered_mlnb"], res["query_filtered_mlflow"]
    ua, ub = res["query_unfiltered_mlnb"], res["query_unfiltered_mlflow"]
    pa, pb = res["populate_mlnb"], res["populate_mlflow"]
    runs = cfg["query_runs"]

    metric_speedup = cb["log_metric"]["p50_us"] / ca["log_metric"]["p50_us"]
    bulk_ratio = ba["points_per_s"] / raw["points_per_s"]
    q_speedup = qb["median_s"] / qa["median_s"]
    u_speedup = ub["median_s"] / ua["median_s"]
    scale_note = (
        f" (quick run: {runs:,} runs; the target is defined at 10,000)" if runs < 10_000 else ""
    )

    out = [TITLE, ""]
    out.append(
        "mlnb against MLflow "
        f"{facts.get('mlflow', '?')} with its SQLite backend (`sqlite:///…` in a temporary "
        "directory, `MLFLOW_ENABLE_ASYNC_LOGGING=false`, telemetry off), and against raw "
        "`sqlite3` where stated. Both tools run on the same interpreter (`.bench-venv/`), "
        "each measurement in a fresh process, one after the other; stores live in a "
        "temporary directory on the same disk."
    )
    if quick:
        out += ["", "**Quick run** (`--quick`): smaller counts; use the full run for the record."]

    out += ["", "### Machine", "", machine_table(res["machine"]), ""]
    out += [
        "Command (from the repository root; it creates `.bench-venv/` with "
        "`pip install -e . mlflow` the first time):",
        "",
        "```",
        command,
        "```",
        "",
        f"Whole run: {res['elapsed_s'] / 60:.1f} min.",
        "",
    ]

    # summary
    out += ["### Targets", ""]
    rows = [
        [
            "`import mlnb`",
            f"< {fmt_time(TARGET_IMPORT_S)}",
            fmt_time(imp_a["median_s"]),
            verdict(imp_a["median_s"] < TARGET_IMPORT_S),
        ],
        [
            "`log_metric` p50 vs MLflow",
            f"≥ {TARGET_LOG_METRIC_SPEEDUP:,}× faster",
            f"{fmt_ratio(metric_speedup)} faster",
            verdict(metric_speedup >= TARGET_LOG_METRIC_SPEEDUP),
        ],
        [
            "bulk ingest vs raw `sqlite3.executemany`",
            f"≥ {TARGET_BULK_VS_RAW:.2f}",
            f"{bulk_ratio:.2f}",
            verdict(bulk_ratio >= TARGET_BULK_VS_RAW),
        ],
        [
            f"`mlnb.runs()` over {runs:,} runs{scale_note}",
            f"< {fmt_time(TARGET_RUNS_S)}",
            fmt_time(ua["median_s"]),
            verdict(ua["median_s"] < TARGET_RUNS_S),
        ],
        [
            f"`mlnb.runs()` over {runs:,} runs vs `search_runs`",
            f"≥ {TARGET_QUERY_SPEEDUP}× faster",
            f"{fmt_ratio(u_speedup)} faster",
            verdict(u_speedup >= TARGET_QUERY_SPEEDUP),
        ],
        [
            f"filtered `mlnb.runs(filter=…)` over {runs:,} runs",
            f"< {fmt_time(TARGET_RUNS_S)}",
            fmt_time(qa["median_s"]),
            verdict(qa["median_s"] < TARGET_RUNS_S),
        ],
        [
            "filtered `mlnb.runs(filter=…)` vs `search_runs(filter_string=…)`",
            f"≥ {TARGET_QUERY_SPEEDUP}× faster",
            f"{fmt_ratio(q_speedup)} faster",
            verdict(q_speedup >= TARGET_QUERY_SPEEDUP),
        ],
    ]
    out += [table(["budget", "target", "result", ""], rows), ""]

    # import
    out += ["### Import", ""]
    out.append(
        f"In-process time of the `import` statement in a fresh interpreter; median of "
        f"{imp_a['repeats']} (after one warm-up run). The whole process (interpreter start "
        "included) is shown for context."
    )
    out += [
        "",
        table(
            ["", "mlnb", "MLflow", "ratio"],
            [
                [
                    "`import` (median)",
                    fmt_time(imp_a["median_s"]),
                    fmt_time(imp_b["median_s"]),
                    faster(imp_a["median_s"], imp_b["median_s"]),
                ],
                ["`import` (min)", fmt_time(imp_a["min_s"]), fmt_time(imp_b["min_s"]), ""],
                [
                    "`python -c 'import …'` wall",
                    fmt_time(imp_a["process_wall_median_s"]),
                    fmt_time(imp_b["process_wall_median_s"]),
                    "",
                ],
                [
                    "modules in `sys.modules` after",
                    f"{imp_a['modules_loaded']:,}",
                    f"{imp_b['modules_loaded']:,}",
                    "",
                ],
                [
                    "heavy modules loaded",
                    imp_a["heavy_modules"] or "none",
                    imp_b["heavy_modules"] or "none",
                    "",
                ],
            ],
        ),
        "",
    ]

    # per-call
    def lat_rows(key: str) -> list[list[str]]:
        a, b = ca[key], cb[key]
        return [
            [
                "p50",
                fmt_us(a["p50_us"]),
                fmt_us(b["p50_us"]),
                faster(a["p50_us"], b["p50_us"]),
            ],
            [
                "p99",
                fmt_us(a["p99_us"]),
                fmt_us(b["p99_us"]),
                faster(a["p99_us"], b["p99_us"]),
            ],
            [
                "mean",
                fmt_us(a["mean_us"]),
                fmt_us(b["mean_us"]),
                faster(a["mean_us"], b["mean_us"]),
            ],
            ["max", fmt_us(a["max_us"]), fmt_us(b["max_us"]), ""],
            ["calls timed", f"{a['n']:,}", f"{b['n']:,}", ""],
        ]

    hdr = ["", "mlnb", "MLflow", "ratio"]
    out += ["### Run start + end", ""]
    out.append(
        "`start_run(name=…)` then `end_run()`, timed as a pair with `perf_counter_ns`, "
        "after three warm-up pairs (the first one creates the store)."
    )
    out += ["", table(hdr, lat_rows("start_end")), ""]
    nocap = res.get("pairs_mlnb_nocapture", {}).get("start_end")
    if nocap:
        out += [
            "Both tools record context at run start by default (mlnb: environment and git "
            "state, see docs/capture.md; MLflow: source, user, git via GitPython). Workers run "
            "in a temporary directory outside any git repository. With capture off "
            f"(`MLNB_CAPTURE=none`) mlnb's pair takes {fmt_us(nocap['p50_us'])} p50, "
            f"{fmt_us(nocap['p99_us'])} p99, {fmt_us(nocap['mean_us'])} mean.",
            "",
        ]

    out += ["### `log_param`", ""]
    out.append("One call per new key inside one run, each call timed on its own.")
    out += ["", table(hdr, lat_rows("log_param")), ""]

    out += ["### `log_metric`", ""]
    out.append(
        "`log_metric(key, 0.5, step=…)` over 10 keys inside one run, each call timed on "
        f"its own with `perf_counter_ns`: {ca['log_metric']['n']:,} calls for mlnb, "
        f"{cb['log_metric']['n']:,} for MLflow (synchronous, as configured). mlnb's "
        "`log_metric` only queues the point; its background writer stores it. The "
        f"`end_run()` after mlnb's calls waited {fmt_time(ca['end_run_flush_s'])} for "
        f"the queue to drain; {ca['metric_rows_stored']:,} rows were then on disk."
    )
    out += [
        "",
        table(hdr, lat_rows("log_metric")),
        "",
        f"**mlnb `log_metric` p50 is {fmt_ratio(metric_speedup)} faster than MLflow's** "
        f"(target ≥ {TARGET_LOG_METRIC_SPEEDUP:,}×: "
        f"{verdict(metric_speedup >= TARGET_LOG_METRIC_SPEEDUP)}).",
        "",
    ]

    # bulk
    out += ["### Bulk ingest", ""]
    out.append(
        f"{ba['points']:,} metric points (10 keys × {ba['points'] // 10:,} steps) into one "
        "run. mlnb: `log_metric` in a loop, then `end_run()`, which flushes; the time "
        "includes the flush. MLflow: `MlflowClient.log_batch` with 1,000 metrics a call (its "
        "maximum), `Metric` objects built inside the timed loop. Raw `sqlite3`: one "
        "`executemany` of prebuilt tuples into the `metrics` table created by mlnb's own "
        "migrations, WAL + `synchronous=NORMAL`, one `BEGIN IMMEDIATE` transaction, with "
        "and without `foreign_keys=ON` (mlnb's connections turn it on); the ratio uses the "
        "faster of the two. mlnb and the raw variants run in interleaved rounds, each in a "
        f"fresh process and a fresh database; shown is the median of {len(ba['rounds'])} "
        "rounds (all rounds in the last column). mlnb's writer also keeps "
        "`latest_metrics` current (one upsert per key per batch), which the raw baseline "
        "does not. Every row was counted on disk afterwards."
    )

    def bulk_row(label: str, r: dict, digits: int = 2) -> list[str]:
        rounds = ", ".join(f"{x / 1000:,.0f}k" for x in r.get("rounds", []))
        return [
            label,
            fmt_rate(r["points_per_s"]),
            fmt_time(r["seconds"]),
            f"{r['rows_stored']:,}",
            f"{r['points_per_s'] / raw['points_per_s']:.{digits}f}",
            rounds or "1 round",
        ]

    bulk_rows = [
        bulk_row("mlnb (`log_metric` loop + `end_run`)", ba),
        bulk_row("MLflow (`log_batch` × 1,000)", bb, 3),
        bulk_row("raw `sqlite3.executemany`, `foreign_keys=ON`", raw_fk),
        bulk_row("raw `sqlite3.executemany`, `foreign_keys=OFF`", raw_nofk),
    ]
    out += [
        "",
        table(["", "points/s", "time", "rows on disk", "vs raw", "points/s per round"], bulk_rows),
        "",
        f"mlnb's loop alone took {fmt_time(ba['loop_seconds'])} and the flush in "
        f"`end_run()` {fmt_time(ba['end_run_seconds'])}. "
        f"**mlnb ingests at {bulk_ratio:.2f}× raw `executemany`** (target ≥ "
        f"{TARGET_BULK_VS_RAW}: {verdict(bulk_ratio >= TARGET_BULK_VS_RAW)}) and "
        f"{fmt_ratio(ba['points_per_s'] / bb['points_per_s'])} MLflow's `log_batch`.",
        "",
    ]

    # query
    out += ["### Query", ""]
    out.append(
        f"{runs:,} finished runs, each with 20 params (`p0`…`p19`, values `v0`…`v9`) and "
        "10 metrics (`m0`…`m9`, uniform in [0, 1), one step), the same seeded data in both "
        "tools. mlnb is populated through its Python API (`start_run`, `log_params`, "
        "`log_metrics`, `end_run`); MLflow through `MlflowClient` (`create_run`, one "
        "`log_batch` with the 20 params and 10 metrics, `set_terminated`), its cheapest "
        "honest path on SQLite. Queries run in a fresh process: the first call (which "
        "opens the store; pandas is imported before it in both "
        "processes, as `import mlflow` does) is shown apart, then the median "
        "of the repeats. Both return a pandas DataFrame with every matching run "
        f"(`max_results=None` / `max_results={max(100_000, runs):,}`)."
    )
    out += [
        "",
        table(
            ["population", "mlnb", "MLflow", "ratio"],
            [
                [
                    f"populate {runs:,} runs",
                    fmt_time(pa["seconds"]),
                    fmt_time(pb["seconds"]),
                    faster(pa["seconds"], pb["seconds"]),
                ],
                ["per run", f"{pa['per_run_ms']:.2f} ms", f"{pb['per_run_ms']:.2f} ms", ""],
                [
                    "store size on disk",
                    f"{pa['bytes'] / 2**20:.1f} MiB",
                    f"{pb['bytes'] / 2**20:.1f} MiB",
                    f"MLflow's is {pb['bytes'] / pa['bytes']:.1f}× mlnb's",
                ],
            ],
        ),
        "",
    ]

    def qrows(a: dict, b: dict) -> list[list[str]]:
        same = a["names_digest"] == b["names_digest"] and a["rows"] == b["rows"]
        return [
            [
                f"median of {a['repeats']} / {b['repeats']}",
                fmt_time(a["median_s"]),
                fmt_time(b["median_s"]),
                faster(a["median_s"], b["median_s"]),
            ],
            [
                "first call in a fresh process",
                fmt_time(a["first_s"]),
                fmt_time(b["first_s"]),
                faster(a["first_s"], b["first_s"]),
            ],
            [
                "runs returned",
                f"{a['rows']:,}",
                f"{b['rows']:,}",
                "same runs" if same else "**DIFFERENT runs**",
            ],
            ["DataFrame columns", f"{a['columns']}", f"{b['columns']}", ""],
        ]

    out += [
        f'Filtered: `mlnb.runs(filter="{QUERY_FILTER}", experiment=…)` vs '
        f'`mlflow.search_runs(experiment_ids=[…], filter_string="{QUERY_FILTER}")`.',
        "",
        table(["filtered query", "mlnb", "MLflow", "ratio"], qrows(qa, qb)),
        "",
        "Unfiltered: every run of the experiment, `mlnb.runs(experiment=…)` vs "
        "`mlflow.search_runs(experiment_ids=[…])`.",
        "",
        table(["all runs", "mlnb", "MLflow", "ratio"], qrows(ua, ub)),
        "",
        f"`import pandas` took {fmt_time(qa['pandas_import_s'])} in mlnb's query process: "
        "mlnb pays it on the first `runs()` call of a session, MLflow on `import mlflow`.",
        "",
    ]
    return "\n".join(out)
