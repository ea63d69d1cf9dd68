"""Plain records handed out by the store: no I/O here, except ``RunRecord.history`` which
asks the store it came from."""

from __future__ import annotations

import datetime as _dt
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlnb.store import Store

STATUSES = ("queued", "running", "finished", "failed", "killed", "crashed")
TERMINAL_STATUSES = frozenset({"finished", "failed", "killed", "crashed"})
# Series mlnb records about a run rather than about its model: a job's per-cell timings
# (job/cell_seconds) and the sampled machine (system/cpu_percent, ...). Diffs, reports,
# the compare view and gates leave them out unless asked (system_metrics=True,
# --system-metrics); see is_system_metric.
SYSTEM_METRIC_PREFIXES = ("job/", "system/")


def is_system_metric(key: str) -> bool:
    """Whether metric ``key`` describes the run's machinery (``job/*``, ``system/*``)
    rather than its model. The one test of it: comparisons hide these by default."""
    return key.startswith(SYSTEM_METRIC_PREFIXES)


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


@dataclass(frozen=True)
class Metric:
    """One point of a metric series."""

    key: str
    value: float
    step: int
    timestamp: float


@dataclass(frozen=True)
class Artifact:
    """A file attached to a run; ``hash`` names its content in the store's artifact folder."""

    path: str
    hash: str
    size: int
    kind: str
    created_at: float


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
    environment: dict[str, Any] | None = field(default=None, repr=False)
    environment_hash: str | None = None
    git: dict[str, Any] | None = None
    datasets: list[DatasetRef] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)
    _store: Store | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.end_time is None else self.end_time - self.start_time

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
