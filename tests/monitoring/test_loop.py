"""Issue 15 item 4, the loop end to end with real processes: ``mlnb serve`` (champion v1,
``--monitor-every``) on 127.0.0.1 takes generated traffic whose distribution shifts →
``mlnb monitor`` reports drift → ``mlnb retrain --when drift --from-monitor --promote
champion`` trains v2, which passes its gate → the running service swaps to v2 with no
failed request → ``/version`` shows v2 and ``mlnb model history`` says why. The service
is stopped by PID; the load is bounded in count and time."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import mlnb
from mlnb.monitoring.monitor import latest_verdict
from tests.conftest import REPO
from tests.jobs.test_retrain import NOTEBOOK, churn_csv
from tests.serving.conftest import serving

pytestmark = pytest.mark.slow

COLUMNS = ["age", "tenure", "calls", "fee"]


def _mlnb(store: mlnb.Store, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "mlnb", "--store", str(store.root), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


class Traffic:
    """Closed-loop clients posting 20 generated rows a request, from the training
    distribution until ``shift`` is set, then with ``age`` 25 years older; every status
    and served version is kept. Bounded: ``limit`` requests, ``seconds`` at most."""

    def __init__(self, base: str, normal: Any, shifted: Any, *, limit: int = 20000,
                 seconds: float = 100, clients: int = 2) -> None:  # fmt: skip
        self.base, self.limit, self.deadline = base, limit, time.monotonic() + seconds
        self.bodies = [self._bodies(normal), self._bodies(shifted)]
        self.shift, self.stop = threading.Event(), threading.Event()
        self.results: list[tuple[int, str]] = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    @staticmethod
    def _bodies(frame: Any) -> list[dict[str, Any]]:
        rows = frame[COLUMNS].values.tolist()
        return [{"dataframe_split": {"columns": COLUMNS, "data": rows[i : i + 20]}}
                for i in range(0, len(rows), 20)]  # fmt: skip

    def _client(self, k: int) -> None:
        import httpx

        i = k
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self.stop.is_set() and len(self.results) < self.limit:
                if time.monotonic() > self.deadline:
                    break
                bodies = self.bodies[self.shift.is_set()]
                try:
                    r = http.post("/invocations", json=bodies[i % len(bodies)])
                    self.results.append((r.status_code, r.headers.get("x-mlnb-model-version", "")))
                except httpx.HTTPError as exc:
                    self.results.append((0, type(exc).__name__))
                i += 1
                time.sleep(0.005)  # leave the two shared cores to the retrain's kernel

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds:g} s")


def test_the_loop_serve_drift_retrain_swap(store: mlnb.Store, tmp_path: Path) -> None:
    """Issue 15 item 4: 0 non-2xx during the whole loop; the drift the monitor found is
    the reason v2 was trained and promoted; the service answers with v2 at the end."""
    import httpx
    import pandas as pd

    started = time.monotonic()
    first = mlnb.retrain(NOTEBOOK, model="churn", data={"train": churn_csv(
        tmp_path / "train.csv", seed=0)}, promote="champion", gate=["auc>=0.7"],
        store=store, progress_bar=False)  # fmt: skip
    assert first.promotion is not None and first.promotion.moved and first.version.version == 1
    normal = pd.read_csv(churn_csv(tmp_path / "normal.csv", seed=5))
    shifted = pd.read_csv(churn_csv(tmp_path / "shifted.csv", seed=6, age_shift=25))
    new_train = churn_csv(tmp_path / "train2.csv", seed=7, age_shift=25)

    with serving(store, "churn@champion", "--log-rate", "1", "--monitor-every", "1") as (
        _proc, base), Traffic(base, normal, shifted) as traffic:  # fmt: skip
        # the service's own monitor (--monitor-every) sees the served traffic: no drift
        _until("a monitor verdict from the service", lambda: latest_verdict(store, "churn"), 20)
        calm = _mlnb(store, "monitor", "churn", "--window", "2000")
        assert calm.returncode == 0, calm.stdout + calm.stderr
        assert "no drift" in calm.stdout

        traffic.shift.set()
        drift = _until(
            "mlnb monitor reports drift",
            lambda: (
                (r := _mlnb(store, "monitor", "churn", "--window", "2000")).returncode == 1 and r
            ),
            30,
        )
        reason = next(line for line in drift.stdout.splitlines() if line.startswith("drift: "))
        assert reason.startswith("drift: age psi=") and reason.endswith("(served, window 2000)")

        retrain = _mlnb(store, "retrain", str(NOTEBOOK), "--model", "churn", "--data",
                        f"train={new_train}", "--when", "drift", "--from-monitor",
                        "--gate", "auc>=0.7", "--promote", "champion")  # fmt: skip
        assert retrain.returncode == 0, retrain.stdout + retrain.stderr
        assert "registered churn/2" in retrain.stdout, retrain.stdout
        assert mlnb.get_model_version("churn@champion", store=store).version == 2

        _until("the service serves v2", lambda: any(v == "2" for _, v in traffic.results[-50:]), 20)
        time.sleep(0.5)  # a little more traffic on v2
        version = httpx.get(base + "/version", timeout=5).json()

    statuses = [s for s, _ in traffic.results]
    assert len(statuses) > 100
    assert [s for s in statuses if not 200 <= s < 300] == []  # no failed request, ever
    assert {v for _, v in traffic.results} == {"1", "2"}
    assert version["version"] == 2

    history = _mlnb(store, "model", "history", "churn", "--format", "json")
    moves = json.loads(history.stdout)
    assert [(m["alias"], m["version"]) for m in moves][-1] == ("champion", 2)
    # the newest verdict decided: the CLI's (window 2000) or the service's own (10000)
    run = store.get_run(retrain.stdout.split("\nrun ")[1][:8])
    why = run.tags["mlnb.retrain.reason"]
    assert re.fullmatch(r"drift: age psi=\d+\.\d\d \(served, window (2000|10000)\)", why), why
    assert moves[-1]["reason"].startswith(f"retrain: {why}")
    assert time.monotonic() - started < 120
