"""Issue 15 item 3: ``mlnb monitor`` — drift of served inputs against the champion's
training profile, prediction drift, live metrics from feedback, stored as checks that
``mlnb retrain --when drift`` reads. The statistics are checked against values computed
independently: ``mlnb.drift`` on the same rows as a DataFrame, scikit-learn's metrics."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError, NoServedDataError
from mlnb.jobs.retrain import decide
from mlnb.monitoring.monitor import latest_verdict, monitor_run_id, parse_window
from mlnb.records import ModelVersion
from mlnb.store.predictions import Prediction, insert_predictions


def _train(seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = 2000
    frame = pd.DataFrame({"age": rng.normal(40, 10, n).round(), "fee": rng.normal(50, 5, n),
                          "plan": rng.choice(["a", "b", "c"], n)})  # fmt: skip
    frame["churned"] = (frame["fee"] > 50).astype(int)
    return frame


def _champion(store: mlnb.Store, *, predictions: bool = False) -> ModelVersion:
    """``churn`` v1 trained on ``_train()`` (logged as ``train``; with ``predictions``, the
    training predictions too), ``churn@champion`` on it."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = _train()
    model = LogisticRegression().fit(frame[["age", "fee"]], frame["churned"])
    with mlnb.start_run("train", store=store, capture=False) as run:
        run.log_data(frame, name="train")
        if predictions:
            run.log_data(pd.DataFrame({"prediction": model.predict(frame[["age", "fee"]])}),
                         name="predictions")  # fmt: skip
        run.log_metric("accuracy", 0.9)
        version = mlnb.register_model("churn", model, store=store)
    mlnb.set_model_alias("churn", "champion", version.version, store=store)
    return version


def _serve(store: mlnb.Store, frame: Any, *, version: int = 1, per_request: int = 10,
           at: float | None = None, outputs: list[Any] | None = None) -> list[str]:  # fmt: skip
    """Log ``frame``'s rows as served requests of ``churn`` (``per_request`` rows each),
    through the store's writer function the service uses. Returns the request ids."""
    now = time.time() if at is None else at
    cols = ["age", "fee", "plan"]
    rows = frame[cols].values.tolist()
    outs = outputs if outputs is not None else [0] * len(rows)
    batch, ids = [], []
    for i in range(0, len(rows), per_request):
        rid = uuid.uuid4().hex
        ids.append(rid)
        batch.append(Prediction(rid, "churn", version, "champion", cols, rows[i : i + per_request],
                                outs[i : i + per_request], 1.0, now + i * 1e-6))  # fmt: skip
    insert_predictions(store.file, batch)
    return ids


def _shifted(seed: int = 1, *, age: float = 15.0, n: int = 1000) -> Any:
    frame = _train(seed).head(n).copy()
    frame["age"] = frame["age"] + age
    return frame


def test_monitor_input_drift_equals_mlnb_drift_on_the_same_rows(store: mlnb.Store) -> None:
    """The monitor's per-column statistics are those of ``mlnb.drift`` between the
    training run's profile and the served rows as a DataFrame."""
    version = _champion(store)
    served = _shifted()
    _serve(store, served)
    result = mlnb.monitor("churn", store=store)

    expected = mlnb.drift(f"{version.run_id}:train", served[["age", "fee", "plan"]],
                          record=False, store=store)  # fmt: skip
    got = {c.column: (c.method, c.statistic, c.drifted) for c in result.inputs.columns}
    assert got == {c.column: (c.method, c.statistic, c.drifted) for c in expected.columns}
    assert set(got) == {"age", "fee", "plan"}  # the label is not served, so not compared
    assert got["age"][2] and not got["fee"][2] and not got["plan"][2]
    assert result.drift and not result
    assert result.reason == f"drift: age psi={got['age'][1]:.2f} (served, window 10000)"
    assert result.rows == 1000 and result.served == {1: 1000}
    assert "rows" not in [c.name for c in result.inputs.integrity]  # a window is no dataset


