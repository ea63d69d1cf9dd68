"""The model registry (issue 14 item 3): versions per name, aliases with an append-only
history, loading by URI with the hash checked and unsafe formats behind ``trust``, the
signature, lineage (item 4), and the bad input of item 9."""

from __future__ import annotations

import json
import pickle
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mlnb
from mlnb.cli.app import cli
from mlnb.errors import InvalidInputError, ModelIntegrityError, ModelNotFoundError


def _fit(seed: int = 0) -> tuple[Any, Any]:
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 60), "fee": rng.normal(50, 5, 60)})
    target = (frame["age"] > 45).astype(int)
    return LogisticRegression().fit(frame, target), frame


def _trained(store: mlnb.Store, name: str = "churn", auc: float = 0.8) -> Any:
    model, frame = _fit()
    with mlnb.start_run(f"train-{auc}", store=store, capture=False) as run:
        run.log_data(frame, name="train")
        run.log_metric("auc", auc)
        return mlnb.register_model(name, model)


def test_register_model_numbers_versions_per_name_and_attaches_the_file_to_the_run(
    store: mlnb.Store,
) -> None:
    first = _trained(store)
    second = _trained(store, auc=0.9)
    other = _trained(store, name="fraud")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.format == "skops" and first.flavor.endswith("LogisticRegression")
    artifacts = store.get_run(first.run_id).artifacts
    assert [(a.path, a.kind, a.hash) for a in artifacts] == [
        ("models/churn/v1/model.skops", "model", first.artifact_hash)
    ]


def test_register_model_records_the_signature_from_the_runs_training_data(
    store: mlnb.Store,
) -> None:
    version = _trained(store)
    assert version.signature == {
        "inputs": [{"name": "age", "dtype": "int64"}, {"name": "fee", "dtype": "float64"}],
        "outputs": {"kind": "class", "classes": [0, 1]},
        "source": "dataset 'train' of the run",
    }
    assert mlnb.get_model_version("churn/1").signature == version.signature


def test_register_model_outside_a_run_says_to_give_one(store: mlnb.Store) -> None:
    model, _ = _fit()
    with pytest.raises(InvalidInputError, match="needs the run that produced the model"):
        mlnb.register_model("churn", model)


def test_load_model_by_alias_version_and_mlflow_uri(store: mlnb.Store) -> None:
    _trained(store)
    _trained(store, auc=0.9)
    mlnb.set_model_alias("churn", "champion", 1)
    _, frame = _fit()
    for uri in ("mlnb://churn@champion", "mlnb://churn/1", "models:/churn@champion", "churn/2",
                "mlnb://churn", "churn@latest"):  # fmt: skip
        model = mlnb.load_model(uri)
        assert list(model.predict(frame[:3])) == list(_fit()[0].predict(frame[:3]))
    assert mlnb.get_model_version("mlnb://churn").version == 2


def test_load_model_refuses_a_file_whose_hash_does_not_match(store: mlnb.Store) -> None:
    """Item 9: loading a model whose file changed after registration must fail, not load
    what is there now."""
    version = _trained(store)
    path = store.artifact_file(version.artifact_hash)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ModelIntegrityError, match="does not match its stored hash"):
        mlnb.load_model("churn/1")


def test_load_model_loads_pickle_only_with_trust(store: mlnb.Store, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"coef": [1, 2]}))
    with mlnb.start_run("p", store=store, capture=False):
        version = mlnb.register_model("raw", tmp_path / "model.pkl")
    assert version.format == "pickle"
    with pytest.raises(ModelIntegrityError, match="runs whatever code it holds"):
        mlnb.load_model("raw/1")
    assert mlnb.load_model("raw/1", trust=True) == {"coef": [1, 2]}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("chrun@champion", "no registered model named 'chrun'; did you mean 'churn'"),
        ("churn/7", "model 'churn' has no version 7 (it has versions 1 to 1)"),
        ("churn@champoin", "no alias 'champoin'; did you mean 'champion'"),
        ("churn@3", "an alias is not a number"),
        ("mlnb://", "bad model URI"),
    ],
)
def test_unknown_model_version_or_alias_names_the_close_ones(
    store: mlnb.Store, uri: str, message: str
) -> None:
    """Item 9: a name, version or alias that does not exist says what does."""
    _trained(store)
    mlnb.set_model_alias("churn", "champion", 1)
    with pytest.raises((ModelNotFoundError, InvalidInputError), match=re.escape(message)):
        mlnb.load_model(uri)


