"""Shared fixtures: a fresh store on a real file, and a clean environment for each test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mlnb
from mlnb.tracking import fluent as tracking

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLNB_* variables (nor COLUMNS) leak in; the working directory is a fresh folder;
    no run, store, hook or listener is left between tests (``state.reset()``)."""
    for name in list(os.environ):
        if name.startswith("MLNB_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLUMNS", raising=False)  # `mlnb runs` fits tables to $COLUMNS
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield
    tracking.state.reset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[mlnb.Store]:
    """A fresh store on a real SQLite file, used by the module-level API too."""
    st = mlnb.Store(tmp_path / "store")
    tracking.set_store(st)
    yield st
    tracking.state.reset()
    st.close()


def run_python(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter (same venv), returning the finished process."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
    return proc
