"""The registry section: model lineage, history and loading on a store with many runs.

    python benchmarks/registry.py [--quick] [--out docs/benchmarks.md]

A store gets N finished runs (5 params, 10 metrics each), written through the store's
functions; 100 of them register a version of one model (a fitted scikit-learn pipeline,
saved with skops) and ``champion`` moves 100 times. The champion's run is a real run with
its environment, git state, params and a logged training frame (schema and profile).
Then, in one process: ``mlnb.model_lineage("churn@champion")`` (budget < 200 ms) with an
open store and with a store opened per call (as a command does), ``mlnb.model_history``,
``mlnb.get_model_version`` and ``mlnb.load_model`` (hash check and skops load); and as
fresh ``mlnb`` processes, ``mlnb model lineage`` and ``mlnb --version`` (the floor).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    command_block,
    dev_python,
    fmt_time,
    load_average,
    log,
    section_main,
    table,
    verdict,
)

NAME = "registry"
BUDGET_S = 0.200
VERSIONS = 100


def build_store(root: Path, runs: int) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import mlnb
    from mlnb.store import Store
    from mlnb.store import metrics as store_metrics
    from mlnb.store import runs as store_runs

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=2000) for i in range(8)})
    target = (frame["x0"] + frame["x1"] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, target)
    every = max(1, runs // VERSIONS)
    with Store(root) as st:
        for i in range(runs):
            if i % every == 0 and i // every < VERSIONS:
                with mlnb.start_run(f"train-{i}", experiment="bench", store=st) as run:
                    run.log_params({f"p{k}": i * k for k in range(5)})
                    run.log_data(frame, name="train")
                    run.log_metrics({f"m{k}": (i % 97) / 97 + k for k in range(10)})
                    version = mlnb.register_model("churn", model, store=st)
                mlnb.set_model_alias("churn", "champion", version.version, store=st)
                continue
            rid = st.create_run(experiment="bench", name=f"run-{i}")
            st.log_params(rid, {f"p{k}": i * k for k in range(5)})
            rowid, _ = store_runs.run_rowid(st.file, rid)
            now = time.time()
            store_metrics.insert_metrics(
                st.file, [(rowid, f"m{k}", 0, (i % 97) / 97 + k, now) for k in range(10)]
            )
            st.set_status(rid, "finished")


def _median(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def timed_cli(args: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([dev_python(), "-m", "mlnb", *args], capture_output=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode())
    return statistics.median(times)


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    runs = 1000 if quick else 10_000
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-registry-"))
    log(f"registry: a store of {runs:,} runs, {VERSIONS} versions")
    t0 = time.perf_counter()
    build_store(work / "store", runs)
    build = time.perf_counter() - t0
    import mlnb
    from mlnb.store import Store

    st = Store(work / "store")
    lineage = mlnb.model_lineage("churn@champion", store=st)
    assert lineage.run is not None and lineage.run.datasets, lineage

    def fresh() -> None:
        with Store(work / "store") as s:
            mlnb.model_lineage("churn@champion", store=s)

    store = ["--store", str(work / "store")]
    results = {
        "runs": runs,
        "build": build,
        "lineage": _median(lambda: mlnb.model_lineage("churn@champion", store=st), 50),
        "lineage_fresh": _median(fresh, 20),
        "history": _median(lambda: mlnb.model_history("churn", store=st), 50),
        "version": _median(lambda: mlnb.get_model_version("churn@champion", store=st), 50),
        "load": _median(lambda: mlnb.load_model("churn@champion", store=st), 20),
        "model_bytes": lineage.version.size,
        "cli_lineage": timed_cli([*store, "model", "lineage", "churn@champion"]),
        "cli_version": timed_cli(["--version"]),
        "load_average": load_average(),
    }
    st.close()
    return results


def render(res: dict, command: str) -> str:
    med, p90 = res["lineage"]
    rows = [
        ["`mlnb.model_lineage(\"churn@champion\")`, store open (median / p90 of 50)",
         f"{fmt_time(med)} / {fmt_time(p90)}", verdict(med < BUDGET_S) + " (< 200 ms)"],
        ["… opening the store for each call, as a command does (median of 20)",
         fmt_time(res["lineage_fresh"][0]), verdict(res["lineage_fresh"][0] < BUDGET_S)],
        [f"`mlnb.model_history(\"churn\")` ({VERSIONS} moves)", fmt_time(res["history"][0]), ""],
        ["`mlnb.get_model_version(\"churn@champion\")`", fmt_time(res["version"][0]), ""],
        [f"`mlnb.load_model(\"churn@champion\")` (SHA-256 check + skops, "
         f"{res['model_bytes'] / 1024:.0f} KiB)", fmt_time(res["load"][0]), ""],
        ["`mlnb model lineage churn@champion`, a fresh process (median of 5)",
         fmt_time(res["cli_lineage"]), ""],
        ["`mlnb --version`, a fresh process (the floor of any command)",
         fmt_time(res["cli_version"]), ""],
    ]  # fmt: skip
    return "\n".join(
        [
            "## Model registry: lineage, history, loading",
            "",
            f"A store with {res['runs']:,} finished runs (5 params, 10 metrics each; written "
            f"in {fmt_time(res['build'])}); {VERSIONS} of them registered a version of one "
            "model (a scikit-learn pipeline, skops) and `champion` moved "
            f"{VERSIONS} times. The champion's run has its environment, git state, params "
            "and a logged training frame. Lineage reads the version, its aliases and the "
            "whole run by keys and indexes, so it does not grow with the number of runs. "
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
        __file__, NAME, measure, render, doc=__doc__, quick_help="1,000 runs", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
