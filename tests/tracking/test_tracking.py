"""The Python API: runs, params, metrics, tags, artifacts, lifecycle, and bad input."""

from __future__ import annotations

import math
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import mlnb
from mlnb.errors import (
    ExperimentNotFoundError,
    InvalidInputError,
    MlnbWarning,
    ParamConflictError,
    RunNotFoundError,
    RunStateError,
    StoreNotFoundError,
)
from mlnb.store import Store


def test_start_run_is_a_context_manager_that_finishes_the_run(store: Store) -> None:
    with mlnb.start_run("ctx", experiment="exp", tags={"team": "vision"}) as run:
        assert mlnb.active_run() is run
    rec = mlnb.get_run(run.run_id)
    assert (rec.name, rec.experiment, rec.status, rec.tags) == (
        "ctx", "exp", "finished", {"team": "vision"},
    )  # fmt: skip
    assert rec.end_time is not None and rec.duration >= 0
    assert mlnb.active_run() is None


def test_exception_in_run_marks_it_failed_and_propagates(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), mlnb.start_run("boom") as run:
        1 / 0  # noqa: B018
    assert mlnb.get_run(run.run_id).status == "failed"


def test_keyboard_interrupt_marks_run_killed(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt), mlnb.start_run("ctrl-c") as run:
        raise KeyboardInterrupt
    assert mlnb.get_run(run.run_id).status == "killed"


def test_starting_a_run_while_one_is_active_finishes_the_old_one(store: Store) -> None:
    first = mlnb.start_run("one")
    second = mlnb.start_run("two")
    assert mlnb.get_run(first.run_id).status == "finished"
    assert mlnb.active_run() is second
    mlnb.end_run()
    assert mlnb.get_run(second.run_id).status == "finished"


def test_nested_runs_record_their_parent(store: Store) -> None:
    with mlnb.start_run("parent") as parent:
        with mlnb.start_run("child", nested=True) as child:
            mlnb.log_metric("x", 1)
        assert mlnb.active_run() is parent
    rec = mlnb.get_run(child.run_id)
    assert rec.parent_run_id == parent.run_id
    assert rec.metrics == {"x": 1.0}
    df = mlnb.runs(filter=f"parent_run_id = '{parent.run_id}'")
    assert list(df["name"]) == ["child"]


def test_end_run_with_status(store: Store) -> None:
    run = mlnb.start_run("s")
    mlnb.end_run(status="killed")
    assert mlnb.get_run(run.run_id).status == "killed"
    with pytest.raises(InvalidInputError, match="must be one of"):
        mlnb.end_run(status="done")


def test_logging_without_a_run_starts_one(store: Store) -> None:
    mlnb.log_param("auto", True)
    run = mlnb.active_run()
    assert run is not None
    mlnb.end_run()
    assert mlnb.get_run(run.run_id).params == {"auto": True}


def test_params_round_trip_with_their_types(store: Store) -> None:
    values = {
        "lr": 0.01, "depth": 3, "name": "adam", "flag": False, "none": None,
        "layers": [64, 32], "cfg": {"b": 1, "a": [1.5, "x"]}, "np": np.float64(0.5),
        "ünïcode ключ": "värde",
    }  # fmt: skip
    with mlnb.start_run("p") as run:
        mlnb.log_params(values)
        mlnb.log_param("lr", 0.01)  # the same value again is a no-op
    params = mlnb.get_run(run.run_id).params
    assert params == {**values, "layers": [64, 32], "np": 0.5}
    raw = dict(sqlite3.connect(store.db_path).execute("SELECT key, value FROM params"))
    assert raw["cfg"] == '{"a":[1.5,"x"],"b":1}'  # canonical JSON
    assert raw["lr"] == "0.01"  # what MLflow users compare against


