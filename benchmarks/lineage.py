"""The lineage section: what recording every executed cell costs a notebook.

    python benchmarks/lineage.py [--quick] [--out docs/benchmarks.md]

In a fresh process of the dev venv, an in-process IPython shell runs the same trivial cell
many times (1) without mlnb, (2) with ``%load_ext mlnb`` and an active run, so every cell
goes through the ``pre_run_cell``/``post_run_cell`` events and is written to the store.
The difference of the medians is the overhead per cell (budget: < 1 ms). The event
handlers are also timed on their own, and ``%load_ext mlnb`` in a fresh process.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

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

NAME = "lineage"
BUDGET_S = 0.001
LOAD_BUDGET_S = 0.150


def worker(task: str, cfg: dict) -> dict:
    import os

    cells = cfg["cells"]

    os.environ["MLNB_STORE"] = tempfile.mkdtemp(prefix="mlnb-bench-lineage-")
    os.environ["MLNB_CAPTURE"] = "none"
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = cfg.get("history", True)  # IPython's own SQLite history
    ip = InteractiveShell.instance(config=config)

    def timed_cells(n: int) -> list[float]:
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            ip.run_cell(f"x = {i}", store_history=True)
            out.append(time.perf_counter() - t0)
        return out

    timed_cells(50)  # warm up
    bare = timed_cells(cells)
    t0 = time.perf_counter()
    ip.run_line_magic("load_ext", "mlnb")
    load_in_process = time.perf_counter() - t0
    ip.run_cell("%track start bench")
    timed_cells(50)
    tracked = timed_cells(cells)

    from mlnb.notebook import magics

    (_, lineage) = next(iter(magics._loaded.values()))

    class Info:
        raw_cell = "x = 1"

    class Result:
        execution_count = 1
        error_in_exec = None
        error_before_exec = None

    handlers = []
    for _ in range(cells):
        t0 = time.perf_counter()
        lineage.pre_run_cell(Info())
        lineage.post_run_cell(Result())
        handlers.append(time.perf_counter() - t0)
    ip.run_cell("%track end")
    return {
        "cells": cells,
        "bare_median": statistics.median(bare),
        "tracked_median": statistics.median(tracked),
        "handlers_median": statistics.median(handlers),
        "handlers_p90": sorted(handlers)[int(0.9 * len(handlers))],
        "load_in_process": load_in_process,
    }


def load_ext_fresh() -> float:
    code = (
        "import time\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "t = time.perf_counter(); ip.run_line_magic('load_ext', 'mlnb')\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([dev_python(), "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    cells = 300 if quick else 1000
    log(f"lineage: {cells} cells without and with mlnb")
    result = run_section_worker(__file__, "cells", {"cells": cells})
    log("lineage: again with IPython's input history off")
    no_history = run_section_worker(__file__, "cells", {"cells": cells, "history": False})
    result["no_history"] = {k: no_history[k] for k in ("bare_median", "tracked_median")}
    result["load_ext_fresh"] = statistics.median(load_ext_fresh() for _ in range(5))
    result["load_average"] = load_average()
    return result


def render(res: dict, command: str) -> str:
    overhead = res["tracked_median"] - res["bare_median"]
    rows = [
        ["cell without mlnb (median)", fmt_time(res["bare_median"]), ""],
        ["cell with mlnb and an active run (median)", fmt_time(res["tracked_median"]), ""],
        ["**overhead per cell**", fmt_time(overhead), verdict(overhead < BUDGET_S) + " (< 1 ms)"],
        *(
            [["… with IPython's input history off: without / with mlnb",
              f"{fmt_time(res['no_history']['bare_median'])} / "
              f"{fmt_time(res['no_history']['tracked_median'])}",
              "overhead " + fmt_time(res["no_history"]["tracked_median"]
                                     - res["no_history"]["bare_median"])]]
            if "no_history" in res else []
        ),
        ["event handlers alone (median / p90)",
         f"{fmt_time(res['handlers_median'])} / {fmt_time(res['handlers_p90'])}",
         verdict(res["handlers_median"] < BUDGET_S)],
        ["`%load_ext mlnb` in a fresh process (median of 5)", fmt_time(res["load_ext_fresh"]),
         verdict(res["load_ext_fresh"] < LOAD_BUDGET_S) + " (< 150 ms)"],
    ]  # fmt: skip
    return "\n".join(
        [
            "## Notebook lineage (`%track`)",
            "",
            f"An in-process IPython shell runs the trivial cell `x = i` {res['cells']:,} times "
            "without mlnb, then with `%load_ext mlnb` and an active run, so that every cell "
            "goes through the `pre_run_cell`/`post_run_cell` events and is written to the "
            "store's `cells` table. Environment capture is "
            f"off (`MLNB_CAPTURE=none`) so only lineage is measured. Load average: "
            f"{res['load_average']}.",
            "",
            "A cell that follows the last lineage write within 0.25 s is buffered and "
            "written with the next ones by the lineage thread (a cell after a pause, the usual "
            "case when typing, is written at once), so cells run back to back pay one "
            "transaction per batch. Writing each cell in its own transaction cost ~1.2 ms "
            "per cell here: IPython writes each cell to its own SQLite history "
            "(`history.sqlite`, rollback journal, an fsync per write) from a thread holding a "
            "lock the next cell waits for, and every write of ours made that fsync costlier "
            "on this ext4 disk. The row with IPython's history off isolates mlnb's own cost.",
            "",
            *command_block(command, "Command:"),
            "",
            table(["", "time", "budget"], rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="300 cells", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
