"""Shared plumbing for the benchmark scripts: the bench venv, workers, stats, markdown.

Everything here uses only the standard library, so it can be imported both by the
orchestrator (any Python) and by worker processes inside ``.bench-venv`` or ``.venv``.

Two kinds of worker: the foundation section runs ``foundation_worker.py`` in the bench
venv (``run_worker``, with MLflow); every other section module is its own worker, run in
the dev venv (``run_section_worker``, ``section_main``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = REPO / ".bench-venv"
VENV_PY = VENV / "bin" / "python"
# Holds a stamp of pyproject.toml and VENV_PACKAGES; the venv is updated when it differs.
VENV_MARKER = VENV / ".mlnb-bench-installed-v1"
VENV_PACKAGES = ["-e", str(REPO), "mlflow>=3,<4"]
# The dev venv (mlnb editable, with its extras), where the section modules measure mlnb.
DEV_PY = REPO / ".venv" / "bin" / "python"

RESULT_PREFIX = "BENCH-RESULT "

# Environment for every worker. MLflow: synchronous logging (what we time), no telemetry
# (this machine has no internet, and a telemetry thread would only add noise).
WORKER_ENV = {
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PYTHONWARNINGS": "ignore",
    "GIT_PYTHON_REFRESH": "quiet",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- venv


def _venv_stamp() -> str:
    """Changes when mlnb's dependencies (pyproject.toml) or the bench's package list do."""
    import hashlib

    h = hashlib.sha256((REPO / "pyproject.toml").read_bytes())
    h.update(" ".join(VENV_PACKAGES).encode())
    return h.hexdigest()


def ensure_venv(python: str | None = None) -> Path:
    """Create ``.bench-venv`` with mlnb (editable) and MLflow, or update it when
    pyproject.toml changed since the last install; otherwise do nothing."""
    stamp = _venv_stamp()
    if VENV_PY.exists() and VENV_MARKER.exists() and VENV_MARKER.read_text().strip() == stamp:
        return VENV_PY
    python = python or sys.executable
    if not VENV_PY.exists():
        log(f"creating {VENV} with {python}")
        subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    log("installing mlnb (editable) and mlflow into the bench venv; the first time takes minutes")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(
        [str(VENV_PY), "-m", "pip", "install", "-q", *VENV_PACKAGES], check=True, env=env
    )
    VENV_MARKER.write_text(stamp + "\n")
    return VENV_PY


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("MLNB_STORE", "MLNB_RUN_ID", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    env.update(WORKER_ENV)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if extra:
        env.update(extra)
    return env


def run_worker(
    script: str,
    task: str,
    args: dict | None = None,
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> dict:
    """Run ``task`` of a worker script in a fresh bench-venv process; return its JSON result."""
    cmd = [str(VENV_PY), str(BENCH_DIR / script), task, json.dumps(args or {})]
    proc = subprocess.run(
        cmd,
        cwd=str(cwd) if cwd else None,
        env=worker_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-5000:])
        sys.stderr.write(proc.stderr[-5000:])
        raise RuntimeError(f"worker {script} {task} failed (exit {proc.returncode})")
    return result


def emit(result: dict) -> None:
    """Called by a worker to hand its result back to the orchestrator."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- section modules


def dev_python() -> str:
    """The dev venv's python (``.venv/``, where mlnb is installed editable), else this one."""
    return str(DEV_PY) if DEV_PY.exists() else sys.executable


def section_worker_env() -> dict[str, str]:
    """The caller's environment for a section worker: mlnb from this checkout, no warnings,
    and nothing that would change what mlnb does (``MLNB_*``, ``CI``, an active venv)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLNB_") and k not in ("VIRTUAL_ENV", "CI")
    }
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_section_worker(
    script: str | Path, task: str, config: dict | None = None, *, timeout: float = 3600
) -> dict:
    """Run ``script --worker TASK --config JSON`` (a section module acting as its own
    worker, see ``section_main``) in a fresh process of the dev venv, from the repository
    root; return the JSON object printed on the last line of its stdout."""
    script = Path(script).resolve()
    proc = subprocess.run(
        [dev_python(), str(script), "--worker", task, "--config", json.dumps(config or {})],
        capture_output=True,
        text=True,
        env=section_worker_env(),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise RuntimeError(f"worker {script.name} {task} failed (exit {proc.returncode})")
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def section_main(
    script: str | Path,
    name: str,
    measure: Callable[[bool], Any],
    render: Callable[[Any, str], str],
    worker: Callable[[str, dict], dict] | None = None,
    *,
    doc: str | None = None,
    quick_help: str = "fewer repeats",
    argv: list[str] | None = None,
) -> int:
    """The command line of a section module run on its own.

    ``script.py [--quick] [--out FILE]`` measures, renders and publishes section ``name``
    (printed, or written between its markers of ``FILE``); ``script.py --worker TASK
    --config JSON`` (hidden; what ``run_section_worker`` runs) prints ``worker(TASK,
    config)`` as one JSON line instead. ``doc`` is the module's docstring (for ``--help``).
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0] or None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, help="write the section into this markdown file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if worker is None:
            parser.error("this section has no worker")
        print(json.dumps(worker(args.worker, json.loads(args.config))))
        return 0
    shown = ["python", f"benchmarks/{Path(script).name}"]
    shown += argv if argv is not None else sys.argv[1:]
    publish(name, render(measure(args.quick), shlex.join(shown)), args.out)
    return 0