def test_param_logged_again_with_another_value_is_refused(store: Store) -> None:
    with mlnb.start_run("p") as run:
        mlnb.log_param("lr", 0.01)
        with pytest.raises(ParamConflictError, match=r"'lr'.*0\.01.*0\.02"):
            mlnb.log_param("lr", 0.02)
        with pytest.raises(ParamConflictError):  # a batch with one conflict writes nothing
            mlnb.log_params({"new": 1, "lr": 0.5})
    assert mlnb.get_run(run.run_id).params == {"lr": 0.01}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("k", object(), "object, which is not JSON-serializable"),
        ("k", {1: "a"}, "not JSON-serializable"),
        ("k", {"a": object()}, "not JSON-serializable"),
        ("", 1, "must not be empty"),
        ("a\nb", 1, "control character"),
        ("x" * 300, 1, "limit is 250"),
        (3, 1, "must be a string"),
    ],
)
def test_bad_params_are_refused_and_nothing_is_written(
    store: Store, key: object, value: object, message: str
) -> None:
    with mlnb.start_run("bad") as run:
        with pytest.raises(InvalidInputError, match=message):
            mlnb.log_params({"good": 1, key: value})  # type: ignore[dict-item]
    assert mlnb.get_run(run.run_id).params == {}


def test_metric_steps_default_to_the_next_step_per_key(store: Store) -> None:
    with mlnb.start_run("steps") as run:
        for v in (0.5, 0.4, 0.3):
            mlnb.log_metric("loss", v)
        mlnb.log_metric("acc", 0.1, step=10)
        mlnb.log_metric("acc", 0.2)
        mlnb.log_metrics({"a": 1, "b": np.float32(2.5)}, step=7)
    rec = mlnb.get_run(run.run_id)
    assert list(rec.history("loss")["step"]) == [0, 1, 2]
    assert list(rec.history("acc")["step"]) == [10, 11]
    assert rec.metric_steps == {"a": 7, "acc": 11, "b": 7, "loss": 2}
    assert rec.metrics["b"] == 2.5


def test_nan_and_infinities_round_trip(store: Store) -> None:
    with mlnb.start_run("nan") as run:
        mlnb.log_metric("x", float("nan"))
        mlnb.log_metric("x", float("inf"))
        mlnb.log_metric("x", float("-inf"))
        mlnb.log_metric("y", np.nan)
    rec = mlnb.get_run(run.run_id)
    values = list(rec.history("x")["value"])
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]
    assert math.isnan(rec.metrics["y"])
    df = mlnb.runs()
    assert math.isnan(df.loc[0, "metrics.y"])


def test_resumed_run_continues_its_steps(store: Store) -> None:
    with mlnb.start_run("r") as run:
        mlnb.log_metric("m", 1)
        mlnb.log_metric("m", 2)
    with mlnb.start_run(run_id=run.run_id[:10]) as again:
        assert again.run_id == run.run_id
        mlnb.log_metric("m", 3)
    assert list(mlnb.get_run(run.run_id).history("m")["step"]) == [0, 1, 2]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.5", "must be a number, got str"),
        (None, "must be a number, got NoneType"),
        ([1, 2], "must be a number, got list"),
        (np.array([1.0, 2.0]), r"single number.*shape \(2,\)"),
        (1 + 2j, "complex"),
    ],
)
def test_bad_metric_values_are_refused(store: Store, value: object, message: str) -> None:
    with mlnb.start_run("bad"), pytest.raises(InvalidInputError, match=message):
        mlnb.log_metric("loss", value)


def test_zero_dim_arrays_and_numpy_scalars_are_accepted(store: Store) -> None:
    with mlnb.start_run("np") as run:
        mlnb.log_metric("a", np.array(1.5))
        mlnb.log_metric("b", np.int64(3))
        mlnb.log_metric("c", np.float32(0.25))
        mlnb.log_metric("d", True)
    assert mlnb.get_run(run.run_id).metrics == {"a": 1.5, "b": 3.0, "c": 0.25, "d": 1.0}


@pytest.mark.parametrize(
    ("step", "message"),
    [(1.5, "must be an integer"), (-1, "between 0"), ("3", "must be an integer"),
     (2**64, "between 0"), (True, "must be an integer")],
)  # fmt: skip
def test_bad_steps_are_refused(store: Store, step: object, message: str) -> None:
    with mlnb.start_run("bad"), pytest.raises(InvalidInputError, match=message):
        mlnb.log_metric("loss", 1.0, step=step)  # type: ignore[arg-type]


