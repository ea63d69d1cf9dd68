"""What runs record without being asked (environment, git) and what users log about data,
end to end through start_run, the store, `mlnb show` and `mlnb diff`."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.capture.git import capture_git
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError
from mlnb.store import Store

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text("print('v1')\n")
    git(path, "add", "train.py")
    git(path, "commit", "-q", "-m", "first")
    git(path, "remote", "add", "origin", "https://user:s3cret@example.com/team/project.git")
    monkeypatch.chdir(path)
    return path


def show(store: Store, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", str(store.root), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_run_records_its_environment_once_per_content(store: Store) -> None:
    with mlnb.start_run("a") as a:
        pass
    with mlnb.start_run("b") as b:
        pass
    mlnb.flush()
    ra, rb = mlnb.get_run(a.run_id), mlnb.get_run(b.run_id)
    assert ra.environment is not None
    assert ra.environment_hash == rb.environment_hash
    assert ra.environment["python"]["version"].startswith("3.")
    assert "pytest" in ra.environment["packages"]
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("SELECT count(*) FROM environments").fetchone()[0] == 1


def test_a_run_in_a_git_repository_records_commit_dirty_flag_and_diff(
    store: Store, repo: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "notes.txt").write_text("untracked\n")
    with mlnb.start_run("dirty") as run:
        pass
    mlnb.flush()
    rec = mlnb.get_run(run.run_id)
    assert rec.git is not None
    assert (rec.git["commit"], rec.git["branch"], rec.git["dirty"]) == (head, "main", True)
    assert rec.git["remote"] == "https://example.com/team/project.git"  # no credentials
    assert rec.git["untracked"] == ["notes.txt"]
    diff = Path(rec.artifact_path("mlnb/git.diff")).read_text()
    assert "-print('v1')" in diff and "+print('v2')" in diff
    out = show(store, "show", run.run_id)
    assert f"{head[:12]} on main, dirty" in out
    assert "s3cret" not in out


def test_stored_environment_and_git_have_the_documented_typed_shapes(
    store: Store, repo: Path
) -> None:
    """Issue 12 item 6: ``environment`` and ``git`` were ``dict[str, Any]`` dug into with
    ``.get`` chains; they are the TypedDicts ``Environment`` and ``GitState`` of
    mlnb.records (the formats of docs/capture.md), and what a run stores has exactly
    those keys, so the type checker sees a misspelt or missing key."""
    from typing import get_type_hints

    from mlnb.records import Environment, GitState

    with mlnb.start_run("shapes") as run:
        pass
    mlnb.flush()
    rec = mlnb.get_run(run.run_id)
    assert rec.git is not None and rec.environment is not None
    assert set(rec.git) == set(get_type_hints(GitState))
    assert set(rec.environment) <= set(get_type_hints(Environment))
    assert {"format", "python", "os", "packages"} <= set(rec.environment)
    assert isinstance(rec.git["dirty"], bool) and isinstance(rec.git["untracked"], list)


def test_outside_a_repository_runs_work_and_record_no_git(store: Store) -> None:
    with mlnb.start_run("plain") as run:
        mlnb.log_metric("x", 1)
    mlnb.flush()
    rec = mlnb.get_run(run.run_id)
    assert rec.git is None and rec.status == "finished"


@pytest.mark.parametrize(
    ("capture", "env", "has_env", "has_git"),
    [
        (False, None, False, False),
        (None, "none", False, False),
        ("git", None, False, True),
        (["environment"], None, True, False),
        (None, "packages", True, False),
    ],
)
def test_capture_can_be_turned_off_or_narrowed(
    store: Store, repo: Path, monkeypatch: pytest.MonkeyPatch,
    capture: object, env: str | None, has_env: bool, has_git: bool,
) -> None:  # fmt: skip
    if env is not None:
        monkeypatch.setenv("MLNB_CAPTURE", env)
    with mlnb.start_run("c", capture=capture) as run:  # type: ignore[arg-type]
        pass
    mlnb.flush()
    rec = mlnb.get_run(run.run_id)
    assert (rec.environment is not None, rec.git is not None) == (has_env, has_git)


def test_unknown_capture_part_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="unknown capture part.*known: all, none"):
        mlnb.start_run("x", capture="everything")
    assert mlnb.runs().empty


def test_show_presents_source_environment_and_git(store: Store, repo: Path) -> None:
    with mlnb.start_run("shown") as run:
        pass
    mlnb.flush()
    out = show(store, "show", run.run_id)
    assert "source" in out
    assert "environment:" in out and "packages" in out and "python 3." in out
    assert "git:" in out and "clean" in out


def test_diff_explains_packages_python_and_git(store: Store, repo: Path) -> None:
    with mlnb.start_run("old") as a:
        mlnb.log_param("lr", 0.1)
    mlnb.flush()
    env = dict(mlnb.get_run(a.run_id).environment or {})
    # the same run as if made on another machine: other versions, one package less
    env["packages"] = {**env["packages"], "numpy": "1.0.0", "pytest": "0.1"}
    del env["packages"]["click"]
    env["python"] = {**env["python"], "version": "3.99.0"}
    store.save_environment(a.run_id, env, "other-machine")
    (repo / "train.py").write_text("print('v3')\n")
    with mlnb.start_run("new") as b:
        mlnb.log_param("lr", 0.01)
    mlnb.flush()
    result = mlnb.diff(a.run_id, b.run_id)
    text = str(result)
    assert "lr" in text and "0.1 → 0.01" in text
    assert "python" in text and "3.99.0 →" in text
    assert "package numpy" in text
    assert re.search(r"package click\s+— → ", text)
    assert "dirty" in text  # clean → dirty
    assert "package mlnb" not in text  # unchanged packages are not listed
    assert "environment" in result.to_dict()
    assert "<table" in result._repr_html_()


def test_system_metrics_are_sampled_when_asked(store: Store) -> None:
    with mlnb.start_run("sys", system_metrics=True, system_metrics_interval=0.05) as run:
        time.sleep(0.4)
    rec = mlnb.get_run(run.run_id)
    assert "system/cpu_percent" in rec.metrics
    assert "system/memory_percent" in rec.metrics
    assert rec.metric_steps["system/cpu_percent"] >= 1


def test_filters_reach_environment_and_git(store: Store, repo: Path) -> None:
    import pytest as pytest_module

    with mlnb.start_run("clean") as clean:
        pass
    (repo / "train.py").write_text("print('edited')\n")
    with mlnb.start_run("dirty") as dirty:
        pass
    names = lambda flt: sorted(mlnb.runs(filter=flt)["name"])  # noqa: E731
    assert names("git.dirty = 1") == ["dirty"]
    assert names("git.dirty = 0 and git.branch = 'main'") == ["clean"]
    assert names(f"git.commit = '{git(repo, 'rev-parse', 'HEAD')}'") == ["clean", "dirty"]
    assert names("env.python like '3.%' and env.packages > 10") == ["clean", "dirty"]
    assert names(f"env.package.pytest = '{pytest_module.__version__}'") == ["clean", "dirty"]
    assert names("env.package.PyTest = '0.0.1'") == []
    assert mlnb.get_run(clean.run_id).environment_hash == mlnb.runs(
        filter=f"run_id = '{dirty.run_id}'"
    )["run_id"].pipe(lambda ids: mlnb.get_run(ids[0]).environment_hash)


def test_log_data_records_fingerprint_schema_and_profile_once(store: Store) -> None:
    import pandas as pd

    df = pd.DataFrame({"age": [31, 45, 27, 60], "city": ["Oslo", "Lima", "Oslo", "Pune"]})
    with mlnb.start_run("a") as a:
        ref = mlnb.log_data(df, name="train")
    with mlnb.start_run("b") as b:
        mlnb.log_data(df.copy(), name="train")
    assert ref.hash.startswith("xxh128:") and (ref.rows, ref.columns) == (4, 2)
    assert ref.schema == [{"name": "age", "dtype": "int64"}, {"name": "city", "dtype": "str"}]
    (da,) = mlnb.get_run(a.run_id).datasets
    (db,) = mlnb.get_run(b.run_id).datasets
    assert da.hash == db.hash and (da.name, da.role) == ("train", "input")
    assert da.profile is not None and da.profile["rows"] == 4
    conn = sqlite3.connect(store.db_path)
    assert conn.execute("SELECT count(*) FROM datasets").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM run_datasets").fetchone()[0] == 2
    assert sorted(mlnb.runs(filter=f"data.train.hash = '{da.hash}'")["name"]) == ["a", "b"]
    assert "train" in show(store, "show", a.run_id) and da.hash in show(store, "show", "a")


def test_log_data_of_a_file_is_cached_on_path_size_mtime_inode(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    old = time.time() - 60  # older than the racy window, so the cache may keep it
    os.utime(path, (old, old))
    with mlnb.start_run("f"):
        first = mlnb.log_data(path)
        cached = sqlite3.connect(store.db_path).execute("SELECT path, hash FROM file_hashes")
        assert cached.fetchall() == [(str(path), first.hash)]
        again = mlnb.log_data(str(path), name="again")
        path.write_text("a,b\n1,3\n")  # same size, new content
        os.utime(path, (old + 1, old + 1))
        changed = mlnb.log_data(path, name="changed")
    assert first.name == "data.csv" and first.kind == "file"
    assert again.hash == first.hash != changed.hash


def test_log_data_bad_input_is_refused_and_records_nothing(store: Store, tmp_path: Path) -> None:
    with mlnb.start_run("bad") as run:
        with pytest.raises(InvalidInputError, match="missing.csv"):
            mlnb.log_data(tmp_path / "missing.csv")
        with pytest.raises(InvalidInputError, match="object"):
            mlnb.log_data(object(), name="thing")
        with pytest.raises(InvalidInputError, match="role must be 'input' or 'output'"):
            mlnb.log_data(b"x", name="x", role="training")
    assert mlnb.get_run(run.run_id).datasets == []


def test_diff_explains_changed_data(store: Store) -> None:
    import pandas as pd

    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    with mlnb.start_run("before") as a:
        mlnb.log_data(df, name="train")
    df2 = pd.concat([df, pd.DataFrame({"x": [4.0], "y": [1]})]).reset_index(drop=True)
    df2["z"] = df2["x"] * 2
    df2["y"] = df2["y"].astype("float64")
    with mlnb.start_run("after") as b:
        mlnb.log_data(df2, name="train")
    text = show(store, "diff", a.run_id, b.run_id)
    assert "data:" in text
    assert "input train: hash" in text
    assert "input train: rows       3 → 4" in text or re.search(r"rows\s+3 → 4", text)
    assert re.search(r"column y\s+int64 → float64", text)
    assert re.search(r"column z\s+— → float64", text)


def _age(repo: Path, seconds: float = 60.0) -> None:
    """Set every file and folder of ``repo`` (its .git too) back in time, as a tree that
    nobody touched for a while looks: git state is cached only for such a tree."""
    when = time.time() - seconds
    for folder, _, files in os.walk(repo):
        for name in files:
            os.utime(os.path.join(folder, name), (when, when))
        os.utime(folder, (when, when))


def _logging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `git` on PATH that notes each call's subcommand and then runs the real git."""
    real = shutil.which("git")
    assert real is not None
    log = tmp_path / "git-calls.log"
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def test_capture_git_of_an_unchanged_tree_starts_no_git_process(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 8: every start_run in a repository started three git processes
    (~10 ms); an unchanged tree is now answered from a cache checked by stat calls."""
    log = _logging_git(tmp_path, monkeypatch)
    (repo / "notes.txt").write_text("untracked\n")
    _age(repo)
    first = capture_git(repo)
    assert sorted(log.read_text().split()) == ["config", "ls-files", "rev-parse", "status"]
    log.unlink()
    second = capture_git(repo)
    assert not log.exists()  # no git started
    assert second == first
    assert second is not None and second["untracked"] == ["notes.txt"]


def test_capture_git_cache_sees_edits_new_files_and_commits_between_runs(
    store: Store, repo: Path
) -> None:
    """Issue 12 item 8: the git-state cache must never hide a change. Between two runs: a
    tracked file edited (even to the same size with its mtime put back: ctime still
    moves), a new untracked file, a new commit, a switch of branch."""
    _age(repo)

    def state() -> dict[str, object]:
        with mlnb.start_run() as run:
            pass
        rec = mlnb.get_run(run.run_id)
        assert rec.git is not None
        return rec.git

    clean = state()
    assert clean["dirty"] is False and state() == clean  # the second answered by the cache
    train = repo / "train.py"
    old = train.stat()
    train.write_text("print('v9')\n")  # same size
    os.utime(train, ns=(old.st_atime_ns, old.st_mtime_ns))
    edited = state()
    assert edited["dirty"] is True
    git(repo, "checkout", "-q", "train.py")
    _age(repo)
    assert state()["dirty"] is False
    (repo / "data").mkdir()
    (repo / "data" / "new.csv").write_text("a\n1\n")
    assert state()["untracked"] == ["data/new.csv"]
    git(repo, "add", "data/new.csv")
    git(repo, "commit", "-q", "-m", "data")
    _age(repo)
    committed = state()
    assert committed["commit"] == git(repo, "rev-parse", "HEAD") != clean["commit"]
    assert committed["untracked"] == [] and committed["dirty"] is False
    git(repo, "switch", "-q", "-c", "other")
    _age(repo)
    assert state()["branch"] == "other"
    (repo / ".gitignore").write_text("*.log\n")  # untracked itself
    (repo / "x.log").write_text("1\n")
    _age(repo)
    assert state()["untracked"] == [".gitignore"]
    (repo / ".gitignore").write_text("*.txt\n")  # edited in place: no folder moves
    assert state()["untracked"] == [".gitignore", "x.log"]


def test_git_state_is_taken_at_start_so_a_scripts_own_writes_are_not_recorded_dirty(
    store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 8 keeps this: the snapshot (cached or not) is taken inside start_run,
    so what a run writes into its repository afterwards is not in its record; the next
    run sees it."""
    log = _logging_git(tmp_path, monkeypatch)
    _age(repo)
    with mlnb.start_run() as first:  # asks git and keeps the answer
        pass
    asked = log.read_text()
    with mlnb.start_run() as run:  # answered from the cache
        (repo / "train.py").write_text("print('written by the run')\n")
    assert log.read_text() == asked
    with mlnb.start_run() as after:
        pass
    assert mlnb.get_run(first.run_id).git["dirty"] is False  # type: ignore[index]
    assert mlnb.get_run(run.run_id).git["dirty"] is False  # type: ignore[index]
    assert mlnb.get_run(after.run_id).git["dirty"] is True  # type: ignore[index]
