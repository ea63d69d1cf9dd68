"""Continuous training: ``mlnb retrain train.ipynb --model churn --data train=today.csv
--when drift --gate 'auc>=+0.0' --promote champion``. See docs/continuous-training.md.

1. Decide, from the data alone, whether to train: ``data-changed`` compares each data
   file's fingerprint with the dataset of that name of the current champion's run;
   ``drift`` also compares the new file with that dataset's stored profile
   (:func:`mlnb.checks.drift.compare`: PSI / Jensen–Shannon per column) and trains when a
   column drifted; ``always`` trains. With nothing to train on, the decision ("no change")
   is recorded on the champion's run and nothing runs (exit 0).
2. Otherwise run the notebook headless (:func:`mlnb.jobs.runner.run_notebook`), each
   ``NAME=PATH`` passed as the parameter ``NAME`` and recorded on the run as its input
   dataset ``NAME`` (the file's fingerprint and profile: what the next retrain compares
   with). The notebook registers the model (``mlnb.register_model(NAME, model)``).
3. Gate the new version against the champion (the verdict in ``checks``) and, with
   ``promote``, move the alias (:func:`mlnb.jobs.promote.promote`: one transaction with its
   verdict and history row).

Every decision carries its reason (``data_changed: train hash a1b2… → c3d4…``,
``drift: age psi=0.31``, ``schedule``, ``manual``; from ``mlnb monitor``'s newest verdict:
``drift: age psi=0.31 (served, window 10000)``): a ``checks`` row (kind ``check``, name
``retrain:MODEL``) and, on a new run, the tag ``mlnb.retrain.reason``. One retrain per
model at a time: a lock file in the store's ``locks/`` folder; the second waits, or
with ``wait=False`` raises ``RetrainBusyError`` (the CLI exits 75).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.conventions import EXIT_OK, RETRAIN_REASON_TAG
from mlnb.errors import InvalidInputError, ModelNotFoundError, RetrainBusyError
from mlnb.records import CheckRecord, ModelVersion
from mlnb.registry import models as registry
from mlnb.store import models as table

if TYPE_CHECKING:
    from mlnb.jobs.promote import Promotion
    from mlnb.jobs.runner import JobResult
    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = ["WHEN", "RetrainResult", "retrain"]

WHEN = ("data-changed", "drift", "always")
CI_SCHEDULE = ("GITHUB_EVENT_NAME", "schedule")  # a scheduled GitHub Actions run


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain decided and did: ``trained`` (False: "no change"), the reasons, the
    job, the version the notebook registered and the promotion (when asked)."""

    model: str
    trained: bool
    reasons: tuple[str, ...]
    job: JobResult | None = None
    version: ModelVersion | None = None
    promotion: Promotion | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        if self.job is not None and not self.job.ok:
            return self.job.exit_code
        if self.promotion is not None:
            return self.promotion.exit_code
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "trained": self.trained, "reasons": list(self.reasons),
            "run_id": None if self.job is None else self.job.run_id,
            "version": None if self.version is None else self.version.version,
            "promotion": None if self.promotion is None else self.promotion.to_dict(),
            "exit_code": self.exit_code, "notes": list(self.notes),
        }  # fmt: skip

    def __str__(self) -> str:
        lines = [f"note: {n}" for n in self.notes]
        if not self.trained:
            lines.append(f"no change: {'; '.join(self.reasons)}; nothing ran")
            return "\n".join(lines)
        lines.append(f"retrain {self.model}: {'; '.join(self.reasons)}")
        if self.job is not None:
            lines.append(f"run {self.job.run_id[:8]}: {self.job.status}")
        if self.version is not None:
            lines.append(f"registered {self.version.name}/{self.version.version}")
        if self.promotion is not None:
            lines.append(str(self.promotion))
        return "\n".join(lines)