def test_a_metric_batch_with_one_bad_value_queues_nothing(store: Store) -> None:
    with mlnb.start_run("batch") as run:
        with pytest.raises(InvalidInputError, match="'bad'"):
            mlnb.log_metrics({"good": 1.0, "bad": "x"})
    assert mlnb.get_run(run.run_id).metrics == {}


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "must not be empty"), ("a\tb", "control character"), ("k" * 251, "limit is 250")],
)
def test_bad_metric_keys_are_refused(store: Store, key: str, message: str) -> None:
    with mlnb.start_run("bad"), pytest.raises(InvalidInputError, match=message):
        mlnb.log_metric(key, 1.0)


def test_unicode_metric_keys_round_trip(store: Store) -> None:
    with mlnb.start_run("u") as run:
        mlnb.log_metric("точность/вал ✓", 0.9)
    assert mlnb.get_run(run.run_id).metrics == {"точность/вал ✓": 0.9}


def test_logging_to_a_finished_run_is_refused(store: Store) -> None:
    with mlnb.start_run("done") as run:
        pass
    with pytest.raises(RunStateError, match="is finished"):
        run.log_metric("x", 1)
    with pytest.raises(RunStateError, match="is finished"):
        run.log_param("x", 1)
    with pytest.raises(RunStateError):
        store.log_params(run.run_id, {"x": 1})


def test_logging_to_an_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(RunNotFoundError, match="no run with id"):
        store.log_params("f" * 32, {"x": 1})
    with pytest.raises(RunNotFoundError):
        mlnb.start_run(run_id="doesnotexist")


def test_tags_can_change(store: Store) -> None:
    with mlnb.start_run("t") as run:
        mlnb.set_tag("stage", "dev")
        mlnb.set_tags({"stage": "prod", "n": 3})
    assert mlnb.get_run(run.run_id).tags == {"stage": "prod", "n": "3"}


def test_log_artifact_refuses_a_missing_path(store: Store, tmp_path: Path) -> None:
    with mlnb.start_run("a") as run:
        with pytest.raises(InvalidInputError, match="no such file or folder .*missing.txt"):
            mlnb.log_artifact(tmp_path / "missing.txt")
    assert mlnb.get_run(run.run_id).artifacts == []


def test_log_figure_stores_a_png(store: Store) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with mlnb.start_run("fig") as run:
        mlnb.log_figure(fig, "curve.png")
    plt.close(fig)
    (art,) = mlnb.get_run(run.run_id).artifacts
    assert (art.path, art.kind) == ("curve.png", "figure")
    assert Path(mlnb.get_run(run.run_id).artifact_path("curve.png")).read_bytes()[:4] == (
        b"\x89PNG"
    )


def test_metrics_reach_disk_within_a_fraction_of_a_second(store: Store) -> None:
    with mlnb.start_run("live") as run:
        mlnb.log_metric("x", 1.0)
        other = sqlite3.connect(store.db_path)
        deadline = time.monotonic() + 2
        count = 0
        while time.monotonic() < deadline and count == 0:
            count = other.execute("SELECT count(*) FROM metrics").fetchone()[0]
            time.sleep(0.02)
        assert count == 1
        assert run.status == "running"


def test_runs_returns_a_dataframe_with_the_mlflow_shape(store: Store) -> None:
    for lr, acc in ((0.1, 0.8), (0.01, 0.9), (0.001, 0.85)):
        with mlnb.start_run(f"lr{lr}", experiment="grid"):
            mlnb.log_param("lr", lr)
            mlnb.log_metric("acc", acc - 0.1)
            mlnb.log_metric("acc", acc)
            mlnb.set_tag("kind", "grid")
    df = mlnb.runs(experiment="grid", order_by="metrics.acc desc")
    for col in ("run_id", "name", "status", "start_time", "duration", "params.lr",
                "metrics.acc", "tags.kind"):  # fmt: skip
        assert col in df.columns
    assert list(df["name"]) == ["lr0.01", "lr0.001", "lr0.1"]
    assert list(df["metrics.acc"]) == [0.9, 0.85, 0.8]
    assert str(df["start_time"].dtype).startswith("datetime64")
    best = mlnb.runs(filter="params.lr < 0.05 and metrics.acc > 0.86", experiment="grid")
    assert list(best["name"]) == ["lr0.01"]
    assert len(mlnb.runs(max_results=2)) == 2


