"""What runs record without being asked (environment, git) and what users log about data,
end to end through start_run, the store, `mlnb show` and `mlnb diff`."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli import cli
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
