"""Capture of the environment, the git state and system metrics, on the real machine:
this venv's packages, real repositories built with the git CLI, a real sampler thread."""

from __future__ import annotations

import copy
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlnb.capture.environment import (
    ENV_VARS,
    PARTS,
    capture_environment,
    diff_environments,
    environment_hash,
    summarize_environment,
)
from mlnb.capture.git import capture_git, redact_url
from mlnb.capture.system import SystemSampler
from mlnb.conventions import canonical_json
from mlnb.errors import InvalidInputError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def env() -> dict[str, Any]:
    return capture_environment()


# ----------------------------------------------------------------------- environment


def test_capture_environment_describes_this_interpreter(env: dict[str, Any]) -> None:
    assert env["format"] == 1
    assert env["python"]["version"] == platform.python_version()
    assert env["python"]["implementation"] == platform.python_implementation()
    assert env["python"]["executable"] == sys.executable
    assert env["os"]["system"] == platform.system()
    assert env["os"]["release"] == platform.release()
    assert env["os"]["machine"] == platform.machine()


def test_capture_environment_names_the_virtualenv(env: dict[str, Any]) -> None:
    assert sys.prefix != sys.base_prefix, "the tests run in the dev venv"
    assert env["python"]["virtualenv"] == {"path": sys.prefix, "name": Path(sys.prefix).name}


def test_capture_environment_names_the_conda_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDA_DEFAULT_ENV", "torch-cu121")
    assert capture_environment(parts=())["python"]["conda_env"] == "torch-cu121"
    monkeypatch.delenv("CONDA_DEFAULT_ENV")
    assert capture_environment(parts=())["python"]["conda_env"] is None


def test_capture_environment_describes_the_hardware(env: dict[str, Any]) -> None:
    hardware = env["hardware"]
    assert hardware["cpu_count_logical"] == os.cpu_count()
    assert isinstance(hardware["cpu_model"], str) and hardware["cpu_model"]
    assert 1 <= hardware["cpu_count_physical"] <= hardware["cpu_count_logical"]
    assert isinstance(hardware["memory_total_bytes"], int)
    assert hardware["memory_total_bytes"] > 100 * 2**20
    assert isinstance(env["gpus"], list)


def test_capture_environment_lists_installed_packages_with_versions(
    env: dict[str, Any],
) -> None:
    assert env["packages"]["pytest"] == pytest.__version__
    # the fast METADATA reader agrees with importlib.metadata on every distribution
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        expected.setdefault(name, dist.version)
    assert env["packages"] == expected


def test_capture_environment_marks_editable_installs(env: dict[str, Any]) -> None:
    source = env["package_sources"]["mlnb"]
    assert source["editable"] is True
    assert source["kind"] == "editable"
    assert Path(source["path"]).resolve() == REPO
    assert source["url"].startswith("file://")
    # distributions installed from an index have no source entry
    assert "pytest" not in env["package_sources"]


def _fake_dist(
    folder: Path, name: str, version: str, direct_url: dict[str, Any] | None = None
) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        "Summary: a test distribution\n\nName: not-a-header\nVersion: 9.9\n"
    )
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_capture_environment_records_vcs_installs_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _fake_dist(
        site,
        "My.Private_Lib",
        "0.3.0",
        {
            "url": "https://ci:ghp_SECRET123@github.com/acme/private-lib.git",
            "vcs_info": {"vcs": "git", "commit_id": "a" * 40, "requested_revision": "v0.3"},
        },
    )
    monkeypatch.syspath_prepend(str(site))
    env = capture_environment(parts={"packages"})
    assert env["packages"]["my-private-lib"] == "0.3.0"
    assert env["package_sources"]["my-private-lib"] == {
        "url": "https://github.com/acme/private-lib.git",
        "kind": "vcs",
        "editable": False,
        "vcs": "git",
        "commit": "a" * 40,
        "revision": "v0.3",
    }
    assert "SECRET" not in canonical_json(env)


