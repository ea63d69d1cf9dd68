"""Continuous training (issue 14 item 6): ``mlnb retrain`` decides from the data, runs the
notebook, registers, gates and promotes; one retrain per model at a time (item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import mlnb
from mlnb.conventions import EXIT_BUSY
from mlnb.errors import InvalidInputError
from mlnb.jobs.retrain import model_lock
from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "ct_train.ipynb"

pytestmark = pytest.mark.slow


def churn_csv(path: Path, *, seed: int, age_shift: float = 0.0, noise: float = 1.0) -> Path:
    """Generated churn data: churn decided by tenure, support calls and fee; ``age``
    plays no part, so shifting it is drift that a retrain absorbs."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 1000
    frame = pd.DataFrame(
        {
            "age": rng.normal(40 + age_shift, 10, n).round(),
            "tenure": rng.integers(1, 72, n),
            "calls": rng.poisson(1.5, n),
            "fee": rng.normal(50, 10, n).round(2),
        }
    )
    logit = 1 - 0.06 * frame.tenure + 0.8 * frame.calls + 0.02 * (frame.fee - 50)
    frame["churned"] = (logit + rng.normal(0, noise, n) > 0).astype(int)
    frame.to_csv(path, index=False)
    return path


def _retrain(store: mlnb.Store, data: Path, **kw: Any) -> Any:
    return mlnb.retrain(NOTEBOOK, model="churn", data={"train": data}, store=store,
                        progress_bar=False, **kw)  # fmt: skip


def test_retrain_trains_when_data_changed_and_does_nothing_when_it_did_not(
    store: mlnb.Store, tmp_path: Path
) -> None:
    first_data = churn_csv(tmp_path / "train.csv", seed=0)
    first = _retrain(store, first_data, promote="champion", gate=["auc>=0.7"])
    assert first.trained and first.reasons == ("no_champion: churn@champion is not set",)
    assert first.promotion.moved and first.version.version == 1
    runs_before = len(store.search_runs()["run_id"])

    same = _retrain(store, first_data, promote="champion")
    assert not same.trained and same.exit_code == 0
    assert "unchanged" in same.reasons[0]
    assert len(store.search_runs()["run_id"]) == runs_before  # nothing ran
    champion_run = mlnb.get_model_version("churn@champion").run_id or ""
    messages = [c.message for c in store.get_checks(champion_run, kind="check")]
    assert any(m and m.startswith("no change: train hash") for m in messages)

    new_data = churn_csv(tmp_path / "train2.csv", seed=1)
    second = _retrain(store, new_data, gate=["auc>=+0.5"])  # no --promote: gated, not moved
    assert second.trained and second.reasons[0].startswith("data_changed: train hash ")
    assert second.version.version == 2 and not second.promotion.moved
    assert second.exit_code == 1  # the gate failed (auc cannot be 0.5 above the champion's)
    assert mlnb.get_model_version("churn@champion").version == 1
    run = store.get_run(second.job.run_id)
    assert [(c.name, c.passed) for c in run.checks if c.kind == "gate"] == [("auc", False)]
    assert run.tags["mlnb.retrain.reason"] == second.reasons[0]
    assert [(d.name, d.kind) for d in run.datasets] == [("train", "file")]


def test_retrain_when_drift_skips_same_distribution_and_retrains_shifted_data(
    store: mlnb.Store, tmp_path: Path
) -> None:
    _retrain(store, churn_csv(tmp_path / "a.csv", seed=0), promote="champion")
    same_kind = _retrain(store, churn_csv(tmp_path / "b.csv", seed=3), when="drift",
                         promote="champion")  # fmt: skip
    assert not same_kind.trained
    assert "but no column drifted" in same_kind.reasons[0]
    shifted = churn_csv(tmp_path / "c.csv", seed=4, age_shift=15, noise=0.5)
    result = _retrain(store, shifted, when="drift", promote="champion", gate=["auc>=+0.0"])
    assert result.trained and result.reasons[0].startswith("drift: age psi=")
    assert result.promotion.moved, str(result.promotion)
    event = mlnb.model_history("churn", alias="champion")[-1]
    assert (event.previous_version, event.version) == (1, 2)
    assert "drift: age psi=" in (event.reason or "")


def test_retrain_refuses_a_data_name_the_notebook_does_not_take_before_anything_runs(
    store: mlnb.Store, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="defines no 'nope'"):
        mlnb.retrain(NOTEBOOK, model="churn", when="always",
                     data={"nope": churn_csv(tmp_path / "a.csv", seed=0)}, store=store)  # fmt: skip
    assert store.search_runs()["run_id"] == []


def test_retrain_second_at_once_exits_75_with_no_wait_and_waits_without(
    store: mlnb.Store, tmp_path: Path
) -> None:
    """Item 9: two retrains of one model at once. The second exits 75 with --no-wait and
    ran nothing; without it, it says it waits and goes on when the first is done."""
    data = churn_csv(tmp_path / "a.csv", seed=0)
    _retrain(store, data, promote="champion")
    args = [sys.executable, "-m", "mlnb", "--store", str(store.root), "retrain", str(NOTEBOOK),
            "--model", "churn", "--data", f"train={data}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with model_lock(store, "churn", wait=False):
        busy = subprocess.run([*args, "--no-wait"], capture_output=True, text=True, env=env,
                              timeout=120)  # fmt: skip
        assert busy.returncode == EXIT_BUSY, busy.stderr
        assert "another retrain of 'churn' is running" in busy.stderr
        waiting = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)  # fmt: skip
        assert waiting.stderr is not None
        said = waiting.stderr.readline()  # printed before it blocks on the lock
        assert "another retrain of 'churn' is running" in said and "waiting for it" in said
        time.sleep(0.5)
        assert waiting.poll() is None  # still waiting for the lock
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "no change" in out


def test_ci_init_retrain_writes_the_workflow_of_the_docs() -> None:
    """docs/continuous-training.md shows exactly what `mlnb ci init github --retrain` writes."""
    import yaml
    from click.testing import CliRunner

    from mlnb.cli.app import cli
    from mlnb.jobs.workflows import github_retrain_workflow

    text = (REPO / "docs" / "continuous-training.md").read_text()
    block = text.split("<!-- workflow:start -->\n```yaml\n", 1)[1].split(
        "```\n<!-- workflow:end -->"
    )[0]
    result = CliRunner().invoke(cli, ["ci", "init", "github", "--retrain"])
    assert result.exit_code == 0, result.output
    written = Path(".github/workflows/mlnb-retrain.yml").read_text()
    assert written == block == github_retrain_workflow()
    flow = yaml.safe_load(written)
    step = flow["jobs"]["retrain"]["steps"][4]["run"]
    assert "--when drift --gate 'auc>=+0.0' --promote champion" in step
    bad = CliRunner().invoke(cli, ["ci", "init", "github", "--retrain", "--gate", "auc"])
    assert bad.exit_code == 1 and "give KEY OP NUMBER" in bad.output
