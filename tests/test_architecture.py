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