def test_capture_environment_keeps_the_first_of_duplicate_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the copy earlier on sys.path is the one Python imports
    _fake_dist(tmp_path / "site", "pytest", "0.0.1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert capture_environment(parts={"packages"})["packages"]["pytest"] == "0.0.1"


def test_capture_environment_reads_egg_info_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "old_style-1.2.egg-info").write_text(
        "Metadata-Version: 1.0\nName: old-style\nVersion: 1.2\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert capture_environment(parts={"packages"})["packages"]["old-style"] == "1.2"


def test_capture_environment_is_json_safe(env: dict[str, Any]) -> None:
    text = json.dumps(env, allow_nan=False)
    assert json.loads(text) == env
    assert json.loads(canonical_json(env)) == env


def test_capture_environment_parts_can_be_switched_off() -> None:
    bare = capture_environment(parts=())
    assert bare["parts"] == []
    assert {"python", "os"} <= bare.keys()
    assert not {"packages", "package_sources", "hardware", "gpus", "env_vars"} & bare.keys()
    only = capture_environment(parts={"packages"})
    assert only["parts"] == ["packages"]
    assert "packages" in only and "hardware" not in only
    assert capture_environment()["parts"] == sorted(PARTS)


def test_capture_environment_refuses_unknown_parts() -> None:
    with pytest.raises(InvalidInputError, match="unknown environment part.*gpus"):
        capture_environment(parts={"gpus"})


def test_capture_environment_without_nvidia_smi_lists_no_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert capture_environment(parts={"gpu"})["gpus"] == []


def test_capture_environment_parses_nvidia_smi_rows() -> None:
    from mlnb.capture.environment import _parse_nvidia_smi_gpus

    text = "NVIDIA A100-SXM4-40GB, 40960, 535.104.05\nTesla T4, 15360, 535.104.05\n\n"
    assert _parse_nvidia_smi_gpus(text) == [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-40GB",
            "memory_total_mb": 40960,
            "driver_version": "535.104.05",
            "source": "nvidia-smi",
        },
        {
            "index": 1,
            "name": "Tesla T4",
            "memory_total_mb": 15360,
            "driver_version": "535.104.05",
            "source": "nvidia-smi",
        },
    ]


def test_environment_hash_is_stable_within_a_process(env: dict[str, Any]) -> None:
    again = capture_environment()
    assert environment_hash(again) == environment_hash(env)
    assert re.fullmatch(r"[0-9a-f]{64}", environment_hash(env))


def test_environment_hash_changes_with_a_package_version(env: dict[str, Any]) -> None:
    changed = copy.deepcopy(env)
    changed["packages"]["pytest"] = "0.0.1"
    assert environment_hash(changed) != environment_hash(env)


def test_environment_hash_ignores_the_capture_time(env: dict[str, Any]) -> None:
    later = {**env, "captured_at": env["captured_at"] + 3600}
    assert environment_hash(later) == environment_hash(env)


SECRET_VARS = ["AWS_SECRET_ACCESS_KEY", "MY_TOKEN", "GITHUB_TOKEN", "DATABASE_PASSWORD"]


def test_capture_environment_never_records_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    for name in SECRET_VARS:
        monkeypatch.setenv(name, secret)
    text = canonical_json(capture_environment())
    assert secret not in text
    for name in SECRET_VARS:
        assert name not in text


def test_capture_environment_records_only_allow_listed_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setenv("OMP_NUM_THREADS_EXTRA", "not on the list")
    env = capture_environment(parts={"env_vars"})
    assert env["env_vars"] == {
        "OMP_NUM_THREADS": "3",
        "PYTHONHASHSEED": "0",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    }
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert environment_hash(capture_environment(parts={"env_vars"})) != environment_hash(env)


def test_env_var_allow_list_covers_the_known_result_changers() -> None:
    assert len(set(ENV_VARS)) == len(ENV_VARS)
    assert {
        "PYTHONHASHSEED",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "TF_DETERMINISTIC_OPS",
        "CUBLAS_WORKSPACE_CONFIG",
        "PYTORCH_CUDA_ALLOC_CONF",
        "TOKENIZERS_PARALLELISM",
    } <= set(ENV_VARS)
    assert not [n for n in ENV_VARS if re.search("TOKEN$|SECRET|PASSWORD|KEY$", n)]


def test_summarize_environment(env: dict[str, Any]) -> None:
    assert summarize_environment(env) == {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": len(env["packages"]),
    }
    assert summarize_environment(capture_environment(parts=()))["packages"] is None


def test_diff_environments_of_identical_snapshots_is_empty(env: dict[str, Any]) -> None:
    diff = diff_environments(env, capture_environment())
    assert diff == {
        "identical": True,
        "python": None,
        "packages": {"added": {}, "removed": {}, "changed": {}},
        "changed": {},
    }


def test_diff_environments_reports_packages_python_and_other_fields(
    env: dict[str, Any],
) -> None:
    b = copy.deepcopy(env)
    b["packages"]["pytest"] = "0.0.1"
    b["packages"]["torch"] = "2.3.0"
    del b["packages"]["ruff"]
    b["python"]["version"] = "3.99.0"
    b["env_vars"]["OMP_NUM_THREADS"] = "8"
    b["hardware"]["cpu_model"] = "Other CPU"
    diff = diff_environments(env, b)
    assert diff["identical"] is False
    assert diff["python"] == {"a": env["python"]["version"], "b": "3.99.0"}
    assert diff["packages"] == {
        "added": {"torch": "2.3.0"},
        "removed": {"ruff": env["packages"]["ruff"]},
        "changed": {"pytest": {"a": pytest.__version__, "b": "0.0.1"}},
    }
    assert diff["changed"]["env_vars.OMP_NUM_THREADS"] == {
        "a": env["env_vars"].get("OMP_NUM_THREADS"),
        "b": "8",
    }
    assert diff["changed"]["hardware.cpu_model"]["b"] == "Other CPU"
    assert "python.version" not in diff["changed"]
    assert "captured_at" not in diff["changed"]


