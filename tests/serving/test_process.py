"""Issue 15 items 1, 2 and 5 with real ``mlnb serve`` processes on 127.0.0.1 (started and
stopped by PID; load bounded in count and time): the alias moves under load with no
failed request, SIGTERM drains requests in flight and loses no logged prediction, a model
that cannot load stops the command with a one-line error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import mlnb
from mlnb.records import ModelVersion
from mlnb.store import predictions
from tests.conftest import REPO
from tests.serving.conftest import ROW, free_port, register, serving

pytestmark = pytest.mark.slow


def _load(base: str, *, seconds: float, limit: int, threads: int = 4,
          stop: threading.Event | None = None) -> list[tuple[int, str]]:  # fmt: skip
    """Closed-loop requests from ``threads`` clients for ``seconds`` (at most ``limit``, and
    until ``stop`` is set): (status, served version) of each."""
    import httpx

    results: list[tuple[int, str]] = []
    until = time.monotonic() + seconds
    stop = stop or threading.Event()

    def client() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while time.monotonic() < until and len(results) < limit and not stop.is_set():
                try:
                    r = http.post("/invocations", json=ROW)
                    results.append((r.status_code, r.headers.get("x-mlnb-model-version", "")))
                except httpx.HTTPError as exc:
                    results.append((0, type(exc).__name__))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=seconds + 30)
    return results


def test_the_alias_moves_under_load_with_no_failed_request(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Issue 15 item 5: 0 non-2xx while the alias moves back and forth under load, and the
    service serves each version the alias moves to while the load runs.

    Pins the flake that failed CI at stop 18: the moves ran on a fixed 1 s schedule, but in
    this process four client threads keep the GIL busy, so each SQLite call of
    ``set_model_alias`` waits for it (0.3-2.5 s a call measured here) and the load could end
    before version 2 was ever served. Each move now waits (bounded) until it is served."""
    flipped = register(store, flip=True)
    with serving(store, "churn@champion", "--log-rate", "0.1") as (_, base):
        results: list[tuple[int, str]] = []
        stop = threading.Event()
        loader = threading.Thread(
            target=lambda: results.extend(_load(base, seconds=60.0, limit=20000, stop=stop))
        )
        loader.start()
        waits = []
        try:
            for version in (flipped.version, churn.version, flipped.version):
                time.sleep(0.5)
                mlnb.set_model_alias("churn", "champion", version, store=store)
                moved = time.monotonic()
                while _served(base) != version:
                    assert time.monotonic() - moved < 20, f"version {version} never served"
                    time.sleep(0.02)
                waits.append(time.monotonic() - moved)
            time.sleep(0.5)
        finally:
            stop.set()
            loader.join(timeout=60)
    assert len(results) > 50
    failed = [r for r in results if not 200 <= r[0] < 300]
    assert failed == []
    assert {v for _, v in results} == {"1", "2"}
    assert max(waits) < 5, waits  # the benchmark measures it properly (< 2 s target)


def _served(base: str) -> int:
    import httpx

    return int(httpx.get(base + "/version", timeout=10).json()["version"])


def test_sigterm_drains_requests_in_flight_and_loses_no_logged_prediction(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Issue 15 item 2: every answered request is in the log after a graceful SIGTERM,
    including those answered while the service was stopping."""
    with serving(store, "churn@champion", "--log-rate", "1.0") as (proc, base):
        results: list[tuple[int, str]] = []
        loader = threading.Thread(
            target=lambda: results.extend(_load(base, seconds=3.0, limit=3000))
        )
        loader.start()
        time.sleep(1.5)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        loader.join(timeout=60)
    answered = [r for r in results if r[0] == 200]
    assert len(answered) > 20
    # a request sent after the port closed fails to connect; none is answered badly
    assert all(status in (200, 0) for status, _ in results)
    assert predictions.count_predictions(store.file, "churn") == len(answered)


def test_serve_refuses_to_start_on_a_model_that_cannot_load(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    path = store.contents.path(churn.artifact_hash)
    path.chmod(0o644)
    path.write_bytes(b"tampered")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlnb", "--store", str(store.root), "serve", "churn@champion",
         "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "does not match its stored hash" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_with_two_workers_answers_and_follows_the_alias(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    import httpx

    flipped = register(store, flip=True)
    with serving(store, "churn@champion", "--workers", "2", "--log-rate", "0") as (proc, base):
        assert httpx.post(base + "/invocations", json=ROW).status_code == 200
        mlnb.set_model_alias("churn", "champion", flipped.version, store=store)
        deadline = time.monotonic() + 15
        seen: set[str] = set()
        while seen != {"2"}:
            assert time.monotonic() < deadline, seen
            answers = [httpx.post(base + "/invocations", json=ROW) for _ in range(6)]
            seen = {a.headers["x-mlnb-model-version"] for a in answers}
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=40) == 0


def test_serve_on_a_taken_port_is_a_one_line_error(store: mlnb.Store, churn: ModelVersion) -> None:
    """Found at stop 19: on a taken port ``mlnb serve`` printed "serving ... on" it, then
    uvicorn's "[Errno 98] ... address already in use" and exited 3. The port is now bound
    before the model loads, and a taken one is one line saying what to do, exit 1."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(
            [sys.executable, "-m", "mlnb", "--store", str(store.root), "serve",
             "churn@champion", "--host", "127.0.0.1", "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "choose another --port" in proc.stderr
    assert "serving mlnb://" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
