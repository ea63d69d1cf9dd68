"""Fingerprints: stable across processes, sensitive to every change, constant memory."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlnb.capture import fingerprints
from mlnb.capture.fingerprints import DictFileHashCache, Fingerprint, fingerprint, register_hasher
from mlnb.errors import InvalidInputError
from mlnb.store import hashing
from tests.conftest import REPO, run_python

# Built the same way here and in subprocesses: one column of each kind of dtype.
FRAME_CODE = """
import datetime, decimal
import numpy as np, pandas as pd
def make_frame():
    n = 6
    return pd.DataFrame(
        {
            "int": np.arange(n, dtype=np.int64) * 7,
            "float": [0.5, np.nan, -1.25, 3.0, np.inf, 1e300],
            "str": pd.array(["a", None, "ünï", "", "x\\x00y", "long " * 20], dtype="str"),
            "obj": ["a", None, np.nan, "b", "c", "d"],
            "mixed": [1, "1", 1.0, True, None, [1, {"b": 2, "a": 1}]],
            "cat": pd.Categorical(["x", "y", None, "x", "y", "x"]),
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01T12:00:00", "2020-02-29",
                                    "1970-01-01", "2099-12-31"], format="ISO8601"),
            "tz": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
            "nullable": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "flag": [True, False, True, True, False, False],
            "dec": [decimal.Decimal("1.10"), None, datetime.date(2020, 1, 2),
                    b"\\x00\\x01", {3, 1, 2}, (1, 2)],
        },
        index=pd.Index([10, 11, 12, 13, 14, 15], name="row"),
    )
