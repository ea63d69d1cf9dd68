"""The histories section: a report and a compare snapshot of one run with 10 M steps.

    python benchmarks/histories.py [--quick] [--out docs/benchmarks.md]
    python benchmarks/run.py --section histories

A fresh process of the dev venv writes one finished run whose metric `loss` has 10,000,000
steps straight into a new store (``executemany`` in one transaction, the way the metric
writer stores points, without its queue) and closes it (the WAL checkpointed); then the
files are synced and the series read once, untimed, so every command meets the same warm
page cache. Each measurement is a fresh process, timed from start to exit with its peak RSS
(``os.wait4``), interpreter start included:
``mlnb report RUN --format html -o FILE`` and ``--format md``, ``mlnb.compare(...)
.to_html(FILE)``, and ``Store.downsampled_history`` alone (which also checks that the
sample kept the series' true minimum, maximum and last point). Budget (issue 10 item 9):
under 3 s and 400 MB for the report and the snapshot; before the plots read down-sampled
series, the issue measured 23.7 s / 3.05 GB and 25 s / 4.4 GB on such a run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
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
    machine_sentence,
    run_section_worker,
    section_facts,
    section_main,
    section_worker_env,
    table,
    verdict,
)

from mlnb.store import runs as store_runs

NAME = "histories"
TIME_BUDGET_S = 3.0
RSS_BUDGET_MB = 400
BEFORE = {  # issue 10 item 9, measured on the code before down-sampling
    "report_html": (23.7, 3.05 * 1024),
    "to_html": (25.0, 4.4 * 1024),
}
FULL = {"steps": 10_000_000, "repeats": 3}
QUICK = {"steps": 1_000_000, "repeats": 1}
CHUNK = 500_000


def loss(step: int) -> float:
    """A decreasing curve with noise (deterministic)."""
    return 1.0 / (1.0 + step * 1e-5) + 0.01 * ((step * 7919) % 1000) / 1000


def _populate(cfg: dict) -> dict:
    import mlnb

    t0 = time.perf_counter()
    n = cfg["steps"]
    store = mlnb.Store(cfg["store"])
    run = store.create_run(name="long", experiment="histories", start_time=1.7e9)
    rowid, _ = store_runs.run_rowid(store.file, run)

    def write(conn):  # type: ignore[no-untyped-def]
        sql = "INSERT INTO metrics (run, key, step, value, timestamp) VALUES (?, 'loss', ?, ?, ?)"
        for start in range(0, n, CHUNK):
            conn.executemany(sql, ((rowid, s, loss(s), 1.7e9 + s * 1e-3)
                                   for s in range(start, min(n, start + CHUNK))))  # fmt: skip
        conn.execute(
            "INSERT INTO latest_metrics (run, key, step, value, timestamp) SELECT run, key, "
            "step, value, timestamp FROM metrics WHERE run = ? AND key = 'loss' "
            "ORDER BY step DESC LIMIT 1",
            [rowid],
        )

    store.file.write(write)
    store.set_status(run, "finished", end_time=1.7e9 + n * 1e-3)
    store.close()  # checkpoints the WAL into the database file and removes it
    seconds = time.perf_counter() - t0
    return {"run": run, "seconds": seconds, "bytes": Path(cfg["store"], "mlnb.db").stat().st_size}


def _sample(cfg: dict) -> dict:
    """Time the store method alone, and check what it kept against SQL."""
    import mlnb

    store = mlnb.Store(cfg["store"])
    t0 = time.perf_counter()
    sample = store.downsampled_history(cfg["run"], "loss")
    seconds = time.perf_counter() - t0
    lo, hi = store.file.read(
        lambda c: c.execute("SELECT min(value), max(value) FROM metrics").fetchone()
    )
    values = [p[1] for p in sample.points]
    last = sample.points[-1]
    store.close()
    return {
        "seconds": seconds,
        "points": len(sample.points),
        "count": sample.count,
        "kept_min": lo in values,
        "kept_max": hi in values,
        "kept_last": last[0] == cfg["steps"] - 1 and last[1] == loss(cfg["steps"] - 1),
    }


def _to_html(cfg: dict) -> dict:
    import mlnb

    store = mlnb.Store(cfg["store"])
    mlnb.compare(store=store, widget=False).to_html(cfg["out"])
    store.close()
    return {}


def worker(task: str, cfg: dict) -> dict:
    return {"populate": _populate, "sample": _sample, "to_html": _to_html}[task](cfg)


def timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process, from start to exit."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, cwd=REPO, env=section_worker_env(),
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{args} failed: {err.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    """Raw results; ``profile_dir`` is accepted for run.py's interface and unused."""
    cfg = dict(QUICK if quick else FULL)
    load_start = load_average()
    py = dev_python()
    with tempfile.TemporaryDirectory(prefix="mlnb-bench-histories-") as tmp:
        cfg["store"] = str(Path(tmp) / "store")
        log(f"histories: writing one run with {cfg['steps']:,} steps")
        populate = run_section_worker(__file__, "populate", cfg, timeout=3600)
        cfg["run"] = populate["run"]
        os.sync()  # the store's pages on disk: no writeback competes with the first timing
        run_section_worker(__file__, "sample", cfg, timeout=600)  # warm the page cache, untimed
        log("histories: timing the report, the snapshot and the sample")
        mlnb = [py, "-m", "mlnb", "--store", cfg["store"]]
        commands = {
            "report_html": [*mlnb, "report", cfg["run"], "--format", "html",
                            "-o", f"{tmp}/report.html"],
            "report_md": [*mlnb, "report", cfg["run"], "-o", f"{tmp}/report.md"],
            "to_html": [py, __file__, "--worker", "to_html", "--config",
                        json.dumps({**cfg, "out": f"{tmp}/compare.html"})],
        }  # fmt: skip
        results = {name: [timed(args) for _ in range(cfg["repeats"])]
                   for name, args in commands.items()}  # fmt: skip
        html = Path(f"{tmp}/report.html").read_text()
        snapshot = Path(f"{tmp}/compare.html").read_text()
        sample = run_section_worker(__file__, "sample", cfg, timeout=600)
    return {
        "quick": quick,
        "config": {k: v for k, v in cfg.items() if k not in ("store", "run")},
        "populate": populate,
        "results": results,
        "report_has_plot": "data:image/png;base64," in html,
        "snapshot_has_plots": snapshot.count("data:image/png;base64,") >= 1,
        "sample": sample,
        **section_facts(),
        "load": [load_start, load_average()],
    }