def test_monitor_psi_of_served_rows_matches_an_independent_computation(
    store: mlnb.Store,
) -> None:
    """PSI on the reference's bins, recomputed with numpy from the raw training rows and
    the served rows, agrees with the monitor's (the profile keeps the bins' masses)."""
    import numpy as np

    _champion(store)
    served = _shifted(age=5.0)
    _serve(store, served)
    result = mlnb.monitor("churn", store=store, record=False)
    age = next(c for c in result.inputs.columns if c.column == "age")
    train = _train()["age"].to_numpy()
    cuts = np.unique(np.quantile(train, np.linspace(0, 1, 11))[1:-1])
    ref = np.bincount(np.searchsorted(cuts, train, side="right"), minlength=len(cuts) + 1)
    cur = np.bincount(np.searchsorted(cuts, served["age"].to_numpy(), side="right"),
                      minlength=len(cuts) + 1)  # fmt: skip
    p, q = np.clip(ref / ref.sum(), 1e-4, None), np.clip(cur / cur.sum(), 1e-4, None)
    psi = float(np.sum((q - p) * np.log(q / p)))
    assert age.method == "psi"
    assert age.statistic == pytest.approx(psi, rel=0.15)


def test_monitor_window_takes_the_newest_rows_or_period(store: mlnb.Store) -> None:
    """``--window 500`` reads the newest 500 served rows; ``--window 1h`` only the last
    hour's (old shifted traffic left out)."""
    _champion(store)
    _serve(store, _shifted(age=30.0), at=time.time() - 7200)  # two hours ago, drifted
    _serve(store, _train(2).head(1000))  # now, as in training
    assert mlnb.monitor("churn", window="1h", store=store, record=False).passed
    assert mlnb.monitor("churn", window="500", store=store, record=False).rows == 500
    assert mlnb.monitor("churn", window=2000, store=store, record=False).drift
    assert parse_window("30m") == (1800.0, None)
    with pytest.raises(InvalidInputError, match="--window"):
        parse_window("yesterday")
    time.sleep(1.1)  # nothing served in the last second
    with pytest.raises(NoServedDataError, match="no served inputs"):
        mlnb.monitor("churn", window="1s", store=store)


def test_monitor_live_accuracy_and_prediction_drift(store: mlnb.Store) -> None:
    """Live accuracy from feedback equals scikit-learn's on the same pairs, against the
    training run's ``accuracy``; served predictions are compared with the training run's
    ``predictions`` dataset as ``mlnb.drift`` would."""
    import pandas as pd
    from sklearn.metrics import accuracy_score

    version = _champion(store, predictions=True)
    served = _train(3).head(400)
    preds = [1] * 400  # the service answers 1 always: predictions drift from training
    ids = _serve(store, served, per_request=1, outputs=preds)
    labels = served["churned"].tolist()
    for rid, label in zip(ids[:300], labels[:300], strict=True):
        mlnb.log_feedback(rid, label, store=store)
    result = mlnb.monitor("churn", store=store)

    [live] = result.live
    assert live.name == "accuracy" and live.n == 300 and live.train_value == 0.9
    assert live.value == pytest.approx(accuracy_score(labels[:300], preds[:300]))
    assert not live.passed  # far below 0.9 - 0.05
    assert result.predictions is not None
    expected = mlnb.drift(f"{version.run_id}:predictions", pd.DataFrame({"prediction": preds}),
                          record=False, store=store)  # fmt: skip
    [got] = result.predictions.columns
    assert (got.method, got.statistic, got.drifted) == (
        expected.columns[0].method,
        expected.columns[0].statistic,
        expected.columns[0].drifted,
    )
    names = [c.name for c in store.get_checks(monitor_run_id("churn"))]
    assert {"live:accuracy", "predictions:drift:prediction", "drift:age", "monitor"} <= set(names)


