"""Issue 10, item 7: what an artifact may reach.

Artifact names are relative, normalized paths that cannot climb out; logging a folder never
follows a symbolic link out of it; and an artifact's file is always inside the store's
artifacts folder, whatever a row says.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlnb.errors import InvalidInputError
from mlnb.store import Store
from mlnb.store.transfer import export_run
from tests.reliability.conftest import artifact_files, integrity_ok, row_counts


@pytest.fixture
def st(tmp_path: Path) -> Any:
    with Store(tmp_path / "store") as store:
        yield store


@pytest.fixture
def other(st: Store) -> str:
    run_id = st.create_run(name="other")
    st.log_params(run_id, {"a": 1})
    st.log_artifact(run_id, b"kept", name="kept.txt")
    return run_id


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shadow").write_bytes(b"root:secret")
    return outside / "shadow"


def assert_nothing_stored(st: Store, run_id: str, other: str, before: dict[str, Any]) -> None:
    assert st.get_run(run_id).artifacts == []
    assert artifact_files(st.artifacts_dir) == before["files"], (
        "a refused artifact left a file in the store"
    )
    assert row_counts(st.db_path, other) == before["other"]
    assert integrity_ok(st.db_path)


def snapshot(st: Store, other: str) -> dict[str, Any]:
    return {"files": artifact_files(st.artifacts_dir), "other": row_counts(st.db_path, other)}


def test_log_artifact_refuses_a_folder_whose_file_link_leaves_it(
    st: Store, other: str, secret: Path, tmp_path: Path
) -> None:
    """Issue 10 item 7: a link to a file outside the folder (/etc/shadow) was copied in."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "shadow").symlink_to(secret)
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    with pytest.raises(InvalidInputError, match=r"symbolic link.*shadow"):
        st.log_artifact(run_id, folder)
    assert_nothing_stored(st, run_id, other, before)


def test_log_artifact_refuses_a_folder_whose_folder_link_leaves_it(
    st: Store, other: str, secret: Path, tmp_path: Path
) -> None:
    """Issue 10 item 7: a link to a folder outside is refused too (not silently skipped)."""
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_bytes(b"a")
    (folder / "sub" / "etc").symlink_to(secret.parent, target_is_directory=True)
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    with pytest.raises(InvalidInputError, match=r"symbolic link.*sub/etc"):
        st.log_artifact(run_id, folder)
    assert_nothing_stored(st, run_id, other, before)


def test_log_artifact_refuses_a_broken_link(st: Store, other: str, tmp_path: Path) -> None:
    """Issue 10 item 7: a dangling link says so instead of vanishing from the folder."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "gone").symlink_to(tmp_path / "nowhere")
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    with pytest.raises(InvalidInputError, match=r"gone"):
        st.log_artifact(run_id, folder)
    assert_nothing_stored(st, run_id, other, before)


def test_log_artifact_refuses_a_link_to_a_folder_inside(
    st: Store, other: str, tmp_path: Path
) -> None:
    """Issue 10 item 7: a link to a folder, even inside, is refused (it could loop)."""
    folder = tmp_path / "outputs"
    (folder / "epochs").mkdir(parents=True)
    (folder / "epochs" / "5.bin").write_bytes(b"w")
    (folder / "epochs" / "again").symlink_to(folder, target_is_directory=True)
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    with pytest.raises(InvalidInputError, match=r"symbolic link 'epochs/again' points to a folder"):
        st.log_artifact(run_id, folder)
    assert_nothing_stored(st, run_id, other, before)


def test_log_artifact_stores_a_link_inside_the_folder_as_its_file(
    st: Store, other: str, tmp_path: Path
) -> None:
    """Issue 10 item 7: a link to a file inside the folder is stored with that content."""
    folder = tmp_path / "outputs"
    (folder / "epochs").mkdir(parents=True)
    (folder / "epochs" / "5.bin").write_bytes(b"best weights")
    os.symlink("epochs/5.bin", folder / "best.bin")
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    arts = {a.path: a for a in st.log_artifact(run_id, folder)}
    assert sorted(arts) == ["outputs/best.bin", "outputs/epochs/5.bin"]
    assert arts["outputs/best.bin"].hash == hashlib.sha256(b"best weights").hexdigest()
    assert row_counts(st.db_path, other) == before["other"]
    assert integrity_ok(st.db_path)


ESCAPING = ["../../evil.txt", "/etc/evil", "a/../../b", "..", "a/..", "..\\..\\evil", "C:/evil", ""]


@pytest.mark.parametrize("name", ESCAPING)
def test_log_artifact_refuses_a_name_that_escapes(
    st: Store, other: str, tmp_path: Path, name: str
) -> None:
    """Issue 10 item 7: names ../../evil.txt and /etc/evil were accepted as given."""
    (tmp_path / "f.txt").write_bytes(b"f")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g.txt").write_bytes(b"g")
    run_id = st.create_run(name="r")
    before = snapshot(st, other)
    for source in (b"bytes", tmp_path / "f.txt", tmp_path / "d"):
        with pytest.raises(InvalidInputError, match="artifact name"):
            st.log_artifact(run_id, source, name=name)
    assert_nothing_stored(st, run_id, other, before)


def test_log_artifact_normalizes_names(st: Store, other: str, tmp_path: Path) -> None:
    """Issue 10 item 7: a harmless name is stored in one spelling (no ./, //, trailing /)."""
    run_id = st.create_run(name="r")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "g.txt").write_bytes(b"g")
    assert st.log_artifact(run_id, b"x", name="./a//b.txt")[0].path == "a/b.txt"
    assert [a.path for a in st.log_artifact(run_id, tmp_path / "d", name="out/")] == ["out/g.txt"]
    assert integrity_ok(st.db_path)


def test_artifact_path_never_resolves_outside_the_artifacts_folder(st: Store, other: str) -> None:
    """Issue 10 item 7: a row whose hash is a path (as an older import let in) made
    artifact_path, and export_run, read /etc/passwd."""
    run_id = st.create_run(name="r")
    with sqlite3.connect(st.db_path) as conn:
        conn.execute(
            "INSERT INTO artifacts (run, path, hash, size, kind, created_at) "
            "VALUES ((SELECT id FROM runs WHERE run_id = ?), 'p', '../../../../etc/passwd', 1, "
            "'file', 0)",
            [run_id],
        )
    rec = st.get_run(run_id)
    with pytest.raises(InvalidInputError, match="hash"):
        rec.artifact_path("p")
    with pytest.raises(InvalidInputError, match="hash"):
        st.artifact_file("../../../../etc/passwd")
    with pytest.raises(InvalidInputError, match="hash"):
        export_run(st, run_id)
    assert integrity_ok(st.db_path)
