"""Issue 16 item 3: runs and registered models to and from a real MLflow tracking server
(``mlflow server`` on SQLite, started here on 127.0.0.1 and stopped by its PID), both ways,
idempotent and resumable, and logging straight to a server through a local buffer."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError, TrackingServerError

pytestmark = pytest.mark.slow
mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

MLFLOW = Path(sys.executable).parent / "mlflow"
# no background job runner (seven huey processes) on a shared machine: runs need none
QUIET_SERVER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``mlflow server`` with a SQLite backend and served artifacts, in its own
    process group (its workers die with it)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "server.log").open("wb") as log:  # the server keeps its own copy
            self.proc = subprocess.Popen(
                [str(MLFLOW), "server", "--backend-store-uri",
                 f"sqlite:///{self.folder / 'mlflow.db'}", "--artifacts-destination",
                 str(self.folder / "artifacts"), "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder,
                env={**os.environ, **QUIET_SERVER},
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError((self.folder / "server.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow-server")).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> MlflowClient:
    return MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


@pytest.fixture
def experiment() -> str:
    """An experiment of its own for each test: the server is shared by the module."""
    return f"exp-{uuid.uuid4().hex[:8]}"


def _log_run(store: mlnb.Store, experiment: str, *, points: int = 7) -> str:
    with mlnb.start_run("trained", experiment=experiment, store=store, capture=False) as run:
        run.log_params({"lr": 0.01, "epochs": 3, "model": "logreg", "scaled": True,
                        "layers": [64, 32], "seed": None})  # fmt: skip
        for step in range(points):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_metric("acc", 0.5 + step / 100, step=step)
        run.log_metric("weird", math.nan, step=0)
        run.set_tags({"team": "churn", "note": "first try"})
        run.log_artifact(b"hello", name="report.txt")
        run.log_artifact(b"\x00\x01binary", name="plots/deep/curve.bin")
    return run.run_id


def _local_view(store: mlnb.Store, run_id: str) -> dict[str, Any]:
    """What a run holds, at MLflow's resolution (times in milliseconds)."""
    rec = store.get_run(run_id)
    metrics = sorted(
        (key, step, "nan" if value is None or math.isnan(value) else value, round(ts * 1000))
        for key in rec.metrics
        for step, value, ts in store.history(run_id, key)
    )
    return {
        "name": rec.name,
        "status": rec.status,
        "start": round(rec.start_time * 1000),
        "end": round(rec.end_time * 1000),
        "params": rec.params,
        "tags": {k: v for k, v in rec.tags.items() if k != "mlnb.mlflow.run_id"},
        "metrics": metrics,
        "artifacts": {a.path: store.artifact_file(a.hash).read_bytes() for a in rec.artifacts},
    }


def _server_view(client: MlflowClient, mlflow_id: str, tmp: Path) -> dict[str, Any]:
    """What the server holds of a run, every metric point included (duplicates too)."""
    run = client.get_run(mlflow_id)
    metrics = sorted(
        (m.key, m.step, "nan" if math.isnan(m.value) else m.value, m.timestamp)
        for key in run.data.metrics
        for m in client.get_metric_history(mlflow_id, key)
    )
    files: dict[str, bytes] = {}

    def walk(path: str | None) -> None:
        for info in client.list_artifacts(mlflow_id, path):
            if info.is_dir:
                walk(info.path)
            else:
                local = client.download_artifacts(mlflow_id, info.path, str(tmp))
                files[info.path] = Path(local).read_bytes()

    tmp.mkdir(parents=True, exist_ok=True)
    walk(None)
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "start": run.info.start_time,
        "end": run.info.end_time,
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": metrics,
        "artifacts": files,
    }


def _expected_on_server(local: dict[str, Any], run_id: str) -> dict[str, Any]:
    """What one clean push of a run leaves on the server, from the run's local view."""
    types = {"lr": "float", "epochs": "int", "scaled": "bool", "layers": "json", "seed": "none"}
    params = {"lr": "0.01", "epochs": "3", "model": "logreg", "scaled": "True",
              "layers": "[64,32]", "seed": "None"}  # fmt: skip
    tags = {**local["tags"], "mlnb.source.run_id": run_id, "mlflow.runName": local["name"],
            "mlnb.source.param_types": json.dumps(types, sort_keys=True)}  # fmt: skip
    return {**local, "status": local["status"].upper(), "params": params, "tags": tags}


