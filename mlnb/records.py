"""Plain records handed out by the store: no I/O here, except ``RunRecord.history`` and
``RunRecord.artifact_path``, which ask the store the record came from through the small
:class:`RunSource` protocol (records sit below the store and never import it).

A notebook shows the record a cell returns (``%track data df``, ``mlnb.get_run(...)``):
each has a one-line ``repr`` that says what it is (``<DatasetRef df input dataframe 5 rows
× 2 columns 7c0d70020649>``) and a small ``_repr_html_`` table, every text escaped.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from mlnb.conventions import ERROR_TAG
from mlnb.formatting import escape_html

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

STATUSES = ("queued", "running", "finished", "failed", "killed", "crashed")
TERMINAL_STATUSES = frozenset({"finished", "failed", "killed", "crashed"})
SCHEMA_SHOWN = 8  # a dataset's columns named in its HTML summary
# Series mlnb records about a run rather than about its model: a job's per-cell timings
# (job/cell_seconds) and the sampled machine (system/cpu_percent, ...). Diffs, reports,
# the compare view and gates leave them out unless asked (system_metrics=True,
# --system-metrics); see is_system_metric.
SYSTEM_METRIC_PREFIXES = ("job/", "system/")


def is_system_metric(key: str) -> bool:
    """Whether metric ``key`` describes the run's machinery (``job/*``, ``system/*``)
    rather than its model. The one test of it: comparisons hide these by default."""
    return key.startswith(SYSTEM_METRIC_PREFIXES)


class PythonInfo(TypedDict, total=False):
    """The ``python`` part of an environment snapshot."""

    version: str
    implementation: str
    executable: str
    prefix: str
    virtualenv: dict[str, str] | None  # {"path", "name"}
    conda_env: str | None


class OsInfo(TypedDict, total=False):
    """The ``os`` part of an environment snapshot."""

    system: str
    platform: str
    release: str
    machine: str


class Environment(TypedDict, total=False):
    """An environment snapshot (format 1), as captured and as stored (docs/capture.md
    "Environment"); the parts switched off are absent."""

    format: int
    captured_at: float
    parts: list[str]
    python: PythonInfo
    os: OsInfo
    hardware: dict[str, Any]  # cpu_model, cpu_count_{logical,physical,usable}, memory_total_bytes
    gpus: list[dict[str, Any]]  # index, name, memory_total_mb, driver_version, source
    packages: dict[str, str]  # normalized distribution name → version
    package_sources: dict[str, dict[str, Any]]  # PEP 610: url, kind, editable, path, vcs, …
    env_vars: dict[str, str]


class GitState(TypedDict):
    """A run's git state as stored (docs/capture.md "Git state"); the diff itself is the
    artifact ``mlnb/git.diff`` whose hash is ``diff_hash``."""

    root: str | None
    commit: str | None
    branch: str | None
    remote: str | None
    dirty: bool
    diff_hash: str | None
    diff_bytes: int | None
    diff_truncated: bool
    untracked: list[str]
    untracked_count: int | None


class RunSource(Protocol):
    """What a :class:`RunRecord` asks of the store it came from (``Store`` is one)."""

    def history_frame(self, run_id: str, key: str) -> pd.DataFrame:
        """One metric's series as a DataFrame with columns step, value, timestamp."""
        ...

    def artifact_file(self, digest: str) -> Path:
        """Where the content with this hash lives."""
        ...


def iso(ts: float | None) -> str | None:
    """A Unix time as an ISO-8601 UTC string (what users read), or None."""
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


def format_duration(seconds: float | None) -> str:
    """A run's duration for people: ``42.1 s``, ``3m 07s``, ``2h 05m``, ``3d 4h``."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def format_size(size: int | None) -> str:
    """A byte count for people: ``512 B``, ``2.5 kB``, ``3.8 MB``, ``1.2 GB`` (SI units)."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short_hash(digest: str) -> str:
    """The first 12 hex digits of a content hash, without its algorithm (``xxh128:``)."""
    return digest.rpartition(":")[2][:12]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def html_table(rows: Sequence[tuple[str, str]]) -> str:
    """The small table a record shows in a notebook: ``(label, value)`` rows where the
    label is text (escaped here) and the value is HTML already escaped by the caller."""
    body = "".join(
        f"<tr><th style='text-align:left'>{escape_html(k)}</th><td>{v}</td></tr>" for k, v in rows
    )
    return f"<table class='mlnb-record'>{body}</table>"


