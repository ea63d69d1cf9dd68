"""The dask_sweep section: a sweep on a 2-worker Dask ``LocalCluster`` against the local
process-pool executor with 2 workers (issue 16 item 4: within 1.1x its wall time).

    python benchmarks/dask_sweep.py [--quick] [--out docs/benchmarks.md]

In a fresh process of the dev venv: ``mlnb.sweep`` of N tiny parameterized notebooks (one
parameter, one metric logged) with ``workers=2`` (local worker processes, each child in its
own kernel), and with ``executor="dask"`` on a ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` started beforehand (each child in its own kernel
too, run into a temporary store on the worker and shipped back as a bundle). Each executor
first runs a sweep of two children (the forkserver's start, the workers' imports), then
the two sweeps alternate, ``repeats`` times each; wall times from the call to its return.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
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

NAME = "dask_sweep"
RATIO_TARGET = 1.1  # the Dask sweep at most 1.1x the local one's wall time
FULL = {"children": 100, "repeats": 2}
QUICK = {"children": 40, "repeats": 1}

CELLS = [
    ("i = 0  # the point", ["parameters"]),
    ("import mlnb\nmlnb.log_metric('square', i * i)", []),
]


def _write_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    nb.cells = [new_code_cell(src, metadata={"tags": tags}) for src, tags in CELLS]
    nbformat.write(nb, str(path))


def _compare(cfg: dict) -> dict:
    import distributed

    import mlnb

    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="mlnb-bench-dask-"))
    nb = tmp / "tiny.ipynb"
    _write_notebook(nb)
    n = cfg["children"]
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )  # fmt: skip
    address = cluster.scheduler_address

    def local(store: Path, points: int) -> float:
        t0 = time.perf_counter()
        result = mlnb.sweep(nb, {"i": list(range(points))}, workers=2, store=store,
                            progress=False)  # fmt: skip
        assert result.ok, result
        return time.perf_counter() - t0

    def dask(store: Path, points: int) -> float:
        t0 = time.perf_counter()
        result = mlnb.sweep(nb, {"i": list(range(points))}, executor="dask",
                            scheduler=address, store=store, progress=False)  # fmt: skip
        assert result.ok, result
        return time.perf_counter() - t0

    try:
        warm = {"local": local(tmp / "warm-local", 2), "dask": dask(tmp / "warm-dask", 2)}
        times: dict[str, list[float]] = {"local": [], "dask": []}
        for rep in range(cfg["repeats"]):
            times["local"].append(local(tmp / f"local{rep}", n))
            times["dask"].append(dask(tmp / f"dask{rep}", n))
    finally:
        cluster.close()
    return {"times": times, "warm": warm}


def worker(task: str, cfg: dict) -> dict:
    return {"compare": _compare}[task](cfg)


def measure(quick: bool) -> dict:
    cfg = QUICK if quick else FULL
    load = [load_average()]
    log(f"dask_sweep: {cfg['children']} children, local -j 2 vs Dask 2 workers, "
        f"{cfg['repeats']} times each")  # fmt: skip
    res = run_section_worker(__file__, "compare", cfg, timeout=3600)
    load.append(load_average())
    return {"config": cfg, **res, "load": load, **section_facts()}


def render(res: dict, command: str) -> str:
    cfg, times = res["config"], res["times"]
    local, dask = statistics.median(times["local"]), statistics.median(times["dask"])
    ratio = dask / local
    n = cfg["children"]
    rows = [
        [f"local worker processes, `-j 2`: {n} children", fmt_time(local),
         f"{n / local:.2f} children/s", ""],
        [f"Dask `LocalCluster`, 2 workers: {n} children", fmt_time(dask),
         f"{n / dask:.2f} children/s",
         f"{ratio:.2f}× local {verdict(ratio <= RATIO_TARGET)} (≤ {RATIO_TARGET}×)"],
    ]  # fmt: skip
    each = ", ".join(f"{k} {' / '.join(fmt_time(t) for t in v)}" for k, v in sorted(times.items()))
    out = [
        "## Sweeps on Dask against local worker processes",
        "",
        f"`mlnb.sweep` of {n} tiny parameterized notebooks (one parameter, one metric), each "
        "child in a fresh kernel: on 2 local worker processes (`workers=2`) and on a Dask "
        "`LocalCluster` of 2 worker processes (1 thread each; each child run into a temporary "
        "store on its worker and shipped back as a bundle, reporting its start so the store "
        "shows it running). After a warm-up sweep of 2 children each (local "
        f"{fmt_time(res['warm']['local'])}, Dask {fmt_time(res['warm']['dask'])}), the two "
        f"alternate, {cfg['repeats']} times each (medians; every time: {each}).",
        "",
        table(["what", "wall time", "rate", "target"], rows),
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
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="40 children",
        argv=argv,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