"""
namespace: dict[str, Any] = {}
exec(FRAME_CODE, namespace)
make_frame = namespace["make_frame"]


def fp(obj: object, **kw: Any) -> str:
    return fingerprint(obj, **kw).hash


# ---------------------------------------------------------------- DataFrames


def test_fingerprint_of_a_dataframe_describes_it() -> None:
    df = make_frame()
    result = fingerprint(df)
    assert re.fullmatch(r"xxh128:[0-9a-f]{32}", result.hash)
    assert (result.kind, result.rows, result.columns, result.sampled) == ("dataframe", 6, 11, False)
    assert result.schema is not None
    assert result.schema[0] == {"name": "int", "dtype": "int64"}
    assert [c["name"] for c in result.schema] == list(df.columns)
    assert result.size_bytes and result.size_bytes > 0
    json.dumps(result.to_dict(), allow_nan=False)


def test_fingerprint_of_a_dataframe_is_stable_across_processes() -> None:
    code = (
        FRAME_CODE
        + "from mlnb.capture.fingerprints import fingerprint\n"
        + "df = make_frame()\n"
        + "print(fingerprint(df).hash, fingerprint(df['mixed']).hash, "
        + "fingerprint(df.to_numpy()).hash)\n"
    )
    env = {"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "random"}
    first = run_python(code, env=env).stdout.split()
    second = run_python(code, env=env).stdout.split()
    df = make_frame()
    here = [fp(df), fp(df["mixed"]), fp(df.to_numpy())]
    assert first == second == here


def test_fingerprint_is_the_same_for_an_equal_frame_built_again() -> None:
    assert fp(make_frame()) == fp(make_frame())
    df = make_frame()
    assert fp(df) == fp(df.copy(deep=True))


def _changed_frames() -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    df = make_frame()
    df.loc[13, "int"] = 22
    out["one int cell"] = df
    df = make_frame()
    df.loc[10, "str"] = "b"
    out["one string cell"] = df
    df = make_frame()
    df.loc[10, "float"] = 0.5000000001
    out["one float cell"] = df
    df = make_frame()
    df.at[15, "mixed"] = [1, {"b": 2, "a": 2}]
    out["a nested value"] = df
    df = make_frame()
    out["column order"] = df[[*df.columns[1:], df.columns[0]]]
    df = make_frame()
    out["int dtype"] = df.astype({"int": "int32"})
    df = make_frame()
    out["float dtype"] = df.astype({"int": "float64"})
    df = make_frame()
    out["string dtype"] = df.astype({"str": object})
    df = make_frame()
    out["index values"] = df.set_axis([10, 11, 12, 13, 14, 16])
    df = make_frame()
    out["index name"] = df.rename_axis("other")
    df = make_frame()
    out["column name"] = df.rename(columns={"int": "integer"})
    df = make_frame()
    out["row order"] = df.iloc[::-1]
    df = make_frame()
    out["time zone"] = df.assign(tz=df["tz"].dt.tz_convert("UTC"))
    df = make_frame()
    out["a dropped row"] = df.iloc[:-1]
    return out


@pytest.mark.parametrize("change", list(_changed_frames()))
def test_fingerprint_changes_when_the_frame_changes(change: str) -> None:
    assert fp(_changed_frames()[change]) != fp(make_frame())


def test_every_change_gives_a_different_fingerprint() -> None:
    hashes = [fp(df) for df in _changed_frames().values()]
    assert len(set(hashes)) == len(hashes)


def test_missing_values_hash_stably_and_are_told_apart_in_object_columns() -> None:
    def obj(*values: object) -> str:
        frame = pd.DataFrame({"a": pd.Series(list(values), dtype=object)})
        assert frame.dtypes.iloc[0].kind == "O"
        return fp(frame)

    assert obj("a", None) == obj("a", None)
    kinds = [obj("a", None), obj("a", np.nan), obj("a", pd.NA), obj("a", pd.NaT), obj("a", "")]
    assert len(set(kinds)) == 5
    assert obj(1, None) != obj(1, np.nan)


def test_nan_payloads_and_nan_positions() -> None:
    plain = np.array([1.0, np.nan])
    payload = np.array([1.0, 0.0])
    payload.view(np.uint64)[1] = 0x7FF8_0000_0000_0BAD  # another quiet NaN
    negative = np.array([1.0, -np.nan])
    assert np.isnan(payload[1]) and np.isnan(negative[1])
    assert fp(pd.DataFrame({"x": plain})) == fp(pd.DataFrame({"x": payload}))
    assert fp(plain) == fp(negative)
    assert fp(np.array([np.nan, 1.0])) != fp(plain)
    assert fp(np.array([0.0])) != fp(np.array([-0.0]))  # sign of zero kept (documented)


def test_nat_in_datetime_columns_is_stable() -> None:
    a = pd.DataFrame({"t": pd.to_datetime(["2020-01-01", None])})
    b = pd.DataFrame({"t": pd.to_datetime(["2020-01-01", pd.NaT])})
    assert fp(a) == fp(b)
    assert fp(a) != fp(pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "1970-01-01"])}))


def test_nullable_integers_ignore_the_value_under_the_mask() -> None:
    a = pd.array([1, 2, 3], dtype="Int64")
    a[1] = pd.NA
    b = pd.array([1, None, 3], dtype="Int64")
    assert fp(pd.Series(a)) == fp(pd.Series(b))
    assert fp(pd.Series(b)) != fp(pd.Series(pd.array([1, 0, 3], dtype="Int64")))


def test_unhashable_cells_hash_by_canonical_content() -> None:
    def col(*values: object) -> str:
        return fp(pd.Series(list(values), dtype=object))

    assert col({"a": 1, "b": 2}) == col({"b": 2, "a": 1})
    assert col({1, 2, 3}) == col({3, 2, 1})
    assert col([1, 2]) != col([2, 1])
    assert col([1, 2]) != col((1, 2))
    assert col(1) != col(1.0) != col("1") != col(True)
    assert col({"a": [1, {"x": None}]}) == col({"a": [1, {"x": None}]})
    assert col(np.array([1, 2])) != col(np.array([1, 3]))


def test_a_cell_without_canonical_form_is_refused_naming_column_and_type() -> None:
    class Opaque:
        pass

    df = pd.DataFrame({"ok": [1, 2], "bad": [1, Opaque()]})
    with pytest.raises(InvalidInputError, match=r"column 'bad'.*Opaque"):
        fingerprint(df)


def test_a_self_referencing_cell_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidInputError, match="column 'a'"):
        fingerprint(pd.DataFrame({"a": pd.Series([loop], dtype=object)}))


def test_categorical_hashes_codes_and_categories() -> None:
    base = pd.Series(pd.Categorical(["a", "b", "a"]))
    same = pd.Series(pd.Categorical(["a", "b", "a"], categories=["a", "b"]))
    reordered = pd.Series(pd.Categorical(["a", "b", "a"], categories=["b", "a"]))
    extra = pd.Series(pd.Categorical(["a", "b", "a"], categories=["a", "b", "c"]))
    ordered = pd.Series(pd.Categorical(["a", "b", "a"], ordered=True))
    assert fp(base) == fp(same)
    assert len({fp(base), fp(reordered), fp(extra), fp(ordered), fp(base.astype(str))}) == 5


def test_string_storage_does_not_change_the_fingerprint() -> None:
    pytest.importorskip("pyarrow")
    values = ["a", None, "ünï", "", "x\x00y", "z" * 1000] * 1000
    python = pd.DataFrame({"s": pd.array(values, dtype=pd.StringDtype("python", na_value=np.nan))})
    arrow = pd.DataFrame({"s": pd.array(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))})
    assert fp(python) == fp(arrow)


def test_strings_are_framed_so_boundaries_matter() -> None:
    assert fp(pd.Series(["ab", "c"])) != fp(pd.Series(["a", "bc"]))
    assert fp(pd.Series(["a\x00", "b"])) != fp(pd.Series(["a", "\x00b"]))
    assert fp(pd.Series(["a", ""])) != fp(pd.Series(["a", None]))


def test_rangeindex_and_an_equal_integer_index_hash_alike() -> None:
    a = pd.DataFrame({"x": [1, 2, 3]})
    b = pd.DataFrame({"x": [1, 2, 3]}, index=pd.Index([0, 1, 2]))
    assert fp(a) == fp(b)


def test_multiindex_and_duplicate_column_names() -> None:
    idx = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    df = pd.DataFrame([[1, 2], [3, 4]], index=idx, columns=["x", "x"])
    assert fp(df) == fp(df.copy())
    assert fp(df) != fp(df.swaplevel())


def test_series_fingerprint() -> None:
    s = pd.Series([1.5, 2.5], name="price")
    result = fingerprint(s)
    assert (result.kind, result.rows, result.columns) == ("series", 2, 1)
    assert result.schema == [{"name": "price", "dtype": "float64"}]
    assert fp(s) != fp(s.rename("cost"))
    assert fp(s) != fp(s.to_frame())


# ---------------------------------------------------------------- numpy


def test_array_fingerprint_covers_dtype_shape_and_values() -> None:
    a = np.arange(12, dtype=np.int64)
    result = fingerprint(a.reshape(3, 4))
    assert (result.kind, result.rows, result.columns) == ("array", 3, 4)
    assert result.details == {"dtype": "int64", "shape": [3, 4]}
    variants = [a, a.reshape(3, 4), a.reshape(4, 3), a.astype(np.int32), a.astype(float)]
    assert len({fp(v) for v in variants}) == 5


def test_array_layout_and_byte_order_do_not_matter() -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert fp(a.T) == fp(np.ascontiguousarray(a.T))
    assert fp(a[:, ::2]) == fp(a[:, ::2].copy())
    assert fp(a.astype(">f8")) == fp(a)


def test_object_and_string_arrays() -> None:
    assert fp(np.array(["a", None], dtype=object)) == fp(np.array(["a", None], dtype=object))
    assert fp(np.array(["a", "b"])) != fp(np.array(["a", "b"], dtype=object))
    assert fp(np.array([[1, "a"], [None, [1]]], dtype=object)).startswith("xxh128:")
    if hasattr(np.dtypes, "StringDType"):
        strings = np.array(["a", "bc"], dtype=np.dtypes.StringDType())
        assert fp(strings) == fp(np.array(["a", "bc"], dtype=np.dtypes.StringDType()))


# ---------------------------------------------------------------- pyarrow and polars


def test_arrow_tables_hash_by_content_not_chunking() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"i": [1, 2, None, 4], "s": ["a", None, "c", "d"], "f": [0.5, 1.5, None, 2]})
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert rechunked.column(0).num_chunks == 3
    result = fingerprint(table)
    assert (result.kind, result.rows, result.columns) == ("arrow", 4, 3)
    assert result.schema == [
        {"name": "i", "dtype": "int64"},
        {"name": "s", "dtype": "string"},
        {"name": "f", "dtype": "double"},
    ]
    assert fp(table) == fp(rechunked) == fp(table.to_batches()[0])
    changed = table.set_column(1, "s", pa.array(["a", None, "c", "e"]))
    assert fp(changed) != fp(table)
    nested = pa.table({"l": [[1, 2], None, []], "d": pa.array(["x", "y", "x"]).dictionary_encode()})
    assert fp(nested) == fp(pa.concat_tables([nested.slice(0, 2), nested.slice(2)]))


def test_polars_frames() -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1, 2, None], "b": ["x", None, "z"], "c": [0.5, None, 1.0]})
    result = fingerprint(df)
    assert (result.kind, result.rows, result.columns) == ("polars", 3, 3)
    assert result.schema is not None and result.schema[0] == {"name": "a", "dtype": "Int64"}
    assert fp(df) == fp(pl.DataFrame(df.to_dict(as_series=False)))
    assert fp(df) != fp(df.with_columns(pl.col("a").fill_null(0)))
    assert fp(df) != fp(df.select(["b", "a", "c"]))
    assert fp(df["b"]) != fp(df)
    cat = pl.DataFrame({"k": pl.Series(["u", "v", "u"], dtype=pl.Categorical)})
    assert fp(cat) == fp(pl.DataFrame({"k": pl.Series(["u", "v", "u"], dtype=pl.Categorical)}))


# ---------------------------------------------------------------- bytes and files


def test_file_fingerprint_is_the_plain_xxh128_of_its_bytes(tmp_path: Path) -> None:
    import xxhash

    data = os.urandom(3 * fingerprints.READ_CHUNK + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    result = fingerprint(path)
    assert result.hash == "xxh128:" + xxhash.xxh3_128(data).hexdigest()
    assert (result.kind, result.size_bytes) == ("file", len(data))
    assert result.details["path"] == str(path)
    assert fingerprint(str(path)) == result
    assert fingerprint(data).hash == result.hash
    assert fingerprint(data).kind == "bytes"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.touch()
    assert fingerprint(path).hash == fingerprint(b"").hash
    assert fingerprint(path).size_bytes == 0


@pytest.mark.slow
def test_a_multi_gigabyte_file_is_hashed_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as fh:
        fh.truncate(3 * 2**30)
    code = (
        "import resource, json, xxhash\n"
        "from mlnb.capture.fingerprints import fingerprint\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"result = fingerprint({str(path)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "h = xxhash.xxh3_128(); zeros = bytes(2**26)\n"
        "for _ in range(3 * 2**30 // len(zeros)): h.update(zeros)\n"
        "print(json.dumps([result.hash, result.size_bytes, (after - before) * 1024,\n"
        "                  'xxh128:' + h.hexdigest()]))\n"
    )
    digest, size, growth, expected = json.loads(
        run_python(code, env={"PYTHONPATH": str(REPO)}).stdout
    )
    assert size == 3 * 2**30
    assert digest == expected
    assert growth < 100 * 2**20, f"max RSS grew by {growth / 2**20:.0f} MiB"


def test_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InvalidInputError, match=re.escape(str(missing))):
        fingerprint(missing)
    with pytest.raises(InvalidInputError, match="no such file"):
        fingerprint(str(missing))


def test_unreadable_file_is_refused_naming_the_path() -> None:
    with tempfile.TemporaryDirectory() as folder:  # under /tmp, so nobody may enter it
        os.chmod(folder, 0o755)
        secret = Path(folder) / "secret.csv"
        secret.write_text("a,b\n1,2\n")
        os.chmod(secret, 0o000)
        inner = Path(folder) / "locked"
        inner.mkdir()
        (inner / "f").write_text("x")
        os.chmod(inner, 0o000)
        code = (
            "import os\n"
            "import xxhash  # imported lazily by fingerprints: load it before losing access\n"
            "from mlnb.capture.fingerprints import fingerprint\n"
            "from mlnb.errors import InvalidInputError\n"
            "if os.geteuid() == 0:  # root ignores permissions: act as nobody\n"
            "    os.setgid(65534); os.setuid(65534)\n"
            f"assert os.path.exists({str(secret)!r})\n"
            f"for target in ({str(secret)!r}, {folder!r}):\n"
            "    try:\n        fingerprint(target)\n"
            "    except InvalidInputError as exc:\n        print('REFUSED', exc)\n"
        )
        proc = run_python(code, env={"PYTHONPATH": str(REPO)})
        lines = proc.stdout.splitlines()
        assert len(lines) == 2, proc.stdout + proc.stderr
        assert lines[0].startswith("REFUSED permission denied") and str(secret) in lines[0]
        assert "permission denied" in lines[1]
        os.chmod(inner, 0o755)


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        fingerprint(fifo)


# ---------------------------------------------------------------- a file that changes


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "growing.bin"
    with open(path, "wb") as fh:
        fh.truncate(512 * 2**20)  # ~0.1 s to read: plenty of time to be caught changing
    return path


def _reader_positions(path: Path) -> Iterator[int]:
    """File positions of this process's open descriptors on ``path`` (from /proc)."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                yield int(info.split("pos:")[1].split()[0])
        except OSError:
            continue