def _code(text: str) -> str:
    return f"<code>{escape_html(text)}</code>"


@dataclass(frozen=True)
class Metric:
    """One point of a metric series."""

    key: str
    value: float
    step: int
    timestamp: float

    def __repr__(self) -> str:
        return f"<Metric {self.key}={self.value:.6g} step {self.step}>"

    def _repr_html_(self) -> str:
        return html_table(
            [
                ("metric", escape_html(self.key)),
                ("value", escape_html(_number(self.value))),
                ("step", str(self.step)),
                ("time", escape_html(iso(self.timestamp) or "")),
            ]
        )


@dataclass(frozen=True)
class SampledHistory:
    """A metric series as plots read it (``Store.downsampled_history``): ``points``
    ``(step, value, timestamp)`` by step — every point when there are at most the points
    asked for, else the lowest and the highest of each bucket of steps plus the first and
    the last — and ``count``, how many points the series holds."""

    points: list[tuple[int, float, float]]
    count: int


@dataclass(frozen=True)
class Artifact:
    """A file attached to a run; ``hash`` names its content in the store's artifact folder."""

    path: str
    hash: str
    size: int
    kind: str
    created_at: float

    def __repr__(self) -> str:
        return (
            f"<Artifact {self.path} {self.kind} {format_size(self.size)} {short_hash(self.hash)}>"
        )

    def _repr_html_(self) -> str:
        return html_table(
            [
                ("artifact", escape_html(self.path)),
                ("kind", escape_html(self.kind)),
                ("size", escape_html(format_size(self.size))),
                ("hash", _code(self.hash)),
                ("stored", escape_html(iso(self.created_at) or "")),
            ]
        )


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a run read (``role="input"``) or wrote (``"output"``), by fingerprint."""

    name: str
    role: str
    hash: str
    kind: str
    rows: int | None
    columns: int | None
    size_bytes: int | None
    schema: list[dict[str, Any]] | None
    sampled: bool
    details: dict[str, Any]
    profile: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> str:
        """``12,000 rows × 40 columns``, ``12,000 rows``, or a file's size."""
        if self.rows is not None and self.columns is not None:
            return f"{self.rows:,} rows × {self.columns:,} columns"
        if self.rows is not None:
            return _plural(self.rows, "row")
        return format_size(self.size_bytes)

    def __repr__(self) -> str:
        parts = [self.name, self.role, self.kind, self.shape, short_hash(self.hash)]
        return f"<DatasetRef {' '.join(p for p in parts if p)}>"

    def _repr_html_(self) -> str:
        rows = [
            ("dataset", escape_html(self.name)),
            ("role", escape_html(self.role)),
            ("kind", escape_html(self.kind)),
            ("shape", escape_html(self.shape)),
            ("hash", _code(self.hash)),
        ]
        if self.schema:
            cols = [f"{c.get('name')} {c.get('dtype', '')}".strip() for c in self.schema]
            more = len(cols) - SCHEMA_SHOWN
            shown = ", ".join(cols[:SCHEMA_SHOWN]) + (f", … {more:,} more" if more > 0 else "")
            rows.append(("columns", escape_html(shown)))
        if self.sampled:
            rows.append(("sampled", "yes: the hash covers part of the data"))
        return html_table(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (without the profile, which can be large)."""
        return {
            "name": self.name,
            "role": self.role,
            "hash": self.hash,
            "kind": self.kind,
            "rows": self.rows,
            "columns": self.columns,
            "size_bytes": self.size_bytes,
            "schema": self.schema,
            "sampled": self.sampled,
        }


@dataclass(frozen=True)
class CheckRecord:
    """One row of the ``checks`` table: the verdict of a gate, a ``--check`` or a validation
    on a run. ``value`` and ``baseline_value`` are None when missing (NaN is NaN);
    ``batch`` groups the rows one invocation wrote."""

    kind: str
    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    comparator: str | None = None
    direction: str | None = None
    baseline_run_id: str | None = None
    baseline_value: float | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    batch: str = ""
    created_at: float = 0.0

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def __repr__(self) -> str:
        value = "" if self.value is None else f" ({self.value:.6g})"
        return f"<CheckRecord {self.kind} {self.name}: {self.verdict}{value}>"

    def _repr_html_(self) -> str:
        rows = [
            ("check", escape_html(f"{self.kind} {self.name}")),
            ("verdict", self.verdict),
        ]
        if self.value is not None:
            rows.append(("value", escape_html(_number(self.value))))
        if self.threshold is not None:
            limit = f"{self.comparator or ''} {_number(self.threshold)}".strip()
            rows.append(("threshold", escape_html(limit)))
        if self.baseline_run_id:
            base = f"{self.baseline_run_id[:8]} {_number(self.baseline_value)}".strip()
            rows.append(("baseline", escape_html(base)))
        if self.message:
            rows.append(("message", escape_html(self.message)))
        if self.created_at:
            rows.append(("time", escape_html(iso(self.created_at) or "")))
        return html_table(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (``created_at`` as an ISO string)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "comparator": self.comparator,
            "direction": self.direction,
            "baseline_run_id": self.baseline_run_id,
            "baseline_value": self.baseline_value,
            "message": self.message,
            "details": dict(self.details),
            "batch": self.batch,
            "created_at": iso(self.created_at),
        }


NO_MESSAGE = "(no message; the traceback and the executed notebook show the cell)"


def _cut(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class JobError:
    """What stopped a headless job: ``name`` (the exception's class, or ``Timeout``),
    ``message``, ``cell`` (the 0-based index of the cell in the input notebook, None if
    unknown), ``source`` (the cell's first line that is not blank) and ``traceback`` (the
    last frames, plain text). ``str()`` gives all of it for people; the run keeps it in the
    tags ``mlnb.error.*`` (:meth:`to_tags`, :meth:`from_tags`)."""

    name: str
    message: str
    cell: int | None
    source: str = ""
    traceback: str = ""

    def headline(self) -> str:
        """One line: ``cell 3 `model.fit(X)`: ValueError: bad input`` (never an empty
        message)."""
        where = "" if self.cell is None else f"cell {self.cell}"
        if where and self.source:
            where += f" `{self.source}`"
        what = f"{self.name}: {self.message or NO_MESSAGE}"
        return f"{where}: {what}" if where else what

    def __str__(self) -> str:
        lines = [self.headline()]
        if self.traceback:
            lines.append("  traceback (last frames):")
            lines += [f"    {line}" for line in self.traceback.splitlines()]
        return "\n".join(lines)

    def to_tags(self) -> dict[str, Any]:
        """The run's tags that record this error (long texts cut to fit a tag)."""
        tags: dict[str, Any] = {f"{ERROR_TAG}.name": self.name[:200],
                                f"{ERROR_TAG}.message": _cut(self.message)}  # fmt: skip
        if self.cell is not None:
            tags[f"{ERROR_TAG}.cell"] = self.cell
        if self.source:
            tags[f"{ERROR_TAG}.source"] = _cut(self.source)
        if self.traceback:
            tags[f"{ERROR_TAG}.traceback"] = _cut(self.traceback)
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> JobError | None:
        """The error a run's tags record, or None."""
        name = tags.get(f"{ERROR_TAG}.name")
        if not name:
            return None
        cell = tags.get(f"{ERROR_TAG}.cell")
        return cls(
            name=name,
            message=tags.get(f"{ERROR_TAG}.message", ""),
            cell=int(cell) if cell is not None and cell.lstrip("-").isdigit() else None,
            source=tags.get(f"{ERROR_TAG}.source", ""),
            traceback=tags.get(f"{ERROR_TAG}.traceback", ""),
        )


@dataclass
class RunRecord:
    """Everything the store knows about one run, as returned by ``mlnb.get_run``."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_time: float
    end_time: float | None
    parent_run_id: str | None
    host: str | None
    pid: int | None
    user: str | None
    source: str | None
    deleted: bool
    notebook: str | None = None
    linearity: str | None = None
    linearity_detail: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    metric_steps: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    environment: Environment | None = field(default=None, repr=False)
    environment_hash: str | None = None
    git: GitState | None = None
    datasets: list[DatasetRef] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    _store: RunSource | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.end_time is None else self.end_time - self.start_time

    def __repr__(self) -> str:
        counts = [
            _plural(n, word)
            for n, word in (
                (len(self.params), "param"),
                (len(self.metrics), "metric"),
                (len(self.datasets), "dataset"),
                (len(self.artifacts), "artifact"),
            )
            if n
        ]
        what = f": {', '.join(counts)}" if counts else ""
        return f"<RunRecord {self.name} {self.run_id[:8]} {self.status} in {self.experiment}{what}>"

    def _repr_html_(self) -> str:
        return run_html(self, self.linearity_detail)

    def history(self, key: str) -> pd.DataFrame:
        """The full series of one metric as a DataFrame (step, value, timestamp)."""
        if self._store is None:
            raise RuntimeError("this record is detached from its store")
        return self._store.history_frame(self.run_id, key)

    def artifact_path(self, path: str) -> str:
        """Where the content of an artifact lives on disk."""
        if self._store is None:
            raise RuntimeError("this record is detached from its store")
        for art in self.artifacts:
            if art.path == path:
                return str(self._store.artifact_file(art.hash))
        raise KeyError(f"run {self.run_id[:8]} has no artifact {path!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (times as ISO strings)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "experiment": self.experiment,
            "status": self.status,
            "start_time": iso(self.start_time),
            "end_time": iso(self.end_time),
            "duration": self.duration,
            "parent_run_id": self.parent_run_id,
            "host": self.host,
            "pid": self.pid,
            "user": self.user,
            "source": self.source,
            "deleted": self.deleted,
            "notebook": self.notebook,
            "linearity": self.linearity,
            "linearity_detail": self.linearity_detail,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
            "artifacts": [
                {"path": a.path, "hash": a.hash, "size": a.size, "kind": a.kind}
                for a in self.artifacts
            ],
            "environment_hash": self.environment_hash,
            "environment": self.environment,
            "git": self.git,
            "datasets": [d.to_dict() for d in self.datasets],
            "checks": [c.to_dict() for c in self.checks],
        }


def check_family(chk: CheckRecord) -> str:
    """What a check row belongs to: its kind, or for validations their family (``schema``
    or ``drift``, in ``details["check"]``)."""
    family = chk.details.get("check") if chk.kind == "validation" else None
    return str(family) if family else chk.kind


def latest_checks(checks: Sequence[CheckRecord]) -> list[CheckRecord]:
    """The rows of the newest batch of each family (``check_family``), in their order: a
    gate or a drift check run again replaces what it said before (the checks table keeps
    every batch). ``checks`` oldest first, as a run record holds them."""
    newest = {check_family(c): c.batch for c in checks}
    return [c for c in checks if newest[check_family(c)] == c.batch]


def check_verdicts(checks: Sequence[CheckRecord]) -> dict[str, str]:
    """One verdict per family of a run's newest checks: ``{"schema": "PASS", "drift":
    "FAIL (3 of 12)"}`` (failed rows of all rows): what the compare view's diff and the
    JupyterLab panel's badges show."""
    rows: dict[str, list[CheckRecord]] = {}
    for chk in latest_checks(checks):
        rows.setdefault(check_family(chk), []).append(chk)
    out = {}
    for family, batch in sorted(rows.items()):
        failed = sum(not c.passed for c in batch)
        out[family] = "PASS" if not failed else f"FAIL ({failed} of {len(batch)})"
    return out


def run_html(rec: RunRecord, verdict: dict[str, Any] | None) -> str:
    """A run as a small HTML table: name and id, experiment, status, notebook, linearity
    (``verdict``: the stored one, or ``%track show``'s verdict so far), git, params,
    metrics, tags and datasets."""
    esc = escape_html
    rows = [
        ("run", f"{esc(rec.name)} <code>{esc(rec.run_id[:8])}</code>"),
        ("experiment", esc(rec.experiment)),
        ("status", esc(rec.status)),
    ]
    if rec.notebook:
        rows.append(("notebook", esc(rec.notebook)))
    if verdict:
        reasons = "; ".join(verdict.get("reasons") or [])
        rows.append(
            (
                "linearity",
                esc(verdict.get("verdict", "?")) + (f" — {esc(reasons)}" if reasons else ""),
            )
        )
    if rec.git:
        state = "dirty" if rec.git.get("dirty") else "clean"
        rows.append(("git", f"{esc(str(rec.git.get('commit') or '')[:12])} ({state})"))
    for title, mapping in (("params", rec.params), ("metrics", rec.metrics), ("tags", rec.tags)):
        for key, value in mapping.items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            rows.append((f"{title}.{key}", esc(shown)))
    for d in rec.datasets:
        rows.append((f"data.{d.name}", f"{esc(d.role)} {esc(d.kind)} {_code(d.hash)}"))
    return html_table(rows)


_ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fancy", "gentle",
    "glad", "grand", "keen", "kind", "lively", "lucky", "merry", "neat", "nimble", "proud",
    "quick", "quiet", "rapid", "sharp", "shiny", "silent", "smart", "steady", "sunny", "swift",
    "tidy", "vivid", "warm", "wise", "witty", "zesty",
)  # fmt: skip
_NOUNS = (
    "badger", "bee", "cat", "crane", "deer", "dolphin", "eagle", "falcon", "finch", "fox",
    "gecko", "hare", "hawk", "heron", "ibis", "koala", "lark", "lemur", "lion", "lynx", "mole",
    "moth", "newt", "otter", "owl", "panda", "robin", "seal", "shrew", "slug", "snail", "swan",
    "tiger", "toad", "wolf", "wren",
)  # fmt: skip


