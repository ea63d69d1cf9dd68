"""Fixtures of the store tests that move runs between stores (bundle files, sync): two
empty stores ``a`` and ``b``, and points written straight through the store's writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlnb.store import Store
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "a") as st:
        yield st


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "b") as st:
        yield st


def add_points(st: Store, run_id: str, steps: range, value: float = 0.5) -> None:
    """Points of ``loss`` at ``steps`` for ``run_id``, as the metric writer stores them."""
    rowid, _ = store_runs.run_rowid(st.file, run_id)
    store_metrics.insert_metrics(
        st.file, [(rowid, "loss", step, value, 300.0 + step) for step in steps]
    )
