"""Issue 15 item 1: the wire formats of ``mlnb serve`` — each MLflow payload shape, CSV,
the Open Inference Protocol V2 — and their error shapes (a 400/422 JSON error naming the
field, never a 500 with a traceback); /health, /version, /metrics; bounded bodies.
Run in-process through Starlette's TestClient on a real store."""

from __future__ import annotations

import time
from typing import Any

import pytest

import mlnb
from mlnb.records import ModelVersion
from tests.serving.conftest import ROW, fit

AGES = [25, 60, 33]
FEES = [48.0, 52.5, 50.0]
PAIRS = list(zip(AGES, FEES, strict=True))


def _expected() -> list[int]:
    import pandas as pd

    model, _ = fit()
    return model.predict(pd.DataFrame({"age": AGES, "fee": FEES})).tolist()


MLFLOW_PAYLOADS = {
    "dataframe_split": {"dataframe_split": {"columns": ["age", "fee"],
                                            "data": [list(r) for r in PAIRS]}},
    "dataframe_split_reordered": {"dataframe_split": {"columns": ["fee", "age"],
                                                      "data": [[f, a] for a, f in PAIRS],
                                                      "index": [0, 1, 2]}},
    "dataframe_records": {"dataframe_records": [{"age": a, "fee": f} for a, f in PAIRS]},
    "instances_rows": {"instances": [[a, f] for a, f in PAIRS]},
    "instances_records": {"instances": [{"age": a, "fee": f} for a, f in PAIRS]},
    "inputs_columns": {"inputs": {"age": AGES, "fee": FEES}},
    "inputs_rows_with_params": {"inputs": [[a, f] for a, f in PAIRS],
                                "params": {"threshold": 0.5}},
    "extra_column_dropped": {"dataframe_records": [{"age": a, "fee": f, "id": i}
                                                   for i, (a, f) in enumerate(PAIRS)]},
}  # fmt: skip


@pytest.mark.parametrize("shape", sorted(MLFLOW_PAYLOADS))
def test_invocations_answers_each_mlflow_payload_shape_as_mlflow_does(
    client: Any, shape: str
) -> None:
    response = client.post("/invocations", json=MLFLOW_PAYLOADS[shape])
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": _expected()}
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-mlnb-model-version"] == "1"


