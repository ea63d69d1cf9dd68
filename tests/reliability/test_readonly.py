"""A read-only store: reads work, writes are refused with a hint, nothing raw escapes.

Issue 10 item 4: ``start_run`` on a read-only store raised a raw ``OSError: [Errno 30]``
on ``locks/...``, and ``mlnb --store ro/sub runs`` printed a traceback (only
``PermissionError`` was caught).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlnb
from mlnb.errors import StoreReadOnlyError
from mlnb.store import Store
from tests.conftest import REPO
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts, small_tmpfs


def _mlnb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlnb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _remount(folder: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


@pytest.mark.slow
def test_a_read_only_store_reads_and_refuses_writes_with_a_hint(tmp_path: Path) -> None:
    """Issue 10 item 4: on a filesystem remounted read-only, the store opens and reads
    (API and CLI), ``start_run`` and every write raise ``StoreReadOnlyError`` saying what
    to do, and ``mlnb --store ro/sub runs`` is one line and exit 1, not a traceback."""
    with small_tmpfs(tmp_path / "ro", "4m") as ro:
        where = ro / "store"
        with Store(where) as st:
            bystander = make_bystander(st)
            running = st.create_run(name="was-running")  # its process is gone
        db = where / "mlnb.db"
        before = row_counts(db, bystander)
        files_before = sorted(p.relative_to(ro) for p in ro.rglob("*"))
        _remount(ro, "ro")
        try:
            with Store(where) as st:
                mlnb.set_store(st)
                table = st.search_runs(order_by="name")
                assert table["name"] == ["bystander", "was-running"]
                assert st.get_run("bystander").metrics == {"loss": 0.2}
                assert list(mlnb.runs()["name"]) == ["was-running", "bystander"]
                with pytest.raises(StoreReadOnlyError, match="read-only.*MLNB_STORE"):
                    mlnb.start_run("new")
                with pytest.raises(StoreReadOnlyError, match="read-only"):
                    st.set_tags(running, {"late": "tag"})
                with pytest.raises(StoreReadOnlyError, match="read-only"):
                    st.log_artifact(running, b"bytes", name="a.txt")
                mlnb.set_store(None)

            listed = _mlnb("--store", str(where), "runs", "-c", "name")
            assert listed.returncode == 0, listed.stderr
            assert "bystander" in listed.stdout and "was-running" in listed.stdout
            # A read of a store that does not exist creates nothing (issue 11 item 7): it
            # says where it looked, in one line.
            missing = _mlnb("--store", str(ro / "sub"), "runs")
            assert missing.returncode == 1
            assert "Traceback" not in missing.stderr and "no mlnb store at" in missing.stderr
            # A write there, which would create it, says the folder is read-only.
            created = _mlnb("--store", str(ro / "sub"), "run", "missing.ipynb")
            assert created.returncode in (1, 2)
            assert "Traceback" not in created.stderr
            assert "read-only" in created.stderr.lower() and "--store" in created.stderr
            assert not (ro / "sub").exists()
        finally:
            _remount(ro, "rw")
        assert sorted(p.relative_to(ro) for p in ro.rglob("*")) == files_before
        assert integrity_ok(db)
        assert row_counts(db, bystander) == before
