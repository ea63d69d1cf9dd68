"""The capture section: how long environment and git capture take at run start.

    python benchmarks/capture_env.py [--quick] [--out docs/benchmarks.md]

``measure`` + ``render`` make the markdown (``run.py`` writes it between the
``capture_env`` markers); run alone, the script prints it, or writes it into ``--out``.
Every measurement runs in fresh processes of the dev venv (``.venv/``, where mlnb is
installed editable; else the current interpreter), the same script acting as the worker.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from _common import (
    REPO,
    command_block,
    fmt_time,
    load_average,
    log,
    percentile,
    run_section_worker,
    section_main,
    table,
    verdict,
)

NAME = "capture_env"
TITLE = "## Capture (environment and git)"
BUDGET_S = 0.200
FULL = {"repeats": 20, "cold": 7}
QUICK = {"repeats": 10, "cold": 3}
PART_SETS = {
    "python + os only (`parts=()`)": [],
    "+ packages": ["packages"],
    "+ hardware": ["hardware"],
    "+ gpu": ["gpu"],
    "+ env_vars": ["env_vars"],
}


# ------------------------------------------------------------------------ the worker


def _timed(fn: object, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def worker(task: str, cfg: dict) -> dict:
    repeats = cfg["repeats"]
    if task == "cold":
        t0 = time.perf_counter()
        from mlnb.capture.environment import capture_environment

        t1 = time.perf_counter()
        env = capture_environment()
        t2 = time.perf_counter()
        return {"import_s": t1 - t0, "first_s": t2 - t1, "packages": len(env["packages"])}

    from mlnb.capture.environment import capture_environment

    if task == "warm":
        env = capture_environment()
        parts = {
            label: _timed(lambda p=p: capture_environment(parts=p), repeats)
            for label, p in PART_SETS.items()
        }
        return {
            "all": _timed(capture_environment, repeats),
            "parts": parts,
            "packages": len(env["packages"]),
            "python": env["python"]["version"],
            "executable": env["python"]["executable"],
            "gpus": len(env["gpus"]),
            "importlib_metadata": _timed(_importlib_metadata_packages, max(3, repeats // 4)),
        }
    if task == "git":
        from mlnb.capture.git import capture_git

        state = capture_git(REPO)
        if state is None:
            return {"none": True}
        return {
            "times": _timed(lambda: capture_git(REPO), repeats),
            "dirty": state["dirty"],
            "diff_bytes": state["diff_bytes"],
            "untracked": state["untracked_count"],
        }
    raise SystemExit(f"unknown task {task!r}")


def _importlib_metadata_packages() -> dict[str, str]:
    """The obvious way: ``dist.metadata`` parses each whole METADATA file (reference)."""
    import importlib.metadata

    return {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}


# ------------------------------------------------------------------ the orchestrator


def _run(task: str, repeats: int) -> dict:
    return run_section_worker(__file__, task, {"repeats": repeats}, timeout=600)


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    """Raw results; ``profile_dir`` is accepted for run.py's interface and unused."""
    cfg = QUICK if quick else FULL
    load_start = load_average()
    log(f"capture_env: {cfg['cold']} cold processes")
    cold = [_run("cold", 1) for _ in range(cfg["cold"])]
    log(f"capture_env: warm, {cfg['repeats']} repeats")
    warm = _run("warm", cfg["repeats"])
    log("capture_env: git")
    git = _run("git", cfg["repeats"])
    return {
        "quick": quick,
        "config": cfg,
        "cold": cold,
        "warm": warm,
        "git": git,
        "load": [load_start, load_average()],
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def _stats(values: list[float]) -> tuple[str, str]:
    return fmt_time(statistics.median(values)), fmt_time(percentile(values, 90))


def render(res: dict, command: str) -> str:
    warm, git, cold = res["warm"], res["git"], res["cold"]
    n = res["config"]["repeats"]
    budget = fmt_time(BUDGET_S)
    out = [TITLE, ""]
    out.append(
        f"`capture_environment()` and `capture_git()` run in a background thread at run "
        f"start; the budget is {budget} for each. Interpreter: `{warm['executable']}` "
        f"(Python {warm['python']}, {warm['packages']} distributions installed, "
        f"{warm['gpus']} GPUs); each row is measured in fresh processes of it."
    )
    if res["quick"]:
        out += ["", "**Quick run** (`--quick`): fewer repeats."]
    out += [""]

    med_all = statistics.median(warm["all"])
    first = [c["first_s"] for c in cold]
    imports = [c["import_s"] for c in cold]
    rows = [
        [
            f"`capture_environment()` warm, {n} calls",
            *_stats(warm["all"]),
            budget,
            verdict(med_all <= BUDGET_S),
        ],
        [
            f"`capture_environment()` first call in a fresh process ({len(cold)} processes)",
            *_stats(first),
            budget,
            verdict(statistics.median(first) <= BUDGET_S),
        ],
        [
            "importing the environment capture in a fresh process (incl. `import mlnb`)",
            *_stats(imports),
            "",
            "",
        ],
    ]
    if git.get("none"):
        rows.append(["`capture_git()` on this repository", "not a repository", "", "", ""])
    else:
        med_git = statistics.median(git["times"])
        rows.append(
            [
                f"`capture_git()` on this repository, {n} calls (dirty: {git['dirty']}, "
                f"diff {git['diff_bytes']:,} B, {git['untracked']} untracked)",
                *_stats(git["times"]),
                budget,
                verdict(med_git <= BUDGET_S),
            ]
        )
    out += [table(["measurement", "median", "p90", "budget", ""], rows), ""]

    out += ["Where the warm time goes (one optional part at a time, median):", ""]
    part_rows = [[label, fmt_time(statistics.median(t))] for label, t in warm["parts"].items()]
    part_rows.append(
        [
            "reference: name and version via `importlib.metadata` `dist.metadata` "
            "(what the packages part avoids)",
            fmt_time(statistics.median(warm["importlib_metadata"])),
        ]
    )
    out += [table(["parts", "median"], part_rows), ""]
    out += [
        f"Date: {res['date']}; load average (1/5/15 min) {res['load'][0]} at start, "
        f"{res['load'][1]} at end.",
        "",
        *command_block(command),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(__file__, NAME, measure, render, worker, doc=__doc__, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
