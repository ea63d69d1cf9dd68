"""A statistical profile of a DataFrame: small, JSON-safe, and enough for a drift check.

:func:`profile` is pure: it reads the frame and returns a plain dict (format 1)::

    format    1; bumped when the layout changes
    kind      "dataframe", "series" or "array"
    rows, columns
    schema    [{"name", "dtype"}] in column order
    stats     one dict per column, in the same order, with
              name, dtype, kind ("numeric", "boolean", "datetime", "timedelta",
              "categorical", "string", "object"), count (non-null), nulls,
              distinct, distinct_estimated
      numeric      min, max, mean, std (ddof=1), infinite (count of ±inf, left out of
                   every other statistic), quantiles {"p1","p5","p25","p50","p75","p95",
                   "p99"} (linear interpolation, as numpy's default), histogram
                   {"edges": 11 decile edges of this data, "counts": 10 counts},
                   percentiles (101 values, p0 to p100, to 6 significant digits: the
                   current side of a drift
                   check reads its mass in another profile's bins from them; absent in
                   profiles stored before they were added);
                   integer columns with at most 100 values also get domain
      boolean      true, false
      datetime     min, max (ISO 8601); timedelta: min, max (ISO 8601 durations)
      categorical, string, object
                   top: up to 20 [value, count] pairs, most frequent first (ties in
                   order of first appearance); domain: every [value, count] sorted
                   by value when there are at most 100 values, else null; string:
                   length {"min", "max"} (characters); categorical: ordered,
                   categories (declared count)

Histogram bins are ``[e_i, e_i+1)`` and the last is closed ``[e_9, e_10]`` (numpy's
``histogram`` rule), so a drift check can bin new data on the stored edges alone; repeated
edges give empty bins.

Distinct counts are exact where they come free: numeric, datetime and timedelta columns
are sorted once (for the quantiles) and counted from the sorted values, booleans and
categoricals from their codes. String and object columns are counted exactly up to
``distinct_limit`` rows (default 1 M); a longer column is read in batches of
that size, and its counts stay exact while it has at most ``TOP_CANDIDATES`` different
values. Beyond that, ``distinct`` is a HyperLogLog estimate (2^14 registers, ~0.8 %
standard error) with ``distinct_estimated: true``, and ``top`` holds approximate counts
(``top_estimated: true``).

Every value is JSON-safe (NaN and ±inf become null, numpy scalars Python numbers), and a
column's entry stays under ``MAX_COLUMN_BYTES`` of JSON: long values are cut to
``MAX_VALUE_CHARS`` characters first (``values_truncated: true``), then the domain and
the tail of ``top`` are dropped.

Measured here (``benchmarks/capture_data.py``): 1 M rows x 50 mixed columns in about 1 s.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlnb.errors import InvalidInputError

FORMAT = 1
DISTINCT_LIMIT = 1_000_000
PROFILE_THREADS = 4  # columns profiled at once (numpy sorts without the GIL)
PARALLEL_CELLS = 1_000_000  # smaller frames are profiled in the calling thread
TOP_CANDIDATES = 10_000
TOP_N = 20
DOMAIN_MAX = 100
MAX_VALUE_CHARS = 200
MAX_COLUMN_BYTES = 10_000
QUANTILES = (1, 5, 25, 50, 75, 95, 99)
HLL_BITS = 14


def profile(obj: Any, *, distinct_limit: int = DISTINCT_LIMIT) -> dict[str, Any]:
    """The profile of a pandas DataFrame or Series, or of a 1-D/2-D numpy array (its
    columns are named 0, 1, ...). See the module docstring for the layout."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        kind, frame = "dataframe", obj
    elif isinstance(obj, pd.Series):
        kind, frame = "series", obj.to_frame(name=0).set_axis([obj.name], axis=1)
    elif isinstance(obj, np.ndarray) and obj.ndim in (1, 2):
        kind, frame = "array", pd.DataFrame(obj)
    else:
        raise InvalidInputError(
            f"cannot profile a {type(obj).__name__}; pass a pandas DataFrame or Series, "
            "or a 1-D or 2-D numpy array"
        )
    if distinct_limit < 1:
        raise InvalidInputError(f"distinct_limit must be at least 1, got {distinct_limit}")
    schema = [
        {"name": _name(c), "dtype": str(t)}
        for c, t in zip(frame.columns, frame.dtypes, strict=True)
    ]
    columns = [frame.iloc[:, i] for i in range(frame.shape[1])]

    def one(i: int) -> dict[str, Any]:
        return _fit(_column_stats(columns[i], schema[i], distinct_limit))

    # numpy's sort (most of a profile's time) releases the GIL: columns on several cores
    workers = min(PROFILE_THREADS, os.cpu_count() or 1, len(columns))
    if workers > 1 and frame.shape[0] * len(columns) >= PARALLEL_CELLS:
        with ThreadPoolExecutor(workers, thread_name_prefix="mlnb-profile") as pool:
            stats = list(pool.map(one, range(len(columns))))
    else:
        stats = [one(i) for i in range(len(columns))]
    return {
        "format": FORMAT,
        "kind": kind,
        "rows": int(frame.shape[0]),
        "columns": int(frame.shape[1]),
        "schema": schema,
        "stats": stats,
    }