def test_alias_history_says_who_when_why_and_what_served_at_a_time(store: mlnb.Store) -> None:
    for auc in (0.8, 0.85, 0.9):
        _trained(store, auc=auc)
    mlnb.set_model_alias("churn", "champion", 1, reason="first")
    time.sleep(0.02)
    between = time.time()
    time.sleep(0.02)
    mlnb.set_model_alias("churn", "champion", 3, reason="better auc")
    mlnb.set_model_alias("churn", "challenger", 2)
    events = mlnb.model_history("churn", alias="champion")
    assert [(e.previous_version, e.version, e.reason) for e in events] == [
        (None, 1, "first"),
        (1, 3, "better auc"),
    ]
    assert all(e.user and e.host for e in events)
    assert mlnb.get_model_version("churn@champion").version == 3
    assert [e.version for e in mlnb.model_history("churn", alias="champion", at=between)] == [1]
    assert mlnb.load_model("churn@champion", at=between) is not None
    with pytest.raises(ModelNotFoundError, match="did not exist yet"):
        mlnb.load_model("churn@champion", at=between - 3600)


def test_delete_alias_keeps_the_removal_in_the_history(store: mlnb.Store) -> None:
    _trained(store)
    mlnb.set_model_alias("churn", "champion", 1)
    mlnb.delete_model_alias("churn", "champion", reason="retired")
    assert [(e.version, e.reason) for e in mlnb.model_history("churn")] == [
        (1, "manual"),
        (None, "retired"),
    ]
    with pytest.raises(ModelNotFoundError, match="was removed"):
        mlnb.get_model_version("churn@champion")


def test_gc_keeps_model_files_of_purged_runs(store: mlnb.Store) -> None:
    version = _trained(store)
    store.delete_run(version.run_id)
    store.gc(purge_deleted=True)
    assert store.artifact_file(version.artifact_hash).is_file()
    assert mlnb.load_model("churn/1") is not None
    assert mlnb.model_lineage("churn/1").run is None


def test_model_lineage_joins_version_run_notebook_params_data_environment_and_git(
    store: mlnb.Store,
) -> None:
    model, frame = _fit()
    with mlnb.start_run("lineage", store=store) as run:
        run.log_params({"C": 1.0})
        run.log_data(frame, name="train")
        mlnb.register_model("churn", model)
    mlnb.set_model_alias("churn", "champion", 1)
    found = mlnb.model_lineage("churn@champion").to_dict()
    assert found["model"]["name"] == "churn" and found["model"]["aliases"] == ["champion"]
    assert found["run"]["name"] == "lineage"
    assert found["params"] == {"C": 1.0}
    assert [(d["name"], d["rows"], len(d["schema"])) for d in found["data"]] == [("train", 60, 2)]
    assert set(found["environment"]) == {"hash", "python", "platform", "packages"}
    assert set(found["notebook"]) == {"path", "hash", "linearity"}
    assert "git" in found


def test_run_bundle_still_moves_a_run_that_has_a_registered_model(
    store: mlnb.Store, tmp_path: Path
) -> None:
    """Registry rows refer to runs by run_id: the run's bundle carries its model file (an
    artifact) and imports into a store without a registry row."""
    version = _trained(store)
    bundle = mlnb.export_run(store, version.run_id)
    with mlnb.Store(tmp_path / "other") as other:
        mlnb.import_run(other, bundle)
        assert [a.kind for a in other.get_run(version.run_id).artifacts] == ["model"]


# -- the command line ---------------------------------------------------------------------


