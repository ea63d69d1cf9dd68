"""What a run records about itself without being asked: its environment and git state,
captured at run start in a background thread (so ``start_run`` stays fast), and, when
asked, system metrics sampled while it runs.

Which parts are captured is chosen by ``start_run(capture=...)`` or ``$MLNB_CAPTURE``:
``all`` (the default), ``none``, or a comma-separated list of parts from
:data:`PARTS`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from mlnb.errors import InvalidInputError
from mlnb.store import Store

ENV_CAPTURE = "MLNB_CAPTURE"
ENV_SYSTEM_METRICS = "MLNB_SYSTEM_METRICS"
ENVIRONMENT_PARTS = frozenset({"packages", "hardware", "gpu", "env_vars"})
PARTS = frozenset({"environment", "git"}) | ENVIRONMENT_PARTS
JOIN_TIMEOUT_S = 60.0

_env_cache: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}
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


def _environment(parts: frozenset[str]) -> tuple[dict[str, Any], str]:
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


class CaptureJob:
    """The environment and git capture of one run, running in a daemon thread."""

    def __init__(self, store: Store, run_id: str, parts: frozenset[str], cwd: Path) -> None:
        self.store, self.run_id, self.parts, self.cwd = store, run_id, parts, cwd
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mlnb-capture", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            if "environment" in self.parts:
                env, digest = _environment(self.parts)
                self.store.save_environment(self.run_id, env, digest)
            if "git" in self.parts:
                from mlnb.capture.git import capture_git

                state = capture_git(self.cwd)
                if state is not None:
                    self.store.save_git(self.run_id, state)
        except Exception as exc:  # capture must never break the user's run
            self.error = exc

    def join(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Wait for the capture to be written (at run end); warn if it failed."""
        self._thread.join(timeout)
        if self.error is not None:
            warnings.warn(
                f"mlnb could not record the environment of run {self.run_id[:8]}: "
                f"{type(self.error).__name__}: {self.error}",
                stacklevel=3,
            )
            self.error = None


def start_capture(
    store: Store, run_id: str, parts: frozenset[str], cwd: str | os.PathLike[str] | None = None
) -> CaptureJob | None:
    """Begin capturing the parts for a new run; None when there is nothing to capture."""
    if not parts:
        return None
    return CaptureJob(store, run_id, parts, Path(cwd or os.getcwd()))


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
