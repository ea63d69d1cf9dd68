"""Promotion with a gate (issue 14 item 5): the candidate's run against the current
champion's, the verdict in ``checks``, the alias moved in the same transaction, rollback,
the first promotion, and eight promoters at once (item 10)."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError
from mlnb.jobs.promote import promotion_thresholds
from tests.conftest import REPO


def _version(store: mlnb.Store, auc: float, tmp: Path, name: str = "churn") -> int:
    (tmp / "w.bin").write_bytes(f"{auc}".encode())
    with mlnb.start_run(f"auc-{auc}", store=store, capture=False) as run:
        run.log_metric("auc", auc)
        return mlnb.register_model(name, tmp / "w.bin").version


def test_promotion_thresholds_read_signed_numbers_as_changes_against_the_champion() -> None:
    specs = promotion_thresholds(["auc>=0.8", "auc>=+0.0", "loss<=-0.01", "f1>=+2%"])
    assert (specs["auc"].threshold, specs["auc"].min_absolute_change) == (0.8, 0.0)
    assert specs["auc"].greater_is_better
    assert (specs["loss"].min_absolute_change, specs["loss"].greater_is_better) == (0.01, False)
    assert specs["f1"].min_relative_change == pytest.approx(0.02)
    with pytest.raises(InvalidInputError, match="give KEY OP NUMBER"):
        promotion_thresholds(["auc"])


def test_promote_moves_the_alias_only_when_the_gate_passes(
    store: mlnb.Store, tmp_path: Path
) -> None:
    _version(store, 0.80, tmp_path)
    _version(store, 0.75, tmp_path)
    _version(store, 0.85, tmp_path)
    mlnb.set_model_alias("churn", "champion", 1)
    mlnb.set_model_alias("churn", "challenger", 2)
    worse = mlnb.promote("churn", gate=["auc>=+0.0"])
    assert not worse and not worse.moved and worse.exit_code == 1
    assert mlnb.get_model_version("churn@champion").version == 1
    mlnb.set_model_alias("churn", "challenger", 3)
    better = mlnb.promote("churn", gate=["auc>=+0.0"])
    assert better and better.moved and better.previous == 1
    assert mlnb.get_model_version("churn@champion").version == 3
    # both verdicts are stored on the candidates' runs; the move names the passing batch
    failed = store.get_checks(mlnb.get_model_version("churn/2").run_id or "", kind="gate")
    assert [(c.passed, c.baseline_value) for c in failed] == [(False, 0.80)]
    passed = store.get_checks(mlnb.get_model_version("churn/3").run_id or "", kind="gate")
    event = mlnb.model_history("churn", alias="champion")[-1]
    assert [c.batch for c in passed] == [event.check_batch]
    assert "gate passed: auc>=+0.0" in (event.reason or "")


def test_first_promotion_passes_on_absolute_thresholds_alone(
    store: mlnb.Store, tmp_path: Path
) -> None:
    """Item 9 (documented): with no champion, the relative parts have nothing to compare
    with; the absolute ones still decide."""
    _version(store, 0.6, tmp_path)
    low = mlnb.promote("churn", source=1, gate=["auc>=0.7", "auc>=+0.0"])
    assert not low.moved and "absolute thresholds alone" in str(low)
    first = mlnb.promote("churn", source=1, gate=["auc>=+0.0"])
    assert first.moved and first.previous is None


def test_promote_previous_rolls_the_alias_back(store: mlnb.Store, tmp_path: Path) -> None:
    for auc in (0.7, 0.8):
        _version(store, auc, tmp_path)
    mlnb.set_model_alias("churn", "champion", 1)
    mlnb.set_model_alias("churn", "champion", 2)
    out = CliRunner().invoke(
        cli, ["--store", str(store.root), "model", "promote", "churn", "--previous"]
    )
    assert out.exit_code == 0, out.output
    assert "version 2 → version 1" in out.output
    assert [(e.previous_version, e.version) for e in mlnb.model_history("churn")] == [
        (None, 1),
        (1, 2),
        (2, 1),
    ]


def test_cli_promote_exits_1_when_the_gate_fails(store: mlnb.Store, tmp_path: Path) -> None:
    _version(store, 0.8, tmp_path)
    _version(store, 0.7, tmp_path)
    mlnb.set_model_alias("churn", "champion", 1)
    args = ["--store", str(store.root), "model", "promote", "churn", "--from", "2",
            "--gate", "auc>=+0.0", "--format", "json"]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 1
    assert json.loads(out.output)["moved"] is False


PROMOTER = """
import json, sys, time, mlnb
from mlnb.jobs import promote
mlnb.get_model_version("churn@champion", store=sys.argv[2])  # imported and open: now race
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
result = mlnb.promote("churn", source=int(sys.argv[1]), gate=["auc>=+0.0"], store=sys.argv[2])
print(json.dumps({"moved": result.moved, "previous": result.previous}))
"""


@pytest.mark.slow
def test_eight_concurrent_promoters_lose_no_move_and_never_pass_a_stale_gate(
    store: mlnb.Store, tmp_path: Path
) -> None:
    """Item 10: eight processes promote eight versions at once. The history is one chain
    (each move starts where the previous ended), every move beat the version it replaced
    (the gate ran against the real champion, not a stale one), every process that says it
    moved the alias has its event, and the best version ends as champion."""
    aucs = [0.50, *random.Random(7).sample([0.60, 0.62, 0.64, 0.66, 0.68, 0.70, 0.72, 0.74], 8)]
    for auc in aucs:
        _version(store, auc, tmp_path)
    mlnb.set_model_alias("churn", "champion", 1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = str(time.time() + 4)  # every process has imported mlnb by then (2 cores)
    procs = [
        subprocess.Popen([sys.executable, "-c", PROMOTER, str(v), str(store.root), start], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for v in range(2, 10)
    ]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    events = mlnb.model_history("churn", alias="champion")
    assert len(events) == 1 + sum(r["moved"] for r in results)
    for before, after in itertools.pairwise(events):
        assert after.previous_version == before.version
        assert before.version is not None and after.version is not None
        assert aucs[after.version - 1] >= aucs[before.version - 1]
    best = aucs.index(max(aucs)) + 1
    assert mlnb.get_model_version("churn@champion").version == best