def _append_once_while_read(path: Path, stop: threading.Event) -> None:
    """Append one byte as soon as a reader is midway through the file."""
    size = path.stat().st_size
    while not stop.is_set():
        if any(0 < pos < size for pos in _reader_positions(path)):
            with open(path, "ab") as fh:
                fh.write(b"x")
            return
        time.sleep(0.0002)


def test_a_file_that_changes_once_while_hashed_is_read_again(big_file: Path) -> None:
    import xxhash

    stop = threading.Event()
    writer = threading.Thread(target=_append_once_while_read, args=(big_file, stop))
    writer.start()
    try:
        result = fingerprint(big_file)
    finally:
        stop.set()
        writer.join()
    assert big_file.stat().st_size == 512 * 2**20 + 1, "the writer never caught the reader"
    h = xxhash.xxh3_128()
    with open(big_file, "rb") as fh:
        while chunk := fh.read(2**24):
            h.update(chunk)
    assert result.hash == "xxh128:" + h.hexdigest()
    assert result.size_bytes == 512 * 2**20 + 1


def test_a_file_that_keeps_changing_while_hashed_is_refused(big_file: Path) -> None:
    stop = threading.Event()

    def append_every_millisecond() -> None:
        with open(big_file, "ab") as fh:
            while not stop.is_set():
                fh.write(b"x")
                fh.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=append_every_millisecond)
    writer.start()
    try:
        with pytest.raises(InvalidInputError, match="changed while it was being hashed"):
            fingerprint(big_file)
    finally:
        stop.set()
        writer.join()


