"""The teams section: bundle files and sync between stores (issue 16).

    python benchmarks/teams.py [--quick] [--out docs/benchmarks.md]

A store gets N finished runs of 1,000 metric points each (with 5 params and 2 tags),
written through the store's functions. Then, in one process: ``mlnb.export_runs`` of every
run into one bundle file, ``mlnb.import_runs`` of it into an empty store, the same import
again (a no-op), and ``mlnb.sync`` of the two stores after 10 new runs were added to the
first (budget < 10 s), and of two stores already in sync.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    command_block,
    fmt_rate,
    fmt_time,
    load_average,
    log,
    section_main,
    table,
    verdict,
)

NAME = "teams"
POINTS = 1000
NEW = 10
SYNC_BUDGET_S = 10.0


def add_runs(root: Path, runs: int, prefix: str) -> None:
    sys.path.insert(0, str(REPO))
    from mlnb.store import Store
    from mlnb.store import metrics as store_metrics
    from mlnb.store import runs as store_runs

    now = time.time()
    with Store(root) as st:
        for i in range(runs):
            rid = st.create_run(experiment="bench", name=f"{prefix}-{i}", tags={"team": "a"})
            st.log_params(rid, {f"p{k}": i * k for k in range(5)})
            rowid, _ = store_runs.run_rowid(st.file, rid)
            store_metrics.insert_metrics(
                st.file,
                [(rowid, f"m{s % 4}", s // 4, 1.0 / (s + 1), now + s) for s in range(POINTS)],
            )
            st.set_tags(rid, {"done": "yes"}, check_state=False)
            st.set_status(rid, "finished")


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(quick: bool) -> dict:
    runs = 100 if quick else 1000
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-teams-"))
    log(f"teams: a store of {runs:,} runs x {POINTS:,} points")
    t0 = time.perf_counter()
    add_runs(work / "a", runs, "run")
    build = time.perf_counter() - t0
    import mlnb
    from mlnb.store import Store

    bundle = work / "runs.mlnb"
    with Store(work / "a") as a, Store(work / "b") as b:
        t0 = time.perf_counter()
        exported = mlnb.export_runs(bundle, store=a)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = mlnb.import_runs(bundle, store=b)
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = mlnb.import_runs(bundle, store=b)
        again_s = time.perf_counter() - t0
        assert len(exported) == len(first.added) == len(again.unchanged) == runs
        t0 = time.perf_counter()
        same = mlnb.sync(a, b)
        same_s = time.perf_counter() - t0
        assert not same.moves and same.same == runs
    add_runs(work / "a", NEW, "new")
    with Store(work / "a") as a, Store(work / "b") as b:
        t0 = time.perf_counter()
        synced = mlnb.sync(a, b)
        sync_s = time.perf_counter() - t0
        assert [m.kind for m in synced.moves] == ["new"] * NEW, synced
    results = {
        "runs": runs,
        "points": runs * POINTS,
        "build": build,
        "export": export_s,
        "import": import_s,
        "again": again_s,
        "sync_same": same_s,
        "sync_new": sync_s,
        "bundle_bytes": bundle.stat().st_size,
        "store_bytes": size(work / "a"),
        "load_average": load_average(),
    }
    shutil.rmtree(work, ignore_errors=True)
    return results


def render(res: dict, command: str) -> str:
    points, runs = res["points"], res["runs"]
    mib = 2**20
    rows = [
        [f"`mlnb.export_runs` of {runs:,} runs ({points:,} points) into one file",
         fmt_time(res["export"]), f"{fmt_rate(points / res['export'])} points/s", ""],
        ["`mlnb.import_runs` of that file into an empty store (checked whole first)",
         fmt_time(res["import"]), f"{fmt_rate(points / res['import'])} points/s", ""],
        ["the same import again (every run compared, nothing written)",
         fmt_time(res["again"]), "", ""],
        [f"`mlnb.sync` of {runs:,} runs + {NEW} new", fmt_time(res["sync_new"]), "",
         verdict(res["sync_new"] < SYNC_BUDGET_S) + " (< 10 s)"],
        [f"`mlnb.sync` of {runs:,} runs already in sync", fmt_time(res["sync_same"]), "", ""],
    ]  # fmt: skip
    return "\n".join(
        [
            "## Teams: bundle files and sync",
            "",
            f"A store of {runs:,} finished runs, each with {POINTS:,} metric points (4 keys), "
            f"5 params and 2 tags (written in {fmt_time(res['build'])}). The bundle file is "
            f"{res['bundle_bytes'] / mib:.1f} MiB for a store of {res['store_bytes'] / mib:.1f} "
            f"MiB ({res['bundle_bytes'] / res['store_bytes']:.0%}): JSON rows, deflated. Sync "
            "reads one summary row per run on each side and compares only the runs whose "
            f"summaries differ. Load average: {res['load_average']}.",
            "",
            *command_block(command, "Command:"),
            "",
            table(["what", "time", "rate", "budget"], rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, doc=__doc__, quick_help="100 runs", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