# --------------------------------------------------------------------------- stats


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an unsorted list."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize_ns(samples_ns: list[int]) -> dict:
    """p50/p99/mean/max in microseconds of per-call timings given in nanoseconds."""
    us = [s / 1000 for s in samples_ns]
    return {
        "n": len(us),
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
        "mean_us": statistics.fmean(us),
        "max_us": max(us),
        "total_s": sum(us) / 1e6,
    }


# --------------------------------------------------------------------------- formatting


def fmt_time(seconds: float) -> str:
    """A duration with a sensible unit and three significant figures."""
    if seconds != seconds:  # NaN
        return "n/a"
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"


def fmt_us(us: float) -> str:
    return fmt_time(us / 1e6)


def fmt_rate(per_s: float) -> str:
    return f"{per_s:,.0f}"


def fmt_ratio(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    return f"{x:.2f}×"


def faster(mlnb_cost: float, other_cost: float, who: str = "mlnb") -> str:
    """'mlnb 12× faster' or 'mlnb 1.5× slower' from two costs (times, lower is better)."""
    if mlnb_cost <= 0 or other_cost <= 0:
        return "n/a"
    if other_cost >= mlnb_cost:
        return f"{who} {fmt_ratio(other_cost / mlnb_cost)} faster"
    return f"{who} {fmt_ratio(mlnb_cost / other_cost)} slower"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- machine


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def mlnb_source_state() -> dict:
    """Which mlnb source is measured: the commit, and a digest of uncommitted changes."""
    import hashlib

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "no commit"
    # tracked changes and untracked files under mlnb/, and their content
    diff = git("diff", "HEAD", "--", "mlnb") + git(
        "ls-files", "--others", "--exclude-standard", "--", "mlnb"
    )
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "mlnb").split()
    h = hashlib.sha256(diff.encode())
    for name in untracked:
        with contextlib.suppress(OSError):
            h.update((REPO / name).read_bytes())
    dirty = bool(diff.strip() or untracked)
    label = f"commit {commit}" + (
        f" + uncommitted changes in mlnb/ (digest {h.hexdigest()[:12]})" if dirty else ""
    )
    return {"commit": commit, "dirty": dirty, "digest": h.hexdigest(), "label": label}


def snapshot_mlnb(dest: Path) -> Path:
    """Copy the work tree's ``mlnb/`` package into ``dest``; return the directory to put on
    ``PYTHONPATH`` (it comes before the editable install, so workers import the copy)."""
    import shutil

    shutil.copytree(
        REPO / "mlnb",
        dest / "mlnb",
        ignore=shutil.ignore_patterns("__pycache__", "labextension", "*.pyc"),
    )
    return dest


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def section_facts() -> dict:
    """What a dev-venv section reports of its setup: ``python``, ``source``, ``cores``,
    ``date`` (the load averages at start and end are the section's own)."""
    return {
        "python": f"{platform.python_version()} ({dev_python()})",
        "source": mlnb_source_state()["label"],
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def machine_info(venv_facts: dict) -> dict:
    """Facts about this machine; ``venv_facts`` come from a worker (versions in the venv)."""
    cpu = cpu_name()
    mem = "unknown"
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        if m:
            mem = f"{int(m.group(1)) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        **venv_facts,
    }


def machine_table(info: dict) -> str:
    rows = [
        ["CPU", f"{info['cpu']} ({info['cores']} cores)"],
        ["memory", info["memory"]],
        ["OS", info["os"]],
        ["Python", info.get("python", "?")],
        ["SQLite", info.get("sqlite", "?")],
        ["mlnb", f"{info.get('mlnb', '?')}, {info.get('mlnb_source', '?')}"],
        ["MLflow", info.get("mlflow", "?")],
        ["pandas", info.get("pandas", "?")],
        ["date", info["date"]],
        ["load average (1/5/15 min) at start", info.get("load_start", "n/a")],
        ["load average (1/5/15 min) at end", info.get("load_end", "n/a")],
    ]
    return table(["", ""], rows)


# --------------------------------------------------------------------------- markdown


def machine_sentence(res: dict[str, Any]) -> str:
    """The one line that says where and when a section was measured (cores, Python, the
    source measured, the date and the load average at start and end)."""
    return (
        f"Machine: {res['cores']} cores, Python {res['python']}, {res['source']}, "
        f"{res['date']}; load average {res['load'][0]} at start, {res['load'][1]} at end"
        + (" (quick run)" if res["quick"] else "")
        + "."
    )


def command_block(command: str, label: str = "Command (from the repository root):") -> list[str]:
    """The lines that show how a section was measured: a label, then the command fenced."""
    return [label, "", "```", command, "```"]


def footer(rows: list[list[str]], command: str) -> list[str]:
    """The end of a section: a ``### Machine`` table of ``rows``, then the command."""
    return ["### Machine", "", table(["", ""], rows), "", *command_block(command)]


DOC_HEADER = """# Benchmarks

Measured by the scripts in `benchmarks/`; every section below is written by one run of its
script (no hand-editing). Re-run a section to refresh it; the other sections are kept.
"""


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- bench:NAME:start -->`` and ``:end -->`` in ``doc``.

    The section is appended when the markers are missing; the file is created if needed.
    """
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else DOC_HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def publish(name: str, markdown: str, out: Path | None) -> None:
    """A section run on its own: written into ``out`` between its markers, else printed."""
    if out:
        write_section(out, name, markdown)
        log(f"wrote section {name} of {out}")
    else:
        print(markdown)
