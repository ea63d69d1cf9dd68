"""The start-up section: ``start_run()+end_run()`` with the default capture inside a git
repository, and ``log_param`` per call, against MLflow (and Aim's published figure), with
mlnb before and after issue 12 item 8 run in alternating rounds.

Every measurement is a fresh process of ``.bench-venv`` running ``startup_worker.py``
copied into a small git repository as its ``train.py`` (20 tracked files, last touched a
minute ago, as a project between two edits), so both tools capture the same repository.
Stores live outside the repository. "before" is ``mlnb/`` of :data:`BASELINE` (extracted
with ``git archive`` and put first on ``PYTHONPATH``), "after" the work tree.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import (
    BENCH_DIR,
    REPO,
    faster,
    fmt_us,
    load_average,
    log,
    machine_info,
    machine_table,
    mlnb_source_state,
    run_worker,
    table,
    verdict,
)

NAME = "startup"
BASELINE = "26f2fe6"  # main just before issue 12 item 8 (git cache, one-statement log_param)
AIM_PARAM_US = 17.0  # Aim's published per-param figure, as issue 12 cites it (not measured)
WORKER = "startup_worker.py"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
}  # fmt: skip


def _git(cwd: Path, *args: str) -> bytes:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True).stdout


def _make_repo(path: Path) -> Path:
    """A small committed project whose files were last touched a minute ago."""
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    shutil.copy(BENCH_DIR / WORKER, path / "train.py")
    for i in range(19):
        (path / "src").mkdir(exist_ok=True)
        (path / "src" / f"m{i}.py").write_text(f"VALUE = {i}\n")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "project")
    _git(path, "remote", "add", "origin", "https://example.com/team/project.git")
    when = time.time() - 60
    for folder, _, files in os.walk(path):
        for name in files:
            os.utime(os.path.join(folder, name), (when, when))
        os.utime(folder, (when, when))
    return path


def _baseline(dest: Path) -> Path:
    """``mlnb/`` as of :data:`BASELINE`, in ``dest`` (the folder to put on PYTHONPATH)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", BASELINE, "mlnb"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def measure(quick: bool = False) -> dict:
    rounds, pairs_n, params_n = (2, 40, 300) if quick else (5, 200, 2000)
    mlflow_pairs_n, mlflow_params_n = (20, 50) if quick else (60, 200)
    load_start = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-startup-") as tmp:
        root = Path(tmp)
        repo = _make_repo(root / "project")
        script = str(repo / "train.py")
        before_path = str(_baseline(root / "before"))
        variants = {"before": {"PYTHONPATH": before_path}, "after": {}}
        results: dict[str, list[dict]] = {}

        def run(label: str, task: str, args: dict, env: dict[str, str]) -> None:
            results.setdefault(label, []).append(run_worker(script, task, args, cwd=repo, env=env))

        for r in range(rounds):
            log(f"startup: round {r + 1} of {rounds}")
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for name in order:  # alternate which goes first: the machine's load drifts
                store = str(root / f"store-{name}-{r}")
                env = {**variants[name], "MLNB_STORE": store}
                run(f"{name}/pairs", "mlnb_pairs", {"n": pairs_n}, env)
                run(f"{name}/params", "mlnb_params", {"n": params_n, "store": store}, env)
            env = {"MLNB_STORE": str(root / f"store-none-{r}"), "MLNB_CAPTURE": "none"}
            run("after/pairs_no_capture", "mlnb_pairs", {"n": pairs_n}, env)
            db = str(root / f"mlflow-{r}.db")
            run("mlflow/pairs", "mlflow_pairs", {"n": mlflow_pairs_n, "db": db}, {})
            run("mlflow/params", "mlflow_params", {"n": mlflow_params_n, "db": db}, {})
        facts = run_worker(str(BENCH_DIR / "foundation_worker.py"), "facts", {}, cwd=repo, env={})
    return {
        "results": results,
        "rounds": rounds,
        "facts": facts,
        "source": mlnb_source_state()["label"],
        "load_start": load_start,
        "load_end": load_average(),
        "elapsed_s": time.monotonic() - started,
    }


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def render(res: dict, command: str) -> str:
    r = res["results"]
    rounds = res["rounds"]

    def cells(label: str, key: str) -> list[str]:
        return [fmt_us(_median(r[label], key)), ", ".join(fmt_us(x[key]) for x in r[label])]

    pairs = {name: _median(r[f"{name}/pairs"], "p50_us") for name in ("before", "after")}
    mlflow_pair = _median(r["mlflow/pairs"], "p50_us")
    params = {name: _median(r[f"{name}/params"], "p50_us") for name in ("before", "after")}
    mlflow_param = _median(r["mlflow/params"], "p50_us")
    info = machine_info(
        {
            "python": res["facts"]["python"],
            "sqlite": res["facts"]["sqlite"],
            "mlnb": res["facts"]["mlnb"],
            "mlnb_source": res["source"],
            "mlflow": res["facts"]["mlflow"],
            "pandas": res["facts"]["pandas"],
            "load_start": res["load_start"],
            "load_end": res["load_end"],
        }
    )
    pair_rows = [
        ["mlnb before", *cells("before/pairs", "p50_us"), *cells("before/pairs", "first_us")[:1]],
        ["mlnb after", *cells("after/pairs", "p50_us"), *cells("after/pairs", "first_us")[:1]],
        [
            "mlnb after, `MLNB_CAPTURE=none`",
            *cells("after/pairs_no_capture", "p50_us"),
            *cells("after/pairs_no_capture", "first_us")[:1],
        ],
        ["MLflow", *cells("mlflow/pairs", "p50_us"), *cells("mlflow/pairs", "first_us")[:1]],
    ]
    raw_runs = [x["raw"] for x in r["after/params"] + r["before/params"]]
    raw = statistics.median(x["p50_us"] for x in raw_runs)
    raw_rounds = ", ".join(fmt_us(x["p50_us"]) for x in raw_runs)
    param_rows = [
        ["mlnb before", *cells("before/params", "p50_us")],
        ["mlnb after", *cells("after/params", "p50_us")],
        ["raw `sqlite3` INSERT, autocommit, same file", fmt_us(raw), raw_rounds],
        ["MLflow", *cells("mlflow/params", "p50_us")],
        ["Aim (published, not measured here)", fmt_us(AIM_PARAM_US), ""],
    ]
    n_pairs = r["after/pairs"][0]["n"]
    n_params = r["after/params"][0]["n"]
    lines = [
        "## Start-up and params (issue 12 item 8)",
        "",
        "`start_run()` + `end_run()` with the default capture (environment and git state) "
        "inside a git repository, and `log_param` per call, for mlnb before and after issue "
        f"12 item 8 (before: `mlnb/` of commit `{BASELINE}`; after: {res['source']}) and for "
        f"MLflow {res['facts']['mlflow']} with its SQLite backend, in {rounds} alternating "
        "rounds (before and after swap places each round), each measurement a fresh process "
        "of `.bench-venv/`. The script is `benchmarks/startup_worker.py` copied into a "
        "small committed repository (20 tracked files, last touched a minute ago, an "
        "`origin` remote) as its `train.py`, so both tools record that repository (MLflow "
        "through GitPython); stores live outside it. Shown: the median over rounds of each "
        "round's median, then each round's median.",
        "",
        "### Run start + end in a git repository",
        "",
        f"{n_pairs} pairs per round timed one by one (MLflow: "
        f"{r['mlflow/pairs'][0]['n']}), after the process's first pair and two warm-up "
        "pairs. The first pair of a process is shown apart: it asks git (and, before, so "
        "did every pair); later pairs find the tree unchanged by stat calls "
        "(docs/capture.md).",
        "",
        table(["", "p50 (median of rounds)", "p50 per round", "first pair (median)"], pair_rows),
        "",
        f"**start+end: {fmt_us(pairs['before'])} before, {fmt_us(pairs['after'])} after** "
        f"({faster(pairs['after'], pairs['before'], 'after')}); "
        f"{faster(pairs['after'], mlflow_pair)} than MLflow's "
        f"{fmt_us(mlflow_pair)} (target ~2 ms: "
        f"{verdict(pairs['after'] <= 2500)}).",
        "",
        "### `log_param`",
        "",
        f"One call per new key inside one run, {n_params} calls per round timed one by one "
        f"(MLflow: {r['mlflow/params'][0]['n']}). Each call is durable when it returns "
        "(its own committed transaction) and a conflicting value is refused at the call, "
        "before and after. Aim's 17 µs is the figure Aim publishes for a param, as issue 12 "
        "cites it; Aim is not installed here, so it is not measured on this machine. The raw "
        "`sqlite3` row is the floor on this machine: one plain `INSERT` of a param row a "
        "statement, each its own committed transaction, on the same file with mlnb's "
        "pragmas, measured in the same processes right after mlnb's calls.",
        "",
        table(["", "p50 (median of rounds)", "p50 per round"], param_rows),
        "",
        f"**log_param: {fmt_us(params['before'])} before, {fmt_us(params['after'])} after** "
        f"({faster(params['after'], params['before'], 'after')}); "
        f"{faster(params['after'], mlflow_param)} than MLflow; under Aim's "
        f"{fmt_us(AIM_PARAM_US)}: {verdict(params['after'] < AIM_PARAM_US)}.",
        "",
        "### Machine",
        "",
        machine_table(info),
        "",
        "Command (from the repository root; it creates `.bench-venv/` with "
        "`pip install -e . mlflow` the first time):",
        "",
        "```",
        command,
        "```",
        "",
        f"Whole run: {res['elapsed_s'] / 60:.1f} min.",
    ]
    return "\n".join(lines)
