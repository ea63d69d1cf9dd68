"""What a run records about itself without being asked: its git state, captured when the
run starts, and its environment, captured by a background thread (so ``start_run`` stays
fast); and, when asked, system metrics sampled while it runs.

Which parts are captured is chosen by ``start_run(capture=...)`` or ``$MLNB_CAPTURE``:
``all`` (the default), ``none``, or a comma-separated list of parts from
:data:`PARTS`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mlnb.conventions import ENV_CAPTURE, ENV_SYSTEM_METRICS
from mlnb.errors import InvalidInputError, MlnbWarning
from mlnb.records import Environment
from mlnb.store import Store

ENVIRONMENT_PARTS = frozenset({"packages", "hardware", "gpu", "env_vars"})
PARTS = frozenset({"environment", "git"}) | ENVIRONMENT_PARTS
JOIN_TIMEOUT_S = 60.0

_env_cache: dict[tuple[Any, ...], tuple[Environment, str]] = {}
_env_lock = threading.Lock()


def resolve_parts(capture: bool | str | Collection[str] | None) -> frozenset[str]:
    """The parts to capture, from a ``start_run(capture=...)`` value or ``$MLNB_CAPTURE``."""
    if capture is None:
        capture = os.environ.get(ENV_CAPTURE, "all")
    if capture is True:
        return PARTS
    if capture is False:
        return frozenset()
    items = (
        [s.strip().lower() for s in capture.split(",")]
        if isinstance(capture, str)
        else [str(s).strip().lower() for s in capture]
    )
    items = [s for s in items if s]
    if items in (["all"], ["1"], ["true"], ["on"]):
        return PARTS
    if items in (["none"], ["0"], ["false"], ["off"], []):
        return frozenset()
    unknown = sorted(set(items) - PARTS)
    if unknown:
        raise InvalidInputError(
            f"unknown capture part(s) {', '.join(unknown)}; known: all, none, "
            f"{', '.join(sorted(PARTS))}"
        )
    chosen = frozenset(items)
    if chosen & ENVIRONMENT_PARTS:  # asking for packages implies the environment record
        chosen |= {"environment"}
    elif "environment" in chosen:  # the environment alone means all of it
        chosen |= ENVIRONMENT_PARTS
    return chosen


def _environment(parts: frozenset[str]) -> tuple[Environment, str]:
    """The environment snapshot and its hash, cached while nothing on sys.path changes
    (installing a package changes its site-packages folder's mtime)."""
    from mlnb.capture.environment import capture_environment, environment_hash

    stamps = []
    for entry in sys.path:
        with contextlib.suppress(OSError):
            stamps.append((entry, os.stat(entry or ".").st_mtime_ns))
    key = (tuple(sorted(parts)), tuple(stamps), tuple(sorted(os.environ.items())))
    with _env_lock:
        cached = _env_cache.get(key)
        if cached is None:
            env = capture_environment(parts=parts & ENVIRONMENT_PARTS)
            cached = (env, environment_hash(env))
            _env_cache.clear()
            _env_cache[key] = cached
        return cached


class _CaptureWorker:
    """One daemon thread per process that captures runs' environments in order, so
    neither ``start_run`` nor ``end_run`` waits for it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.jobs: queue.SimpleQueue[tuple[Store, str, frozenset[str], Path]] = queue.SimpleQueue()
        self.pending = 0
        self.errors: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._loop, name="mlnb-capture", daemon=True).start()

    def submit(self, store: Store, run_id: str, parts: frozenset[str], cwd: Path) -> None:
        with self.cond:
            self.pending += 1
        self.jobs.put((store, run_id, parts, cwd))

    def _loop(self) -> None:
        while True:
            store, run_id, parts, cwd = self.jobs.get()
            try:
                _capture(store, run_id, parts, cwd)
            except Exception as exc:  # capture must never break the user's run
                if not store.closed:  # a store closed meanwhile cannot take it: not an error
                    with self.cond:
                        self.errors.append(f"run {run_id[:8]}: {type(exc).__name__}: {exc}")
            finally:
                with self.cond:
                    self.pending -= 1
                    self.cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.pending == 0, timeout)
            errors, self.errors = self.errors, []
        for error in errors:
            warnings.warn(
                f"mlnb could not record the environment of {error}", MlnbWarning, stacklevel=3
            )


_worker: _CaptureWorker | None = None


def _capture(store: Store, run_id: str, parts: frozenset[str], cwd: Path) -> None:
    if store.closed:
        return
    if "environment" in parts:
        env, digest = _environment(parts)
        store.save_environment(run_id, env, digest)


def start_capture(
    store: Store, run_id: str, parts: frozenset[str], cwd: str | os.PathLike[str] | None = None
) -> None:
    """Capture a new run's git state now (the code as it is at run start: a training
    script that writes into its repository must not change the record) and queue its
    environment for the background worker (cached; it rarely changes within a process)."""
    global _worker
    where = Path(cwd or os.getcwd())
    if "git" in parts:
        try:
            from mlnb.capture.git import capture_git

            state = capture_git(where)
            if state is not None:
                store.save_git(run_id, state)
        except Exception as exc:  # capture must never break the user's run
            warnings.warn(
                f"mlnb could not record the git state of run {run_id[:8]}: "
                f"{type(exc).__name__}: {exc}",
                MlnbWarning,
                stacklevel=3,
            )
    if "environment" not in parts:
        return
    if _worker is None or _worker.pid != os.getpid():
        _worker = _CaptureWorker()
    _worker.submit(store, run_id, parts, where)


def wait_for_capture(timeout: float = JOIN_TIMEOUT_S) -> None:
    """Wait until every queued capture is in the store; warn about any that failed."""
    if _worker is not None and _worker.pid == os.getpid():
        _worker.wait(timeout)


def system_metrics_wanted(flag: bool | None) -> bool:
    """``start_run(system_metrics=...)``, else ``$MLNB_SYSTEM_METRICS``."""
    if flag is not None:
        return flag
    return os.environ.get(ENV_SYSTEM_METRICS, "").strip().lower() in ("1", "true", "on", "yes")


def start_system_metrics(log: Callable[[dict[str, float]], None], interval: float) -> Any:
    """Sample CPU, memory and GPU use every ``interval`` seconds into ``log``."""
    from mlnb.capture.system import SystemSampler

    sampler = SystemSampler(log, interval=interval)
    sampler.start()
    return sampler