def _find(client: MlflowClient, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id]))


def test_mlflow_push_sends_everything_and_pull_brings_it_back_exactly(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """A run's params, metric points (key, step, value, timestamp), tags, artifacts'
    bytes, status and start and end times reach the server as they are (times in
    MLflow's milliseconds), and a pull into another store gives the same run back: the
    same id, typed params, the same points."""
    here = mlnb.Store(tmp_path / "here")
    run_id = _log_run(here, experiment)
    report = mlnb.mlflow_push(server.uri, store=here)
    assert report.runs == 1 and report.metrics == 15 and report.artifacts == 2
    (remote,) = _find(client, experiment)
    local = _local_view(here, run_id)
    assert _server_view(client, remote.info.run_id, tmp_path / "dl") == _expected_on_server(
        local, run_id
    )
    assert here.get_run(run_id).tags["mlnb.mlflow.run_id"] == remote.info.run_id

    there = mlnb.Store(tmp_path / "there")
    pulled = mlnb.mlflow_pull(server.uri, experiment=experiment, store=there)
    assert pulled.runs == 1 and pulled.run_ids == {run_id: remote.info.run_id}
    assert _local_view(there, run_id) == local
    assert there.get_run(run_id).experiment == experiment


def test_mlflow_statuses_travel_both_ways(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """finished, failed and killed are MLflow's statuses too; crashed, which MLflow lacks,
    is FAILED there with the tag mlnb.source.status and comes back crashed."""
    here = mlnb.Store(tmp_path / "here")
    ids = {}
    for status in ("finished", "failed", "killed", "crashed"):
        ids[status] = here.create_run(experiment=experiment, name=status, start_time=1e9)
        here.set_status(ids[status], status, end_time=1e9 + 60)
    mlnb.mlflow_push(server.uri, store=here)
    remote = {r.info.run_name: r for r in _find(client, experiment)}
    assert {name: r.info.status for name, r in remote.items()} == {
        "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "crashed": "FAILED"
    }  # fmt: skip
    assert remote["crashed"].data.tags["mlnb.source.status"] == "crashed"
    assert {r.info.end_time for r in remote.values()} == {(1e9 + 60) * 1000}
    there = mlnb.Store(tmp_path / "there")
    mlnb.mlflow_pull(server.uri, experiment=experiment, store=there)
    assert {s: there.get_run(run_id).status for s, run_id in ids.items()} == {s: s for s in ids}


def test_mlflow_parent_runs_travel_both_ways(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """A child run (a sweep's) points at its parent on the server (mlflow.parentRunId, the
    parent's MLflow id), pushed together or the parent first, and back in mlnb."""
    here = mlnb.Store(tmp_path / "here")
    parent = here.create_run(experiment=experiment, name="sweep", start_time=1e9)
    here.set_status(parent, "finished", end_time=1e9 + 9)
    mlnb.mlflow_push(server.uri, store=here)  # the parent alone first
    child = here.create_run(experiment=experiment, name="child", parent_run_id=parent,
                            start_time=1e9 + 1)  # fmt: skip
    here.set_status(child, "finished", end_time=1e9 + 2)
    report = mlnb.mlflow_push(server.uri, store=here)
    remote = {r.info.run_name: r for r in _find(client, experiment)}
    assert remote["child"].data.tags["mlflow.parentRunId"] == report.run_ids[parent]
    there = mlnb.Store(tmp_path / "there")
    mlnb.mlflow_pull(server.uri, experiment=experiment, store=there)
    assert there.get_run(child).parent_run_id == parent
    assert "mlflow.parentRunId" not in there.get_run(child).tags


def test_mlflow_push_and_pull_again_change_nothing(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """Idempotent both ways: a second push sends nothing (the server holds every point
    once), a second pull stores nothing, and pulling into the store that pushed changes
    nothing there either."""
    here = mlnb.Store(tmp_path / "here")
    run_id = _log_run(here, experiment)
    mlnb.mlflow_push(server.uri, store=here)
    (remote,) = _find(client, experiment)
    before = _server_view(client, remote.info.run_id, tmp_path / "a")
    again = mlnb.mlflow_push(server.uri, store=here)
    assert (again.runs, again.unchanged, again.metrics, again.tags) == (0, 1, 0, 0)
    assert _server_view(client, remote.info.run_id, tmp_path / "b") == before
    assert len(_find(client, experiment)) == 1

    from mlnb.store.transfer import export_run

    there = mlnb.Store(tmp_path / "there")
    mlnb.mlflow_pull(server.uri, experiment=experiment, store=there)
    first = export_run(there, run_id)
    second = mlnb.mlflow_pull(server.uri, experiment=experiment, store=there)
    assert (second.runs, second.unchanged) == (0, 1)
    assert export_run(there, run_id) == first
    mine = export_run(here, run_id)
    assert mlnb.mlflow_pull(server.uri, experiment=experiment, store=here).unchanged == 1
    assert export_run(here, run_id) == mine


def test_mlflow_push_adds_only_the_new_points_of_a_run_that_went_on(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """A run pushed while running, then logged to and ended, is completed by the next
    push: the new points are added (none twice), and the status and end time follow."""
    here = mlnb.Store(tmp_path / "here")
    run = mlnb.start_run("long", experiment=experiment, store=here, capture=False)
    for step in range(5):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    mlnb.flush(store=here)
    mlnb.mlflow_push(server.uri, store=here)
    (remote,) = _find(client, experiment)
    assert remote.info.status == "RUNNING" and remote.info.end_time is None
    for step in range(5, 9):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.end()
    report = mlnb.mlflow_push(server.uri, store=here)
    assert report.metrics == 4
    view = _server_view(client, remote.info.run_id, tmp_path / "dl")
    assert view["metrics"] == _local_view(here, run.run_id)["metrics"]
    assert (view["status"], view["end"]) == ("FINISHED", round(run.info.end_time * 1000))


KILLED_PUSH = """
import os, signal, sys
import mlnb
from mlflow.tracking import MlflowClient

real, calls = MlflowClient.log_batch, [0]

def log_batch(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # mid-way, as a power cut would
    return real(self, *args, **kwargs)

MlflowClient.log_batch = log_batch
mlnb.mlflow_push(sys.argv[1], store=sys.argv[2])
"""


@pytest.mark.parametrize("kill_at", [2, 5])
def test_mlflow_push_killed_midway_is_completed_by_the_next_push(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path, kill_at: int
) -> None:
    """Resumable: a push SIGKILLed in the middle of its batches (after the params and
    tags; in the metric points) leaves a RUNNING run with part of the data; the next push
    ends with exactly what one clean push leaves — every point once, the artifacts, the
    status and end time."""
    here = mlnb.Store(tmp_path / "here")
    run_id = _log_run(here, experiment, points=2500)  # 5,000 points: 5 metric batches
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_PUSH, server.uri, str(here.root), str(kill_at)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (remote,) = _find(client, experiment)
    half = _server_view(client, remote.info.run_id, tmp_path / "half")
    assert half["status"] == "RUNNING" and half["artifacts"] == {}
    assert len(half["metrics"]) < 5001
    report = mlnb.mlflow_push(server.uri, store=here)
    assert report.runs == 1 and len(_find(client, experiment)) == 1
    full = _server_view(client, remote.info.run_id, tmp_path / "full")
    assert full == _expected_on_server(_local_view(here, run_id), run_id)


def test_mlflow_registered_versions_and_aliases_travel_both_ways(
    server: Server, client: MlflowClient, tmp_path: Path
) -> None:
    """Registered versions go with their runs (one MLflow version per mlnb version, its
    source the run's artifact), and aliases point at the same versions on both sides; a
    pull into another store gives the same versions, files and aliases; moving an alias
    and pushing again moves it there, adding no version."""
    name = f"churn-{uuid.uuid4().hex[:6]}"
    here = mlnb.Store(tmp_path / "here")
    with mlnb.start_run("v1", experiment=name, store=here, capture=False):
        (tmp_path / "m1.onnx").write_bytes(b"model one")
        mlnb.register_model(name, tmp_path / "m1.onnx", store=here)
    with mlnb.start_run("v2", experiment=name, store=here, capture=False):
        (tmp_path / "m2.onnx").write_bytes(b"model two")
        mlnb.register_model(name, tmp_path / "m2.onnx", store=here)
    mlnb.set_model_alias(name, "champion", 2, store=here)
    mlnb.set_model_alias(name, "challenger", 1, store=here)
    report = mlnb.mlflow_push(server.uri, store=here)
    assert (report.versions, report.aliases) == (2, 2)
    model = client.get_registered_model(name)
    versions = {mv.version: mv for mv in client.search_model_versions(f"name='{name}'")}
    assert sorted(versions) == ["1", "2"]
    assert model.aliases == {"champion": "2", "challenger": "1"}
    second = mlnb.get_model_version(f"{name}/2", store=here)
    assert versions["2"].run_id == report.run_ids[second.run_id]

    there = mlnb.Store(tmp_path / "there")
    pulled = mlnb.mlflow_pull(server.uri, experiment=name, store=there)
    assert (pulled.versions, pulled.aliases) == (2, 2)
    for number, data in ((1, b"model one"), (2, b"model two")):
        version = mlnb.get_model_version(f"{name}/{number}", store=there)
        assert Path(mlnb.load_model(f"mlnb://{name}/{number}", store=there)).read_bytes() == data
        assert version.run_id == mlnb.get_model_version(f"{name}/{number}", store=here).run_id
    assert mlnb.get_model_version(f"{name}@champion", store=there).version == 2
    again = mlnb.mlflow_pull(server.uri, experiment=name, store=there)
    assert (again.versions, again.aliases) == (0, 0)

    mlnb.set_model_alias(name, "champion", 1, store=here)
    moved = mlnb.mlflow_push(server.uri, store=here)
    assert (moved.versions, moved.aliases) == (0, 1)
    assert client.get_registered_model(name).aliases["champion"] == "1"
    assert len(client.search_model_versions(f"name='{name}'")) == 2


def test_mlflow_pull_keeps_native_run_ids_and_skips_running_runs(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """A run made with MLflow itself keeps its id in mlnb (32 hex digits, as mlnb's) and
    is tagged with it; pushing it back goes to the same MLflow run, not a copy. Of two
    points at one step, the newest is kept. A run still RUNNING there is left out and
    said so."""
    exp_id = client.create_experiment(experiment)
    native = client.create_run(exp_id, run_name="native", start_time=1_700_000_000_000)
    points = [mlflow.entities.Metric("rmse", 0.5, 1_700_000_000_500, 3),  # the same step
              mlflow.entities.Metric("rmse", 0.25, 1_700_000_001_000, 3)]  # fmt: skip
    params = [mlflow.entities.Param("alpha", "0.5")]
    client.log_batch(native.info.run_id, params=params, metrics=points)
    client.set_terminated(native.info.run_id, "FINISHED", end_time=1_700_000_009_000)
    running = client.create_run(exp_id, run_name="still going")
    here = mlnb.Store(tmp_path / "here")
    report = mlnb.mlflow_pull(server.uri, experiment=experiment, store=here)
    assert report.run_ids == {native.info.run_id: native.info.run_id}
    assert [why for why in report.skipped if running.info.run_id[:8] in why]
    rec = here.get_run(native.info.run_id)
    assert (rec.name, rec.status, rec.params) == ("native", "finished", {"alpha": "0.5"})
    assert (rec.start_time, rec.end_time) == (1_700_000_000.0, 1_700_000_009.0)
    assert here.history(rec.run_id, "rmse") == [(3, 0.25, 1_700_000_001.0)]
    assert rec.tags == {"mlnb.mlflow.run_id": native.info.run_id}
    back = mlnb.mlflow_push(server.uri, run_ids=[rec.run_id], store=here)
    assert back.run_ids == {rec.run_id: native.info.run_id}
    assert len(_find(client, experiment)) == 2


def test_set_store_mlflow_buffers_locally_while_the_server_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logging straight to a server: with the server down, a run is kept in the local
    buffer (a warning says where, nothing is lost); once it is up, the next run's end
    pushes both, every point included."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    late = Server(tmp_path / "late")
    mlnb.set_store(f"mlflow+{late.uri}")
    buffer = tmp_path / "home" / ".mlnb" / "mlflow-buffer" / f"127.0.0.1_{late.port}"
    assert mlnb.get_store().root == buffer
    with pytest.warns(mlnb.MlnbWarning, match="kept in .*mlflow push"):
        with mlnb.start_run("offline", experiment="live"):
            mlnb.log_param("lr", 0.1)
            for step in range(300):
                mlnb.log_metric("loss", 1 / (step + 1), step=step)
    killed = subprocess.run(
        [sys.executable, "-c", DIES_IN_A_RUN, f"mlflow+{late.uri}"],
        env={**os.environ, "HOME": str(tmp_path / "home")}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    late.start()
    try:
        with mlnb.start_run("online", experiment="live"):
            mlnb.log_metric("loss", 0.5)
        client = MlflowClient(tracking_uri=late.uri)
        runs = {r.info.run_name: r for r in _find(client, "live")}
        assert sorted(runs) == ["died", "offline", "online"]
        history = client.get_metric_history(runs["offline"].info.run_id, "loss")
        assert len(history) == 300 and runs["offline"].data.params == {"lr": "0.1"}
        assert runs["offline"].info.status == "FINISHED"
        died = runs["died"]
        assert (died.info.status, died.data.tags["mlnb.source.status"]) == ("FAILED", "crashed")
        assert [m.value for m in client.get_metric_history(died.info.run_id, "loss")] == [0.25]
    finally:
        late.stop()


DIES_IN_A_RUN = """
import os, signal, sys
import mlnb

mlnb.set_store(sys.argv[1])
mlnb.start_run("died", experiment="live")
mlnb.log_metric("loss", 0.25)
mlnb.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_set_store_mlflow_uses_mlnb_store_as_the_buffer_and_checks_the_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buffer is $MLNB_STORE when set (as every store is); a URI that is not
    mlflow+http(s):// is refused with the form to use."""
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "buffer"))
    assert mlnb.set_store("mlflow+http://127.0.0.1:5000").root == tmp_path / "buffer"
    with pytest.raises(InvalidInputError, match="mlflow\\+http://HOST:PORT"):
        mlnb.set_store("mlflow+file:///tmp/x")


def test_mlflow_push_to_an_unreachable_server_fails_at_once(tmp_path: Path) -> None:
    """A server that is not there is an error naming it, in seconds, with nothing sent."""
    here = mlnb.Store(tmp_path / "here")
    with mlnb.start_run("r", store=here, capture=False):
        pass
    started = time.monotonic()
    with pytest.raises(TrackingServerError, match="cannot reach the MLflow server"):
        mlnb.mlflow_push(f"http://127.0.0.1:{_free_port()}", store=here)
    assert time.monotonic() - started < 10


def test_mlnb_mlflow_push_and_pull_commands(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """``mlnb mlflow push URI FILTER`` and ``mlnb mlflow pull URI -e NAME``; an error is one
    line and exit code 1."""
    here = mlnb.Store(tmp_path / "here")
    _log_run(here, experiment, points=3)
    with mlnb.start_run("other", experiment=experiment, store=here, capture=False):
        mlnb.log_param("lr", 0.5)
    runner = CliRunner()
    out = runner.invoke(
        cli, ["--store", str(here.root), "mlflow", "push", server.uri, "params.lr < 0.1"]
    )
    assert out.exit_code == 0, out.output
    assert out.output.startswith("1 run(s) pushed to")
    assert [r.info.run_name for r in _find(client, experiment)] == ["trained"]
    out = runner.invoke(cli, ["--store", str(tmp_path / "there"), "mlflow", "pull", server.uri,
                              "-e", experiment])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.startswith("1 run(s) pulled from")
    out = runner.invoke(cli, ["--store", str(tmp_path / "there"), "mlflow", "pull", server.uri,
                              "-e", "no-such-experiment"])  # fmt: skip
    assert out.exit_code == 1 and "has no experiment 'no-such-experiment'" in out.output


def test_mlnb_export_and_import_take_mlflow_as_the_issue_names_them(
    server: Server, client: MlflowClient, experiment: str, tmp_path: Path
) -> None:
    """Issue 16 item 3 names the commands ``mlnb export --mlflow URI [FILTER]`` and ``mlnb
    import --mlflow URI [--experiment E]``: the same moves as ``mlnb mlflow push/pull``;
    ``-o FILE`` with ``--mlflow`` is a usage error."""
    here = mlnb.Store(tmp_path / "here")
    _log_run(here, experiment, points=2)
    runner = CliRunner()
    out = runner.invoke(
        cli, ["--store", str(here.root), "export", "--mlflow", server.uri, "params.lr < 0.1"]
    )
    assert out.exit_code == 0, out.output
    assert out.output.startswith("1 run(s) pushed to")
    out = runner.invoke(cli, ["--store", str(tmp_path / "there"), "import", "--mlflow",
                              server.uri, "--experiment", experiment])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.startswith("1 run(s) pulled from")
    out = runner.invoke(cli, ["--store", str(here.root), "export", "--mlflow", server.uri,
                              "-o", str(tmp_path / "x.mlnb")])  # fmt: skip
    assert out.exit_code == 2 and "not both" in out.output