def test_invocations_reads_csv_with_text_csv(client: Any) -> None:
    body = "age,fee\n" + "".join(f"{a},{f}\n" for a, f in zip(AGES, FEES, strict=True))
    response = client.post("/invocations", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": _expected()}


def test_invocations_keeps_the_request_id_the_client_sends(client: Any) -> None:
    response = client.post("/invocations", json=ROW, headers={"x-request-id": "order-17"})
    assert response.headers["x-request-id"] == "order-17"


BAD_BODIES = [
    # (body, content type, status, field, words in the message)
    (b"{not json", "application/json", 400, None, "not valid JSON"),
    (b"", "application/json", 400, None, "empty"),
    (b"[" * 200_000 + b"]" * 200_000, "application/json", 400, None, "nests JSON too deeply"),
    (b"[1, 2]", "application/json", 400, None, "JSON object"),
    (b'{"rows": []}', "application/json", 400, None, "exactly one of"),
    (b'{"inputs": [[1, 2.0]], "instances": [[1, 2.0]]}', "application/json", 400, None,
     "exactly one of"),
    (b'{"dataframe_split": {"columns": ["age", "fee"], "data": [[1, 2.0, 3]]}}',
     "application/json", 400, "dataframe_split.data[0]", "3 values; expected 2"),
    (b'{"dataframe_split": {"columns": ["age"], "data": [[30]]}}', "application/json", 422,
     "fee", "missing input column 'fee'"),
    (b'{"dataframe_records": [{"age": "old", "fee": 50.0}]}', "application/json", 422, "age",
     "column 'age' must hold whole numbers"),
    (b'{"dataframe_records": [{"age": 30.5, "fee": 50.0}]}', "application/json", 422, "age",
     "whole numbers"),
    (b'{"dataframe_records": [{"age": 30, "fee": "cheap"}]}', "application/json", 422, "fee",
     "must hold numbers"),
    (b'{"dataframe_records": []}', "application/json", 400, "data", "no rows"),
    (b'{"inputs": [[30, 50.0]], "params": [1]}', "application/json", 400, "params", "params"),
    (b"age,fee\n30,50.0\n", "application/xml", 415, "Content-Type", "unsupported"),
    (b'age,fee\n30,"unterminated\n', "text/csv", 400, "body", "CSV"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "kind", "status", "field", "words"), BAD_BODIES)
def test_invocations_answers_a_bad_request_with_a_json_error_naming_the_field(
    client: Any, body: bytes, kind: str, status: int, field: str | None, words: str
) -> None:
    response = client.post("/invocations", content=body, headers={"content-type": kind})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert error["field"] == field
    assert words in error["message"]
    assert "Traceback" not in response.text


class Broken:
    """A model whose predict fails on every input (pickled by reference to this module)."""

    def predict(self, frame: Any) -> Any:
        raise ValueError("this model is broken")


def test_invocations_answers_a_model_that_raises_with_a_422_not_a_500(
    store: mlnb.Store, churn: ModelVersion, tmp_path: Any
) -> None:
    import pickle

    from starlette.testclient import TestClient

    from mlnb.serving.app import Options, build_app
    from mlnb.serving.server import make_service

    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps(Broken()))
    mlnb.register_model("broken", str(path), run=churn.run_id, store=store,
                        signature={"inputs": [{"name": "x", "dtype": "float64"}]})  # fmt: skip
    service = make_service(store, "broken/1", Options(log_rate=0, trust=True))
    with TestClient(build_app(service)) as client:
        response = client.post("/invocations", json={"inputs": {"x": [1.0]}})
    assert response.status_code == 422
    assert "ValueError: this model is broken" in response.json()["message"]


def test_v2_health_metadata_and_infer_follow_the_open_inference_protocol(client: Any) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["name"] == "mlnb"
    meta = client.get("/v2/models/churn").json()
    assert meta["name"] == "churn" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "age", "datatype": "INT64", "shape": [-1]},
                              {"name": "fee", "datatype": "FP64", "shape": [-1]}]  # fmt: skip
    assert client.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    by_column = {"id": "req-1", "inputs": [
        {"name": "age", "shape": [3], "datatype": "INT64", "data": AGES},
        {"name": "fee", "shape": [3, 1], "datatype": "FP64", "data": [[f] for f in FEES]},
    ]}  # fmt: skip
    answer = client.post("/v2/models/churn/infer", json=by_column)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model_name": "churn", "model_version": "1", "id": "req-1",
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [3], "data": _expected()}],
    }  # fmt: skip
    matrix = {"inputs": [{"name": "input-0", "shape": [3, 2], "datatype": "FP64",
                          "data": [v for a, f in PAIRS for v in (float(a), f)]}]}  # fmt: skip
    answer = client.post("/v2/models/churn/versions/1/infer", json=matrix)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == _expected()


V2_BAD = [
    ("/v2/models/fraud/infer", {"inputs": []}, 404, "name"),
    ("/v2/models/churn/versions/7/infer", {"inputs": []}, 404, "version"),
    ("/v2/models/churn/infer", {"inputs": []}, 400, "inputs"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64"}]},
     400, "inputs[0].data"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "age", "shape": [2], "datatype": "INT64",
                                            "data": [1]}]}, 400, "inputs[0].data"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "FP99",
                                            "data": [1]}]}, 400, "inputs[0].datatype"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64",
                                            "data": ["x"]}]}, 422, "inputs[0].data"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64",
                                            "data": [30]}]}, 422, "fee"),
    ("/v2/models/churn/infer", {"inputs": [{"name": "m", "shape": [1, 3], "datatype": "FP64",
                                            "data": [1.0, 2.0, 3.0]}]}, 422, "inputs[0].shape"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "field"), V2_BAD)
