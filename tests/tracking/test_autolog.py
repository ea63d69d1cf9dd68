"""scikit-learn autologging: one run per outermost fit, with params, metrics and the model;
searches as one run; originals restored exactly; logging problems never break a fit."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

import mlnb
from mlnb.errors import InvalidInputError
from mlnb.records import RunRecord
from mlnb.store import Store
from mlnb.tracking.autolog import autolog
from tests.conftest import run_python

IRIS_X, IRIS_Y = load_iris(return_X_y=True)
DIABETES_X, DIABETES_Y = load_diabetes(return_X_y=True)


class MyLogistic(LogisticRegression):
    """A user's subclass: it inherits the wrapped fit."""


def logistic() -> LogisticRegression:
    return LogisticRegression(max_iter=1000)


@pytest.fixture
def autologging(store: Store) -> Iterator[Store]:
    """Autologging on, into a fresh store; off again afterwards whatever the test did."""
    autolog("sklearn")
    yield store
    autolog("sklearn", disable=True)


def autolog_runs() -> list[RunRecord]:
    """Every run autolog wrote, oldest first."""
    frame = mlnb.runs(order_by="start_time")
    records = [mlnb.get_run(run_id) for run_id in frame["run_id"]]
    return [rec for rec in records if rec.tags.get("autolog") == "sklearn"]


def only_autolog_run() -> RunRecord:
    runs = autolog_runs()
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def load_model(rec: RunRecord) -> Any:
    return pickle.loads(Path(rec.artifact_path("model.pkl")).read_bytes())


def test_autolog_fit_inside_a_run_records_a_nested_child(autologging: Store) -> None:
    model = logistic()
    with mlnb.start_run("parent", experiment="iris") as parent:
        assert model.fit(IRIS_X, IRIS_Y) is model
        assert mlnb.active_run() is parent
    child = only_autolog_run()
    assert (child.name, child.parent_run_id, child.experiment, child.status) == (
        "LogisticRegression", parent.run_id, "iris", "finished",
    )  # fmt: skip
    assert child.tags["autolog"] == "sklearn"
    assert child.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert child.params == {k: v for k, v in model.get_params(deep=True).items()}
    assert mlnb.get_run(parent.run_id).params == {}
    assert child.metrics["fit_time_s"] > 0
    assert child.metrics["training_score"] == pytest.approx(model.score(IRIS_X, IRIS_Y))
    assert child.metrics["training_accuracy"] == child.metrics["training_score"]
    assert 0.9 < child.metrics["training_f1"] <= 1
    assert (load_model(child).predict(IRIS_X) == model.predict(IRIS_X)).all()


def test_autolog_fits_in_one_run_become_separate_children(autologging: Store) -> None:
    with mlnb.start_run("parent") as parent:
        logistic().fit(IRIS_X, IRIS_Y)
        LogisticRegression(C=0.1, max_iter=1000).fit(IRIS_X, IRIS_Y)
    children = autolog_runs()
    assert [c.params["C"] for c in children] == [1.0, 0.1]
    assert {c.parent_run_id for c in children} == {parent.run_id}


def test_autolog_fit_without_an_active_run_gets_its_own_finished_run(autologging: Store) -> None:
    logistic().fit(IRIS_X, IRIS_Y)
    rec = only_autolog_run()
    assert (rec.name, rec.parent_run_id, rec.status) == ("LogisticRegression", None, "finished")
    assert mlnb.active_run() is None


