"""The jobs section: what `mlnb run` adds to papermill, and how a sweep scales with workers.

    python benchmarks/jobs.py [--quick] [--out docs/benchmarks.md]

``measure`` + ``render`` make the markdown (``run.py`` writes it between the ``jobs``
markers); run alone, the script prints it, or writes it into ``--out``. Every measurement
runs in a fresh process of the dev venv (``.venv/``: mlnb, papermill, scikit-learn), the
same script acting as the worker.

(a) One small notebook executed by ``mlnb.run_notebook`` and by bare
``papermill.execute_notebook``, alternating, in one warm process (imports done): the
difference is what mlnb adds (checks, the run row, params, the final flush, the executed
notebook stored as an artifact, per-cell timings). papermill is measured twice: with its
default graceful kernel shutdown, and with ``shutdown_kernel="immediate"`` as mlnb uses
(the like-for-like comparison the target is judged on).

(b) ``mlnb.sweep`` of 8 children of a notebook that fits a small scikit-learn model,
with 1 and with 2 worker processes, alternating.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    fmt_time,
    footer,
    load_average,
    log,
    run_section_worker,
    section_facts,
    section_main,
    table,
    verdict,
)

NAME = "jobs"
TITLE = "## Headless jobs (`mlnb run`, `mlnb sweep`)"
OVERHEAD_TARGET = 0.10  # mlnb run at most 10 % slower than papermill
SPEEDUP_TARGET = 1.6  # -j 2 at least 1.6x faster than -j 1 on 8 children
FULL = {"repeats": 9, "sweep_repeats": 3, "children": 8}
QUICK = {"repeats": 3, "sweep_repeats": 1, "children": 8}

SMALL_CELLS = [
    ("n = 200_000  # work per cell", ["parameters"]),
    ("total = sum(i * i for i in range(n))", []),
    ("import statistics\nmean = statistics.fmean(range(n))", []),
    ("print(total, mean)", []),
]
FIT_CELLS = [
    ("seed = 0  # data and model seed\nn_estimators = 30", ["parameters"]),
    (
        "from sklearn.datasets import make_classification\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "X, y = make_classification(n_samples=2000, n_features=20, random_state=seed)",
        [],
    ),
    (
        "model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)\n"
        "model.fit(X[:1500], y[:1500])\n"
        "acc = model.score(X[1500:], y[1500:])",
        [],
    ),
    ("import mlnb\nmlnb.log_metric('acc', acc)", []),
]


def _write_notebook(path: Path, cells: list[tuple[str, list[str]]]) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nb.cells = [new_code_cell(src, metadata={"tags": tags}) for src, tags in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    nbformat.write(nb, str(path))


# ------------------------------------------------------------------------ the worker


def _overhead(cfg: dict) -> dict:
    import logging

    import papermill

    from mlnb.jobs.runner import run_notebook

    logging.getLogger("papermill").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="mlnb-bench-jobs-"))
    nb = tmp / "small.ipynb"
    _write_notebook(nb, SMALL_CELLS)
    store = tmp / "store"

    def bare(shutdown: str) -> float:
        t0 = time.perf_counter()
        papermill.execute_notebook(str(nb), str(tmp / "out.ipynb"), kernel_name="python3",
                                   progress_bar=False, shutdown_kernel=shutdown)  # fmt: skip
        return time.perf_counter() - t0

    def mlnb_run() -> float:
        t0 = time.perf_counter()
        result = run_notebook(nb, store=store, progress_bar=False)
        elapsed = time.perf_counter() - t0
        assert result.ok, result
        return elapsed

    modes = {
        "papermill (graceful shutdown)": lambda: bare("graceful"),
        "papermill (immediate shutdown)": lambda: bare("immediate"),
        "mlnb run": mlnb_run,
    }
    for fn in modes.values():  # warm-up: imports, the kernel spec cache, the store
        fn()
    times: dict[str, list[float]] = {m: [] for m in modes}
    for rep in range(cfg["repeats"]):
        for mode in list(modes) if rep % 2 == 0 else list(modes)[::-1]:
            times[mode].append(modes[mode]())
    return {"times": times}


def _sweep(cfg: dict) -> dict:
    import mlnb

    tmp = Path(tempfile.mkdtemp(prefix="mlnb-bench-sweep-"))
    nb = tmp / "fit.ipynb"
    _write_notebook(nb, FIT_CELLS)
    grid = {"seed": list(range(cfg["children"]))}
    # a sweep of one child first: the process's first sweep also starts the forkserver
    t0 = time.perf_counter()
    mlnb.sweep(nb, {"seed": [0]}, store=tmp / "one", progress=False)
    one_child_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {"1": [], "2": []}
    for rep in range(cfg["sweep_repeats"]):
        for workers in ("1", "2") if rep % 2 == 0 else ("2", "1"):
            t0 = time.perf_counter()
            result = mlnb.sweep(nb, grid, workers=int(workers), store=tmp / f"store{rep}",
                                progress=False)  # fmt: skip
            times[workers].append(time.perf_counter() - t0)
            assert result.ok, result
    cli: dict[str, float] = {}
    for workers in ("1", "2"):  # as a user runs it: a fresh `mlnb sweep` process each
        seeds = ",".join(str(s) for s in range(cfg["children"]))
        cmd = [sys.executable, "-m", "mlnb", "--store", str(tmp / f"cli{workers}"), "sweep",
               str(nb), "-g", f"seed={seeds}", "-j", workers]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        cli[workers] = time.perf_counter() - t0
    return {"times": times, "one_child_s": one_child_s, "cli": cli}


def worker(task: str, cfg: dict) -> dict:
    return {"overhead": _overhead, "sweep": _sweep}[task](cfg)


# ------------------------------------------------------------------ the orchestrator


def _run(task: str, cfg: dict) -> dict:
    return run_section_worker(__file__, task, cfg, timeout=3600)


def measure(quick: bool) -> dict:
    cfg = QUICK if quick else FULL
    load_start = load_average()
    log(f"jobs: mlnb run vs papermill, {cfg['repeats']} alternating repeats")
    overhead = _run("overhead", cfg)
    log(f"jobs: sweep of {cfg['children']} children, -j 1 vs -j 2, {cfg['sweep_repeats']} each")
    sweep = _run("sweep", cfg)
    return {
        "quick": quick,
        "config": cfg,
        "overhead": overhead,
        "sweep": sweep,
        **section_facts(),
        "load": [load_start, load_average()],
    }


def render(res: dict, command: str) -> str:
    cfg = res["config"]
    t = res["overhead"]["times"]
    med = {m: statistics.median(v) for m, v in t.items()}
    like = "papermill (immediate shutdown)"
    ratio = med["mlnb run"] / med[like]
    ratio_default = med["mlnb run"] / med["papermill (graceful shutdown)"]
    s = res["sweep"]["times"]
    j1, j2 = statistics.median(s["1"]), statistics.median(s["2"])
    speedup = j1 / j2
    out = [TITLE, ""]
    out.append(
        "(a) A four-cell notebook (pure-Python work, no mlnb calls) run by "
        "`mlnb.run_notebook` and by bare `papermill.execute_notebook`, taking turns "
        f"in one warm process, {cfg['repeats']} times each (medians). (b) `mlnb.sweep` of "
        f"{cfg['children']} children of a notebook that fits a small random forest "
        "(scikit-learn, 2,000 rows), with 1 and 2 worker processes, taking turns, "
        f"{cfg['sweep_repeats']} times each (medians)."
    )
    if res["quick"]:
        out += ["", "**Quick run** (`--quick`): fewer repeats; not for the record."]
    out += ["", "### Targets", ""]
    out.append(
        table(
            ["measurement", "target", "result", ""],
            [
                [
                    "`mlnb run` vs papermill with the same (immediate) kernel shutdown",
                    f"≤ {OVERHEAD_TARGET:.0%} slower",
                    f"{(ratio - 1) * 100:+.1f} % ({ratio:.2f}×)",
                    verdict(ratio - 1 <= OVERHEAD_TARGET),
                ],
                [
                    f"sweep of {cfg['children']}: `-j 2` vs `-j 1`",
                    f"≥ {SPEEDUP_TARGET}× faster",
                    f"{speedup:.2f}×",
                    verdict(speedup >= SPEEDUP_TARGET),
                ],
            ],
        )
    )
    out += ["", "### `mlnb run` against papermill", ""]
    rows = []
    for mode, values in t.items():
        rows.append([mode, fmt_time(med[mode]), fmt_time(min(values)), fmt_time(max(values)),
                     f"{med[mode] / med[like]:.2f}×"])  # fmt: skip
    out.append(table(["how", "median", "fastest", "slowest", "vs immediate"], rows))
    out += [
        "",
        f"Against papermill's default (graceful) shutdown, `mlnb run` takes "
        f"{ratio_default:.2f}× the time: its immediate shutdown (after a flush run in the "
        "kernel) saves more than its bookkeeping costs.",
        "",
        "### A sweep on 1 and 2 workers",
        "",
        table(
            ["workers", "median", "runs", "per child"],
            [
                [
                    w,
                    fmt_time(statistics.median(v)),
                    ", ".join(fmt_time(x) for x in v),
                    fmt_time(statistics.median(v) / cfg["children"]),
                ]
                for w, v in s.items()
            ],
        ),
        "",
        "Timed with `mlnb.sweep` in one process, after a first sweep of one child (which "
        "also started the forkserver the workers are forked from, and imported papermill "
        f"there): that first sweep took {fmt_time(res['sweep']['one_child_s'])}. The same "
        "8 children as a user runs them, a fresh `mlnb sweep ... -j N` process each time "
        f"(once each): `-j 1` {fmt_time(res['sweep']['cli']['1'])}, `-j 2` "
        f"{fmt_time(res['sweep']['cli']['2'])} "
        f"({res['sweep']['cli']['1'] / res['sweep']['cli']['2']:.2f}×). The machine has "
        f"{res['cores']} cores, so 2 workers is the most it can use; each child is its own "
        "kernel process, and the kernels' start and imports are CPU work that the two "
        "workers share with whatever else the machine runs (see the load average below).",
        "",
        *footer(
            [
                ["Python", res["python"]],
                ["mlnb", res["source"]],
                ["cores", str(res["cores"])],
                ["date", res["date"]],
                ["load average (1/5/15 min) at start", res["load"][0]],
                ["load average (1/5/15 min) at end", res["load"][1]],
            ],
            command,
        ),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="fewer repeats", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
