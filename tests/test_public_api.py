"""The public surface is deliberate and cheap to import."""

from __future__ import annotations

import ast
import json
import statistics
from pathlib import Path

import mlnb
from tests.conftest import run_python

HEAVY = ("pandas", "numpy", "matplotlib", "IPython", "ipywidgets", "papermill",
         "jupyter_server", "sqlite_utils")  # fmt: skip


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