def _cli(store: mlnb.Store, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--store", str(store.root), *args])


def test_cli_model_register_ls_show_alias_history_lineage(
    store: mlnb.Store, tmp_path: Path
) -> None:
    (tmp_path / "weights.bin").write_bytes(b"w")
    with mlnb.start_run("r", store=store, capture=False) as run:
        pass
    out = _cli(store, "model", "register", run.run_id, "--name", "churn", "--artifact",
               str(tmp_path / "weights.bin"))  # fmt: skip
    assert out.exit_code == 0 and "registered churn/1 (file)" in out.output
    assert _cli(store, "model", "alias", "churn", "champion", "1", "--reason", "ok").exit_code == 0
    assert "@champion=1" in _cli(store, "model", "ls").output
    assert "@champion" in _cli(store, "model", "ls", "churn").output
    assert "artifact     models/churn/v1/weights.bin" in _cli(store, "model", "show",
                                                              "churn@champion").output  # fmt: skip
    history = _cli(store, "model", "history", "churn", "--format", "json")
    assert [(e["version"], e["reason"]) for e in json.loads(history.output)] == [(1, "ok")]
    lineage = _cli(store, "model", "lineage", "churn@champion", "--format", "json")
    assert json.loads(lineage.output)["run"]["run_id"] == run.run_id
    shown = _cli(store, "show", run.run_id)
    assert "models:\n  churn/1  file  @champion" in shown.output


def test_cli_model_show_of_an_unknown_name_suggests_and_exits_1(store: mlnb.Store) -> None:
    _trained(store)
    out = _cli(store, "model", "show", "chrun")
    assert out.exit_code == 1
    assert "did you mean 'churn'" in out.output


def test_a_store_from_before_the_registry_upgrades_and_registers(tmp_path: Path) -> None:
    """Migration m006 adds the registry's tables to a store that has runs already."""
    from sqlite_utils import Database

    from mlnb.store import migrations

    (tmp_path / "old").mkdir()
    old = Database(tmp_path / "old" / "mlnb.db")
    migrations.migrations().apply(old, stop_before="m006_model_registry")
    old.close()
    (tmp_path / "w.bin").write_bytes(b"w")
    with mlnb.Store(tmp_path / "old") as st:
        assert st.schema_version() == migrations.known_names()[-1]
        with mlnb.start_run("r", store=st, capture=False) as run:
            pass
        mlnb.register_model("m", tmp_path / "w.bin", run=run.run_id, store=st)
        assert mlnb.get_model_version("m/1", store=st).run_id == run.run_id


def test_cli_history_at_says_what_each_alias_pointed_at_then(
    store: mlnb.Store, tmp_path: Path
) -> None:
    _trained(store)
    mlnb.set_model_alias("churn", "champion", 1)
    later = _cli(store, "model", "history", "churn", "--at", "2999-01-01")
    assert later.exit_code == 0 and "at 2999-01-01: @champion = 1" in later.output
    before = _cli(store, "model", "history", "churn", "--at", "2000-01-01")
    assert "churn has no alias moves before 2000-01-01" in before.output
    bad = _cli(store, "model", "history", "churn", "--at", "yesterday")
    assert bad.exit_code == 1 and "bad time 'yesterday'" in bad.output


class Doubler:
    """A model of a type skops does not trust by default."""

    def __init__(self) -> None:
        self.factor = 2

    def predict(self, rows: list[float]) -> list[float]:
        return [r * self.factor for r in rows]


def test_load_model_refuses_skops_types_off_the_allow_list_without_trust(
    store: mlnb.Store,
) -> None:
    with mlnb.start_run("d", store=store, capture=False):
        version = mlnb.register_model("doubler", Doubler(), format="skops")
    assert version.format == "skops"
    with pytest.raises(ModelIntegrityError, match="names types skops does not trust.*Doubler"):
        mlnb.load_model("doubler/1")
    assert mlnb.load_model("doubler/1", trust=True).predict([1.5]) == [3.0]
