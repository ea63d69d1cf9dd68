"""The store: one SQLite file and its content-addressed artifacts. All of mlnb's SQL lives
in this package.

``Store`` and ``find_store_dir`` (defined in :mod:`mlnb.store.core`) can be imported from
here; they load on first use, so importing any module of this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlnb.store.core import Store, find_store_dir

__all__ = ["Store", "find_store_dir"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from mlnb.store import core

    value = getattr(core, name)
    globals()[name] = value  # later lookups skip this function
    return value
