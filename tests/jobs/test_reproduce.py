"""Reproduce and verify (mlnb.jobs.reproduce, `mlnb reproduce`): real kernels, real stores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mlnb
from mlnb.errors import InvalidInputError, RunNotFoundError
from mlnb.jobs.reproduce import reproduce
from mlnb.jobs.runner import run_notebook
from mlnb.store import Store
from tests.conftest import REPO

NOTEBOOKS = REPO / "tests" / "notebooks"

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the job notebook and its data; the store is $MLNB_STORE."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / "job_repro.ipynb", folder / "train.ipynb")
    (folder / "data.csv").write_text("a,b\n1,2\n3,4\n")
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "store"))
    return folder


def first_run(project: Path, **params: object) -> str:
    result = run_notebook(project / "train.ipynb", parameters=params)
    assert result.ok, result.error
    return result.run_id


def test_a_deterministic_job_is_reproduced_and_linked_to_the_original(project: Path) -> None:
    old = first_run(project, seed=7)
    result = reproduce(old)
    assert (result.verdict, result.exit_code, result.differs) == ("reproduced", 0, [])
    assert [(m.key, m.ok) for m in result.metrics] == [("score", True)]
    with Store(project.parent / "store") as st:
        new = st.get_run(result.run_id)
        orig = st.get_run(old)
        assert new.params == orig.params and new.params["seed"] == 7
        assert new.metrics["score"] == orig.metrics["score"]
        assert new.tags["mlnb.reproduce.of"] == old
        assert new.tags["mlnb.reproduce.verdict"] == "reproduced"
        assert new.source == str(project / "train.ipynb")  # not the temporary copy
        assert new.notebook == new.source and new.linearity == "linear"
        assert new.experiment == orig.experiment
        assert new.name == f"{orig.name}-repro-{old[:8]}"
        [ds] = new.datasets
        assert ds.hash == orig.datasets[0].hash
        rows = {c.name: c for c in st.get_checks(result.run_id, kind="reproduce")}
        assert set(rows) == {"verdict", "metrics.score", "data", "environment", "code"}
        assert all(c.passed and c.baseline_run_id == old for c in rows.values())
        assert rows["metrics.score"].value == rows["metrics.score"].baseline_value
    assert "verdict: reproduced" in str(result)


def test_reproduce_names_the_new_run_after_the_original_without_taking_its_name(
    project: Path,
) -> None:
    """Issue 11 item 8: the reproduction took the original's name, so the name then
    matched several runs ('train' matches several runs) wherever a run is named."""
    old = first_run(project, seed=3)
    result = reproduce(old)
    with Store(project.parent / "store") as st:
        assert st.get_run("train").run_id == old  # the name still means the original
        new = st.get_run(f"train-repro-{old[:8]}")
        assert new.run_id == result.run_id and new.tags["mlnb.reproduce.of"] == old
    assert f"→ run {result.run_id[:8]} (train-repro-{old[:8]})" in str(result)


def test_the_stored_snapshot_runs_not_todays_file(project: Path) -> None:
    old = first_run(project)
    nb = json.loads((project / "train.ipynb").read_text())
    nb["cells"][3]["source"] = "raise RuntimeError('edited since')"
    (project / "train.ipynb").write_text(json.dumps(nb))
    result = reproduce(old)
    assert result.verdict == "reproduced"
    assert any("has changed since this run" in n for n in result.notes)


def test_unseeded_randomness_is_a_metrics_difference_with_the_first_bad_step(
    project: Path,
) -> None:
    old = first_run(project, seed=None)
    result = reproduce(old)
    assert (result.verdict, result.exit_code) == ("metrics", 17)
    [check] = result.metrics
    assert not check.ok and check.step == 0 and check.old != check.new
    assert "step 0:" in check.reason
    # a loose tolerance accepts it (the draws are in [0, 1) around the row count)
    assert reproduce(old, atol=1.0).verdict == "reproduced"
    # and a skipped metric is not compared at all
    assert reproduce(old, skip_metrics=["sc*"]).metrics == []


def test_changed_input_data_is_named_with_its_fingerprints(project: Path) -> None:
    old = first_run(project)
    (project / "data.csv").write_text("a,b\n1,2\n3,4\n5,6\n")
    result = reproduce(old)
    assert result.differs == ["metrics", "data"]
    assert result.exit_code == 16 + 1 + 2
    assert any(c.key == "input train: hash" for c in result.data)
    assert "DIFF data input train: hash" in str(result)
    with Store(project.parent / "store") as st:
        rows = {c.name: c for c in st.get_checks(result.run_id, kind="reproduce")}
        assert not rows["verdict"].passed and rows["verdict"].message == "metrics, data"
        assert not rows["data"].passed and "input train: hash" in (rows["data"].message or "")
        assert rows["code"].passed and rows["environment"].passed


def test_another_environment_is_reported_and_can_be_ignored(project: Path) -> None:
    old = first_run(project)
    with Store(project.parent / "store") as st:  # the original ran with an older numpy
        env = dict(st.get_run(old).environment or {})
        packages = dict(env["packages"])
        packages["numpy"] = "1.0.0"
        env["packages"] = packages
        st.save_environment(old, env, "f" * 64)
    result = reproduce(old)
    assert (result.verdict, result.exit_code) == ("environment", 20)
    assert [c.key for c in result.environment] == ["package numpy"]
    relaxed = reproduce(old, ignore={"environment"})
    assert (relaxed.verdict, relaxed.exit_code) == ("reproduced", 0)
    assert "ignored: environment" in str(relaxed)


def test_a_new_commit_is_a_code_difference(project: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=project, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    old = first_run(project)
    (project / "helpers.py").write_text("X = 1\n")
    git("add", "helpers.py")
    git("commit", "-q", "-m", "two")
    result = reproduce(old)
    assert (result.verdict, result.exit_code) == ("code", 24)
    assert result.code[0].startswith("git commit ")


def test_a_reproduction_that_fails_says_so_with_the_jobs_exit_code(project: Path) -> None:
    old = first_run(project)
    (project / "data.csv").unlink()
    result = reproduce(old)
    assert (result.verdict, result.exit_code, result.job.status) == ("failed", 1, "failed")
    assert result.job.error is not None and result.job.error.name == "FileNotFoundError"
    with Store(project.parent / "store") as st:
        assert st.get_run(result.run_id).tags["mlnb.reproduce.verdict"] == "failed"


def test_bad_requests_are_refused_before_anything_runs(project: Path, tmp_path: Path) -> None:
    store = Store(project.parent / "store")
    with pytest.raises(RunNotFoundError):
        reproduce("0123456789abcdef", store=store)
    script = mlnb.start_run(store=store)  # a script's run: no notebook to re-execute
    with pytest.raises(InvalidInputError, match="still running"):
        reproduce(script.run_id, store=store)
    mlnb.end_run()
    with pytest.raises(InvalidInputError, match="no notebook snapshot"):
        reproduce(script.run_id, store=store)
    with pytest.raises(InvalidInputError, match="cannot ignore"):
        reproduce(script.run_id, ignore={"weather"}, store=store)
    with pytest.raises(InvalidInputError, match="rtol"):
        reproduce(script.run_id, rtol=-1, store=store)
    assert len(store.search_runs()["run_id"]) == 1  # nothing was added
    store.close()


def test_the_cli_prints_the_verdict_and_exits_with_what_differs(project: Path) -> None:
    old = first_run(project, seed=None)
    cli = [sys.executable, "-m", "mlnb"]
    proc = subprocess.run([*cli, "reproduce", old[:8]], capture_output=True, text=True)
    assert proc.returncode == 17, proc.stderr
    assert "DIFF metric score: step 0:" in proc.stdout
    assert "verdict: metrics" in proc.stdout
    proc = subprocess.run(
        [*cli, "reproduce", old, "--ignore", "metrics", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["verdict"], out["differs"], out["original"]) == ("reproduced", ["metrics"], old)
    proc = subprocess.run([*cli, "reproduce", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_a_run_made_interactively_in_a_notebook_is_reproduced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbclient
    import nbformat

    path = tmp_path / "linear.ipynb"
    shutil.copy(NOTEBOOKS / "linear.ipynb", path)
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("MLNB_NOTEBOOK", str(path))  # as Jupyter tells the kernel
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    monkeypatch.delenv("MLNB_NOTEBOOK")
    with Store(tmp_path / "store") as st:
        [old] = st.search_runs()["run_id"]
        assert st.get_run(old).linearity == "linear"
    result = reproduce(old)
    assert result.verdict == "reproduced", str(result)
    assert sorted(m.key for m in result.metrics) == ["acc", "loss"]
    with Store(tmp_path / "store") as st:
        new = st.get_run(result.run_id)
        assert new.params == {"lr": 0.05, "epochs": 3}  # logged again by %%track params
        assert new.experiment == "kernels"
