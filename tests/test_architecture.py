"""The shape of the package (issue 12): the layers of docs/architecture.md, checked by the
import-linter contract in pyproject.toml (run by `make lint`), and records that depend on
nothing above the core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

from tests.conftest import REPO

CORE = {"mlnb.errors", "mlnb.conventions", "mlnb.formatting"}
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` as `make lint` runs it, on the package under ``root``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_layers_contract_is_kept() -> None:
    """Issue 12: the layers contract holds on the tree as it is."""
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_layers_contract_fails_on_a_wrong_import(tmp_path: Path) -> None:
    """Issue 12: a lower layer importing a higher one breaks the contract, so `make lint`
    (and CI) fails — here the store importing the notebook widgets."""
    shutil.copytree(REPO / "mlnb", tmp_path / "mlnb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    query = tmp_path / "mlnb" / "store" / "query.py"
    query.write_text(query.read_text() + "\nfrom mlnb.notebook import widgets  # wrong\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert " is not allowed to import mlnb.notebook" in proc.stdout
    assert "mlnb.store.query -> mlnb.notebook.widgets" in proc.stdout


def test_layers_contract_fails_on_a_module_in_no_layer(tmp_path: Path) -> None:
    """Issue 12: a new module left in mlnb/ outside every layer breaks the contract (it is
    exhaustive), instead of escaping it."""
    shutil.copytree(REPO / "mlnb", tmp_path / "mlnb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "mlnb" / "executors.py").write_text('"""A module placed nowhere."""\n')
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "mlnb.executors" in proc.stdout + proc.stderr


def test_records_import_only_the_core_even_for_type_checking() -> None:
    """Issue 12 item 1: a record held a back-reference typed as the store (models.py
    imported the store under TYPE_CHECKING); records depend on a small Protocol instead, so
    not even an annotation points up from the core."""
    graph = grimp.build_graph("mlnb", exclude_type_checking_imports=False, cache_dir=None)
    imported = graph.find_modules_directly_imported_by("mlnb.records")
    assert imported <= CORE, imported - CORE


def chain(importer: str, imported: str) -> tuple[str, ...] | None:
    """The shortest chain of runtime imports (TYPE_CHECKING left out, as the contract
    does) from any module of the subpackage ``importer`` of mlnb (``"capture"``) to any
    of ``imported``, or None."""
    graph = grimp.build_graph("mlnb", exclude_type_checking_imports=True, cache_dir=None)
    found = graph.find_shortest_chains(f"mlnb.{importer}", f"mlnb.{imported}", as_packages=True)
    for chains in found:
        return chains
    return None


def test_capture_never_imports_the_store() -> None:
    """Issue 12: capture/environment imported the store's input checks for canonical_json;
    capture reads the world and sits below the store."""
    assert chain("capture", "store") is None


def test_comparison_imports_neither_the_notebook_nor_jobs() -> None:
    """Issue 12 layer rule: the comparison table and multidiff imported
    ``lower_is_better`` from the live plots (notebook layer, IPython's side) and the
    comparison table ``SPEC_PARAM_PREFIXES`` from sweeps (jobs, a layer above)."""
    assert chain("comparison", "notebook") is None
    assert chain("comparison", "jobs") is None


def test_tracking_does_not_import_comparison() -> None:
    """Issue 12 layer rule: reading runs (tracking) held ``mlnb.diff``, which imports the
    diff of two runs (comparison, the layer above)."""
    assert chain("tracking", "comparison") is None


def test_no_import_cycles() -> None:
    """Issue 12 "done means": no import cycles, not even through imports inside functions
    or for type checking — `%track list` imported the root package, whose
    `load_ipython_extension` imports the magics."""
    graph = grimp.build_graph("mlnb", exclude_type_checking_imports=False, cache_dir=None)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append((importer, *back))
    assert cycles == []
