"""The public surface is deliberate and cheap to import."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import mlnb
from tests.conftest import run_python

HEAVY = ("pandas", "numpy", "matplotlib", "IPython", "ipywidgets", "papermill",
         "jupyter_server", "sqlite_utils", "mlflow", "pandera")  # fmt: skip


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(mlnb) if not name.startswith("_")}
    helpers = {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    modules = {name for name in public if type(getattr(mlnb, name)).__name__ == "module"}
    assert set(mlnb.__all__) - {"__version__"} == public - modules - helpers
    for name in mlnb.__all__:
        assert getattr(mlnb, name) is not None


def test_public_functions_are_not_shadowed_by_submodules() -> None:
    """Regression: `mlnb.diff` was the module mlnb/diff.py once that module was imported."""
    code = (
        "import mlnb, mlnb.comparison.diff, mlnb.tracking.autolog, mlnb.notebook.magics, "
        "mlnb.tracking.reading\n"
        "print(all(callable(getattr(mlnb, n)) and type(getattr(mlnb, n)).__name__ != 'module'"
        " for n in mlnb.__all__ if n != '__version__'))\n"
    )
    assert run_python(code).stdout.strip() == "True"


def test_import_mlnb_loads_no_heavy_modules() -> None:
    code = (
        "import sys, json; import mlnb; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    loaded = json.loads(run_python(code).stdout)
    assert loaded == []


def test_import_mlnb_takes_under_150_ms() -> None:
    code = "import time; t = time.perf_counter(); import mlnb; print(time.perf_counter() - t)"
    times = [float(run_python(code).stdout) for _ in range(5)]
    assert statistics.median(times) < 0.150, times


def test_start_run_on_an_existing_store_loads_no_pandas(tmp_path) -> None:
    code = (
        "import sys, mlnb\n"
        "with mlnb.start_run('a'):\n"
        "    mlnb.log_param('p', 1); mlnb.log_metric('m', 1.0)\n"
        "print('pandas' in sys.modules, 'sqlite_utils' in sys.modules)\n"
    )
    env = {"MLNB_STORE": str(tmp_path / "s")}
    run_python(code, env=env)  # creates the store (migrations need sqlite-utils)
    assert run_python(code, env=env).stdout.split() == ["False", "False"]


def test_every_warning_mlnb_emits_is_an_mlnb_warning() -> None:
    """Issue 11 item 6: users filter mlnb's warnings by one category, ``mlnb.MlnbWarning``
    (a ``UserWarning``); a warning without it (UserWarning, RuntimeWarning) escapes that."""
    package = Path(mlnb.__file__).parent
    calls = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
                category = node.args[1] if len(node.args) > 1 else None
                for kw in node.keywords:
                    category = kw.value if kw.arg == "category" else category
                where = f"{path.relative_to(package)}:{node.lineno}"
                calls.append((where, category and ast.unparse(category)))
    assert len(calls) >= 6
    assert [c for c in calls if c[1] != "MlnbWarning"] == []
    assert issubclass(mlnb.MlnbWarning, UserWarning)


# -- one rule for which store a call uses (issue 12 item 3) ------------------------------------

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def _seed(chosen: mlnb.Store, folder: Path) -> None:
    """Two finished runs in the chosen store, and a copy of a one-cell job notebook."""
    for name, acc in (("base", 0.9), ("other", 0.8)):
        with mlnb.start_run(name, store=chosen, capture=False):
            mlnb.log_param("lr", acc)
            mlnb.log_metric("acc", acc)
    shutil.copy(NOTEBOOKS / "sweep_step.ipynb", folder / "step.ipynb")


def _names(chosen: mlnb.Store) -> set[str]:
    return set(chosen.search_runs(include_deleted=True)["name"])


def _start_run(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    with mlnb.start_run("started", store=s):
        pass
    assert "started" in _names(chosen)


def _flush(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    with mlnb.start_run("logged", store=s) as run:
        mlnb.log_metric("m", 1.0)
    mlnb.flush(store=s)
    assert chosen.get_run(run.run_id).metrics == {"m": 1.0}


def _runs(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    assert set(mlnb.runs(store=s)["name"]) == {"base", "other"}


def _get_run(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    assert mlnb.get_run("base", store=s).params == {"lr": 0.9}


def _delete_run(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    mlnb.delete_run("base", store=s)
    assert set(chosen.search_runs()["name"]) == {"other"}


def _restore_run(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    chosen.delete_run("base")
    mlnb.restore_run("base", store=s)
    assert set(chosen.search_runs()["name"]) == {"base", "other"}


def _diff(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    assert "lr" in str(mlnb.diff("base", "other", store=s))


def _gate(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    assert mlnb.gate("base", ["acc>=0.85"], store=s)
    assert [c.name for c in chosen.get_checks(chosen.resolve_run_id("base"))] == ["acc"]


def _drift(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 10})
    assert mlnb.drift(frame, frame, run="base", store=s)
    assert "drift" in [c.name for c in chosen.get_checks(chosen.resolve_run_id("base"))]


def _validate(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    assert mlnb.validate(frame, mlnb.Schema.infer(frame), run="base", store=s)
    names = [c.name for c in chosen.get_checks(chosen.resolve_run_id("base"))]
    assert "schema:x:min" in names


def _report(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    data = json.loads(mlnb.report(["base"], format="json", plots=False, store=s))
    assert [r["run"]["name"] for r in data["runs"]] == ["base"]


def _compare(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    comparison = mlnb.compare(store=s, widget=False)
    assert comparison.store.db_path == chosen.db_path
    assert set(comparison.selected["name"]) <= {"base", "other"}


def _run_notebook(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    job = mlnb.run_notebook(folder / "step.ipynb", name="job", store=s)
    assert job.ok and chosen.get_run(job.run_id).metrics["score"] == 1.0


def _sweep(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    result = mlnb.sweep(folder / "step.ipynb", {"score": [2.0]}, name="sw", store=s)
    assert chosen.get_run(result.run_id).name == "sw sweep"


def _reproduce(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    job = mlnb.run_notebook(folder / "step.ipynb", name="job", store=chosen)
    repro = mlnb.reproduce(job.run_id, store=s)
    assert repro.exit_code == 0 and chosen.get_run(repro.job.run_id).metrics["score"] == 1.0


def _model(chosen: mlnb.Store, folder: Path) -> None:
    """Model m, version 1 (a plain file, from run "trained" that read data.csv as
    "score"), aliased champion."""
    (folder / "data.csv").write_text("x\n1\n")
    (folder / "model.bin").write_bytes(b"weights")
    with mlnb.start_run("trained", store=chosen, capture=False) as run:
        run.log_data(folder / "data.csv", name="score")
    mlnb.register_model("m", folder / "model.bin", run=run.run_id, store=chosen)
    mlnb.set_model_alias("m", "champion", 1, store=chosen)


def _register_model(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    (folder / "model.bin").write_bytes(b"weights")
    version = mlnb.register_model("m", folder / "model.bin", run="base", store=s)
    assert [a.kind for a in chosen.get_run("base").artifacts] == ["model"]
    assert version.version == 1 and mlnb.get_model_version("m/1", store=chosen).format == "file"


def _get_model_version(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    assert mlnb.get_model_version("m@champion", store=s).version == 1


def _load_model(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    assert Path(mlnb.load_model("mlnb://m@champion", store=s)).read_bytes() == b"weights"


def _set_model_alias(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    mlnb.set_model_alias("m", "challenger", 1, store=s)
    assert mlnb.get_model_version("m@challenger", store=chosen).version == 1


def _delete_model_alias(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    mlnb.delete_model_alias("m", "champion", store=s)
    assert mlnb.get_model_version("m", store=chosen).aliases == ()


def _model_history(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    assert [e.version for e in mlnb.model_history("m", store=s)] == [1]


def _model_lineage(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    assert mlnb.model_lineage("m@champion", store=s).to_dict()["run"]["name"] == "trained"


def _promote(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    mlnb.set_model_alias("m", "challenger", 1, store=chosen)
    assert mlnb.promote("m", to="production", store=s).moved
    assert mlnb.get_model_version("m@production", store=chosen).version == 1


def _retrain(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    _model(chosen, folder)
    result = mlnb.retrain(folder / "step.ipynb", model="m", data={"score": folder / "data.csv"},
                          store=s)  # fmt: skip
    assert not result.trained
    checks = chosen.get_checks(chosen.resolve_run_id("trained"))
    assert [c.name for c in checks] == ["retrain:m"]


def _mlflow_push(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    pytest.importorskip("mlflow")
    with warnings.catch_warnings():  # MLflow's own SQL store, in process, uses deprecated SQLA
        warnings.simplefilter("ignore", DeprecationWarning)
        report = mlnb.mlflow_push(f"sqlite:///{folder / 'mlflow.db'}", store=s)
    assert len(report.run_ids) == 2


def _mlflow_pull(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        mlnb.mlflow_push(uri, store=chosen)
        assert mlnb.mlflow_pull(uri, store=s).unchanged == 2  # the chosen store has both


def _export_runs(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    ids = mlnb.export_runs(folder / "runs.mlnb", ["base"], store=s)
    assert ids == [chosen.resolve_run_id("base")]


def _import_runs(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    with mlnb.Store(folder / "elsewhere") as elsewhere:
        run_id = elsewhere.create_run(name="brought", experiment="exp")
        mlnb.export_runs(folder / "runs.mlnb", store=elsewhere)
    assert mlnb.import_runs(folder / "runs.mlnb", store=s).added == [run_id]
    assert chosen.get_run(run_id).name == "brought"


def _log_feedback(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    from mlnb.store.predictions import Prediction, insert_predictions, predictions_with_feedback

    insert_predictions(chosen.file, [Prediction("req-1", "m", 1, None, ["x"], [[1]], [0], 1.0, 0)])
    mlnb.log_feedback("req-1", 1, store=s)
    assert [r["label"] for r in predictions_with_feedback(chosen.file, "m")] == [1]


def _monitor(s: Any, chosen: mlnb.Store, folder: Path) -> None:
    import pandas as pd

    from mlnb.store.predictions import Prediction, insert_predictions

    (folder / "model.bin").write_bytes(b"weights")
    with mlnb.start_run("trained", store=chosen, capture=False) as run:
        run.log_data(pd.DataFrame({"x": [1.0, 2.0, 3.0] * 10}), name="train")
        mlnb.register_model("mon", folder / "model.bin", store=chosen)
    mlnb.set_model_alias("mon", "champion", 1, store=chosen)
    rows = [[1.0], [2.0], [3.0]] * 10
    insert_predictions(chosen.file, [Prediction("r", "mon", 1, None, ["x"], rows, [0] * 30, 1.0,
                                                time.time())])  # fmt: skip
    result = mlnb.monitor("mon", store=s)
    assert (
        result.passed
        and [c.name for c in chosen.get_checks(result.monitor_run_id or "")][-1] == "monitor"
    )


STORE_CALLS = {
    "export_runs": _export_runs,
    "import_runs": _import_runs,
    "compare": _compare,
    "delete_run": _delete_run,
    "diff": _diff,
    "drift": _drift,
    "flush": _flush,
    "gate": _gate,
    "get_run": _get_run,
    "report": _report,
    "reproduce": _reproduce,
    "restore_run": _restore_run,
    "run_notebook": _run_notebook,
    "runs": _runs,
    "start_run": _start_run,
    "sweep": _sweep,
    "validate": _validate,
    "register_model": _register_model,
    "get_model_version": _get_model_version,
    "load_model": _load_model,
    "set_model_alias": _set_model_alias,
    "delete_model_alias": _delete_model_alias,
    "model_history": _model_history,
    "model_lineage": _model_lineage,
    "promote": _promote,
    "retrain": _retrain,
    "mlflow_push": _mlflow_push,
    "mlflow_pull": _mlflow_pull,
    "log_feedback": _log_feedback,
    "monitor": _monitor,
}
SLOW = {"reproduce", "run_notebook", "sweep", "mlflow_push", "mlflow_pull"}  # kernels, MLflow


def test_every_public_store_argument_takes_a_store_or_a_path() -> None:
    """Issue 12 item 3: some public functions took only a ``Store``, others also a path.
    Every public function with ``store=`` takes ``StoreLike | None`` and is checked below."""
    takes_store = {}
    for name in mlnb.__all__:
        obj = getattr(mlnb, name)
        if callable(obj) and not isinstance(obj, type):
            param = inspect.signature(obj).parameters.get("store")
            if param is not None and param.default is None:  # not export_run's subject
                takes_store[name] = param.annotation
    assert set(takes_store) == set(STORE_CALLS)
    assert set(takes_store.values()) == {"StoreLike | None"}


def test_resolve_store_opens_one_store_per_file_and_reads_create_none(tmp_path: Path) -> None:
    """Issue 12 item 3: a path opens one ``Store`` per file and process, whichever way the
    file is named, so a read through a path sees what this process logged through it; a
    read of a missing store raises and creates nothing."""
    from mlnb.errors import StoreNotFoundError
    from mlnb.tracking.fluent import resolve_store

    folder = tmp_path / "s"
    first = resolve_store(folder, create=True)
    assert resolve_store(str(folder / "mlnb.db"), create=False) is first
    assert resolve_store(first, create=False) is first
    with pytest.raises(StoreNotFoundError, match="no mlnb store at"):
        resolve_store(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in STORE_CALLS],
)
@pytest.mark.parametrize("how", ["set_store", "path"])
def test_public_function_uses_the_set_store_or_the_path_given(
    name: str, how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12 item 3: ``run_notebook``, ``sweep`` and ``reproduce`` with ``store=None``
    opened ``Store()`` and ignored ``mlnb.set_store()``; ``runs``, ``gate``, ``report``,
    ``compare`` (and ``diff``, ``get_run``, ``start_run``...) refused a path. Each call
    here must use the chosen store, never the one discovery finds ($MLNB_STORE)."""
    discovered = tmp_path / "discovered"
    mlnb.Store(discovered).close()
    monkeypatch.setenv("MLNB_STORE", str(discovered))
    with mlnb.Store(tmp_path / "chosen") as chosen:
        _seed(chosen, tmp_path)
        if how == "set_store":
            mlnb.set_store(chosen)
        STORE_CALLS[name](
            None if how == "set_store" else str(tmp_path / "chosen"), chosen, tmp_path
        )
    with mlnb.Store(discovered) as other:
        assert _names(other) == set()