def test_delete_and_restore_through_the_api(store: Store) -> None:
    with mlnb.start_run("d") as run:
        pass
    mlnb.delete_run(run.run_id[:8])
    assert mlnb.runs().empty
    mlnb.restore_run(run.run_id)
    assert len(mlnb.runs()) == 1


def test_flush_waits_for_the_batch_the_writer_thread_is_writing(store: Store) -> None:
    """Regression: flush() returned at once when the queue was empty although the background
    thread had popped a batch it had not written yet; a process exiting then lost it."""
    import threading

    blocker = sqlite3.connect(store.db_path, isolation_level=None)
    with mlnb.start_run("f") as run:
        blocker.execute("BEGIN IMMEDIATE")  # the writer's transaction must wait for this
        run.log_metric("x", 1.0)
        deadline = time.monotonic() + 5
        while run._writer.queue and time.monotonic() < deadline:
            time.sleep(0.01)  # until the background thread has taken the point
        flushed = threading.Event()
        thread = threading.Thread(target=lambda: (mlnb.flush(), flushed.set()))
        thread.start()
        time.sleep(0.3)
        assert not flushed.is_set()
        blocker.execute("COMMIT")
        thread.join(10)
        assert flushed.is_set()
        count = sqlite3.connect(store.db_path).execute("SELECT count(*) FROM metrics")
        assert count.fetchone()[0] == 1
    blocker.close()


# -- typos get an answer; reads create nothing (issue 11 items 6 and 7) ---------------------


@pytest.fixture
def play(store: Store) -> Store:
    """Two experiments; metrics accuracy and loss, params lr and model, the tag team."""
    for i, experiment in enumerate(("play-jobs", "play-jobs", "prod")):
        with mlnb.start_run(f"r{i}", experiment=experiment):
            mlnb.log_params({"lr": 0.1 * (i + 1), "model": "svc"})
            mlnb.log_metrics({"accuracy": 0.8 + 0.05 * i, "loss": 0.5})
            mlnb.set_tag("team", "vision")
    return store


DID_YOU_MEAN = "; did you mean "


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filter": "metrics.acuracy > 0.9"},
         "no run has metric 'acuracy'" + DID_YOU_MEAN + "'accuracy'?"),
        ({"order_by": "metrics.acurracy desc"},
         "no run has metric 'acurracy'" + DID_YOU_MEAN + "'accuracy'?"),
        ({"filter": "params.accuracy > 0.9"},
         "no run has param 'accuracy'" + DID_YOU_MEAN + "'metrics.accuracy'?"),
        ({"filter": "tags.tema = 'vision'"}, "no run has tag 'tema'" + DID_YOU_MEAN + "'team'?"),
        ({"filter": "params.zzz = 1"}, "no run has param 'zzz' (params: lr, model)"),
        ({"filter": "metrics.loss < 1 and tags.x = '1'", "experiment": "prod"},
         "no run has tag 'x' (tags: team)"),
    ],
)  # fmt: skip
def test_runs_warns_about_a_key_no_run_has_with_the_closest_keys(
    play: Store, kwargs: dict[str, str], message: str
) -> None:
    """Issue 11 item 6: `runs(filter="metrics.acuracy > 0.9")` answered an empty frame, as
    if no run were good enough; a key that no run in scope has is a typo until shown not."""
    with pytest.warns(MlnbWarning) as caught:
        frame = mlnb.runs(**kwargs)
    assert [str(w.message) for w in caught] == [message]
    assert caught[0].filename == __file__  # points at the caller's line
    assert len(frame) == (3 if "order_by" in kwargs else 0)


def test_runs_says_nothing_about_keys_that_exist_or_an_empty_scope(play: Store) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(mlnb.runs("metrics.accuracy > 0.86 and params.model = 'svc'")) == 1
        assert len(mlnb.runs("tags.team is not null", order_by="params.lr desc")) == 3
        mlnb.delete_run("r2")
        assert mlnb.runs("metrics.nope > 1", experiment="prod").empty  # no run in scope


