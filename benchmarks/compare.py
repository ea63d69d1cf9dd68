"""The compare section: the compare widget over 10,000 runs.

    python benchmarks/compare.py [--quick] [--out docs/benchmarks.md]

A fresh process of the dev venv fills a store with 10,000 runs (20 params and 10 metrics
each, the runs of the foundation section's query benchmark, written through the Store
API), then times in another fresh process: building the widget (``mlnb.compare``),
the first curves drawn (off the main thread), and single interactions (filter, sort,
next page, selecting a row), each repeated. No Jupyter frontend is attached (ipywidgets
talks to a no-op comm), so the times are mlnb's and ipywidgets' Python side.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    BENCH_DIR,
    command_block,
    fmt_time,
    load_average,
    log,
    machine_sentence,
    run_section_worker,
    section_facts,
    section_main,
    table,
    verdict,
)

from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs

NAME = "compare"
BUILD_BUDGET_S = 1.0
INTERACTION_BUDGET_S = 0.200
FULL = {"runs": 10_000, "history_runs": 5, "history_steps": 200, "repeats": 7}
QUICK = {"runs": 2_000, "history_runs": 5, "history_steps": 100, "repeats": 3}
FILTERS = [
    "metrics.m0 > 0.5",  # about half of the runs
    "params.p0 = 'v3' and metrics.m1 < 0.5",  # about 5 %
]


def _populate(cfg: dict) -> dict:
    sys.path.insert(0, str(BENCH_DIR))
    from foundation_worker import run_data

    import mlnb

    store = mlnb.Store(cfg["store"])
    t0 = time.perf_counter()
    base = 1.7e9
    for i in range(cfg["runs"]):
        params, metrics = run_data(i)
        rid = store.create_run(name=f"r{i}", experiment="compare", start_time=base + i)
        store.log_params(rid, params)
        rowid, _ = store_runs.run_rowid(store.file, rid)
        points = [(rowid, k, 0, v, base + i) for k, v in metrics.items()]
        if i >= cfg["runs"] - cfg["history_runs"]:  # the newest runs (selected at first)
            steps = cfg["history_steps"]
            points = [(rowid, k, s, v / (1 + s), base + i + s)
                      for k, v in metrics.items() for s in range(steps)]  # fmt: skip
        store_metrics.insert_metrics(store.file, points)
        store.set_status(rid, "finished", end_time=base + i + 30)
    store.close()
    return {"seconds": time.perf_counter() - t0}


def _time(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _measure(cfg: dict) -> dict:
    t0 = time.perf_counter()
    import mlnb

    t_import_mlnb = time.perf_counter() - t0
    t0 = time.perf_counter()
    from mlnb.notebook.widgets import compare

    t_import_widgets = time.perf_counter() - t0
    store = mlnb.Store(cfg["store"])
    repeats = cfg["repeats"]

    # first build of the process (matplotlib is imported by the painter thread meanwhile)
    t0 = time.perf_counter()
    w = compare(store=store, widget=True)
    first_build = time.perf_counter() - t0
    w.wait(300)
    first_plot = time.perf_counter() - t0
    w.close()

    builds, plots = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        w = compare(store=store, widget=True)
        builds.append(time.perf_counter() - t0)
        w.wait(300)
        plots.append(time.perf_counter() - t0)
        w.close()
    text_builds = _time(lambda: compare(store=store, widget=False), repeats)

    w = compare(store=store, widget=True)
    w.wait(300)
    interactions: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for flt in FILTERS:
        samples = []
        for _ in range(repeats):
            w.filter_box.value = ""
            t0 = time.perf_counter()
            w.filter_box.value = flt
            samples.append(time.perf_counter() - t0)
        interactions[f"filter `{flt}`"] = samples
        counts[f"filter `{flt}`"] = len(w.table.ids)
    w.filter_box.value = ""
    columns = ["metrics.m3", "params.p7", "duration", "name"]
    samples = []
    for i in range(repeats):
        col = columns[i % len(columns)]
        t0 = time.perf_counter()
        w.sort_by.value = col
        samples.append(time.perf_counter() - t0)
    interactions["sort by a column"] = samples
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        w.next_button.click()
        samples.append(time.perf_counter() - t0)
    interactions["next page"] = samples
    samples = []
    for i in range(repeats):
        t0 = time.perf_counter()
        w.row_checks[i % 10].value = not w.row_checks[i % 10].value
        samples.append(time.perf_counter() - t0)
    interactions["select a row (table; plots redraw off the main thread)"] = samples
    w.wait(300)
    w.tabs.selected_index = 2  # parallel coordinates and scatter, drawn by the painter
    t0 = time.perf_counter()
    w.wait(300)
    relations = time.perf_counter() - t0
    t0 = time.perf_counter()
    w.to_html(Path(cfg["store"]) / "snapshot.html")  # the three plots are cached by now
    snapshot = time.perf_counter() - t0
    w.close()
    return {
        "import_mlnb_s": t_import_mlnb,
        "import_widgets_s": t_import_widgets,
        "first_build_s": first_build,
        "first_plot_s": first_plot,
        "build_s": builds,
        "plot_ready_s": plots,
        "text_build_s": text_builds,
        "interactions": interactions,
        "counts": counts,
        "snapshot_s": snapshot,
        "relations_s": relations,
        "runs": len(w.table.ids),
    }


def worker(task: str, cfg: dict) -> dict:
    return {"populate": _populate, "measure": _measure}[task](cfg)


def _run(task: str, cfg: dict) -> dict:
    return run_section_worker(__file__, task, cfg, timeout=3600)


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    """Raw results; ``profile_dir`` is accepted for run.py's interface and unused."""
    cfg = dict(QUICK if quick else FULL)
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-compare-") as tmp:
        cfg["store"] = str(Path(tmp) / "store")
        log(f"compare: writing {cfg['runs']:,} runs")
        populate = _run("populate", cfg)
        log("compare: timing the widget")
        result = _run("measure", cfg)
    return {
        "quick": quick,
        "config": {k: v for k, v in cfg.items() if k != "store"},
        "populate": populate,
        "result": result,
        **section_facts(),
        "load": [load_start, load_average()],
    }