# ---------------------------------------------------------------- the file hash cache


class CountingCache(DictFileHashCache):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, key: tuple[str, int, int, int], digest: str) -> None:
        self.puts += 1
        super().put(key, digest)


def _age(path: Path, seconds: float = 60) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_an_unchanged_file_is_served_from_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    _age(path)
    cache = CountingCache()
    first = fingerprint(path, cache=cache)
    assert (cache.hits, cache.misses, cache.puts) == (0, 1, 1)
    key = next(iter(cache.entries))
    st = path.stat()
    assert key == (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    # Same size, inode and mtime but other bytes: only a cache hit can return the old digest.
    path.write_text("a,b\n3,4\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = fingerprint(path, cache=cache)
    assert (cache.hits, cache.puts) == (1, 1)
    assert second == first
    _age(path, 30)
    third = fingerprint(path, cache=cache)
    assert third.hash != first.hash
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_file_modified_just_now_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "fresh.csv"
    path.write_text("x\n")
    cache = CountingCache()
    fingerprint(path, cache=cache)
    assert cache.puts == 0  # could still change within the timestamp granularity


def test_a_cached_digest_of_another_algorithm_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("x\n")
    st = path.stat()
    cache = DictFileHashCache()
    cache.put((str(path), st.st_size, st.st_mtime_ns, st.st_ino), "md5:0123")
    assert fingerprint(path, cache=cache).hash.startswith("xxh128:")


# ---------------------------------------------------------------- directories


def _tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.csv").write_text("1,2\n")
    (root / ".hidden").write_text("secret\n")
    (root / "sub" / "b.txt").write_text("b\n")
    (root / "sub" / "deeper" / "c.bin").write_bytes(b"\x00" * 100)
    (root / "empty").mkdir()
    return root


def test_directory_fingerprint_is_a_manifest_of_relative_paths_and_contents(
    tmp_path: Path,
) -> None:
    one = _tree(tmp_path / "one")
    two = _tree(tmp_path / "two")
    result = fingerprint(one)
    assert result.kind == "directory"
    assert result.details == {"path": str(one), "files": 4}
    assert result.size_bytes == 4 + 7 + 2 + 100
    assert fp(one) == fp(two)
    (two / "empty").rmdir()
    assert fp(one) == fp(two)  # empty folders add nothing
    (two / ".hidden").write_text("other\n")
    assert fp(one) != fp(two)  # hidden files count
    three = _tree(tmp_path / "three")
    (three / "sub" / "b.txt").rename(three / "sub" / "b2.txt")
    assert fp(one) != fp(three)
    four = _tree(tmp_path / "four")
    (four / "a.csv").rename(four / "sub" / "a.csv")
    assert fp(one) != fp(four)


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    result = fingerprint(tmp_path / "e")
    assert result.details["files"] == 0 and result.size_bytes == 0


def test_directory_follows_symlinks_to_files_and_folders(tmp_path: Path) -> None:
    real = _tree(tmp_path / "real")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "a.csv").symlink_to(real / "a.csv")
    (linked / ".hidden").symlink_to(real / ".hidden")
    (linked / "sub").symlink_to(real / "sub")
    assert fp(linked) == fp(real)


def test_directory_symlink_loop_is_refused_naming_the_link(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / "sub" / "back").symlink_to(root)
    with pytest.raises(InvalidInputError, match=r"symlink loop .*sub/back"):
        fingerprint(root)


def test_broken_symlink_in_a_directory_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidInputError, match="broken symlink"):
        fingerprint(root)


