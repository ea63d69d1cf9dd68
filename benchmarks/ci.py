"""The CI section: what `mlnb gate` and `mlnb report` cost on a store with many runs.

    python benchmarks/ci.py [--quick] [--out docs/benchmarks.md]

A store gets N finished runs in one experiment (5 params, 10 metrics of 20 steps each),
written through the Store API. Then, each as a fresh `mlnb` process (what a CI step pays,
interpreter start included) and timed as the median of 3: `mlnb gate` with two metrics
against `latest` and against `best` (which ranks every run of the experiment), and
`mlnb report` of the newest run against `latest` as Markdown (10 PNG plots) and as HTML.
`mlnb --version` is timed too, as the floor of any command.
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
)

from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs

NAME = "ci"
METRICS = 10
STEPS = 20


def build_store(root: Path, runs: int) -> str:
    sys.path.insert(0, str(REPO))
    from mlnb.store import Store

    last = ""
    with Store(root) as st:
        for i in range(runs):
            last = st.create_run(experiment="bench", name=f"run-{i}")
            st.log_params(last, {f"p{k}": i * k for k in range(5)})
            rowid, _ = store_runs.run_rowid(st.file, last)
            now = time.time()
            store_metrics.insert_metrics(
                st.file,
                [
                    (rowid, f"m{k}", s, (i % 97) / 97 + k + s / STEPS, now)
                    for k in range(METRICS)
                    for s in range(STEPS)
                ],
            )
            st.set_status(last, "finished")
    return last


def timed(args: list[str], cwd: Path, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([dev_python(), "-m", "mlnb", *args], cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            raise RuntimeError(proc.stderr.decode())
    return statistics.median(times)


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    runs = 200 if quick else 1000
    work = Path(tempfile.mkdtemp(prefix="mlnb-bench-ci-"))
    log(f"ci: a store of {runs} runs")
    t0 = time.perf_counter()
    newest = build_store(work / "store", runs)
    build = time.perf_counter() - t0
    store = ["--store", str(work / "store")]
    gate = [*store, "gate", newest, "-m", "m0>=0.1", "-m", "m1"]
    results = {
        "runs": runs,
        "build": build,
        "version": timed(["--version"], work),
        "gate_latest": timed([*gate, "--vs", "latest"], work),
        "gate_best": timed([*gate, "--vs", "best"], work),
        "report_md": timed([*store, "report", newest, "--vs", "latest", "-o", "r.md"], work),
        "report_html": timed(
            [*store, "report", newest, "--vs", "latest", "--format", "html", "-o", "r.html"], work
        ),
        "plots": len(list((work / "r_files").glob("*.png"))),
        "html_bytes": (work / "r.html").stat().st_size,
        "load_average": load_average(),
    }
    return results


def render(res: dict, command: str) -> str:
    rows = [
        ["`mlnb --version` (process floor)", fmt_time(res["version"])],
        ["`mlnb gate RUN -m m0>=0.1 -m m1 --vs latest`", fmt_time(res["gate_latest"])],
        [f"`mlnb gate ... --vs best` (ranks {res['runs']:,} runs)", fmt_time(res["gate_best"])],
        [f"`mlnb report RUN --vs latest -o r.md` ({res['plots']} PNG plots)",
         fmt_time(res["report_md"])],
        [f"`mlnb report ... --format html` ({res['html_bytes'] / 1024:.0f} KiB, self-contained)",
         fmt_time(res["report_html"])],
    ]  # fmt: skip
    return "\n".join(
        [
            "## CI: gate and report",
            "",
            f"A store with {res['runs']:,} finished runs in one experiment (5 params, "
            f"{METRICS} metrics × {STEPS} steps each; written in {fmt_time(res['build'])}). "
            "Each command is a fresh `mlnb` process, as in a CI step, interpreter start "
            f"included; median of 3. Load average: {res['load_average']}.",
            "",
            *command_block(command, "Command:"),
            "",
            table(["command", "wall time"], rows),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, doc=__doc__, quick_help="200 runs", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
