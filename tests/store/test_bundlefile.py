"""Issue 16 item 1: runs as one bundle file (``mlnb export -o``, ``mlnb import``).

A file holds every run-linked table of each run, each artifact content once, and a manifest
with each member's SHA-256; importing it twice changes nothing, a newer copy adds only its
new points and tags, and a conflict is refused and named with nothing written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import BundleError
from mlnb.store import Store
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from tests.reliability.conftest import artifact_files, integrity_ok, run_linked_tables
from tests.reliability.test_bundles import dump, rows_of, source_run
from tests.store.conftest import add_points
from tests.store.test_transfer import rich_run


def test_bundle_file_carries_every_table_and_imports_the_same_rows(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: a bundle file carries params, every point with its timestamp, tags,
    checks, artifacts, datasets, environment, git state and cells of each run."""
    rich = rich_run(a, tmp_path)
    plain = source_run(a)
    path = tmp_path / "runs.mlnb"
    assert mlnb.export_runs(path, [rich, plain], store=a) == [rich, plain]
    result = mlnb.import_runs(path, store=b)
    assert sorted(result.added) == sorted([rich, plain]) and not result.updated
    for run_id in (rich, plain):
        for table in run_linked_tables(a.db_path):
            assert rows_of(b.db_path, table, run_id) == rows_of(a.db_path, table, run_id), table
    assert b.get_run(plain).params == a.get_run(plain).params
    assert integrity_ok(b.db_path)


def test_bundle_file_stores_each_content_once_and_lists_hashes(a: Store, tmp_path: Path) -> None:
    """Issue 16 item 1: artifacts stored once by content; a manifest with per-file sha256."""
    first, second = source_run(a), source_run(a)  # both log the same model.bin bytes
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "mlnb-bundle" and manifest["version"] == 1
    assert sorted(manifest["runs"]) == sorted([first, second])
    assert len([n for n in names if n.startswith("blobs/")]) == 1
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_import_runs_twice_changes_nothing_and_adds_new_points_and_tags(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: the same bundle twice is a no-op; a newer one adds only what is new."""
    run_id = source_run(a)
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    mlnb.import_runs(path, store=b)
    before = dump(b)
    again = mlnb.import_runs(path, store=b)
    assert again.unchanged == [run_id] and dump(b) == before
    add_points(a, run_id, range(10, 15))
    a.set_tags(run_id, {"reviewed": "yes"}, check_state=False)
    mlnb.export_runs(path, store=a)
    assert mlnb.import_runs(path, store=b).updated == [run_id]
    assert len(b.history(run_id, "loss")) == 15
    assert b.get_run(run_id).tags["reviewed"] == "yes"


def test_import_runs_refuses_a_conflict_naming_it_and_writes_no_run(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: any conflict is refused and named, and no run of the file is written
    (not even the runs that do not conflict)."""
    clash, fine = source_run(a), source_run(a)
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, [clash], store=a)
    mlnb.import_runs(path, store=b)
    b.set_tags(clash, {"team": "b"}, check_state=False)  # a says team a
    mlnb.export_runs(path, [clash, fine], store=a)
    before, files = dump(b), artifact_files(b.artifacts_dir)
    with pytest.raises(BundleError, match=rf"run {clash[:8]}.*team.*'b'.*'a'"):
        mlnb.import_runs(path, store=b)
    assert dump(b) == before and artifact_files(b.artifacts_dir) == files


def test_import_runs_refuses_a_damaged_member(a: Store, b: Store, tmp_path: Path) -> None:
    """Issue 16 item 1: a member that does not match the manifest's SHA-256 is refused."""
    run_id = source_run(a)
    path, bad = tmp_path / "runs.mlnb", tmp_path / "bad.mlnb"
    mlnb.export_runs(path, store=a)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == f"runs/{run_id}.json":
                data = data.replace(b'"team","value":"a"', b'"team","value":"z"')
            out.writestr(info, data)
    before = dump(b)
    with pytest.raises(BundleError, match="damaged"):
        mlnb.import_runs(bad, store=b)
    (tmp_path / "junk.mlnb").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a zip"):
        mlnb.import_runs(tmp_path / "junk.mlnb", store=b)
    assert dump(b) == before