@contextlib.contextmanager
def model_lock(
    st: Store, model: str, *, wait: bool, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the retrain lock of ``model`` (a file lock, released when the process dies)."""
    folder = st.root / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"retrain-{model}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise RetrainBusyError(
                    f"another retrain of {model!r} is running ({holder}); nothing ran. Wait "
                    "for it, or run again without --no-wait to queue behind it"
                ) from None
            if on_wait is not None:
                on_wait(f"another retrain of {model!r} is running ({holder}); waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)


def _short(digest: str | None) -> str:
    return "none" if not digest else f"{digest.rpartition(':')[2][:8]}…"


def decide(
    st: Store,
    model: str,
    data: Mapping[str, Path],
    *,
    when: str,
    alias: str,
    drift_threshold: float | None,
    from_monitor: bool = False,
) -> tuple[list[str], list[str], str | None]:
    """Whether to retrain: ``(reasons to train, reasons not to, champion's run id)``.
    ``from_monitor``: the newest ``mlnb monitor`` verdict on served inputs decides."""
    from mlnb.capture.fingerprints import fingerprint

    try:
        version = registry.resolve_version(st, registry.ModelRef(model, alias=alias))
    except ModelNotFoundError:
        return [f"no_champion: {model}@{alias} is not set"], [], None
    run = st.get_run(version.run_id) if version.run_id else None
    if when == "drift" and from_monitor:
        return _monitor_decision(st, model, alias, version.version), [], version.run_id
    if when == "always":
        scheduled = os.environ.get(CI_SCHEDULE[0]) == CI_SCHEDULE[1]
        return ["schedule" if scheduled else "manual"], [], run.run_id if run else None
    if run is None:
        return [f"no_run: {model}/{version.version} has no run to compare data with"], [], None
    train, keep = [], []
    by_name = {d.name: d for d in run.datasets if d.role == "input"}
    for name, path in data.items():
        old = by_name.get(name)
        new = fingerprint(path, cache=st.file_hash_cache())
        if old is None:
            train.append(f"data_changed: the champion's run has no input dataset {name!r}")
            continue
        if old.hash == new.hash:
            keep.append(f"{name} hash {_short(new.hash)} unchanged")
            continue
        change = f"{name} hash {_short(old.hash)} → {_short(new.hash)}"
        if when == "data-changed":
            train.append(f"data_changed: {change}")
            continue
        if old.profile is None:
            train.append(f"data_changed: {change} (no stored profile to measure drift)")
            continue
        from mlnb.checks.drift import compare
        from mlnb.checks.sources import Source, load_source

        result = compare(
            Source(f"run {run.name}:{name}", stored=old.profile),
            load_source(path, what=name),
            thresholds=drift_threshold,
        )
        drifted = [c for c in result.columns if c.drifted]
        if drifted:
            shown = ", ".join(f"{c.column} {c.method}={c.statistic:.2f}" for c in drifted[:5])
            train.append(f"drift: {shown}" + (f" (+{len(drifted) - 5})" if len(drifted) > 5
                                              else ""))  # fmt: skip
        else:
            top = max(result.columns, key=lambda c: c.score, default=None)
            most = f", largest {top.column} {top.method}={top.statistic:.2f}" if top else ""
            keep.append(f"{change} but no column drifted{most}")
    return train, keep, run.run_id


def _monitor_decision(st: Store, model: str, alias: str, champion: int) -> list[str]:
    """Train when the newest monitor verdict of ``model``, measured against the current
    champion, says its served inputs drifted (its reason becomes the retrain's)."""
    from mlnb.monitoring.monitor import latest_verdict

    verdict = latest_verdict(st, model)
    if verdict is None:
        raise InvalidInputError(
            f"--when drift without --data reads the newest `mlnb monitor {model}` verdict, "
            f"and {model} was never monitored: run `mlnb monitor {model}` first, or give --data"
        )
    if verdict.version != champion:
        raise _NoChange(
            f"the newest monitor verdict measured v{verdict.version}, {model}@{alias} is "
            f"v{champion}: run `mlnb monitor {model}` again"
        )
    if not verdict.drift:
        raise _NoChange(verdict.reason)
    return [verdict.reason]


class _NoChange(Exception):
    """A monitor verdict that is no reason to train (its text is why)."""


def retrain(
    notebook: str | os.PathLike[str],
    *,
    model: str,
    data: Mapping[str, str | os.PathLike[str]] | None = None,
    when: str = "data-changed",
    drift_threshold: float | None = None,
    from_monitor: bool = False,
    gate: Sequence[str] = (),
    promote: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    experiment: str | None = None,
    output: str | os.PathLike[str] | None = None,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    progress_bar: bool | None = None,
    store: StoreLike | None = None,
) -> RetrainResult:
    """Retrain ``model`` with ``notebook`` when its data changed (``when``), then register,
    gate and promote; see the module docstring and docs/continuous-training.md.
    ``data`` maps a dataset (and parameter) name to its file. The alias compared with is
    ``promote`` (default ``champion``). ``from_monitor`` (implied by ``when="drift"``
    without ``data``): the newest ``mlnb monitor`` verdict on the served inputs decides,
    and ``data`` is only passed to the notebook."""
    from mlnb.jobs.runner import run_notebook
    from mlnb.tracking.active import resolve_store

    registry.check_name(model)
    alias = registry.check_name(promote or "champion", "alias")
    if when not in WHEN:
        raise InvalidInputError(f"--when must be one of {', '.join(WHEN)}, got {when!r}")
    files = {name: Path(path).absolute() for name, path in (data or {}).items()}
    from_monitor = from_monitor or (when == "drift" and not files)
    if from_monitor and when != "drift":
        raise InvalidInputError(f"--from-monitor goes with --when drift, not --when {when}")
    if when == "data-changed" and not files:
        raise InvalidInputError(f"--when {when} compares data: give --data NAME=PATH")
    for name, path in files.items():
        if not path.is_file():
            raise InvalidInputError(f"--data {name}={path}: no such file")
    if gate:
        from mlnb.jobs.promote import promotion_thresholds

        promotion_thresholds(gate)  # a bad gate is refused before anything runs
    given = {**(parameters or {}), **{n: str(p) for n, p in files.items()}}
    _check_notebook(Path(notebook), given)
    st = resolve_store(store, create=True)
    with model_lock(st, model, wait=wait, on_wait=on_wait):
        try:
            train, keep, champion_run = decide(
                st, model, files, when=when, alias=alias, drift_threshold=drift_threshold,
                from_monitor=from_monitor,
            )  # fmt: skip
        except _NoChange as why:
            version = registry.resolve_version(st, registry.ModelRef(model, alias=alias))
            train, keep, champion_run = [], [str(why)], version.run_id
        if not train:
            reasons = tuple(keep) or ("nothing to compare",)
            if champion_run is not None:
                _record(st, champion_run, model, "no change: " + "; ".join(reasons))
            return RetrainResult(model, False, reasons)
        run_id = _prepare_run(st, model, files, train, experiment)
        try:
            job = run_notebook(notebook, output, parameters=given, run_id=run_id, store=st,
                               progress_bar=progress_bar)  # fmt: skip
        except BaseException:
            st.set_status(run_id, "failed", only_from=("queued",))  # never left queued
            raise
        _record(st, job.run_id, model, "retrain: " + "; ".join(train))
        if not job.ok:
            return RetrainResult(model, True, tuple(train), job)
        mine = [v for v in table.versions_of_run(st.file, job.run_id) if v.name == model]
        if not mine:
            raise InvalidInputError(
                f"the notebook ran (run {job.run_id[:8]}) but registered no version of "
                f"{model!r}; call mlnb.register_model({model!r}, model) in it"
            )
        version = mine[-1]
        promotion = None
        if promote or gate:
            from mlnb.jobs.promote import promote as promote_version

            promotion = promote_version(
                model, source=version.version, to=alias, gate=gate, store=st,
                reason="retrain: " + "; ".join(train), move=bool(promote),
            )  # fmt: skip
        return RetrainResult(model, True, tuple(train), job, version, promotion)


def _check_notebook(path: Path, given: Mapping[str, Any]) -> None:
    """Refuse, before any decision or run, a notebook that cannot take the values."""
    from mlnb.jobs.params import (
        check_parameters,
        has_parameters_cell,
        read_notebook,
        readable_parameters,
    )

    nb = read_notebook(path)
    check_parameters(given, readable_parameters(nb), where=path, has_cell=has_parameters_cell(nb))


def _prepare_run(
    st: Store, model: str, files: Mapping[str, Path], reasons: Sequence[str],
    experiment: str | None,
) -> str:  # fmt: skip
    """A queued run for the job, with the data files as its input datasets (fingerprint
    and, for tables, a profile: what the next retrain compares with)."""
    from mlnb.capture.fingerprints import fingerprint

    run_id = st.create_run(experiment=experiment, name=f"retrain-{model}", status="queued",
                           tags={RETRAIN_REASON_TAG: "; ".join(reasons)})  # fmt: skip
    for name, path in files.items():
        profile = None
        try:
            from mlnb.capture.profile import profile as make_profile
            from mlnb.checks.sources import read_data_file

            profile = make_profile(read_data_file(path))
        except InvalidInputError:
            profile = None  # not a table: its fingerprint alone
        fp = fingerprint(path, cache=st.file_hash_cache())
        st.log_dataset(run_id, fp, name=name, role="input", profile=profile)
    return run_id


def _record(st: Store, run_id: str, model: str, message: str) -> None:
    st.log_checks(
        run_id,
        [CheckRecord(kind="check", name=f"retrain:{model}", passed=True, message=message)],
    )