def test_runs_unknown_experiment_is_an_error_listing_the_experiments(play: Store) -> None:
    """Issue 11 item 6: `runs(experiment="play-jbos")` answered an empty frame."""
    with pytest.raises(
        ExperimentNotFoundError,
        match=r"no experiment named 'play-jbos' in .*; did you mean 'play-jobs'\? "
        r"The experiments are: play-jobs, prod",
    ):
        mlnb.runs(experiment="play-jbos")
    with pytest.raises(ExperimentNotFoundError, match="'nope'"):
        mlnb.runs(experiment=["prod", "nope"])
    assert len(mlnb.runs(experiment=["prod", "play-jobs"])) == 3


def test_set_tags_none_is_stored_as_log_params_stores_it(store: Store) -> None:
    """Issue 11 item 6: MLflow's `set_tag("k", None)` stores "None", as `log_param` does;
    mlnb refused it (InvalidInputError) while `log_params({"k": None})` was accepted."""
    with mlnb.start_run("nones") as run:
        mlnb.log_params({"k": None})
        mlnb.set_tags({"k": None})
        mlnb.set_tag("j", None)
    rec = mlnb.get_run(run.run_id)
    assert rec.params == {"k": None}
    assert rec.tags == {"k": "None", "j": "None"}
    assert mlnb.runs("params.k = 'None' and tags.k = 'None'")["run_id"].tolist() == [run.run_id]


def test_reads_never_create_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 7: reading in a folder without a store created `.mlnb/` there and
    answered "no runs"; it says where it looked and that the first run creates one."""
    folder = tmp_path / "empty" / "sub"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    looked = (
        rf"no mlnb store found: \$MLNB_STORE is not set, and neither {folder} nor a folder "
        rf"above it has .mlnb/mlnb.db; the first run \(mlnb run, mlnb.start_run, %track "
        rf"start\) creates one in {folder}/.mlnb"
    )
    for read in (
        mlnb.runs,
        lambda: mlnb.get_run("x"),
        lambda: mlnb.diff("x", "y"),
        lambda: mlnb.compare(widget=False),
        lambda: mlnb.report("x"),
        lambda: mlnb.gate("x", ["acc"]),
    ):
        with pytest.raises(StoreNotFoundError, match=looked):
            read()
    monkeypatch.setenv("MLNB_STORE", str(tmp_path / "elsewhere"))
    with pytest.raises(StoreNotFoundError, match=r"no mlnb store at .*elsewhere/mlnb.db \(\$MLNB"):
        mlnb.runs()
    assert not [p for p in tmp_path.rglob("*") if p.name in (".mlnb", "elsewhere")]
    with mlnb.start_run("first"):  # the first run creates it
        pass
    assert len(mlnb.runs()) == 1


def test_log_param_of_a_new_key_is_one_statement_and_keeps_its_refusals(store: Store) -> None:
    """Issue 12 item 8: log_param took five statements (BEGIN IMMEDIATE, a SELECT of the
    run, a SELECT of its params, the INSERT, COMMIT), ~27 µs a call; a new key is now one
    INSERT that is its own transaction, and conflicts and ended runs are still refused."""
    run = mlnb.start_run("fast")
    conn = store.file.conn()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        mlnb.log_param("lr", 0.01)
    finally:
        conn.set_trace_callback(None)
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT")
    assert sqlite3.connect(store.db_path).execute("SELECT value FROM params").fetchall() == [
        ("0.01",)
    ]  # committed: another connection sees it when the call returns
    mlnb.log_param("lr", 0.01)  # the same value again: a no-op
    with pytest.raises(ParamConflictError, match=r"'lr'.*0\.01.*0\.02"):
        mlnb.log_param("lr", 0.02)
    other = mlnb.Store(store.db_path.parent)
    other.set_status(run.run_id, "finished")  # ended by another process
    other.close()
    with pytest.raises(RunStateError, match="is finished"):
        run.log_param("late", 1)
    assert mlnb.get_run(run.run_id).params == {"lr": 0.01}
