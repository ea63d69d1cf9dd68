"""Issue 15 items 1 and 2, in-process: the service follows its alias (a new version is
loaded, warmed and swapped in; one that fails to load is not, and /version says so), the
prediction log (sampled, read back as rows of inputs) and feedback."""

from __future__ import annotations

import time
from typing import Any

import pytest

import mlnb
from mlnb.records import ModelVersion
from mlnb.store import predictions
from tests.serving.conftest import ROW, register


def _service(store: mlnb.Store, uri: str = "churn@champion", **options: Any) -> Any:
    from mlnb.serving.app import Options
    from mlnb.serving.server import make_service

    return make_service(store, uri, Options(**{"log_rate": 1.0, "poll_s": 3600, **options}))


def _client(service: Any) -> Any:
    from starlette.testclient import TestClient

    from mlnb.serving.app import build_app

    return TestClient(build_app(service))


def test_the_service_swaps_in_the_version_the_alias_moves_to(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    flipped = register(store, flip=True)
    service = _service(store)
    with _client(service) as client:
        before = client.post("/invocations", json=ROW)
        mlnb.set_model_alias("churn", "champion", flipped.version, store=store)
        assert service.holder.check() is True
        after = client.post("/invocations", json=ROW)
        assert client.get("/version").json()["version"] == 2
    assert before.headers["x-mlnb-model-version"] == "1"
    assert after.headers["x-mlnb-model-version"] == "2"
    assert before.json()["predictions"] != after.json()["predictions"]


def test_the_event_loop_follows_an_alias_move_without_a_restart(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    flipped = register(store, flip=True)
    service = _service(store, poll_s=0.05)
    with _client(service) as client:
        mlnb.set_model_alias("churn", "champion", flipped.version, store=store)
        deadline = time.monotonic() + 10
        while client.get("/version").json()["version"] != 2:
            assert time.monotonic() < deadline, "the alias move was not followed"
            time.sleep(0.05)


def _corrupt(store: mlnb.Store, version: ModelVersion) -> None:
    path = store.contents.path(version.artifact_hash)
    path.chmod(0o644)
    path.write_bytes(b"not the registered bytes")


def test_a_version_that_fails_to_load_is_not_swapped_in_and_version_says_why(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Issue 15 item 1: the old version keeps serving; the failure is visible."""
    import pickle

    # a second churn version whose file is damaged after registration
    pkl = store.root.parent / "v2.pkl"
    pkl.write_bytes(pickle.dumps({"not": "a model"}))
    damaged = mlnb.register_model("churn", str(pkl), run=churn.run_id, store=store)
    _corrupt(store, damaged)
    service = _service(store)
    with _client(service) as client:
        mlnb.set_model_alias("churn", "champion", damaged.version, store=store)
        assert service.holder.check() is False
        answer = client.post("/invocations", json=ROW)
        info = client.get("/version").json()
        metrics = client.get("/metrics").text
    assert answer.status_code == 200 and answer.headers["x-mlnb-model-version"] == "1"
    assert info["version"] == 1
    assert info["last_error"]["version"] == damaged.version
    assert "does not match its stored hash" in info["last_error"]["message"]
    assert info["last_error"]["still_serving"] == 1
    assert 'mlnb_serve_state{what="model_load_failures"} 1.0' in metrics


def test_a_version_that_fails_its_warm_up_on_real_inputs_is_not_swapped_in(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """A new version that cannot predict what the old one just answered stays out."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"age": [20, 70, 30, 60], "fee": [1.0, 2.0, 3.0, 4.0],
                          "plan": [0, 1, 0, 1]})  # fmt: skip
    wider = LogisticRegression().fit(frame, [0, 1, 0, 1])  # needs a third column
    sig = {"inputs": [{"name": "age", "dtype": "int64"}, {"name": "fee", "dtype": "float64"}]}
    v2 = mlnb.register_model("churn", wider, run=churn.run_id, signature=sig, store=store)
    service = _service(store)
    with _client(service) as client:
        assert client.post("/invocations", json=ROW).status_code == 200
        mlnb.set_model_alias("churn", "champion", v2.version, store=store)
        assert service.holder.check() is False
        assert client.get("/version").json()["version"] == 1
        assert "ValueError" in client.get("/version").json()["last_error"]["message"]


def test_a_model_that_cannot_load_at_start_is_an_error_not_a_service(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    from mlnb.errors import ModelIntegrityError

    _corrupt(store, churn)
    service = _service(store)
    with pytest.raises(ModelIntegrityError, match="does not match its stored hash"):
        service.holder.start()


def test_the_prediction_log_holds_every_sampled_request_as_rows_of_inputs(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Issue 15 item 2: inputs, outputs, latency and version, read back as rows."""
    service = _service(store, log_rate=1.0)
    with _client(service) as client:
        ids = []
        for age in (20, 30, 40):
            body = {"inputs": {"age": [age, age + 1], "fee": [50.0, 51.0]}}
            answer = client.post("/invocations", json=body)
            ids.append(answer.headers["x-request-id"])
        v2 = client.post("/v2/models/churn/infer", json={"id": "v2-call", "inputs": [
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [70]},
            {"name": "fee", "shape": [1], "datatype": "FP64", "data": [49.5]}]})  # fmt: skip
        assert v2.status_code == 200
    # the service closed: everything queued is in the store
    columns, rows = predictions.served_inputs(store.file, "churn")
    assert columns == ["age", "fee"]
    assert len(rows) == 7
    assert rows[0] == {"age": 70, "fee": 49.5, "_request_id": "v2-call", "_version": 1,
                       "_at": rows[0]["_at"], "_prediction": rows[0]["_prediction"]}  # fmt: skip
    assert {r["_request_id"] for r in rows} == {*ids, "v2-call"}
    import pandas as pd

    frame = pd.DataFrame(rows)
    assert sorted(frame["age"]) == [20, 21, 30, 31, 40, 41, 70]
    logged = predictions.predictions_with_feedback(store.file, "churn")
    assert all(r["latency_ms"] > 0 for r in logged)
    limited = predictions.served_inputs(store.file, "churn", limit=1)[1]
    assert [r["_request_id"] for r in limited] == ["v2-call"]


def test_the_prediction_log_samples_at_its_rate(store: mlnb.Store, churn: ModelVersion) -> None:
    service = _service(store, log_rate=0.0)
    with _client(service) as client:
        for _ in range(5):
            client.post("/invocations", json=ROW)
    assert predictions.count_predictions(store.file) == 0
    service = _service(store, log_rate=0.5)
    with _client(service) as client:
        for _ in range(400):
            client.post("/invocations", json=ROW)
    assert 120 < predictions.count_predictions(store.file) < 280


def test_the_prediction_log_drops_rather_than_grows_when_its_queue_is_full(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Bounded memory: a full queue counts a sampled request as dropped, never blocks."""
    from mlnb.serving.predlog import PredictionLog

    log = PredictionLog(store, rate=1.0, queue_limit=3)
    log._closed = True  # the writer thread stops; nothing drains
    log._thread.join(timeout=5)
    log._closed = False
    for i in range(5):
        log.add(f"r{i}", "churn", 1, None, ["age"], [[i]], [0], 1.0)
    assert (len(log.queue), log.dropped) == (3, 2)
    log.close()
    assert predictions.count_predictions(store.file) == 3


def test_log_feedback_and_the_feedback_route_record_labels_by_request_id(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    service = _service(store, log_rate=1.0)
    with _client(service) as client:
        first = client.post("/invocations", json=ROW).headers["x-request-id"]
        second = client.post("/invocations", json=ROW).headers["x-request-id"]
        ok = client.post("/feedback", json={"request_id": second, "label": 1})
        bad = client.post("/feedback", json={"label": 1})
    assert ok.json() == {"recorded": 1}
    assert bad.status_code == 400 and bad.json()["field"] == "request_id"
    mlnb.log_feedback(first, 0, store=store)
    mlnb.log_feedback(first, 1, store=store)  # a correction supersedes
    labels = {r["request_id"]: r["label"] for r in
              predictions.predictions_with_feedback(store.file, "churn")}  # fmt: skip
    assert labels == {first: 1, second: 1}
    with pytest.raises(mlnb.MlnbError, match="bad request id"):
        mlnb.log_feedback("has spaces", 1, store=store)


def test_an_error_while_swapping_does_not_stop_the_following(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """The alias is followed by a task on the event loop: an exception there (here a
    listener that fails after a swap) is logged, and later moves are still followed."""
    flipped = register(store, flip=True)
    service = _service(store, poll_s=0.05)

    def failing(served: Any) -> None:
        raise RuntimeError("listener failed")

    service.holder.on_change(failing)
    with _client(service) as client:
        for version in (flipped.version, churn.version):
            mlnb.set_model_alias("churn", "champion", version, store=store)
            deadline = time.monotonic() + 10
            while client.get("/version").json()["version"] != version:
                assert time.monotonic() < deadline, f"the move to {version} was not followed"
                time.sleep(0.05)
            assert client.post("/invocations", json=ROW).status_code == 200