def random_run_name() -> str:
    """A readable default run name, as MLflow gives (e.g. ``brave-otter-417``)."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model: its number (per name), the run that produced
    it, the model file (an artifact of that run, by content hash), its format (``skops``,
    ``pickle``, ``joblib``, ``file``), what it is (``flavor``, e.g. the estimator's class)
    and its signature (input columns and dtypes, output), when known."""

    name: str
    version: int
    run_id: str | None
    artifact_path: str
    artifact_hash: str
    size: int
    format: str
    flavor: str | None
    signature: dict[str, Any] | None
    description: str | None
    user: str | None
    created_at: float
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """``mlnb://NAME/VERSION``, what :func:`mlnb.load_model` takes."""
        return f"mlnb://{self.name}/{self.version}"

    def __repr__(self) -> str:
        tags = f" @{',@'.join(self.aliases)}" if self.aliases else ""
        run = f" from run {self.run_id[:8]}" if self.run_id else ""
        return f"<ModelVersion {self.name}/{self.version}{tags} {self.format}{run}>"


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias (append-only history): which version it points at from then
    (None: removed), which it pointed at before, who moved it, from where, when and why,
    and the batch of ``checks`` rows of the gate that allowed it."""

    name: str
    alias: str
    version: int | None
    previous_version: int | None
    user: str | None
    host: str | None
    reason: str | None
    check_batch: str | None
    created_at: float
    seq: int = 0

    def __repr__(self) -> str:
        moved = f"{self.previous_version or '-'} → {self.version or '-'}"
        return f"<AliasEvent {self.name}@{self.alias} {moved} at {iso(self.created_at)}>"