def test_v2_infer_answers_a_bad_request_with_the_v2_error_shape(
    client: Any, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "field"} and error["field"] == field


def test_a_body_over_the_limit_is_refused_with_413_whether_its_length_is_declared_or_not(
    store: mlnb.Store, churn: ModelVersion
) -> None:
    """Issue 15 item 1: bounded body size, also for a chunked body with no length."""
    from starlette.testclient import TestClient

    from mlnb.serving.app import Options, build_app
    from mlnb.serving.server import make_service

    service = make_service(store, "churn@champion", Options(log_rate=0, max_body_bytes=1000))
    big = b'{"inputs": [' + b",".join([b"[30, 50.0]"] * 200) + b"]}"
    with TestClient(build_app(service)) as client:
        declared = client.post("/invocations", content=big,
                               headers={"content-type": "application/json"})  # fmt: skip
        streamed = client.post("/invocations", content=iter([big[:600], big[600:]]),
                               headers={"content-type": "application/json"})  # fmt: skip
        small = client.post("/invocations", json=ROW)
    assert declared.status_code == 413 and "at most 1,000" in declared.json()["message"]
    assert streamed.status_code == 413 and "over 1,000" in streamed.json()["message"]
    assert small.status_code == 200


def test_health_version_and_metrics_describe_the_served_model(
    client: Any, churn: ModelVersion
) -> None:
    assert client.get("/health").json()["ready"] is True
    assert client.get("/ping").status_code == 200
    info = client.get("/version").json()
    assert (info["model"], info["version"], info["alias"], info["run_id"]) == (
        "churn", 1, "champion", churn.run_id)  # fmt: skip
    assert info["signature"]["inputs"][0] == {"name": "age", "dtype": "int64"}
    assert info["follows"] == "churn@champion" and info["last_error"] is None
    client.post("/invocations", json=ROW)
    client.post("/invocations", json={"inputs": "nope"})
    text = client.get("/metrics").text
    assert 'mlnb_serve_requests_total{route="/invocations",status="200"} 1.0' in text
    assert 'mlnb_serve_requests_total{route="/invocations",status="400"} 1.0' in text
    assert 'mlnb_serve_request_duration_seconds_bucket{le="0.01",route="/invocations"}' in text
    assert 'mlnb_serve_state{what="model_version"} 1.0' in text


def test_an_unknown_route_is_a_json_404(client: Any) -> None:
    response = client.get("/nope")
    assert response.status_code == 404


class Slow:
    """A model that takes 2 s for any batch (pickled by reference to this module)."""

    def predict(self, frame: Any) -> Any:
        import time

        time.sleep(2.0)
        return [0] * len(frame)


def test_a_prediction_over_the_timeout_is_a_504_and_the_service_keeps_answering(
    store: mlnb.Store, churn: ModelVersion, tmp_path: Any
) -> None:
    """Issue 15 item 1: the request timeout (for batches run in a worker thread)."""
    import pickle

    from starlette.testclient import TestClient

    from mlnb.serving.app import INLINE_ROWS, Options, build_app
    from mlnb.serving.server import make_service

    path = tmp_path / "slow.pkl"
    path.write_bytes(pickle.dumps(Slow()))
    mlnb.register_model("slow", str(path), run=churn.run_id, store=store,
                        signature={"inputs": [{"name": "x", "dtype": "float64"}]})  # fmt: skip
    service = make_service(store, "slow/1", Options(log_rate=0, trust=True, timeout_s=0.2))
    with TestClient(build_app(service)) as client:
        started = time.perf_counter()
        response = client.post("/invocations", json={"inputs": {"x": [1.0] * (INLINE_ROWS + 1)}})
        took = time.perf_counter() - started
        assert client.get("/health").status_code == 200
    assert response.status_code == 504
    assert response.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert took < 1.5