def test_directory_uses_the_cache_for_each_file(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    for path in root.rglob("*"):
        if path.is_file():
            _age(path)
    cache = CountingCache()
    first = fingerprint(root, cache=cache)
    assert (cache.misses, cache.puts) == (4, 4)
    assert fingerprint(root, cache=cache) == first
    assert cache.hits == 4


# ---------------------------------------------------------------- the registry


def test_unknown_type_names_it_and_lists_the_known_kinds() -> None:
    class Thing:
        pass

    with pytest.raises(InvalidInputError) as info:
        fingerprint(Thing())
    message = str(info.value)
    assert "Thing" in message
    for kind in ("dataframe", "array", "file", "directory", "bytes"):
        assert kind in message


def test_registered_hasher_is_used_and_can_go_first() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    def point_fp(obj: object) -> Fingerprint:
        assert isinstance(obj, Point)
        return Fingerprint(hash=f"custom:{obj.x}", kind="point")

    def override(obj: object) -> Fingerprint:
        return Fingerprint(hash="custom:bytes", kind="bytes")

    register_hasher("point", lambda o: isinstance(o, Point), point_fp)
    register_hasher("my-bytes", lambda o: isinstance(o, bytes), override, first=True)
    try:
        assert fingerprint(Point(3)).hash == "custom:3"
        assert fingerprint(b"x").hash == "custom:bytes"
        assert fingerprints.hasher_kinds()[0] == "my-bytes"
        assert "point" in fingerprints.hasher_kinds()
    finally:
        fingerprints.unregister_hasher("point")
        fingerprints.unregister_hasher("my-bytes")
    assert fingerprint(b"x").hash != "custom:bytes"
    assert "point" not in fingerprints.hasher_kinds()


def test_hasher_kind_must_be_a_name() -> None:
    with pytest.raises(InvalidInputError):
        register_hasher("", lambda o: False, lambda o: Fingerprint("x", "y"))


def test_fingerprinting_bytes_and_files_imports_no_heavy_module(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    code = (
        "import sys, json\n"
        "import mlnb.capture.fingerprints as h\n"
        "loaded = [m for m in ('numpy', 'pandas', 'pyarrow', 'polars', 'xxhash') "
        "if m in sys.modules]\n"
        f"h.fingerprint(b'abc'); h.fingerprint({str(path)!r}); h.fingerprint({str(tmp_path)!r})\n"
        "print(json.dumps([loaded, [m for m in ('numpy', 'pandas', 'pyarrow', 'polars') "
        "if m in sys.modules]]))\n"
    )
    at_import, after_use = json.loads(run_python(code, env={"PYTHONPATH": str(REPO)}).stdout)
    assert at_import == [] and after_use == []


def test_artifact_hashes_are_unchanged(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"hello")
    expected = hashlib.sha256(b"hello").hexdigest()
    assert hashing.hash_bytes(b"hello") == hashing.hash_file(path) == expected
    digest, size = hashing.copy_and_hash(path, tmp_path / "g")
    assert (digest, size) == (expected, 5)
