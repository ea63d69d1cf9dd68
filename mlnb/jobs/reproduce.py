"""Reproduce and verify: re-execute a past run's notebook and say whether it came out the same.

:func:`reproduce` re-runs the notebook **snapshot stored with the run** (the artifact
``notebook/<name>.ipynb`` that jobs and tracked notebooks keep — not today's file) with the
run's parameters, as a new job run named ``<name>-repro-<short id>`` and linked to the old
one (tag ``mlnb.reproduce.of``). It
then compares the two runs on four counts and names every one that differs:

- ``metrics``: every series the old run logged, step by step, within ``rtol``/``atol``
  (timings ``job/*`` and ``system/*`` are not results and are skipped);
- ``data``: the fingerprints (and rows, schema) of the datasets both runs logged;
- ``environment``: Python, platform and package versions;
- ``code``: the git commit and uncommitted diff of the working directory (the notebook
  itself is the snapshot, so it cannot differ; a changed file on disk is only noted).

The verdict is ``reproduced`` or the list of what differs; the exit code says which (see
:data:`DIFFERS_BITS`). See docs/reproduce.md.
"""

from __future__ import annotations

import fnmatch
import math
import os
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.comparison.diff import Change, diff_runs
from mlnb.conventions import (
    EXIT_NOT_REPRODUCED,
    EXIT_OK,
    REPRODUCE_OF_TAG,
    REPRODUCE_VERDICT_TAG,
)
from mlnb.errors import InvalidInputError
from mlnb.jobs.params import notebook_parameters
from mlnb.jobs.runner import (
    SNAPSHOT_DIR,
    JobResult,
    _open_store,
    run_notebook,
)
from mlnb.records import CheckRecord, RunRecord, is_system_metric
from mlnb.store import Store
from mlnb.store.hashing import hash_file
from mlnb.tracking.fluent import StoreLike

__all__ = ["DIFFERS_BITS", "KINDS", "MetricCheck", "Reproduction", "reproduce"]

KINDS = ("metrics", "data", "environment", "code")
# Exit code of a reproduction that differs: EXIT_NOT_REPRODUCED (16) + the sum of the bits
# of what differs (metrics 1, data 2, environment 4, code 8): 17 = metrics only, 20 =
# environment only...
DIFFERS_BITS = {"metrics": 1, "data": 2, "environment": 4, "code": 8}