# -- the docs use public names only (issue 12 item 7) -----------------------------------------

PUBLIC_MODULES = {"mlnb", "mlnb.errors"}  # the API, and the exception family it raises
# the one page that maps the package's insides, on purpose
INTERNAL_PAGES = {"docs/architecture.md"}
MODULE_PATH = re.compile(r"(?<![\w./-])mlnb\.([a-z_]+)\b")


def _module_paths(text: str) -> list[str]:
    """The ``mlnb.<module>`` paths a text names (imports, calls, prose): each a module or
    package of mlnb that is not public. Tags (``mlnb.error.name``) and public names
    (``mlnb.runs``) are no module, so they are not counted."""
    package = Path(mlnb.__file__).parent
    found = []
    for match in MODULE_PATH.finditer(text):
        name = match[1]
        is_module = (package / name).is_dir() or (package / f"{name}.py").is_file()
        if is_module and f"mlnb.{name}" not in PUBLIC_MODULES:
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{line}: {text.splitlines()[line - 1].strip()}")
    return found


def test_module_paths_finds_deep_imports_but_not_tags_or_public_names() -> None:
    text = (
        "from mlnb.checks.gates import MetricThreshold\n"
        "`mlnb.store.transfer.export_run`\n"
        "import mlnb; mlnb.runs(); mlnb.errors.SweepFailedError; tag mlnb.error.name\n"
    )
    assert [p.split(":")[0] for p in _module_paths(text)] == ["1", "2"]


def test_docs_name_only_public_module_paths() -> None:
    """Issue 12 item 7: the docs imported ``mlnb.checks.gates.MetricThreshold``,
    ``mlnb.capture.fingerprints.register_hasher``, ``mlnb.store.transfer.export_run``,
    ``mlnb.jobs.params.notebook_parameters``: a reader copying them broke at the next move.
    README.md, docs/ and notebooks/ name only ``mlnb`` and ``mlnb.errors``."""
    repo = Path(mlnb.__file__).parent.parent
    pages = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    pages += sorted((repo / "notebooks").glob("*.ipynb"))
    found = {}
    for page in pages:
        name = page.relative_to(repo).as_posix()
        if name not in INTERNAL_PAGES:
            text = page.read_text(encoding="utf-8")
            if page.suffix == ".ipynb":
                cells = json.loads(text)["cells"]
                text = "\n".join("".join(c["source"]) for c in cells)
            found[name] = _module_paths(text)
    assert len(found) > 10
    assert {k: v for k, v in found.items() if v} == {}