def test_bundle_file_keeps_nan_and_infinities(a: Store, b: Store, tmp_path: Path) -> None:
    """Issue 16 item 1: JSON has no NaN or infinity; the file keeps them as mlnb stores them."""
    run_id = a.create_run(name="odd", experiment="exp")
    rowid, _ = store_runs.run_rowid(a.file, run_id)
    points = [(rowid, "x", 0, math.inf, 1.0), (rowid, "x", 1, -math.inf, 2.0)]
    store_metrics.insert_metrics(a.file, [*points, (rowid, "x", 2, math.nan, 3.0)])
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    mlnb.import_runs(path, store=b)
    assert rows_of(b.db_path, "metrics", run_id) == rows_of(a.db_path, "metrics", run_id)


def test_export_cli_takes_a_filter_or_runs_and_import_reports(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: ``mlnb export [FILTER | RUN…] -o FILE`` and ``mlnb import FILE``."""
    keep = source_run(a)
    a.log_params(other := a.create_run(name="o", experiment="exp"), {"lr": 0.9})
    path = tmp_path / "runs.mlnb"
    done = invoke(a, "export", "params.lr = 0.1", "-o", str(path))
    assert done.exit_code == 0, done.output
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("manifest.json"))["runs"] == [keep]
    assert invoke(a, "export", keep[:8], other, "-o", str(path)).exit_code == 0
    done = invoke(b, "import", str(path))
    assert done.exit_code == 0 and "imported 2 new runs" in done.output
    done = invoke(b, "import", str(tmp_path / "missing.mlnb"))
    assert done.exit_code == 1 and "cannot read bundle file" in done.output


def invoke(st: Store, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--store", str(st.root), *args])


def test_export_writes_no_partial_file_when_it_fails(a: Store, tmp_path: Path) -> None:
    """Issue 16 item 1: a failed export leaves no file under the bundle's name, nor beside it."""
    run_id = source_run(a)
    digest = a.get_run(run_id).artifacts[0].hash
    a.artifact_file(digest).unlink()  # as if `mlnb gc` ran elsewhere
    path = tmp_path / "runs.mlnb"
    with pytest.raises(mlnb.MlnbError, match="missing"):
        mlnb.export_runs(path, store=a)
    assert list(tmp_path.glob("*.mlnb*")) == [] and list(tmp_path.glob(".runs.mlnb*")) == []


def test_import_runs_dry_run_writes_nothing(a: Store, b: Store, tmp_path: Path) -> None:
    """Issue 16 item 1: ``--dry-run`` checks everything and writes nothing."""
    run_id = source_run(a)
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    before = dump(b)
    assert mlnb.import_runs(path, dry_run=True, store=b).added == [run_id]
    assert dump(b) == before
    with sqlite3.connect(b.db_path) as conn:
        assert (
            conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0] == 0
        )


def registered(st: Store, tmp_path: Path, name: str, content: bytes) -> tuple[str, int]:
    """A run with a model version registered from it: (run id, version)."""
    (tmp_path / "w.bin").write_bytes(content)
    with mlnb.start_run(name, store=st, capture=False) as run:
        pass
    version = mlnb.register_model("churn", tmp_path / "w.bin", run=run.run_id, store=st)
    return run.run_id, version.version