# ---------------------------------------------------------------- JSON-safe values


def _name(label: Any) -> Any:
    if label is None or isinstance(label, (str, bool)):
        return label
    if isinstance(label, int):
        return int(label)
    if isinstance(label, float) and math.isfinite(label):
        return float(label)
    return str(label)


def _json_value(x: Any) -> Any:
    """A JSON-safe form of one value: numbers stay numbers (non-finite become null),
    dates become ISO text, containers canonical JSON text, anything else str()."""
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, str):
        return str(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, (np.datetime64, np.timedelta64)):
        return str(x)
    if np is not None and isinstance(x, np.ndarray):
        x = x.tolist()
    item = getattr(x, "item", None)
    if callable(item) and getattr(x, "shape", None) == ():
        return _json_value(item())
    iso = getattr(x, "isoformat", None)
    if callable(iso):
        return str(iso())
    if isinstance(x, (list, tuple, dict, set, frozenset)):
        from mlnb.capture.datahash import NotCanonical, canonical_text

        try:
            return canonical_text(x)
        except (NotCanonical, RecursionError):
            return str(x)
    return str(x)


def _num(x: Any) -> float | int | None:
    v = x.item() if hasattr(x, "item") else x
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v  # type: ignore[no-any-return]


# ---------------------------------------------------------------- one column


def _column_stats(s: Any, field: dict[str, Any], distinct_limit: int) -> dict[str, Any]:
    import pandas as pd
    from pandas.api import types as pt

    dtype = s.dtype
    out: dict[str, Any] = {"name": field["name"], "dtype": field["dtype"]}
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical(s, out)
    if pt.is_bool_dtype(dtype):
        return _boolean(s, out)
    if pt.is_datetime64_any_dtype(dtype) or pt.is_timedelta64_dtype(dtype):
        return _temporal(s, out)
    if pt.is_numeric_dtype(dtype) and not pt.is_complex_dtype(dtype):
        return _numeric(s, out)
    if isinstance(dtype, pd.StringDtype) or (
        isinstance(dtype, pd.ArrowDtype) and pt.is_string_dtype(dtype)
    ):
        return _counted(s, out, "string", distinct_limit)
    if dtype.kind == "O" and pd.api.types.infer_dtype(s.to_numpy(), skipna=True) in (
        "string",
        "empty",
    ):
        return _counted(s, out, "string", distinct_limit)
    return _counted(s, out, "object", distinct_limit)


def _non_null(s: Any, *, numeric: bool = False) -> tuple[Any, int]:
    """The non-null values and the null count: a numpy array for numpy dtypes and, with
    ``numeric``, for extension dtypes too; else the pandas ExtensionArray itself."""
    import numpy as np

    if isinstance(s.dtype, np.dtype):
        arr = s.to_numpy()
        if arr.dtype.kind in "iub":
            return arr, 0
        mask = np.isnan(arr) if arr.dtype.kind == "f" else s.isna().to_numpy()
        nulls = int(np.count_nonzero(mask))
        return (arr[~mask] if nulls else arr), nulls
    mask = s.isna().to_numpy()
    nulls = int(mask.sum())
    kept = s.array[~mask] if nulls else s.array
    if numeric:  # masked, Arrow and sparse dtypes name their numpy dtype differently
        numpy_dtype = getattr(s.dtype, "numpy_dtype", None) or getattr(s.dtype, "subtype", None)
        return np.asarray(kept, dtype=numpy_dtype), nulls
    return kept, nulls