def test_autolog_fit_in_an_mlnb_run_job_nests_under_the_job_run(
    autologging: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mlnb.start_run("job") as job:  # what `mlnb run` creates before starting the script
        pass
    monkeypatch.setenv("MLNB_RUN_ID", job.run_id)
    logistic().fit(IRIS_X, IRIS_Y)
    assert only_autolog_run().parent_run_id == job.run_id
    active = mlnb.active_run()
    assert active is not None and active.run_id == job.run_id
    assert mlnb.get_run(job.run_id).name == "job"


def test_autolog_regressor_records_regression_metrics(autologging: Store) -> None:
    model = LinearRegression().fit(DIABETES_X, DIABETES_Y)
    metrics = only_autolog_run().metrics
    predicted = model.predict(DIABETES_X)
    assert metrics["training_r2"] == pytest.approx(model.score(DIABETES_X, DIABETES_Y))
    assert metrics["training_score"] == pytest.approx(metrics["training_r2"])
    assert metrics["training_mae"] == pytest.approx(np.abs(DIABETES_Y - predicted).mean())
    assert metrics["training_rmse"] == pytest.approx(
        np.sqrt(((DIABETES_Y - predicted) ** 2).mean())
    )
    assert "training_accuracy" not in metrics


def test_autolog_fit_without_y_records_no_training_metrics(autologging: Store) -> None:
    StandardScaler().fit(IRIS_X)
    rec = only_autolog_run()
    assert set(rec.metrics) == {"fit_time_s"}
    assert rec.params == {"copy": True, "with_mean": True, "with_std": True}


def test_autolog_pipeline_is_one_run_with_its_steps_as_params(autologging: Store) -> None:
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(C=0.5))])
    with mlnb.start_run("parent"):
        pipe.fit(IRIS_X, IRIS_Y)
    rec = only_autolog_run()
    assert rec.name == "Pipeline"
    assert rec.params["scaler"] == "StandardScaler()"
    assert rec.params["clf"] == "LogisticRegression(C=0.5)"
    assert rec.params["clf__C"] == 0.5
    assert rec.params["scaler__with_mean"] is True
    assert rec.params["steps"].startswith("[('scaler', StandardScaler())")
    assert "training_accuracy" in rec.metrics
    assert (load_model(rec).predict(IRIS_X) == pipe.predict(IRIS_X)).all()


def test_autolog_long_reprs_are_cut_to_250_characters(autologging: Store) -> None:
    names = [f"feature_number_{i}" for i in range(40)]
    FunctionTransformer(feature_names_out=None, kw_args={"names": names}).fit(IRIS_X)
    assert len(only_autolog_run().params["kw_args"]) == 250


def test_autolog_grid_search_is_one_run_with_best_params_and_cv_results(
    autologging: Store,
) -> None:
    grid = {"C": [0.1, 1.0], "fit_intercept": [True, False]}
    search = GridSearchCV(logistic(), grid, cv=3)
    with mlnb.start_run("tuning"):
        search.fit(IRIS_X, IRIS_Y)
    rec = only_autolog_run()
    assert rec.name == "GridSearchCV"
    assert rec.params["best.C"] == search.best_params_["C"]
    assert rec.params["best.fit_intercept"] == search.best_params_["fit_intercept"]
    assert rec.params["cv"] == 3
    assert rec.params["estimator"] == "LogisticRegression(max_iter=1000)"
    assert "estimator__C" not in rec.params  # the grid overrides it: not a param of the run
    assert rec.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    table = pd.read_csv(rec.artifact_path("cv_results.csv"))
    assert len(table) == 4
    assert {"mean_test_score", "param_C", "rank_test_score"} <= set(table.columns)
    assert load_model(rec).best_params_ == search.best_params_


def test_autolog_randomized_search_is_one_run(autologging: Store) -> None:
    search = RandomizedSearchCV(
        DecisionTreeClassifier(random_state=0),
        {"max_depth": np.arange(1, 6), "min_samples_leaf": [1, 5]},
        n_iter=3,
        cv=3,
        random_state=0,
    )
    search.fit(IRIS_X, IRIS_Y)
    rec = only_autolog_run()
    assert rec.params["best.max_depth"] == int(search.best_params_["max_depth"])
    assert type(rec.params["best.max_depth"]) is int  # a numpy integer, logged as a number
    assert len(pd.read_csv(rec.artifact_path("cv_results.csv"))) == 3


def test_autolog_search_on_joblib_threads_is_still_one_run(autologging: Store) -> None:
    search = GridSearchCV(DecisionTreeClassifier(), {"max_depth": [1, 2, 3]}, cv=3, n_jobs=2)
    with parallel_config(backend="threading"):  # the clones are fitted in worker threads
        search.fit(IRIS_X, IRIS_Y)
    assert only_autolog_run().name == "GridSearchCV"


def test_autolog_fit_in_another_thread_is_recorded(autologging: Store) -> None:
    worker = threading.Thread(target=lambda: logistic().fit(IRIS_X, IRIS_Y))
    worker.start()
    worker.join()
    assert only_autolog_run().status == "finished"


def test_autolog_failing_fit_marks_the_run_failed_and_raises(autologging: Store) -> None:
    with mlnb.start_run("parent") as parent:
        with pytest.raises(ValueError, match="class"):
            logistic().fit(IRIS_X, np.zeros(len(IRIS_X)))
        assert mlnb.active_run() is parent
    rec = only_autolog_run()
    assert rec.status == "failed"
    assert rec.params["C"] == 1.0
    assert mlnb.get_run(parent.run_id).status == "finished"


