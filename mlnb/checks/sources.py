"""What a schema check or a drift check reads: a DataFrame, a data file, a profile dict,
or the stored profile of a run's dataset (``RUN`` or ``RUN:NAME``), as one :class:`Source`.

A stored profile is enough for drift and for inferring a schema: no raw data is kept or
needed. A string names a file when one exists at that path (``.csv``, ``.parquet``,
``.json``, ``.feather``), else a run."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.errors import InvalidInputError

if TYPE_CHECKING:
    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = ["Source", "load_source", "read_data_file", "record_result"]

READERS = {".csv": "read_csv", ".parquet": "read_parquet", ".pq": "read_parquet",
           ".json": "read_json", ".feather": "read_feather"}  # fmt: skip


@dataclass
class Source:
    """One side of a check: raw data (``frame``) and/or a profile, and where it came
    from (``label``: ``run 3f2a1b7c:train``, a file name, ``DataFrame``)."""

    label: str
    frame: Any = None
    stored: dict[str, Any] | None = None
    run_id: str | None = None

    @property
    def raw(self) -> bool:
        return self.frame is not None

    @property
    def profile(self) -> dict[str, Any]:
        """The stored profile, or the profile of the raw data (computed once)."""
        if self.stored is None:
            from mlnb.capture.profile import profile

            self.stored = profile(self.frame)
        return self.stored

    @property
    def summary(self) -> dict[str, Any]:
        """What integrity checks read, in the profile's layout (rows, schema, and per
        column kind, nulls and, for categories, every value's count when at most 100):
        the profile when there is one, else a summary of the raw data that sorts nothing."""
        if self.stored is not None:
            return self.stored
        return _summary(self.frame)


def _summary(frame: Any) -> dict[str, Any]:
    import pandas as pd
    from pandas.api import types as pt

    from mlnb.capture.profile import DOMAIN_MAX, _json_value, _name

    schema = [{"name": _name(c), "dtype": str(t)} for c, t in frame.dtypes.items()]
    stats = []
    for field, (_, s) in zip(schema, frame.items(), strict=True):
        entry: dict[str, Any] = {**field, "nulls": int(s.isna().sum())}
        if pt.is_bool_dtype(s.dtype):
            true = int(s.sum())
            entry.update(kind="boolean", true=true, false=len(s) - entry["nulls"] - true)
        elif pt.is_numeric_dtype(s.dtype) or pt.is_datetime64_any_dtype(s.dtype):
            entry["kind"] = "numeric" if pt.is_numeric_dtype(s.dtype) else "datetime"
        else:
            counts = s.value_counts(dropna=True)
            kind = "categorical" if isinstance(s.dtype, pd.CategoricalDtype) else "string"
            entry["kind"] = kind
            entry["top"] = [[_json_value(v), int(c)] for v, c in counts.head(20).items()]
            entry["domain"] = (
                [[_json_value(v), int(c)] for v, c in counts.items()]
                if len(counts) <= DOMAIN_MAX else None
            )  # fmt: skip
        stats.append(entry)
    return {"rows": len(frame), "columns": frame.shape[1], "schema": schema, "stats": stats}


def read_data_file(path: str | os.PathLike[str]) -> Any:
    """A data file as a DataFrame, by its suffix."""
    import pandas as pd

    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise InvalidInputError(
            f"cannot read {p.name}: use a file ending in {', '.join(sorted(READERS))}, "
            "or pass a DataFrame from Python"
        )
    try:
        return getattr(pd, reader)(p)
    except (OSError, ValueError, ImportError) as exc:
        raise InvalidInputError(f"cannot read {p}: {exc}") from None


def load_source(obj: Any, *, store: StoreLike | None = None, what: str = "data") -> Source:
    """``obj`` as a :class:`Source`: a DataFrame (or Series), a profile dict (the output
    of ``log_data``'s profiler), a data file path, or ``RUN`` / ``RUN:NAME``."""
    if isinstance(obj, Source):
        return obj
    if isinstance(obj, dict):
        if "stats" not in obj or "schema" not in obj:
            raise InvalidInputError(f"{what}: a dict must be a stored profile (with 'stats')")
        return Source("profile", stored=obj)
    if isinstance(obj, (str, os.PathLike)):
        text = os.fspath(obj)
        if Path(text).is_file():
            return Source(Path(text).name, frame=read_data_file(text))
        return _stored(text, store, what)
    import pandas as pd

    if isinstance(obj, pd.Series):
        return Source("Series", frame=obj.to_frame())
    if isinstance(obj, pd.DataFrame):
        return Source("DataFrame", frame=obj)
    raise InvalidInputError(
        f"{what}: expected a DataFrame, a data file, a profile or RUN[:NAME], "
        f"got a {type(obj).__name__}"
    )


def _stored(text: str, store: StoreLike | None, what: str) -> Source:
    from mlnb.store.profiles import dataset_profiles
    from mlnb.tracking.active import resolve_store

    st: Store = resolve_store(store, create=False)
    run, _, name = text.rpartition(":") if ":" in text else (text, "", "")
    datasets = [d for d in dataset_profiles(st, run) if d.profile is not None]
    label = f"run {datasets[0].run_name or run}" if datasets else f"run {run}"
    if name:
        chosen = [d for d in datasets if d.name == name]
    else:
        chosen = datasets if len(datasets) == 1 else []
    if len(chosen) > 1 and len({d.name for d in chosen}) == 1:
        chosen = chosen[:1]  # one name as input and output: the input
    if len(chosen) != 1:
        names = sorted({d.name for d in datasets})
        if not names:
            raise InvalidInputError(
                f"{what}: {label} has no dataset with a stored profile; log one with "
                "mlnb.log_data(df, 'NAME'), or pass a data file"
            )
        asked = f"no dataset named {name!r}" if name else f"{len(names)} datasets"
        raise InvalidInputError(
            f"{what}: {label} has {asked}; name one as {run}:NAME with NAME one of "
            + ", ".join(names)
        )
    d = chosen[0]
    return Source(f"{label}:{d.name}", stored=d.profile, run_id=d.run_id)


def record_result(result: Any, *, run: str | None, store: StoreLike | None) -> Any:
    """Store ``result.to_checks`` on ``run`` (else the active run; none: not stored) and
    return the result with its batch id."""
    from dataclasses import replace

    from mlnb.tracking import fluent

    if run is None:
        active = fluent.active_run()
        if active is None:
            return result
        st, run_id = active.store, active.run_id
    else:
        st = fluent.resolve_store(store, create=False)
        run_id = st.resolve_run_id(run)
    batch = uuid.uuid4().hex
    st.log_checks(run_id, result.to_checks(batch))
    return replace(result, batch=batch)