def _numeric(s: Any, out: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    values, nulls = _non_null(s, numeric=True)
    infinite = distinct_inf = 0
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        infinite = int(values.size - np.count_nonzero(finite))
        if infinite:
            distinct_inf = int(np.any(values == np.inf)) + int(np.any(values == -np.inf))
            values = values[finite]
    ordered = np.sort(values)
    n = int(ordered.size)
    out.update(kind="numeric", count=n + infinite, nulls=nulls)
    out.update(distinct=_sorted_distinct(ordered) + distinct_inf, distinct_estimated=False)
    out["infinite"] = infinite
    if n == 0:
        out.update(min=None, max=None, mean=None, std=None, quantiles=None, histogram=None)
        out["percentiles"] = None
        return out
    as_float = ordered.astype(np.float64, copy=False)
    out["min"] = _num(ordered[0])
    out["max"] = _num(ordered[-1])
    out["mean"] = _num(float(as_float.mean()))
    out["std"] = _num(float(as_float.std(ddof=1))) if n > 1 else None
    levels = _quantiles(as_float, [q / 100 for q in QUANTILES])
    out["quantiles"] = {f"p{q}": _num(v) for q, v in zip(QUANTILES, levels, strict=True)}
    edges = _quantiles(as_float, [i / 10 for i in range(11)])
    left = np.searchsorted(as_float, edges, side="left")
    counts = [int(left[i + 1] - left[i]) for i in range(9)] + [int(n - left[9])]
    out["histogram"] = {"edges": [_num(e) for e in edges], "counts": counts}
    # 6 significant digits: interpolation knots, and half the JSON to parse back
    out["percentiles"] = [_round6(v) for v in _percentiles(as_float).tolist()]
    if ordered.dtype.kind in "iu" and out["distinct"] <= DOMAIN_MAX:
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, n])
        out["domain"] = [[_num(ordered[i]), int(c)] for i, c in zip(starts, sizes, strict=True)]
    return out


