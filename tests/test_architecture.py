"""The shape of the package (issue 12): records that depend on nothing above the core."""

from __future__ import annotations

import grimp

CORE = {"mlnb.errors", "mlnb.conventions", "mlnb.formatting"}


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