def test_autolog_failing_fit_without_a_run_marks_its_run_failed(autologging: Store) -> None:
    with pytest.raises(ValueError):
        logistic().fit(IRIS_X, np.zeros(len(IRIS_X)))
    assert only_autolog_run().status == "failed"
    assert mlnb.active_run() is None


def test_autolog_scoring_error_is_a_tag_not_an_exception(autologging: Store) -> None:
    search = GridSearchCV(logistic(), {"C": [0.1, 1.0]}, cv=3, refit=False)
    search.fit(IRIS_X, IRIS_Y)  # no refit: the search cannot score
    rec = only_autolog_run()
    assert rec.status == "finished"
    assert rec.tags["training_score_error"] == "AttributeError"
    assert "training_score" not in rec.metrics
    assert rec.metrics["best_cv_score"] == pytest.approx(search.best_score_)


def test_autolog_logging_problem_warns_and_keeps_the_fit(autologging: Store) -> None:
    pipe = Pipeline([("f", FunctionTransformer(lambda x: x)), ("clf", logistic())])
    with pytest.warns(UserWarning, match=r"Pipeline\.fit.*model\.pkl") as caught:
        assert pipe.fit(IRIS_X, IRIS_Y) is pipe  # a lambda cannot be pickled
    assert len(caught) == 1
    assert caught[0].filename == __file__
    rec = only_autolog_run()
    assert rec.status == "finished"
    assert "training_accuracy" in rec.metrics
    assert [a.path for a in rec.artifacts] == []
    assert pipe.predict(IRIS_X[:3]).shape == (3,)


def test_autolog_log_models_false_stores_no_model(store: Store) -> None:
    autolog("sklearn", log_models=False)
    try:
        logistic().fit(IRIS_X, IRIS_Y)
    finally:
        autolog("sklearn", disable=True)
    rec = only_autolog_run()
    assert "training_score" in rec.metrics
    assert rec.artifacts == []


def test_autolog_disable_restores_every_original_fit(store: Store) -> None:
    from sklearn.utils import all_estimators

    classes = [cls for _, cls in all_estimators()] + [Pipeline, GridSearchCV, RandomizedSearchCV]
    before = {cls: cls.fit for cls in classes}
    autolog("sklearn")
    assert LogisticRegression.fit is not before[LogisticRegression]
    assert LogisticRegression.fit.__wrapped__ is before[LogisticRegression]
    assert GridSearchCV.fit.__name__ == "fit"
    autolog("sklearn", disable=True)
    assert {cls: cls.fit for cls in classes} == before
    assert all(cls.fit is before[cls] for cls in classes)
    logistic().fit(IRIS_X, IRIS_Y)
    assert autolog_runs() == []


def test_autolog_enabling_twice_wraps_once_and_logs_once(autologging: Store) -> None:
    wrapped = LogisticRegression.fit
    autolog("sklearn")
    assert LogisticRegression.fit is wrapped
    logistic().fit(IRIS_X, IRIS_Y)
    assert len(autolog_runs()) == 1


def test_autolog_enabling_again_changes_options(autologging: Store) -> None:
    autolog("sklearn", log_models=False)
    logistic().fit(IRIS_X, IRIS_Y)
    assert only_autolog_run().artifacts == []


def test_autolog_subclass_of_an_estimator_is_logged_under_its_own_name(
    autologging: Store,
) -> None:
    MyLogistic(max_iter=1000).fit(IRIS_X, IRIS_Y)
    rec = only_autolog_run()
    assert rec.name == "MyLogistic"
    assert rec.tags["estimator_class"] == "tests.tracking.test_autolog.MyLogistic"
    assert isinstance(load_model(rec), MyLogistic)


@pytest.mark.parametrize("framework", ["xgboost", "scikit-learn", ""])
def test_autolog_unknown_framework_names_the_supported_ones(framework: str) -> None:
    with pytest.raises(InvalidInputError, match="supported: sklearn"):
        autolog(framework)


def test_autolog_is_cheap_to_import_and_loads_sklearn_only_when_on(tmp_path: Path) -> None:
    code = (
        "import sys, mlnb, mlnb.tracking.autolog\n"
        "from mlnb.tracking.autolog import autolog\n"
        "print('sklearn' in sys.modules)\n"
        "autolog('sklearn', disable=True)\n"
        "print('sklearn' in sys.modules)\n"
        "autolog('sklearn')\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = run_python(code, env={"MLNB_STORE": str(tmp_path / "s")}).stdout.split()
    assert out == ["False", "False", "True"]