# ------------------------------------------------------------------------------- git

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit of two files."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("lr = 0.1\n")
    (root / "README.md").write_text("# demo\n")
    (root / ".gitignore").write_text("*.log\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root.resolve()


def test_capture_git_of_a_clean_repository(repo: Path) -> None:
    state = capture_git(repo)
    assert state == {
        "root": str(repo),
        "commit": git(repo, "rev-parse", "HEAD"),
        "branch": "main",
        "remote": None,
        "remote_name": None,
        "dirty": False,
        "diff": b"",
        "diff_bytes": 0,
        "diff_truncated": False,
        "untracked": [],
        "untracked_count": 0,
        "errors": [],
    }


def test_capture_git_from_a_subfolder_and_the_working_directory(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    state = capture_git(sub)
    assert state is not None and state["root"] == str(repo)
    monkeypatch.chdir(sub)
    state = capture_git()
    assert state is not None and state["root"] == str(repo)
    file_state = capture_git(repo / "train.py")
    assert file_state is not None and file_state["root"] == str(repo)


def test_capture_git_of_a_dirty_repository(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("lr = 0.01\n")  # modified, not staged
    (repo / "model.py").write_text("layers = 3\n")
    git(repo, "add", "model.py")  # staged
    (repo / "notes.txt").write_text("try adam\n")  # untracked
    (repo / "out.log").write_text("ignored\n")  # ignored
    (repo / "data").mkdir()
    (repo / "data" / "raw.csv").write_text("a,b\n")  # untracked in a new folder
    state = capture_git(repo)
    assert state is not None
    assert state["dirty"] is True
    assert b"+lr = 0.01" in state["diff"]
    assert b"+layers = 3" in state["diff"]
    assert b"try adam" not in state["diff"]
    assert state["diff_bytes"] == len(state["diff"])
    assert state["diff_truncated"] is False
    assert state["untracked"] == ["data/raw.csv", "notes.txt"]
    assert state["untracked_count"] == 2

    # the diff reproduces the working tree on a fresh checkout of the commit
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", state["commit"])
    subprocess.run(["git", "apply"], cwd=clone, input=state["diff"], check=True)
    assert (clone / "train.py").read_text() == "lr = 0.01\n"
    assert (clone / "model.py").read_text() == "layers = 3\n"


def test_capture_git_diff_is_binary_safe(repo: Path) -> None:
    blob = bytes(range(256)) * 8
    (repo / "weights.bin").write_bytes(blob)
    git(repo, "add", "weights.bin")
    state = capture_git(repo)
    assert state is not None and state["dirty"] is True
    assert isinstance(state["diff"], bytes)
    assert b"GIT binary patch" in state["diff"]


def test_capture_git_only_untracked_files_is_not_dirty(repo: Path) -> None:
    (repo / "scratch.py").write_text("print(1)\n")
    state = capture_git(repo)
    assert state is not None
    assert state["dirty"] is False
    assert state["diff"] == b""
    assert state["untracked"] == ["scratch.py"]


def test_capture_git_caps_the_untracked_list(repo: Path) -> None:
    for i in range(5):
        (repo / f"u{i}.txt").write_text("x")
    state = capture_git(repo, max_untracked=3)
    assert state is not None
    assert state["untracked"] == ["u0.txt", "u1.txt", "u2.txt"]
    assert state["untracked_count"] == 5


def test_capture_git_truncates_a_large_diff(repo: Path) -> None:
    (repo / "train.py").write_text("".join(f"line {i}\n" for i in range(5000)))
    full = capture_git(repo)
    capped = capture_git(repo, max_diff_bytes=1000)
    assert full is not None and capped is not None
    assert full["diff_truncated"] is False
    assert capped["diff_truncated"] is True
    assert capped["diff_bytes"] == full["diff_bytes"] > 1000
    assert capped["diff"] == full["diff"][:1000]


def test_capture_git_with_a_detached_head(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("# demo 2\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "checkout", "-q", first)
    state = capture_git(repo)
    assert state is not None
    assert state["branch"] is None
    assert state["commit"] == first
    assert state["dirty"] is False


def test_capture_git_in_a_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    assert capture_git(root) == {
        "root": str(root.resolve()),
        "commit": None,
        "branch": "main",
        "remote": None,
        "remote_name": None,
        "dirty": False,
        "diff": b"",
        "diff_bytes": 0,
        "diff_truncated": False,
        "untracked": [],
        "untracked_count": 0,
        "errors": [],
    }
    (root / "a.py").write_text("x = 1\n")
    git(root, "add", "a.py")
    (root / "a.py").write_text("x = 2\n")  # and changed again after staging
    state = capture_git(root)
    assert state is not None
    assert state["commit"] is None
    assert state["dirty"] is True
    assert b"+x = 2" in state["diff"]
    assert state["errors"] == []


def test_capture_git_outside_a_repository_is_none(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture_git(plain) is None
    assert capture_git(tmp_path / "does-not-exist") is None


def test_capture_git_without_git_installed_is_none(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert capture_git(repo) is None


def test_capture_git_prefers_origin_and_strips_credentials(repo: Path) -> None:
    git(repo, "remote", "add", "backup", "https://backup.example.com/demo.git")
    git(repo, "remote", "add", "origin", "https://alice:ghp_SECRET@github.com/acme/demo.git")
    state = capture_git(repo)
    assert state is not None
    assert state["remote_name"] == "origin"
    assert state["remote"] == "https://github.com/acme/demo.git"
    git(repo, "remote", "remove", "origin")
    state = capture_git(repo)
    assert state is not None
    assert (state["remote_name"], state["remote"]) == (
        "backup",
        "https://backup.example.com/demo.git",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@github.com/acme/x.git", "https://github.com/acme/x.git"),
        ("https://ghp_abc123@github.com/acme/x.git", "https://github.com/acme/x.git"),
        ("http://u:p@host:8080/x.git", "http://host:8080/x.git"),
        ("git+https://oauth2:tok@gitlab.com/a/b.git", "git+https://gitlab.com/a/b.git"),
        ("https://github.com/acme/x.git", "https://github.com/acme/x.git"),
        ("git@github.com:acme/x.git", "git@github.com:acme/x.git"),
        ("ssh://git@github.com/acme/x.git", "ssh://git@github.com/acme/x.git"),
        ("ssh://git:pw@host/x.git", "ssh://git@host/x.git"),
        ("file:///srv/git/x.git", "file:///srv/git/x.git"),
        ("/srv/git/x.git", "/srv/git/x.git"),
    ],
)
def test_redact_url_strips_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# ---------------------------------------------------------------------------- system


def test_system_sampler_logs_numeric_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples: list[dict[str, float]] = []
    got_three = threading.Event()

    def log(metrics: dict[str, float]) -> None:
        samples.append(metrics)
        if len(samples) >= 3:
            got_three.set()

    sampler = SystemSampler(log, interval=0.05)
    sampler.start()
    sampler.start()  # a second start does not add a thread
    assert got_three.wait(10)
    sampler.stop()
    assert not sampler.running
    count = len(samples)
    sampler.stop()  # safe twice
    time.sleep(0.15)
    assert len(samples) == count, "no sample after stop()"
    for metrics in samples:
        assert {
            "system/cpu_percent",
            "system/memory_percent",
            "system/memory_used_gb",
            "system/process_rss_gb",
        } <= metrics.keys()
        for value in metrics.values():
            assert isinstance(value, float) and math.isfinite(value)
        assert 0 <= metrics["system/memory_percent"] <= 100
        assert 0 < metrics["system/process_rss_gb"] < metrics["system/memory_used_gb"] + 1


def test_system_sampler_stops_when_log_fails() -> None:
    failed = threading.Event()

    def log(metrics: dict[str, float]) -> None:
        failed.set()
        raise RuntimeError("run has ended")

    sampler = SystemSampler(log, interval=0.02)
    sampler.start()
    assert failed.wait(10)
    deadline = time.monotonic() + 5
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sampler.running
    assert isinstance(sampler.error, RuntimeError)
    sampler.stop()


def test_system_sampler_can_be_stopped_from_its_callback() -> None:
    sampler: SystemSampler
    calls: list[dict[str, float]] = []

    def log(metrics: dict[str, float]) -> None:
        calls.append(metrics)
        sampler.stop()

    sampler = SystemSampler(log, interval=0.02)
    with sampler:
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(calls) == 1
    assert sampler.error is None


def test_system_sampler_refuses_a_bad_interval() -> None:
    with pytest.raises(InvalidInputError, match="interval"):
        SystemSampler(lambda m: None, interval=0)


def test_system_sampler_parses_nvidia_smi_usage() -> None:
    from mlnb.capture.system import _parse_gpu_usage

    assert _parse_gpu_usage("87, 10240\n[N/A], 512\n") == {
        "system/gpu0/utilization": 87.0,
        "system/gpu0/memory_used_gb": 10.0,
        "system/gpu1/memory_used_gb": 0.5,
    }