LABELS = {
    "report_html": "`mlnb report RUN --format html -o report.html`",
    "report_md": "`mlnb report RUN -o report.md` (PNG in `report_files/`)",
    "to_html": '`mlnb.compare(store=...).to_html("compare.html")`',
}


def render(res: dict, command: str) -> str:
    cfg, med = res["config"], statistics.median
    rows = []
    ok = True
    for name, samples in res["results"].items():
        seconds = [s for s, _ in samples]
        rss = max(m for _, m in samples)
        within = max(seconds) < TIME_BUDGET_S and rss < RSS_BUDGET_MB
        ok = ok and within
        before = BEFORE.get(name)
        rows.append([
            LABELS[name], fmt_time(med(seconds)), fmt_time(max(seconds)), f"{rss:,.0f} MB",
            f"{before[0]:.1f} s / {before[1]:,.0f} MB" if before else "",
            verdict(within),
        ])  # fmt: skip
    s = res["sample"]
    kept = all(s[k] for k in ("kept_min", "kept_max", "kept_last"))
    out = [
        "## Long histories: a report and a compare snapshot of one very long run",
        "",
        f"One finished run whose metric `loss` has **{cfg['steps']:,} steps** "
        f"({res['populate']['bytes'] / 1024**2:,.0f} MiB of store, written in "
        f"{res['populate']['seconds']:.1f} s with `executemany`). Each command is a fresh "
        f"process, interpreter start included, timed to its exit with its peak RSS; "
        f"{cfg['repeats']} time{'s' if cfg['repeats'] > 1 else ''} each. \"Before\" is what "
        "issue 10 item 9 measured on a 10 M-step run with the code that read every point "
        "into Python.",
        "",
        table(["command", "median", "max", "peak RSS", "before", "< 3 s, < 400 MB"], rows),
        "",
        f"Budget: {verdict(ok)}. Plots read each series through "
        f"`Store.downsampled_history`: {s['points']:,} of {s['count']:,} points in "
        f"{fmt_time(s['seconds'])} (in SQL: per bucket of steps the lowest and highest row, "
        f"two aggregates over a range of the primary key; the first and last row); it kept "
        f"the true minimum, maximum and last point: {verdict(kept)}. The HTML report holds "
        f"its plot: {verdict(res['report_has_plot'])}; the snapshot its curves: "
        f"{verdict(res['snapshot_has_plots'])}.",
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
        quick_help="1,000,000 steps, one run of each command",
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