def render(res: dict, command: str) -> str:
    r = res["result"]
    cfg = res["config"]
    med = statistics.median
    build = med(r["build_s"])
    worst_interaction = max(max(v) for v in r["interactions"].values())
    rows = [
        ["build the widget (median of repeats)", fmt_time(build), fmt_time(max(r["build_s"])),
         f"< {fmt_time(BUILD_BUDGET_S)}", verdict(max(r["build_s"]) < BUILD_BUDGET_S)],
        ["build the widget, first in the process", fmt_time(r["first_build_s"]), "", "", ""],
        ["… until the first curves are drawn (background)", fmt_time(med(r["plot_ready_s"])),
         fmt_time(max(r["plot_ready_s"])), "", ""],
        ["… first in the process (imports matplotlib)", fmt_time(r["first_plot_s"]), "", "", ""],
        ["without a frontend (`widget=False`: text/HTML object)", fmt_time(med(r["text_build_s"])),
         fmt_time(max(r["text_build_s"])), "", ""],
    ]  # fmt: skip
    for name, samples in r["interactions"].items():
        label = name + (f" → {r['counts'][name]:,} runs" if name in r["counts"] else "")
        rows.append([label, fmt_time(med(samples)), fmt_time(max(samples)),
                     f"< {fmt_time(INTERACTION_BUDGET_S)}",
                     verdict(max(samples) < INTERACTION_BUDGET_S)])  # fmt: skip
    rows.append(["relations tab drawn (first 1,000 runs in view)", fmt_time(r["relations_s"]),
                 "", "", ""])  # fmt: skip
    rows.append(["`to_html` snapshot (1,000 rows, plots already drawn)", fmt_time(r["snapshot_s"]),
                 "", "", ""])  # fmt: skip
    out = [
        "## Compare widget",
        "",
        f"`mlnb.compare()` over **{r['runs']:,} runs** (20 params, 10 metrics each; the 5 "
        f"newest with {cfg['history_steps']}-step histories, selected at first). Interactions "
        f"are timed through widget values and `.click()`, {cfg['repeats']} repeats each; no "
        "browser is attached, so comm traffic to a frontend is not included.",
        "",
        table(["what", "median", "max", "target", ""], rows),
        "",
        f"Build: {verdict(max(r['build_s']) < BUILD_BUDGET_S)} (target < 1 s). "
        f"Interactions: {verdict(worst_interaction < INTERACTION_BUDGET_S)} (target < 200 ms; "
        f"slowest {fmt_time(worst_interaction)}).",
        "",
        "How: a filter or sort is one SQL query for the ordered run ids (and the column "
        "keys); only the visible page (25 rows) is read in full and rendered as one HTML "
        "table; plots are drawn by a painter thread, so the table answers at once and the "
        "curves follow. Imports before the first build: "
        f"`import mlnb` {fmt_time(r['import_mlnb_s'])}, the widget's module (ipywidgets, "
        f"pandas) "
        f"{fmt_time(r['import_widgets_s'])}. Writing the {cfg['runs']:,} runs took "
        f"{res['populate']['seconds']:.1f} s.",
        "",
        machine_sentence(res),
        "",
        *command_block(command),
    ]  # fmt: skip
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__,
        NAME,
        measure,
        render,
        worker,
        doc=__doc__,
        quick_help="2,000 runs, fewer repeats",
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
