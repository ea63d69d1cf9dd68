"""Constants that several layers share are defined once, in ``mlnb.conventions`` (as MLflow
keeps its reserved tags in one module): a module that defines its own copy drifts."""

from __future__ import annotations

import ast
from pathlib import Path

from mlnb import conventions

MLNB = Path(__file__).resolve().parent.parent / "mlnb"


def _module_constants(prefix: str, kind: type) -> list[str]:
    """``path:line NAME`` of every module-level assignment of a ``kind`` literal to a name
    starting with ``prefix`` outside mlnb/conventions.py."""
    found = []
    for path in sorted(MLNB.rglob("*.py")):
        if path == MLNB / "conventions.py":
            continue
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            value = getattr(node, "value", None)
            if not (isinstance(value, ast.Constant) and type(value.value) is kind):
                continue
            for target in targets:
                if isinstance(target, ast.Name) and target.id.startswith(prefix):
                    found.append(f"{path.relative_to(MLNB.parent)}:{node.lineno} {target.id}")
    return found


def test_exit_codes_are_defined_once_in_conventions() -> None:
    """Issue 12 item 6: three exit-code tables (runner, sweeps, gates: EXIT_CELL_ERROR,
    EXIT_FAILED and EXIT_FAIL all 1) and literal codes in the CLI become one table."""
    assert _module_constants("EXIT_", int) == []
    literal_exits = [
        f"{path.name}:{node.lineno}"
        for path in sorted((MLNB / "cli").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "exit"
        and any(isinstance(a, ast.Constant) for a in node.args)
    ]
    assert literal_exits == [], "exit with a name from mlnb.conventions, not a number"
    codes = [v for k, v in vars(conventions).items() if k.startswith("EXIT_") and k != "EXIT_CODES"]
    assert sorted(codes) == sorted(conventions.EXIT_CODES), "every code is in EXIT_CODES"
    assert len(set(codes)) == len(codes), "one name per code"


def test_missing_is_one_sentinel_that_survives_copies() -> None:
    """Issue 12 item 6: the one MISSING (a key a run lacks) prints as "—" and stays itself."""
    import copy
    import pickle

    assert repr(conventions.MISSING) == "—"
    assert copy.deepcopy(conventions.MISSING) is conventions.MISSING
    assert pickle.loads(pickle.dumps(conventions.MISSING)) is conventions.MISSING


def test_mlnb_environment_names_are_defined_once_in_conventions() -> None:
    """Issue 12 item 6: the MLNB_* environment names were spelled in five modules, and
    MLNB_NOTEBOOK twice (jobs/runner's ENV_NOTEBOOK and capture/notebook's NOTEBOOK_ENV)."""
    spelled = []
    for path in sorted(MLNB.rglob("*.py")):
        if path == MLNB / "conventions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, (ast.Assign, ast.AnnAssign, ast.keyword))
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and node.value.value.startswith("MLNB_")
            ):
                spelled.append(f"{path.relative_to(MLNB.parent)}:{node.value.lineno}")
    assert spelled == [], "import the name from mlnb.conventions"
    names = [v for k, v in vars(conventions).items() if k.startswith("ENV_")]
    assert len(names) == len(set(names)) and all(n.startswith("MLNB_") for n in names)


def test_reserved_tag_names_are_defined_once_in_conventions() -> None:
    """Issue 12 item 6: the `mlnb.` tags mlnb writes on runs were named in records, store,
    params, runner, sweeps and reproduce, and spelled inline in the runner and the magics."""
    spelled = []
    for path in sorted(MLNB.rglob("*.py")):
        if path == MLNB / "conventions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            keys = node.keys if isinstance(node, ast.Dict) else []
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.endswith("_TAG") for t in node.targets
            ):
                keys = [node.value]
            spelled += [
                f"{path.relative_to(MLNB.parent)}:{k.lineno} {k.value}"
                for k in keys
                if isinstance(k, ast.Constant) and str(k.value).startswith("mlnb.")
            ]
    assert spelled == [], "import the tag name from mlnb.conventions"
    tags = [v for k, v in vars(conventions).items() if k.endswith("_TAG")]
    assert len(tags) == len(set(tags)) and all(t.startswith("mlnb.") for t in tags)