def test_monitor_live_rmse_for_numeric_labels(store: mlnb.Store) -> None:
    """Numbers as labels give RMSE and MAE, equal to scikit-learn's."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    _champion(store)
    served = _train(4).head(50)
    outs = [float(v) for v in served["fee"]]
    ids = _serve(store, served, per_request=1, outputs=outs)
    truth = [v + (1.0 if i % 2 else -2.0) for i, v in enumerate(outs)]
    for rid, y in zip(ids, truth, strict=True):
        mlnb.log_feedback(rid, y, store=store)
    live = {m.name: m for m in mlnb.monitor("churn", store=store, record=False).live}
    assert live["rmse"].value == pytest.approx(mean_squared_error(truth, outs) ** 0.5)
    assert live["mae"].value == pytest.approx(mean_absolute_error(truth, outs))
    assert live["rmse"].passed and live["rmse"].train_value is None  # nothing to compare with


def test_monitor_verdict_is_what_retrain_when_drift_reads(store: mlnb.Store) -> None:
    """``retrain --when drift`` without data decides by the newest monitor verdict of
    the current champion, and names it as its reason; a verdict about another version,
    or no drift, is no reason to train."""
    version = _champion(store)
    with pytest.raises(InvalidInputError, match="never monitored"):
        decide(store, "churn", {}, when="drift", alias="champion", drift_threshold=None,
               from_monitor=True)  # fmt: skip
    _serve(store, _train(5).head(1000))
    calm = mlnb.monitor("churn", store=store)
    assert calm.passed and latest_verdict(store, "churn").drift is False  # type: ignore[union-attr]
    _serve(store, _shifted(age=20.0, n=2000))
    result = mlnb.monitor("churn", window=2000, store=store)
    verdict = latest_verdict(store, "churn")
    assert verdict is not None and verdict.drift and verdict.version == version.version
    assert verdict.reason == result.reason and verdict.reason.startswith("drift: age psi=")
    train, keep, run_id = decide(store, "churn", {}, when="drift", alias="champion",
                                 drift_threshold=None, from_monitor=True)  # fmt: skip
    assert train == [result.reason] and keep == [] and run_id == version.run_id
    run = store.get_run(monitor_run_id("churn"))
    assert run.experiment == "monitoring" and run.tags["mlnb.monitor"] == "churn"


def test_monitor_cli_prints_table_json_and_markdown(store: mlnb.Store) -> None:
    """``mlnb monitor`` prints the verdict as a table, JSON or Markdown; exit 1 on drift,
    a one-line error when nothing was served."""
    _champion(store)
    runner = CliRunner()
    empty = runner.invoke(cli, ["--store", str(store.root), "monitor", "churn"])
    assert empty.exit_code == 1 and "no served inputs of 'churn'" in empty.output
    _serve(store, _shifted())
    table = runner.invoke(cli, ["--store", str(store.root), "monitor", "churn"])
    assert table.exit_code == 1, table.output
    assert "drift: age psi=" in table.output and "column  method" in table.output
    # a window drifts when any column does; the summary said "the dataset drifts at 0%"
    assert "the dataset drifts when any column does" in table.output
    assert "drifts at 0%" not in table.output
    as_json = runner.invoke(cli, ["--store", str(store.root), "monitor", "churn", "--format",
                                  "json", "--no-record"])  # fmt: skip
    data = json.loads(as_json.output)
    assert data["drift"] and data["served"] == {"1": 1000} and data["batch"] == ""
    md = runner.invoke(cli, ["--store", str(store.root), "monitor", "churn", "--format", "md"])
    assert md.output.startswith("## Monitor of churn@champion") and "| age | psi |" in md.output


def test_the_store_info_counts_served_predictions_and_feedback(store: mlnb.Store) -> None:
    """``mlnb store`` counted every table but the prediction log (noticed at stop 18)."""
    ids = _serve(store, _shifted())
    mlnb.log_feedback(ids[0], 1, store=store)
    counts = store.info()["counts"]
    assert counts["predictions"] == len(ids) and counts["prediction_feedback"] == 1
    shown = CliRunner().invoke(cli, ["--store", str(store.root), "store"])
    assert shown.exit_code == 0 and "predictions" in shown.output, shown.output


def test_served_rows_aligns_columns_and_stops_at_max_rows(store: mlnb.Store) -> None:
    """The log read for monitoring: newest rows first, columns aligned by name across
    requests that sent them in another order (or lacked one), cut at ``max_rows``."""
    from mlnb.store.predictions import served_rows

    insert_predictions(store.file, [
        Prediction("old", "m", 1, None, ["a", "b"], [[1, 2], [3, 4]], [0, 1], 1.0, 1.0),
        Prediction("new", "m", 2, None, ["b", "a", "c"], [[20, 10, 30]], [5], 1.0, 2.0),
    ])  # fmt: skip
    got = served_rows(store.file, "m")
    assert got.columns == ["b", "a", "c"]
    assert got.rows == [[20, 10, 30], [2, 1, None], [4, 3, None]]
    assert got.versions == [2, 1, 1] and got.predictions == [5, 0, 1]
    assert served_rows(store.file, "m", max_rows=2).rows == [[20, 10, 30], [2, 1, None]]
    assert served_rows(store.file, "m", since=1.5).versions == [2]


def test_monitor_reads_whole_floats_of_an_integer_column_as_integers(store: mlnb.Store) -> None:
    """JSON clients send ``30.0`` for an int64 column (a frame's ``.values`` does): that is
    no dtype change; ``30.5`` would be."""
    import pandas as pd

    frame = pd.DataFrame({"tenure": list(range(1, 73)) * 10})
    (store.root / "m.bin").write_bytes(b"w")
    with mlnb.start_run("t", store=store, capture=False) as run:
        run.log_data(frame, name="train")
        mlnb.register_model("ints", store.root / "m.bin", store=store)
    mlnb.set_model_alias("ints", "champion", 1, store=store)
    rows = [[float(v)] for v in frame["tenure"]]
    insert_predictions(store.file, [Prediction("a", "ints", 1, None, ["tenure"], rows,
                                               [0] * len(rows), 1.0, time.time())])  # fmt: skip
    result = mlnb.monitor("ints", store=store, record=False)
    assert [(c.name, c.passed) for c in result.inputs.integrity if c.name == "dtypes"] == [
        ("dtypes", True)]  # fmt: skip
    insert_predictions(store.file, [Prediction("b", "ints", 1, None, ["tenure"], [[30.5]], [0],
                                               1.0, time.time() + 1)])  # fmt: skip
    mixed = mlnb.monitor("ints", store=store, record=False)
    assert [c.passed for c in mixed.inputs.integrity if c.name == "dtypes"] == [False]


def test_retrain_from_monitor_without_drift_runs_nothing(store: mlnb.Store) -> None:
    """``retrain --when drift`` without data and a calm newest verdict: "no change", no
    run, the verdict's reason recorded on the champion's run; ``--from-monitor`` goes
    with ``--when drift`` only."""
    from tests.jobs.test_retrain import NOTEBOOK

    version = _champion(store)
    _serve(store, _train(5).head(1000))
    calm = mlnb.monitor("churn", store=store)
    runs_before = len(store.search_runs()["run_id"])
    result = mlnb.retrain(NOTEBOOK, model="churn", when="drift", store=store)
    assert not result.trained and result.reasons == (calm.reason,)
    assert len(store.search_runs()["run_id"]) == runs_before
    messages = [c.message for c in store.get_checks(version.run_id or "", kind="check")]
    assert messages == [f"no change: {calm.reason}"]
    with pytest.raises(InvalidInputError, match="--from-monitor goes with --when drift"):
        mlnb.retrain(NOTEBOOK, model="churn", when="always", from_monitor=True, store=store)
