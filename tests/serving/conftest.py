"""Fixtures of the prediction service's tests: a store with a registered scikit-learn
model (``churn``: an int column ``age`` and a float column ``fee``) and its alias
``champion``; a service on it behind Starlette's TestClient."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import mlnb
from mlnb.records import ModelVersion
from tests.conftest import REPO


def fit(seed: int = 0, *, flip: bool = False) -> tuple[Any, Any]:
    """A LogisticRegression on ``age`` (int64) and ``fee`` (float64); ``flip`` learns the
    opposite rule, so two versions answer differently."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 80), "fee": rng.normal(50, 5, 80)})
    target = (frame["age"] > 45).astype(int)
    if flip:
        target = 1 - target
    return LogisticRegression().fit(frame, target), frame


def register(store: mlnb.Store, *, flip: bool = False, name: str = "churn") -> ModelVersion:
    model, frame = fit(flip=flip)
    with mlnb.start_run("train", store=store, capture=False) as run:
        run.log_data(frame, name="train")
        return mlnb.register_model(name, model, store=store)


@pytest.fixture
def churn(store: mlnb.Store) -> ModelVersion:
    """``churn`` version 1, ``churn@champion`` pointing at it."""
    version = register(store)
    mlnb.set_model_alias("churn", "champion", version.version, store=store)
    return version


@pytest.fixture
def client(store: mlnb.Store, churn: ModelVersion) -> Iterator[Any]:
    """A TestClient on a service of ``churn@champion`` logging every request."""
    from starlette.testclient import TestClient

    from mlnb.serving.app import Options, build_app
    from mlnb.serving.server import make_service

    service = make_service(store, "churn@champion", Options(log_rate=1.0, poll_s=3600))
    with TestClient(build_app(service)) as test_client:
        test_client.service = service  # type: ignore[attr-defined]
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(store: mlnb.Store, uri: str, *args: str, port: int | None = None,
            ready_s: float = 30) -> Iterator[tuple[subprocess.Popen[str], str]]:  # fmt: skip
    """A real ``mlnb serve`` on 127.0.0.1 (its process and base URL), stopped by PID. A
    free port can be taken by another process before the service binds it: then it is
    started again on another one (twice at most), unless ``port`` was given."""
    for attempt in range(3):
        chosen = port or free_port()
        proc, base = _start(store, uri, args, chosen, ready_s)
        if proc is not None:
            break
        if port is not None or attempt == 2:
            raise AssertionError(f"mlnb serve could not bind 127.0.0.1:{chosen}")
    assert proc is not None
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _start(store: mlnb.Store, uri: str, args: tuple[str, ...], port: int,
           ready_s: float) -> tuple[subprocess.Popen[str] | None, str]:  # fmt: skip
    """Start ``mlnb serve`` and wait until /health answers; ``None`` when the port was
    taken (the process is gone), an AssertionError on any other failure."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlnb", "--store", str(store.root), "serve", uri,
         "--host", "127.0.0.1", "--port", str(port), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    try:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                if "address already in use" in err.lower():
                    return None, base
                raise AssertionError(f"mlnb serve exited {proc.returncode}: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    return proc, base
            if time.monotonic() > deadline:
                raise AssertionError("mlnb serve did not become ready")
            time.sleep(0.05)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        raise


ROW = {"dataframe_split": {"columns": ["age", "fee"], "data": [[30, 50.0]]}}
