"""Content digests of data in memory, for :mod:`mlnb.capture.fingerprints`.

The :class:`Fingerprint` record, xxh3-128 over length-framed parts, the canonical text of
one cell, and the digests of numpy arrays, pandas DataFrames and Series, Arrow tables,
polars frames and bytes. The rules that make them stable are in the docstring of
:mod:`mlnb.capture.fingerprints`; files, folders and the registry of hashers live there.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from mlnb.errors import InvalidInputError

if TYPE_CHECKING:
    import xxhash

FINGERPRINT_ALGORITHM = "xxh128"
PREFIX = FINGERPRINT_ALGORITHM + ":"
STRING_BATCH = 1 << 18  # strings encoded at once: bounds memory, keeps them in cache
MAX_NESTING = 100


@dataclass(frozen=True)
class Fingerprint:
    """What :func:`fingerprint` found: a content hash plus a small description.

    ``schema`` is a list of ``{"name", "dtype"}`` (tabular kinds only); ``sampled`` is
    True only when a hasher had to skip data (no built-in ever does); ``details`` is small
    and JSON-safe (a file's path and mtime, a folder's file count, an array's shape).
    """

    hash: str
    kind: str
    rows: int | None = None
    columns: int | None = None
    size_bytes: int | None = None
    schema: list[dict[str, Any]] | None = None
    sampled: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-safe dict."""
        return {
            "hash": self.hash,
            "kind": self.kind,
            "rows": self.rows,
            "columns": self.columns,
            "size_bytes": self.size_bytes,
            "schema": self.schema,
            "sampled": self.sampled,
            "details": self.details,
        }


def new_xxh128() -> xxhash.xxh3_128:
    """A fresh xxh3-128 hasher (xxhash is imported on first use: ``import mlnb`` stays light)."""
    import xxhash

    return xxhash.xxh3_128()


def spelled(digest: bytes) -> str:
    """A digest as a fingerprint is spelled: ``xxh128:<32 hex digits>``."""
    return PREFIX + digest.hex()


class _Digest:
    """xxh3-128 over length-framed parts, so no two sequences of parts feed it alike."""

    def __init__(self, tag: str) -> None:
        self.h = new_xxh128()
        self.part(tag.encode())

    def part(self, data: bytes | memoryview) -> None:
        self.h.update(len(data).to_bytes(8, "little"))
        self.h.update(data)

    def text(self, value: str) -> None:
        self.part(value.encode("utf-8", "surrogatepass"))

    def digest(self) -> bytes:
        return self.h.digest()


class _Ctx:
    """Counts the bytes of data fed to the hash (reported as ``size_bytes``)."""

    def __init__(self) -> None:
        self.nbytes = 0


class NotCanonical(Exception):
    """A value with no canonical text (:func:`canonical_text`); callers name where it was."""

    def __init__(self, value: object, why: str = "") -> None:
        self.value = value
        self.why = why


def _np() -> Any:
    import numpy

    return numpy


def _mod(name: str) -> Any:
    return sys.modules.get(name)


# ---------------------------------------------------------------- canonical cell text


def canonical_text(x: object, depth: int = 0) -> str:
    """A canonical ASCII text for one value, tagged so that 1, 1.0, "1" and True differ."""
    t = type(x)
    if t is str:
        return json.dumps(x)
    if t is bool:
        return "true" if x else "false"
    if t is int:
        return _int_text(x)  # type: ignore[arg-type]
    if t is float:
        return repr(x)
    if x is None:
        return "null"
    if depth > MAX_NESTING:
        raise NotCanonical(x, f"nested deeper than {MAX_NESTING} levels (does it contain itself?)")
    pd = _mod("pandas")
    if pd is not None:
        if x is pd.NA:
            return "NA"
        if x is pd.NaT:
            return "NaT"
    np = _mod("numpy")
    if np is not None:
        if isinstance(x, np.ndarray):
            return f"nd({_array_digest(x, 'a nested array', _Ctx()).hex()})"
        if isinstance(x, (np.datetime64, np.timedelta64)):
            unit, count = np.datetime_data(x.dtype)
            return f"{x.dtype.kind}64({int(x.view('i8'))},{count}{unit})"
        if isinstance(x, np.generic) and not isinstance(x, (str, bytes)):
            return canonical_text(x.item(), depth + 1)
    if isinstance(x, str):
        return json.dumps(str(x))
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return _int_text(int(x))
    if isinstance(x, float):
        return repr(float(x))
    if isinstance(x, (list, tuple)):
        inner = ",".join(canonical_text(v, depth + 1) for v in x)
        return f"[{inner}]" if isinstance(x, list) else f"({inner})"
    if isinstance(x, dict):
        items = sorted(
            f"{canonical_text(k, depth + 1)}:{canonical_text(v, depth + 1)}" for k, v in x.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(x, (set, frozenset)):
        return "{|" + ",".join(sorted(canonical_text(v, depth + 1) for v in x)) + "|}"
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f'b"{bytes(x).hex()}"'
    if isinstance(x, _dt.datetime):
        return f'dt"{x.isoformat()}"'
    if isinstance(x, _dt.date):
        return f'd"{x.isoformat()}"'
    if isinstance(x, _dt.time):
        return f't"{x.isoformat()}"'
    if isinstance(x, _dt.timedelta):
        ns = ((x.days * 86400 + x.seconds) * 10**6 + x.microseconds) * 1000
        return f"td({ns + int(getattr(x, 'nanoseconds', 0))})"
    if isinstance(x, complex):
        return f"c({x.real!r},{x.imag!r})"
    decimal, uuid = _mod("decimal"), _mod("uuid")  # such values exist only once imported
    if decimal is not None and isinstance(x, decimal.Decimal):
        return f'dec"{x}"'
    if uuid is not None and isinstance(x, uuid.UUID):
        return f'uuid"{x}"'
    if isinstance(x, PurePath):
        return "path" + json.dumps(x.as_posix())
    if pd is not None:
        if isinstance(x, pd.Period):
            return f'per"{x}"'
        if isinstance(x, pd.Interval):
            left, right = canonical_text(x.left, depth + 1), canonical_text(x.right, depth + 1)
            return f"iv({left},{right},{x.closed})"
    raise NotCanonical(x)


def _int_text(n: int) -> str:
    try:
        return str(n)
    except ValueError:  # beyond sys.int_max_str_digits
        return "i" + hex(n)


def _not_canonical(exc: NotCanonical, where: str) -> InvalidInputError:
    v = exc.value
    what = exc.why or "which has no canonical form for hashing"
    text = repr(v)
    text = text if len(text) <= 60 else text[:57] + "..."
    return InvalidInputError(
        f"{where} holds a {type(v).__module__}.{type(v).__qualname__} value ({text}), {what}; "
        "convert it to strings, numbers, dates, lists or dicts, or register a hasher"
    )


def _label(x: object, where: str) -> str:
    try:
        return canonical_text(x)
    except NotCanonical as exc:
        raise _not_canonical(exc, where) from None
    except RecursionError:
        raise _not_canonical(NotCanonical(x, "nested too deeply"), where) from None


# ---------------------------------------------------------------- value digests


def _array_digest(arr: Any, where: str, ctx: _Ctx) -> bytes:
    """Digest of a numpy array's dtype, shape and values."""
    np = _np()
    shape = json.dumps(list(arr.shape)).encode()
    if arr.dtype.kind in "OT":
        d = _Digest("nd-obj")
        d.part(shape)
        d.part(_object_digest(np.asarray(arr, dtype=object).reshape(-1), where, ctx))
        return d.digest()
    arr = _canonical_numeric(arr)
    d = _Digest("nd")
    dtype = arr.dtype
    d.text(dtype.str if dtype.fields is None else repr(dtype.descr))
    d.part(shape)
    flat = arr.reshape(-1).view(np.uint8)
    ctx.nbytes += flat.nbytes
    d.part(memoryview(flat))
    return d.digest()


def _canonical_numeric(arr: Any) -> Any:
    """C-contiguous, little-endian, with every float NaN the same quiet NaN."""
    np = _np()
    arr = np.ascontiguousarray(arr)
    little = arr.dtype.newbyteorder("<")
    if little != arr.dtype:
        arr = arr.astype(little)
    if arr.dtype.kind in "fc" and arr.size:
        flat = arr.reshape(-1)
        if arr.dtype.kind == "c":
            flat = flat.view(f"<f{arr.dtype.itemsize // 2}")
        if np.isnan(flat.min()):
            flat = flat.copy()
            flat[np.isnan(flat)] = np.nan
            arr = flat.view(arr.dtype).reshape(arr.shape)
    return arr


class _StrDigest:
    """Strings as three streams: byte lengths (int64), UTF-8 bytes, missing codes (uint8).

    Fed batch by batch; the result does not depend on how the strings were batched or
    chunked, so python-stored and arrow-stored string columns give the same digest."""

    def __init__(self, ctx: _Ctx) -> None:
        self.lengths = new_xxh128()
        self.data = new_xxh128()
        self.codes = new_xxh128()
        self.n = 0
        self.ctx = ctx

    def add(self, lengths: Any, data: Any, codes: Any) -> None:
        self.lengths.update(memoryview(lengths.astype("<i8", copy=False)).cast("B"))
        self.data.update(data)
        self.codes.update(memoryview(codes.astype("u1", copy=False)).cast("B"))
        self.n += len(lengths)
        self.ctx.nbytes += len(data) + 9 * len(lengths)

    def digest(self, tag: str) -> bytes:
        d = _Digest(tag)
        d.part(self.n.to_bytes(8, "little"))
        d.part(self.lengths.digest())
        d.part(self.data.digest())
        d.part(self.codes.digest())
        return d.digest()


def _encode_strings(items: list[Any]) -> tuple[Any, bytes]:
    """Byte lengths and concatenated UTF-8 of a list of str (TypeError on anything else)."""
    np = _np()
    n = len(items)
    if n == 0:
        return np.zeros(0, np.int64), b""
    joined = "\x00".join(items).encode("utf-8", "surrogatepass")
    u8 = np.frombuffer(joined, np.uint8)
    seps = np.flatnonzero(u8 == 0)
    if len(seps) == n - 1:
        bounds = np.empty(n + 1, np.int64)
        bounds[0] = -1
        bounds[1:-1] = seps
        bounds[-1] = len(joined)
        return np.diff(bounds) - 1, joined.replace(b"\x00", b"")
    encoded = [s.encode("utf-8", "surrogatepass") for s in items]  # some hold NUL
    return np.fromiter(map(len, encoded), np.int64, n), b"".join(encoded)


def _missing_code(x: object) -> int | None:
    """1 None, 2 float NaN, 3 pd.NA, 4 pd.NaT, 5 numpy NaT; None if x is not missing."""
    if x is None:
        return 1
    if isinstance(x, float) and x != x:
        return 2
    pd = _mod("pandas")
    if pd is not None:
        if x is pd.NA:
            return 3
        if x is pd.NaT:
            return 4
    np = _mod("numpy")
    if np is not None and isinstance(x, (np.datetime64, np.timedelta64)) and np.isnat(x):
        return 5
    return None


def _object_digest(values: Any, where: str, ctx: _Ctx) -> bytes:
    """Digest of a 1-D object array: the string streams if every non-missing cell is a str,
    else one canonical text per cell."""
    np = _np()
    sd = _StrDigest(ctx)
    for start in range(0, len(values), STRING_BATCH):
        items = values[start : start + STRING_BATCH].tolist()
        codes = np.zeros(len(items), np.uint8)
        try:
            lengths, data = _encode_strings(items)
        except TypeError:
            for i, x in enumerate(items):
                if not isinstance(x, str):
                    code = _missing_code(x)
                    if code is None:
                        return _cells_digest(values, where, ctx)
                    codes[i] = code
                    items[i] = ""
            lengths, data = _encode_strings(items)
        sd.add(lengths, data, codes)
    return sd.digest("obj-str")


def _cells_digest(values: Any, where: str, ctx: _Ctx) -> bytes:
    h = new_xxh128()
    for start in range(0, len(values), STRING_BATCH):
        try:
            text = "".join(
                canonical_text(x) + "\n" for x in values[start : start + STRING_BATCH].tolist()
            )
        except NotCanonical as exc:
            raise _not_canonical(exc, where) from None
        except RecursionError:
            raise _not_canonical(NotCanonical(None, "nested too deeply"), where) from None
        data = text.encode("utf-8", "surrogatepass")
        ctx.nbytes += len(data)
        h.update(data)
    d = _Digest("cells")
    d.part(len(values).to_bytes(8, "little"))
    d.part(h.digest())
    return d.digest()


def _pandas_values(obj: Any) -> Any:
    """The values of a Series or Index: a numpy array or a pandas ExtensionArray."""
    np = _np()
    if isinstance(obj.dtype, np.dtype):
        return obj.to_numpy()
    return obj.array


def _pandas_digest(values: Any, where: str, ctx: _Ctx) -> bytes:
    """Digest of a numpy array or pandas ExtensionArray (the column's dtype is hashed by
    the caller, so the same strings give the same digest whatever their storage)."""
    np = _np()
    if isinstance(values, np.ndarray):
        return _array_digest(values, where, ctx)
    pd = _mod("pandas")
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        if dtype.storage == "python":
            return _python_str_digest(values, ctx)
        return _arrow_digest(values.__arrow_array__(), where, ctx)
    if isinstance(dtype, pd.CategoricalDtype):
        d = _Digest("categorical")
        d.part(b"ordered" if dtype.ordered else b"unordered")
        d.part(_array_digest(values.codes, where, ctx))
        d.part(_pandas_digest(_pandas_values(dtype.categories), f"categories of {where}", ctx))
        return d.digest()
    if isinstance(dtype, (pd.DatetimeTZDtype, pd.PeriodDtype)):
        return _array_digest(values.asi8, where, ctx)
    if isinstance(
        values, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)
    ):
        numpy_dtype = dtype.numpy_dtype
        d = _Digest("masked")
        d.part(_array_digest(values.isna(), where, ctx))
        d.part(
            _array_digest(values.to_numpy(numpy_dtype, na_value=numpy_dtype.type(0)), where, ctx)
        )
        return d.digest()
    if isinstance(dtype, pd.ArrowDtype):
        return _arrow_digest(values.__arrow_array__(), where, ctx)
    if isinstance(dtype, pd.IntervalDtype):
        d = _Digest("interval")
        d.text(str(values.closed))
        d.part(_array_digest(values.isna(), where, ctx))
        d.part(_pandas_digest(_pandas_values(values.left), where, ctx))
        d.part(_pandas_digest(_pandas_values(values.right), where, ctx))
        return d.digest()
    if isinstance(dtype, pd.SparseDtype):
        return _array_digest(np.asarray(values), where, ctx)
    if isinstance(values, pd.arrays.NumpyExtensionArray):
        return _pandas_digest(values.to_numpy(), where, ctx)
    return _object_digest(np.asarray(values, dtype=object), where, ctx)


def _python_str_digest(values: Any, ctx: _Ctx) -> bytes:
    np = _np()
    pd = _mod("pandas")
    objects = np.asarray(values)
    sd = _StrDigest(ctx)
    for start in range(0, len(objects), STRING_BATCH):
        part = objects[start : start + STRING_BATCH]
        items = part.tolist()
        try:
            lengths, data = _encode_strings(items)
            codes = np.zeros(len(items), np.uint8)
        except TypeError:
            missing = pd.isna(part)
            for i in np.flatnonzero(missing).tolist():
                items[i] = ""
            lengths, data = _encode_strings(items)
            codes = missing.view(np.uint8)
        sd.add(lengths, data, codes)
    return sd.digest("str")


def _arrow_digest(chunked: Any, where: str, ctx: _Ctx) -> bytes:
    """Digest of a pyarrow (Chunked)Array, independent of its chunking."""
    import pyarrow as pa  # type: ignore[import-untyped]

    np = _np()
    if isinstance(chunked, pa.Array):
        chunked = pa.chunked_array([chunked], type=chunked.type)
    t = chunked.type
    types = pa.types
    if types.is_dictionary(t):
        chunked = chunked.cast(t.value_type)
        t = chunked.type
    if types.is_string_view(t) or types.is_string(t):
        chunked = chunked.cast(pa.large_string())
    elif types.is_binary_view(t) or types.is_binary(t):
        chunked = chunked.cast(pa.large_binary())
    t = chunked.type
    if types.is_large_string(t) or types.is_large_binary(t):
        sd = _StrDigest(ctx)
        for chunk in chunked.chunks:
            codes = _null_codes(chunk)
            if chunk.null_count:
                chunk = chunk.fill_null(pa.scalar("" if types.is_large_string(t) else b"", t))
            offsets = np.frombuffer(chunk.buffers()[1], np.int64, len(chunk) + 1, 8 * chunk.offset)
            data = chunk.buffers()[2]
            body = memoryview(data)[offsets[0] : offsets[-1]] if data is not None else b""
            sd.add(np.diff(offsets), body, codes)
        return sd.digest("str" if types.is_large_string(t) else "bin")
    if types.is_boolean(t):
        h, codes_h = new_xxh128(), new_xxh128()
        for chunk in chunked.chunks:
            codes_h.update(memoryview(_null_codes(chunk)))
            bools = chunk.fill_null(False).to_numpy(zero_copy_only=False).view(np.uint8)
            h.update(memoryview(bools))
            ctx.nbytes += 2 * len(chunk)
        d = _Digest("bool")
        d.part(h.digest())
        d.part(codes_h.digest())
        return d.digest()
    if types.is_null(t):
        return _Digest(f"null{len(chunked)}").digest()
    try:
        width = t.bit_width // 8
    except ValueError:
        width = 0
    if width and t.bit_width % 8 == 0:
        h, codes_h = new_xxh128(), new_xxh128()
        float_dtype = f"<f{width}" if types.is_floating(t) else None
        for chunk in chunked.chunks:
            codes = _null_codes(chunk)
            raw = np.frombuffer(
                chunk.buffers()[1], np.uint8, len(chunk) * width, chunk.offset * width
            )
            if chunk.null_count:
                raw = raw.reshape(-1, width).copy()
                raw[codes.view(bool)] = 0
                raw = raw.reshape(-1)
            if float_dtype is not None:
                raw = _canonical_numeric(raw.view(float_dtype)).view(np.uint8)
            h.update(memoryview(raw))
            codes_h.update(memoryview(codes))
            ctx.nbytes += raw.nbytes
        d = _Digest(f"fixed{width}")
        d.part(h.digest())
        d.part(codes_h.digest())
        return d.digest()
    cells = new_xxh128()  # nested and other types: one canonical text per cell
    for chunk in chunked.chunks:
        try:
            text = "".join(canonical_text(x) + "\n" for x in chunk.to_pylist())
        except NotCanonical as exc:
            raise _not_canonical(exc, where) from None
        data = text.encode("utf-8", "surrogatepass")
        ctx.nbytes += len(data)
        cells.update(data)
    d = _Digest("arrow-cells")
    d.part(cells.digest())
    return d.digest()


def _null_codes(chunk: Any) -> Any:
    np = _np()
    if not chunk.null_count:
        return np.zeros(len(chunk), np.uint8)
    return chunk.is_null().to_numpy(zero_copy_only=False).astype(np.uint8)


# ---------------------------------------------------------------- built-in hashers


def _schema_name(label: object) -> Any:
    if isinstance(label, str) or label is None or isinstance(label, bool):
        return label
    if isinstance(label, int):
        return int(label)
    if isinstance(label, float) and math.isfinite(label):
        return float(label)
    return str(label)


def _index_parts(index: Any) -> tuple[list[str], Iterator[Any]]:
    """Header entries (names, dtypes) and the values of each level of an index."""
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    header = [_label(list(index.names), "the index names"), *(str(lv.dtype) for lv in levels)]
    return header, (_pandas_values(lv) for lv in levels)


def dataframe_fingerprint(df: Any) -> Fingerprint:
    """A pandas DataFrame: index, column labels, dtypes and every value."""
    ctx = _Ctx()
    columns = df.columns
    dtypes = [str(dt) for dt in df.dtypes]
    index_header, index_values = _index_parts(df.index)
    header = [
        "dataframe",
        len(df),
        index_header,
        [_label(c, f"column label {c!r}") for c in columns],
        dtypes,
        _label(list(columns.names), "the column index names"),
    ]
    d = _Digest("mlnb-frame-v1")
    d.text(json.dumps(header))
    for level, values in enumerate(index_values):
        d.part(_pandas_digest(values, f"index level {level}", ctx))
    for i, name in enumerate(columns):
        d.part(_pandas_digest(_pandas_values(df.iloc[:, i]), f"column {name!r}", ctx))
    return Fingerprint(
        hash=spelled(d.digest()),
        kind="dataframe",
        rows=len(df),
        columns=len(columns),
        size_bytes=ctx.nbytes,
        schema=[
            {"name": _schema_name(c), "dtype": t} for c, t in zip(columns, dtypes, strict=True)
        ],
    )


def series_fingerprint(s: Any) -> Fingerprint:
    """A pandas Series: index, name, dtype and every value."""
    ctx = _Ctx()
    index_header, index_values = _index_parts(s.index)
    name = _label(s.name, f"series name {s.name!r}")
    header = ["series", len(s), index_header, name, str(s.dtype)]
    d = _Digest("mlnb-series-v1")
    d.text(json.dumps(header))
    for level, values in enumerate(index_values):
        d.part(_pandas_digest(values, f"index level {level}", ctx))
    d.part(_pandas_digest(_pandas_values(s), f"series {s.name!r}", ctx))
    return Fingerprint(
        hash=spelled(d.digest()),
        kind="series",
        rows=len(s),
        columns=1,
        size_bytes=ctx.nbytes,
        schema=[{"name": _schema_name(s.name), "dtype": str(s.dtype)}],
    )


def ndarray_fingerprint(arr: Any) -> Fingerprint:
    """A numpy array: dtype, shape and values."""
    ctx = _Ctx()
    d = _Digest("mlnb-array-v1")
    d.part(_array_digest(arr, "the array", ctx))
    return Fingerprint(
        hash=spelled(d.digest()),
        kind="array",
        rows=int(arr.shape[0]) if arr.ndim else None,
        columns=int(arr.shape[1]) if arr.ndim == 2 else None,
        size_bytes=ctx.nbytes,
        details={"dtype": str(arr.dtype), "shape": [int(n) for n in arr.shape]},
    )


def arrow_fingerprint(table: Any) -> Fingerprint:
    """A pyarrow Table or RecordBatch: column names, types and values, whatever the chunking."""
    ctx = _Ctx()
    fields = [(f.name, str(f.type)) for f in table.schema]
    d = _Digest("mlnb-arrow-v1")
    d.text(json.dumps(["arrow", table.num_rows, fields]))
    for i, (name, _) in enumerate(fields):
        d.part(_arrow_digest(table.column(i), f"column {name!r}", ctx))
    return Fingerprint(
        hash=spelled(d.digest()),
        kind="arrow",
        rows=table.num_rows,
        columns=len(fields),
        size_bytes=ctx.nbytes,
        schema=[{"name": n, "dtype": t} for n, t in fields],
    )


def polars_fingerprint(obj: Any) -> Fingerprint:
    """A polars DataFrame or Series: column names, types and values."""
    pl = _mod("polars")
    series = isinstance(obj, pl.Series)
    frame = obj.to_frame() if series else obj
    fields = [(name, str(dtype)) for name, dtype in frame.schema.items()]
    try:
        table = frame.to_arrow()
    except Exception as exc:  # e.g. an Object column
        raise InvalidInputError(f"cannot fingerprint this polars frame: {exc}") from None
    ctx = _Ctx()
    d = _Digest("mlnb-polars-v1")
    d.text(json.dumps(["series" if series else "frame", frame.height, fields]))
    for i, (name, _) in enumerate(fields):
        d.part(_arrow_digest(table.column(i), f"column {name!r}", ctx))
    return Fingerprint(
        hash=spelled(d.digest()),
        kind="polars",
        rows=frame.height,
        columns=len(fields),
        size_bytes=ctx.nbytes,
        schema=[{"name": n, "dtype": t} for n, t in fields],
    )


def bytes_fingerprint(data: Any) -> Fingerprint:
    """Bytes (or any buffer): the plain XXH128 of its bytes."""
    view = memoryview(data).cast("B")
    h = new_xxh128()
    h.update(view)
    return Fingerprint(hash=spelled(h.digest()), kind="bytes", size_bytes=len(view))


# ---------------------------------------------------------------- files and folders