def _percentiles(ordered: Any) -> Any:
    """p0 to p100 of sorted float data, linear interpolation (as :func:`_quantiles`), in
    one vectorized step."""
    import numpy as np

    n = ordered.size
    pos = np.arange(101) / 100 * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _round6(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _sorted_distinct(ordered: Any) -> int:
    import numpy as np

    if ordered.size == 0:
        return 0
    return int(1 + np.count_nonzero(ordered[1:] != ordered[:-1]))


def _quantiles(ordered: Any, probs: list[float]) -> list[float]:
    """Quantiles of sorted float data with linear interpolation (numpy's default)."""
    n = len(ordered)
    result = []
    for p in probs:
        pos = p * (n - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        a, b = float(ordered[lo]), float(ordered[hi])
        result.append(a + (b - a) * frac if frac else a)
    return result


def _boolean(s: Any, out: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    values, nulls = _non_null(s)
    values = values.astype(bool)
    true = int(np.count_nonzero(values))
    false = int(values.size - true)
    out.update(kind="boolean", count=int(values.size), nulls=nulls)
    out.update(distinct=int(true > 0) + int(false > 0), distinct_estimated=False)
    out.update(true=true, false=false)
    return out


def _temporal(s: Any, out: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    mask = s.isna().to_numpy()
    nulls = int(mask.sum())
    kept = s[~mask] if nulls else s
    array = kept.array
    ints = array.asi8 if hasattr(array, "asi8") else kept.to_numpy().view("i8")
    timedelta = pd.api.types.is_timedelta64_dtype(s.dtype)
    out.update(kind="timedelta" if timedelta else "datetime", count=int(ints.size), nulls=nulls)
    out.update(distinct=_sorted_distinct(np.sort(ints)), distinct_estimated=False)
    if ints.size == 0:
        out.update(min=None, max=None)
        return out
    out["min"] = kept.iloc[int(np.argmin(ints))].isoformat()
    out["max"] = kept.iloc[int(np.argmax(ints))].isoformat()
    return out


def _categorical(s: Any, out: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    codes = s.array.codes
    categories = s.dtype.categories
    counts = np.bincount(codes[codes >= 0], minlength=len(categories))
    nulls = int(np.count_nonzero(codes < 0))
    out.update(kind="categorical", count=int(codes.size - nulls), nulls=nulls)
    out.update(distinct=int(np.count_nonzero(counts)), distinct_estimated=False)
    out.update(ordered=bool(s.dtype.ordered), categories=len(categories))
    used = np.flatnonzero(counts)
    _top_and_domain(out, [categories[i] for i in used], counts[used], exact=True)
    return out


def _counted(s: Any, out: dict[str, Any], kind: str, distinct_limit: int) -> dict[str, Any]:
    """Strings and objects: counts per value through pandas' factorize."""
    import numpy as np

    values = s.to_numpy() if isinstance(s.dtype, np.dtype) else s.array
    key: Callable[[Any], Any] | None = None if kind == "string" else _object_key
    if len(values) <= distinct_limit:
        uniques, counts, nulls = _value_counts(values, key)
        distinct, exact = len(uniques), True
    else:
        uniques, counts, nulls, distinct, exact = _batched_counts(values, key, distinct_limit)
    out.update(kind=kind, count=len(values) - nulls, nulls=nulls)
    out.update(distinct=distinct, distinct_estimated=not exact)
    if kind == "string":
        out["length"] = _length_range(uniques)
    _top_and_domain(out, uniques, counts, exact=exact)
    return out


def _length_range(uniques: Any) -> dict[str, int] | None:
    """Shortest and longest string, in characters (over the distinct values only)."""
    if len(uniques) == 0:
        return None
    # Only arrow-backed values are measured with pyarrow: a python-stored string array has
    # ``__arrow_array__`` too (pandas 3), even where pyarrow is not installed.
    if getattr(getattr(uniques, "dtype", None), "storage", None) == "pyarrow":
        import pyarrow.compute as pc  # type: ignore[import-untyped]

        lengths = pc.utf8_length(uniques.__arrow_array__())
        return {"min": int(pc.min(lengths).as_py()), "max": int(pc.max(lengths).as_py())}
    lengths = [len(u) for u in uniques]
    return {"min": min(lengths), "max": max(lengths)}


def _object_key(x: Any) -> Any:
    """A hashable key that keeps 1, 1.0, True and "1" apart, for mixed object cells."""
    from mlnb.capture.datahash import NotCanonical, canonical_text

    try:
        return canonical_text(x)
    except (NotCanonical, RecursionError):
        return f"{type(x).__qualname__}:{x!s}"


def _value_counts(values: Any, key: Callable[[Any], Any] | None) -> tuple[Any, Any, int]:
    """Distinct non-null values (in order of first appearance), their counts, and the
    number of nulls."""
    import numpy as np
    import pandas as pd

    if key is None:
        codes, uniques = pd.factorize(values)
        counts = np.bincount(codes + 1, minlength=len(uniques) + 1)
        return uniques, counts[1:], int(counts[0])
    mask = pd.isna(np.asarray(values, dtype=object))
    kept = np.asarray(values, dtype=object)[~mask]
    keys = np.fromiter((key(v) for v in kept), dtype=object, count=len(kept))
    codes, _ = pd.factorize(keys)
    firsts = np.unique(codes, return_index=True)[1]
    return [kept[i] for i in firsts], np.bincount(codes), int(mask.sum())


def _batched_counts(
    values: Any, key: Callable[[Any], Any] | None, batch: int
) -> tuple[list[Any], Any, int, int, bool]:
    """Counts of a long column in batches: exact while it has at most TOP_CANDIDATES
    values, else the heaviest candidates and a HyperLogLog distinct estimate."""
    import numpy as np
    import pandas as pd

    registers = np.zeros(1 << HLL_BITS, np.uint8)
    candidates: dict[Any, int] = {}
    originals: dict[Any, Any] = {}
    exact = True
    nulls = 0
    for start in range(0, len(values), batch):
        uniques, counts, batch_nulls = _value_counts(values[start : start + batch], key)
        nulls += batch_nulls
        keys = list(uniques) if key is None else [key(u) for u in uniques]
        _hll_add(registers, pd.util.hash_array(np.asarray([str(k) for k in keys], dtype=object)))
        if len(keys) > TOP_CANDIDATES:
            exact = False
            keep = np.argpartition(-counts, TOP_CANDIDATES)[:TOP_CANDIDATES]
        else:
            keep = np.arange(len(keys))
        for i in keep.tolist():
            k = keys[i]
            candidates[k] = candidates.get(k, 0) + int(counts[i])
            originals.setdefault(k, uniques[i])
        if len(candidates) > TOP_CANDIDATES:
            exact = False
            ranked = sorted(candidates.items(), key=lambda kv: -kv[1])[:TOP_CANDIDATES]
            candidates = dict(ranked)
    distinct = len(candidates) if exact else _hll_estimate(registers)
    counts_out = np.fromiter(candidates.values(), np.int64, len(candidates))
    return [originals[k] for k in candidates], counts_out, nulls, distinct, exact


def _top_and_domain(out: dict[str, Any], uniques: Any, counts: Any, *, exact: bool) -> None:
    """``top``: the TOP_N most frequent, ties in order of first appearance; ``domain``:
    all values sorted, when exact and at most DOMAIN_MAX of them."""
    import numpy as np

    order = np.argsort(-np.asarray(counts), kind="stable")[:TOP_N]
    out["top"] = [[_json_value(uniques[i]), int(counts[i])] for i in order.tolist()]
    if exact and len(counts) <= DOMAIN_MAX:
        pairs = [(_json_value(uniques[i]), int(counts[i])) for i in range(len(counts))]
        out["domain"] = [list(p) for p in sorted(pairs, key=lambda p: _sort_key(p[0]))]
    else:
        out["domain"] = None
    if not exact:
        out["top_estimated"] = True


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (2, v)
    return (3, str(v))


# ---------------------------------------------------------------- HyperLogLog


def _hll_add(registers: Any, hashes: Any) -> None:
    import numpy as np

    h = np.asarray(hashes, dtype=np.uint64)
    index = (h >> np.uint64(64 - HLL_BITS)).astype(np.intp)
    rest = h << np.uint64(HLL_BITS)
    zeros = np.zeros(h.size, np.uint8)
    for shift in (32, 16, 8, 4, 2, 1):  # count leading zeros, 6 vectorized steps
        small = rest < np.uint64(1 << (64 - shift))
        zeros[small] += shift
        rest[small] <<= np.uint64(shift)
    rank = np.minimum(zeros + 1, 64 - HLL_BITS + 1).astype(np.uint8)
    np.maximum.at(registers, index, rank)


def _hll_estimate(registers: Any) -> int:
    import numpy as np

    m = registers.size
    alpha = 0.7213 / (1 + 1.079 / m)
    estimate = alpha * m * m / float(np.sum(np.power(2.0, -registers.astype(np.float64))))
    empty = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * m and empty:
        estimate = m * math.log(m / empty)
    return int(estimate + 0.5)


# ---------------------------------------------------------------- size bound


def _fit(entry: dict[str, Any]) -> dict[str, Any]:
    """Keep one column's JSON under MAX_COLUMN_BYTES (see the module docstring)."""
    if _size(entry) <= MAX_COLUMN_BYTES:
        return entry
    for limit in (MAX_VALUE_CHARS, 40):
        for field in ("top", "domain"):
            if entry.get(field):
                entry[field] = [[_cut(v, limit), c] for v, c in entry[field]]
        entry["values_truncated"] = True
        if _size(entry) <= MAX_COLUMN_BYTES:
            return entry
    if entry.get("domain") is not None:
        entry["domain"] = None
        entry["domain_dropped"] = True
    while _size(entry) > MAX_COLUMN_BYTES and entry.get("top"):
        entry["top"] = entry["top"][:-1]
    if _size(entry) > MAX_COLUMN_BYTES:
        entry["name"] = _cut(entry["name"], 200)
    return entry


def _cut(v: Any, limit: int) -> Any:
    return v[: limit - 1] + "…" if isinstance(v, str) and len(v) > limit else v


def _size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, default=str))