def test_bundle_file_carries_model_versions_aliases_and_their_history(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: model versions travel with their runs, with aliases and alias
    history; twice is a no-op; a newer history is appended."""
    _, v1 = registered(a, tmp_path, "one", b"w1")
    _, v2 = registered(a, tmp_path, "two", b"w2")
    mlnb.set_model_alias("churn", "champion", v1, store=a, reason="first")
    mlnb.set_model_alias("churn", "champion", v2, store=a, reason="better")
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    assert mlnb.import_runs(path, store=b).model_rows == 5  # model, 2 versions, 2 events
    assert mlnb.get_model_version("churn@champion", store=b).version == v2
    history = [(e.version, e.reason) for e in mlnb.model_history("churn", store=b)]
    assert history == [(1, "first"), (2, "better")]
    assert Path(mlnb.load_model("churn/1", store=b)).read_bytes() == b"w1"
    before = dump(b)
    assert mlnb.import_runs(path, store=b).model_rows == 0 and dump(b) == before
    mlnb.set_model_alias("churn", "champion", v1, store=a, reason="rollback")
    mlnb.export_runs(path, store=a)
    assert mlnb.import_runs(path, store=b).model_rows == 1
    assert mlnb.get_model_version("churn@champion", store=b).version == v1


def test_import_runs_refuses_another_store_s_version_of_the_same_number(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: two stores that each registered churn version 1 from different
    runs conflict; nothing is imported, and the message names the model and version."""
    registered(a, tmp_path, "mine", b"w1")
    registered(b, tmp_path, "theirs", b"other")
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    before = dump(b)
    with pytest.raises(BundleError, match="model 'churn' version 1"):
        mlnb.import_runs(path, store=b)
    assert dump(b) == before


def test_import_runs_refuses_an_alias_moved_on_both_sides(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: an alias history that each side went on with is a conflict: no
    event is inserted out of order (the current target would move back silently)."""
    _, v1 = registered(a, tmp_path, "one", b"w1")
    _, v2 = registered(a, tmp_path, "two", b"w2")
    mlnb.set_model_alias("churn", "champion", v1, store=a)
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    mlnb.import_runs(path, store=b)
    mlnb.set_model_alias("churn", "champion", v2, store=a, reason="a says")
    mlnb.delete_model_alias("churn", "champion", store=b)
    mlnb.export_runs(path, store=a)
    before = dump(b)
    with pytest.raises(BundleError, match="alias 'champion' of model 'churn'"):
        mlnb.import_runs(path, store=b)
    assert dump(b) == before


def test_import_runs_refuses_a_hostile_file_with_a_typed_error(
    a: Store, b: Store, tmp_path: Path
) -> None:
    """Issue 16 item 1: a file whose manifest and members agree but whose contents are
    hostile (a member outside the manifest, a run listed twice under another name, rows that
    are not a run) is refused with BundleError and nothing is written."""
    run_id = source_run(a)
    good = tmp_path / "good.mlnb"
    mlnb.export_runs(good, store=a)

    def rewrite(name: str, change: Callable[[dict[str, Any], dict[str, bytes]], None]) -> Path:
        with zipfile.ZipFile(good) as src:
            members = {n: src.read(n) for n in src.namelist()}
        manifest = json.loads(members.pop("manifest.json"))
        change(manifest, members)
        for member, data in members.items():
            manifest["files"][member] = {
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as out:
            for member, data in members.items():
                out.writestr(member, data)
            out.writestr("manifest.json", json.dumps(manifest))
        return path

    def not_a_run(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
        members[f"runs/{run_id}.json"] = json.dumps({"run": [], "blobs": []}).encode()

    def traversal(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
        rows = json.loads(members[f"runs/{run_id}.json"])
        rows["blobs"] = ["../../../../etc/passwd"]
        members[f"runs/{run_id}.json"] = json.dumps(rows).encode()

    def bad_run_id(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
        manifest["runs"] = ["../../x"]

    def future(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
        manifest["version"] = 99

    before = dump(b)
    for change, message in (
        (not_a_run, "holds another run"),
        (traversal, "does not list its contents' hashes"),
        (bad_run_id, "is not a run id"),
        (future, "version 99"),
    ):
        with pytest.raises(BundleError, match=message):
            mlnb.import_runs(rewrite(f"{change.__name__}.mlnb", change), store=b)
    assert dump(b) == before


def test_import_runs_streams_a_large_artifact_and_resumes_without_copying_it_again(
    a: Store, b: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 item 1: a large artifact is streamed into the store, never read whole into
    memory, and an import interrupted after copying it does not copy it again."""
    from mlnb.store import bundlefile

    monkeypatch.setattr(bundlefile, "LARGE", 1024)  # the 16 MiB threshold, scaled down
    run_id = a.create_run(name="big", experiment="exp")
    big = os.urandom(64 * 1024)
    a.log_artifact(run_id, big, name="big.bin")
    path = tmp_path / "runs.mlnb"
    mlnb.export_runs(path, store=a)
    read: list[str] = []
    real_read = zipfile.ZipFile.read

    def spy(self: zipfile.ZipFile, name: Any, pwd: Any = None) -> bytes:
        read.append(str(name))
        return real_read(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", spy)
    mlnb.import_runs(path, dry_run=True, store=b)
    assert not [n for n in read if n.startswith("blobs/")]  # hashed as a stream
    assert not any(p.is_file() for p in b.artifacts_dir.rglob("*"))  # a dry run writes none
    mlnb.import_runs(path, store=b)
    assert Path(b.get_run(run_id).artifact_path("big.bin")).read_bytes() == big
    assert not [n for n in read if n.startswith("blobs/")]
    # a resumed import finds the content in the store: it neither reads nor streams it
    streamed: list[str] = []
    real_stream = bundlefile._stream_member
    monkeypatch.setattr(
        bundlefile, "_stream_member", lambda *args: streamed.append(args[2]) or real_stream(*args)
    )
    with sqlite3.connect(b.db_path) as conn:  # as if killed after the copy, before the rows
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
    assert mlnb.import_runs(path, store=b).added == [run_id]
    assert streamed == [] and Path(b.get_run(run_id).artifact_path("big.bin")).read_bytes() == big