@dataclass(frozen=True)
class MetricCheck:
    """One metric series compared: ``ok`` when every step matches within tolerance.
    ``step``, ``old`` and ``new`` locate the first mismatch (or the last value when ok)."""

    key: str
    ok: bool
    step: int | None
    old: float | None
    new: float | None
    reason: str = ""


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`: the new run, its job result and the verdict."""

    original: RunRecord
    job: JobResult
    differs: list[str]
    metrics: list[MetricCheck] = field(default_factory=list)
    data: list[Change] = field(default_factory=list)
    environment: list[Change] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ignored: tuple[str, ...] = ()

    @property
    def run_id(self) -> str:
        """The new run's id."""
        return self.job.run_id

    @property
    def name(self) -> str:
        """The new run's name: the original's, ``-repro-`` and the original's short id."""
        return repro_name(self.original)

    @property
    def verdict(self) -> str:
        """``reproduced``; ``failed`` when the notebook did not run through; else what
        differs, e.g. ``metrics, data``."""
        if not self.job.ok:
            return "failed"
        counted = [k for k in self.differs if k not in self.ignored]
        return ", ".join(counted) if counted else "reproduced"

    @property
    def exit_code(self) -> int:
        """0 reproduced; the job's own code (1, 124, 138) if it failed; else 16 + the bits
        of what differs (metrics 1, data 2, environment 4, code 8)."""
        if not self.job.ok:
            return self.job.exit_code
        bits = sum(DIFFERS_BITS[k] for k in self.differs if k not in self.ignored)
        return EXIT_NOT_REPRODUCED + bits if bits else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {
            "original": self.original.run_id,
            "run_id": self.run_id,
            "status": self.job.status,
            "verdict": self.verdict,
            "differs": self.differs,
            "ignored": list(self.ignored),
            "exit_code": self.exit_code,
            "metrics": [vars(m) for m in self.metrics],
            "data": [_change_dict(c) for c in self.data],
            "environment": [_change_dict(c) for c in self.environment],
            "code": self.code,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        old = self.original
        lines = [
            f"reproduce {old.name} ({old.run_id[:8]}) → run {self.run_id[:8]} ({self.name})  "
            f"{self.job.status}"
        ]
        if self.job.error is not None:
            err = self.job.error
            where = f"cell {err.cell}: " if err.cell is not None else ""
            lines.append(f"  the notebook did not run through: {where}{err.name}: {err.message}")
        for m in self.metrics:
            mark = "ok  " if m.ok else "DIFF"
            if m.ok:
                lines.append(f"  {mark} metric {m.key}")
            else:
                lines.append(f"  {mark} metric {m.key}: {m.reason}")
        for title, rows in (("data", self.data), ("environment", self.environment)):
            for c in rows:
                lines.append(f"  DIFF {title} {c.key}: {_fmt(c.a)} → {_fmt(c.b)}")
        for reason in self.code:
            lines.append(f"  DIFF code: {reason}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        ignored = [k for k in self.differs if k in self.ignored]
        tail = f" (ignored: {', '.join(ignored)})" if ignored else ""
        lines.append(f"verdict: {self.verdict}{tail}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Reproduction {self.original.run_id[:8]} → {self.run_id[:8]}: {self.verdict}>"


def repro_name(original: RunRecord) -> str:
    """The name of a reproduction of ``original``: ``<name>-repro-<short id>``. It says
    what the run is and which run it reproduces, and leaves the original's name meaning
    one run (the tag ``mlnb.reproduce.of`` holds the full id)."""
    return f"{original.name}-repro-{original.run_id[:8]}"


def reproduce(
    run: str,
    *,
    rtol: float = 1e-6,
    atol: float = 0.0,
    skip_metrics: Sequence[str] = (),
    ignore: Collection[str] = (),
    kernel: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    cell_timeout: float | None = None,
    start_timeout: float = 60,
    output: str | os.PathLike[str] | None = None,
    store: StoreLike | None = None,
) -> Reproduction:
    """Re-execute run ``run``'s stored notebook with its parameters and verify the result.

    Metrics match when ``|new - old| <= atol + rtol * |old|`` at every step (NaN matches
    NaN); ``skip_metrics`` are glob patterns of metric keys not to compare (besides
    ``job/*`` and ``system/*``). Kinds in ``ignore`` are still reported but do not change
    the verdict or the exit code (``ignore={"environment"}`` on a new machine). The kernel
    runs in ``cwd``, by default the original notebook's folder when it still exists (so
    relative data paths resolve as they did). Raises :class:`~mlnb.errors.InvalidInputError`
    for an unknown run, a run still running, or one without a notebook snapshot.
    """
    unknown = set(ignore) - set(KINDS)
    if unknown:
        raise InvalidInputError(
            f"cannot ignore {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}"
        )
    for tol, name in ((rtol, "rtol"), (atol, "atol")):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise InvalidInputError(f"{name} must be a number >= 0, got {tol!r}")
    st = _open_store(store, create=False)  # the run to reproduce is in it already
    return _reproduce(
        st, run, rtol, atol, tuple(skip_metrics), tuple(sorted(set(ignore))), kernel,
        cwd, cell_timeout, start_timeout, output,
    )  # fmt: skip


def _snapshot(old: RunRecord) -> str:
    names = sorted(
        a.path
        for a in old.artifacts
        if a.path.startswith(f"{SNAPSHOT_DIR}/") and a.path.endswith(".ipynb")
    )
    if not names:
        raise InvalidInputError(
            f"run {old.run_id[:8]} ({old.name}) has no notebook snapshot to re-execute: "
            f"runs of `mlnb run` and of tracked notebooks keep one as "
            f"'{SNAPSHOT_DIR}/<name>.ipynb'; scripts do not"
        )
    return names[0]


def _reproduce(
    st: Store,
    ref: str,
    rtol: float,
    atol: float,
    skip: tuple[str, ...],
    ignore: tuple[str, ...],
    kernel: str | None,
    cwd: str | os.PathLike[str] | None,
    cell_timeout: float | None,
    start_timeout: float,
    output: str | os.PathLike[str] | None,
) -> Reproduction:
    old = st.get_run(ref)
    if old.status in ("running", "queued"):
        raise InvalidInputError(f"run {old.run_id[:8]} is still {old.status}: wait for it to end")
    artifact = _snapshot(old)
    snapshot_file = Path(old.artifact_path(artifact))
    notes: list[str] = []
    where = old.notebook or old.source  # a tracked notebook's path, or the job's input
    original = Path(where) if where else None
    changed = (
        original is not None
        and original.suffix == ".ipynb"
        and original.is_file()
        and hash_file(original) != hash_file(snapshot_file)
    )
    if changed:
        notes.append(f"{original} has changed since this run; the stored snapshot was re-executed")
    if cwd is None and original is not None and original.parent.is_dir():
        cwd = original.parent
    with tempfile.TemporaryDirectory(prefix="mlnb-reproduce-") as tmp:
        path = Path(tmp) / Path(artifact).name
        path.write_bytes(snapshot_file.read_bytes())
        if cwd is None:
            cwd = tmp
            notes.append("the original notebook's folder is gone: ran in a temporary folder")
        known = {p.name for p in notebook_parameters(path)}
        params = {k: v for k, v in old.params.items() if k in known}
        job = run_notebook(
            path, output, parameters=params, name=repro_name(old), experiment=old.experiment,
            tags={REPRODUCE_OF_TAG: old.run_id}, kernel=kernel, cwd=cwd, cell_timeout=cell_timeout,
            start_timeout=start_timeout, store=st,
        )  # fmt: skip
    # The job ran a temporary copy: its source and notebook point at what the old run came
    # from (a reproduction of this run then finds the original folder again).
    st.set_source(job.run_id, old.source, notebook=where)
    new = st.get_run(job.run_id)
    result = Reproduction(original=old, job=job, differs=[], notes=notes, ignored=ignore)
    if job.ok:
        _verify(st, old, new, result, rtol, atol, skip)
    st.set_tags(job.run_id, {REPRODUCE_VERDICT_TAG: result.verdict}, check_state=False)
    st.log_checks(job.run_id, _check_rows(result, rtol, atol))
    return result


def _check_rows(result: Reproduction, rtol: float, atol: float) -> list[CheckRecord]:
    """The verdict as rows of the checks table (kind ``reproduce``), so `mlnb show` and
    `mlnb report` list it with gates and checks: one row per metric, one per other count."""
    base = result.original.run_id
    rows = [
        CheckRecord(
            "reproduce", "verdict", result.exit_code == 0, baseline_run_id=base,
            message=result.verdict, details={"differs": result.differs,
                                             "ignored": list(result.ignored)},
        )
    ]  # fmt: skip
    if not result.job.ok:
        return rows
    for m in result.metrics:
        rows.append(
            CheckRecord(
                "reproduce", f"metrics.{m.key}", m.ok, value=m.new, baseline_run_id=base,
                baseline_value=m.old, message=m.reason or f"matches at every step up to {m.step}",
                details={"rtol": rtol, "atol": atol, "step": m.step},
            )
        )  # fmt: skip
    for kind, changes in (("data", result.data), ("environment", result.environment)):
        text = "; ".join(f"{c.key}: {_fmt(c.a)} → {_fmt(c.b)}" for c in changes[:20])
        rows.append(
            CheckRecord(
                "reproduce", kind, not changes, baseline_run_id=base, message=text or "same"
            )
        )
    rows.append(
        CheckRecord(
            "reproduce",
            "code",
            not result.code,
            baseline_run_id=base,
            message="; ".join(result.code) or "same",
        )
    )
    return rows


def _verify(
    st: Store,
    old: RunRecord,
    new: RunRecord,
    result: Reproduction,
    rtol: float,
    atol: float,
    skip: tuple[str, ...],
) -> None:
    keys = sorted(
        k for k in set(old.metrics) | set(new.metrics)
        if not is_system_metric(k) and not any(fnmatch.fnmatchcase(k, p) for p in skip)
    )  # fmt: skip
    for key in keys:
        result.metrics.append(_compare_series(st, old, new, key, rtol, atol))
    sections = diff_runs(old, new).sections
    result.data = list(sections["data"])
    if old.environment is None or new.environment is None:
        which = "original" if old.environment is None else "new"
        result.notes.append(f"the {which} run has no environment: not compared")
    else:
        result.environment = list(sections["environment"])
    result.code = _code_changes(old, new, result.notes)
    if any(not m.ok for m in result.metrics):
        result.differs.append("metrics")
    if result.data:
        result.differs.append("data")
    if result.environment:
        result.differs.append("environment")
    if result.code:
        result.differs.append("code")


def _compare_series(
    st: Store, old: RunRecord, new: RunRecord, key: str, rtol: float, atol: float
) -> MetricCheck:
    a = {step: value for step, value, _ in st.history(old.run_id, key)}
    b = {step: value for step, value, _ in st.history(new.run_id, key)}
    if not a:
        return MetricCheck(
            key, False, None, None, new.metrics.get(key), "not logged by the original"
        )
    if not b:
        return MetricCheck(key, False, None, old.metrics.get(key), None, "not logged this time")
    for step in sorted(set(a) | set(b)):
        if step not in b:
            return MetricCheck(key, False, step, a[step], None, f"step {step} missing this time")
        if step not in a:
            return MetricCheck(key, False, step, None, b[step], f"step {step} is new")
        x, y = a[step], b[step]
        if not _close(x, y, rtol, atol):
            rel = f", {(y - x) / abs(x):+.2%}" if x and math.isfinite(x) else ""
            return MetricCheck(
                key, False, step, x, y, f"step {step}: {x!r} → {y!r} (Δ {y - x:+.3g}{rel})"
            )
    last = max(a)
    return MetricCheck(key, True, last, a[last], b[last])


def _close(x: float | None, y: float | None, rtol: float, atol: float) -> bool:
    if x is None or y is None:  # NULL is how a NaN reads back from an old store
        return x is None and y is None
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(y - x) <= atol + rtol * abs(x)


def _code_changes(old: RunRecord, new: RunRecord, notes: list[str]) -> list[str]:
    a, b = old.git, new.git
    if not a or not b:
        if a and not b:
            notes.append("the original ran in a git repository, this run did not: not compared")
        return []
    out = []
    if a.get("commit") != b.get("commit"):
        out.append(f"git commit {str(a.get('commit'))[:12]} → {str(b.get('commit'))[:12]}")
    if a.get("diff_hash") != b.get("diff_hash"):
        if not b.get("diff_hash"):
            out.append("the original had uncommitted changes; the working tree is clean now")
        elif not a.get("diff_hash"):
            out.append("uncommitted changes now (the original's working tree was clean)")
        else:
            out.append("the uncommitted changes differ (see artifact mlnb/git.diff of each run)")
    return out


def _change_dict(c: Change) -> dict[str, Any]:
    return {"key": c.key, "a": _plain(c.a), "b": _plain(c.b)}


def _plain(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool, type(None))) else None


def _fmt(x: Any) -> str:
    if isinstance(x, (str, int, float, bool)):
        return str(x)
    return "—"
