"""Logging straight to an MLflow server with the same ``log_*`` calls:
``mlnb.set_store("mlflow+http://127.0.0.1:5000")``.

The runs are written to a local buffer store first (``$MLNB_STORE`` when set, else
``~/.mlnb/mlflow-buffer/<host_port>``), exactly as to any store, so logging costs what it
always costs and a network failure loses nothing. When a run ends (``end_run``, the end of
a ``with`` block, ``%track end``), every ended run of the buffer that the server does not
have yet is pushed (:func:`mlnb.interop.mlflow.mlflow_push`): the one that just ended, and
any that an unreachable server kept back before. If the server cannot be reached, the run
stays in the buffer, an ``MlnbWarning`` says so, and the next run's end (or
``mlnb mlflow push URI --store BUFFER``) sends it.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mlnb.conventions import ENV_STORE, MLFLOW_RUN_TAG
from mlnb.errors import InvalidInputError, MlnbWarning, TrackingServerError
from mlnb.tracking import active

if TYPE_CHECKING:
    from mlnb.interop.mlflow import TransferReport
    from mlnb.store import Store
    from mlnb.tracking.active import ActiveRun, StoreLike

__all__ = ["SCHEME", "buffer_folder", "push_pending", "set_store"]

SCHEME = "mlflow+"
_targets: dict[Path, str] = {}  # a buffer store's folder -> its server's URI


def buffer_folder(uri: str) -> Path:
    """Where the runs logged to the MLflow server ``uri`` wait: ``$MLNB_STORE`` when set,
    else ``~/.mlnb/mlflow-buffer/<host_port>`` (one buffer per server)."""
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser().absolute()
    parts = urllib.parse.urlsplit(uri)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.netloc}{parts.path}").strip("_")
    return Path.home() / ".mlnb" / "mlflow-buffer" / (name or "server")


def set_store(store: StoreLike | None) -> Store | None:
    """Use this store (or path) for the module-level API; ``None`` returns to discovery.

    ``"mlflow+http://HOST:PORT"`` logs to that MLflow server: runs go to a local buffer
    store (:func:`buffer_folder`) and are pushed to the server when they end; a server
    that cannot be reached keeps them there until a later run's end pushes them."""
    if isinstance(store, str) and store.startswith(SCHEME):
        uri = store[len(SCHEME) :]
        if not uri.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"{store!r}: give the server's address as mlflow+http://HOST:PORT "
                "(or mlflow+https://…)"
            )
        chosen = active.resolve_store(buffer_folder(uri), create=True)
        active.set_store(chosen)
        _targets[chosen.root] = uri
        active.add_ended_hook(_push_ended)
        return chosen
    return active.set_store(store)


def push_pending(uri: str, store: Store) -> TransferReport:
    """Push every ended run of ``store`` that has not been pushed completely yet (no
    ``mlnb.mlflow.run_id`` tag) to ``uri``."""
    from mlnb.interop.mlflow import mlflow_push

    table = store.search_runs(None)
    pushed = table.get(f"tags.{MLFLOW_RUN_TAG}") or [None] * len(table["run_id"])
    pending = [
        run_id
        for run_id, status, done in zip(table["run_id"], table["status"], pushed, strict=True)
        if done is None and status not in ("running", "queued")
    ]
    return mlflow_push(uri, run_ids=pending, store=store)


def _push_ended(run: ActiveRun, status: str) -> None:
    uri = _targets.get(run.store.root)
    if uri is None or run.store.closed:
        return
    try:
        push_pending(uri, run.store)
    except TrackingServerError as exc:
        warnings.warn(
            f"mlnb: run {run.run_id[:8]} is kept in {run.store.root} and was not sent to the "
            f"MLflow server: {exc}. The next run's end sends it (or run: mlnb --store "
            f"{run.store.root} mlflow push {uri})",
            MlnbWarning,
            stacklevel=2,
        )
