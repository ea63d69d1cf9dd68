"""Data fingerprints: "is this the same data as last time?" by content hash.

Fingerprints (:func:`fingerprint`) answer "is this the same data as last time?" for
DataFrames, arrays, files and folders, so they must keep up with the page cache. Measured
here on a 1 GiB file of random bytes in the page cache (``benchmarks/capture_data.py``,
best of 5; plain reads 9.3-10.8 GiB/s): md5 0.58 GiB/s (what DVC uses), blake2b 0.58-0.67,
sha256 1.23-1.28, xxh3-128 6.3-8.4 and ``fingerprint(path)`` 7.8-8.0 (4.8-5.4 in a busier
run; xxh3 does 29 GiB/s on bytes already in memory, so reading is the cost); blake3, not
installed, measured 1.25-2.8 earlier. xxh3-128 it is: ~14x md5, and 128 bits make an
accidental collision negligible (it is no defence against a forged one). Every
fingerprint is spelled ``xxh128:<32 hex digits>`` so a later function can live next to it.
A file's fingerprint is the plain XXH128 of its bytes (``xxhsum -H2 FILE`` prints the same
digits).

Reads use a reused 1 MiB buffer (``readinto``): 256 KiB-2 MiB measured alike, 16 MiB and
mmap were slower. Memory stays constant whatever the size.

What a fingerprint covers, and the rules that make it stable across processes and runs
(no ``hash()``, no ids, no dict order; all data is hashed, nothing is sampled):

- DataFrame / Series: index (values, names, dtypes), column labels in order, dtypes, and
  every value. Numeric, bool and datetime columns hash their buffers (NaNs made canonical;
  -0.0 and 0.0 differ); strings hash their UTF-8 bytes plus byte lengths plus a missing
  mask, identically for pandas' python and pyarrow storage; categoricals hash codes plus
  categories; object columns of strings (with None/NaN/NA/NaT, kept apart) take the same
  fast path, other object columns a canonical text per cell (sorted dict keys, sorted
  sets, tagged dates/decimals/bytes/arrays); a cell without a canonical form is an
  :class:`InvalidInputError` naming the column and the type.
- numpy arrays: dtype, shape and values (C order, little-endian); object arrays by cells.
- pyarrow Tables/RecordBatches and polars frames: column names, types and values, the
  same whatever the chunking (only when those libraries are already imported).
- files: their bytes. A file that changes while it is read (size, mtime or inode differ
  before/after) is read again once, then refused.
- folders: the sorted manifest of relative POSIX paths and file fingerprints. Hidden files
  are included; symlinks to files and folders are followed (a folder that contains itself
  through a link is refused, naming the link); broken links, FIFOs, sockets and devices are
  refused; empty folders add nothing.

Files, folders and the registry of hashers live here; the Fingerprint record and the
digests of data in memory (arrays, frames, bytes) in :mod:`mlnb.capture.datahash`.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mlnb.errors import InvalidInputError

if TYPE_CHECKING:
    pass

from mlnb.capture.datahash import (
    PREFIX,
    Fingerprint,
    arrow_fingerprint,
    bytes_fingerprint,
    dataframe_fingerprint,
    ndarray_fingerprint,
    new_xxh128,
    polars_fingerprint,
    series_fingerprint,
    spelled,
)

__all__ = [
    "DictFileHashCache",
    "FileHashCache",
    "Fingerprint",
    "fingerprint",
    "hasher_kinds",
    "register_hasher",
    "unregister_hasher",
]

READ_CHUNK = 1 << 20
# A file modified this recently is not put in a FileHashCache: a second write within the
# filesystem's timestamp granularity (up to 2 s on FAT, ms on ext4) could keep size and
# mtime and so hide behind the cached digest ("racily clean", as git calls it).
RACY_WINDOW_NS = 2_000_000_000


class FileHashCache(Protocol):
    """Remembers file fingerprints by ``(absolute path, size, mtime_ns, inode)``."""

    def get(self, key: tuple[str, int, int, int]) -> str | None: ...

    def put(self, key: tuple[str, int, int, int], digest: str) -> None: ...


class DictFileHashCache:
    """An in-memory :class:`FileHashCache` (counts its hits and misses)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int, int, int], str] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int, int, int]) -> str | None:
        digest = self.entries.get(key)
        if digest is None:
            self.misses += 1
        else:
            self.hits += 1
        return digest

    def put(self, key: tuple[str, int, int, int], digest: str) -> None:
        self.entries[key] = digest


@dataclass(frozen=True)
class _Hasher:
    kind: str
    matches: Callable[[object], bool]
    fn: Callable[[object], Fingerprint]


_HASHERS: list[_Hasher] = []
_CACHE: contextvars.ContextVar[FileHashCache | None] = contextvars.ContextVar(
    "mlnb_file_hash_cache", default=None
)


def register_hasher(
    kind: str,
    matches: Callable[[object], bool],
    fn: Callable[[object], Fingerprint],
    *,
    first: bool = False,
) -> None:
    """Teach :func:`fingerprint` a new type: the first hasher whose ``matches(obj)`` is
    true computes it. ``first=True`` puts it ahead of the built-ins; registering a kind
    again replaces it. ``matches`` must be cheap and must not import heavy modules (check
    ``sys.modules`` or ``type(obj).__module__`` first)."""
    if not isinstance(kind, str) or not kind:
        raise InvalidInputError(f"hasher kind must be a non-empty string, got {kind!r}")
    entry = _Hasher(kind, matches, fn)
    old = next((i for i, h in enumerate(_HASHERS) if h.kind == kind), None)
    if old is not None and not first:
        _HASHERS[old] = entry
        return
    if old is not None:
        del _HASHERS[old]
    _HASHERS.insert(0, entry) if first else _HASHERS.append(entry)


def unregister_hasher(kind: str) -> None:
    """Forget the hasher registered under ``kind`` (no error if there is none)."""
    _HASHERS[:] = [h for h in _HASHERS if h.kind != kind]


def hasher_kinds() -> list[str]:
    """The registered kinds, in the order they are tried."""
    return [h.kind for h in _HASHERS]


def fingerprint(obj: object, *, cache: FileHashCache | None = None) -> Fingerprint:
    """The content fingerprint of a DataFrame, Series, array, file, folder, bytes, or any
    registered type. ``cache`` serves unchanged files without reading them again."""
    token = _CACHE.set(cache)
    try:
        for hasher in list(_HASHERS):
            if hasher.matches(obj):
                return hasher.fn(obj)
    finally:
        _CACHE.reset(token)
    raise InvalidInputError(
        f"cannot fingerprint a {type(obj).__module__}.{type(obj).__qualname__}; "
        f"known kinds: {', '.join(hasher_kinds())} (register_hasher adds one)"
    )


# ---------------------------------------------------------------- digests and framing


def _os_error(exc: OSError, path: str) -> InvalidInputError:
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return InvalidInputError(f"no such file or directory: {path}")
    if isinstance(exc, PermissionError):
        return InvalidInputError(
            f"permission denied reading {path}; make it readable by this user and try again"
        )
    return InvalidInputError(f"cannot read {path}: {exc.strerror or exc}")


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise _os_error(exc, path) from None


def _same_file_state(a: os.stat_result, b: os.stat_result | None) -> bool:
    return b is not None and (a.st_size, a.st_mtime_ns, a.st_ino, a.st_dev) == (
        b.st_size,
        b.st_mtime_ns,
        b.st_ino,
        b.st_dev,
    )


def _hash_file_once(path: str) -> tuple[str, os.stat_result, bool]:
    """One streaming read: (digest, stat before, whether the file stayed the same)."""
    h = new_xxh128()
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    total = 0
    try:
        with open(path, "rb", buffering=0) as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise InvalidInputError(f"{path} is not a regular file (a FIFO, socket or device)")
            while n := fh.readinto(view):
                h.update(view[:n])
                total += n
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        after: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        after = None
    return spelled(h.digest()), before, _same_file_state(before, after) and total == before.st_size


def _hash_file(path: str) -> tuple[str, os.stat_result]:
    """Digest of a file whose size, mtime and inode held still while it was read."""
    for _attempt in range(2):
        digest, before, steady = _hash_file_once(path)
        if steady:
            return digest, before
    raise InvalidInputError(
        f"{path} changed while it was being hashed (its size, modification time or inode "
        "differed before and after reading, twice in a row); wait until whatever writes it "
        "has finished, then try again"
    )


def _file_digest(path: str, cache: FileHashCache | None) -> tuple[str, os.stat_result]:
    st = _stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{path} is not a regular file (a FIFO, socket or device)")
    if cache is not None:
        hit = cache.get((path, st.st_size, st.st_mtime_ns, st.st_ino))
        if hit is not None and hit.startswith(PREFIX):
            return hit, st
    digest, st = _hash_file(path)
    if cache is not None and time.time_ns() - st.st_mtime_ns >= RACY_WINDOW_NS:
        cache.put((path, st.st_size, st.st_mtime_ns, st.st_ino), digest)
    return digest, st


def _mtime_iso(st: os.stat_result) -> str:
    when = _dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=_dt.timezone.utc)
    return when.isoformat(timespec="microseconds")


def _path_text(obj: Any) -> str:
    return os.path.abspath(os.fsdecode(os.fspath(obj)))


def _file_fingerprint(obj: object) -> Fingerprint:
    path = _path_text(obj)
    digest, st = _file_digest(path, _CACHE.get())
    return Fingerprint(
        hash=digest,
        kind="file",
        size_bytes=st.st_size,
        details={"path": path, "mtime": _mtime_iso(st)},
    )


def _directory_fingerprint(obj: object) -> Fingerprint:
    root = _path_text(obj)
    cache = _CACHE.get()
    root_st = _stat(root)
    entries: list[tuple[bytes, str]] = []
    total = 0
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    while stack:
        folder, rel, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it]
        except OSError as exc:
            raise _os_error(exc, folder) from None
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if os.path.islink(path):
                    raise InvalidInputError(
                        f"{path} is a broken symlink (to {os.readlink(path)}); remove or fix it"
                    ) from None
                raise InvalidInputError(f"{root} changed while it was being hashed") from None
            except OSError as exc:
                raise _os_error(exc, path) from None
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise InvalidInputError(
                        f"symlink loop in {root}: {path} leads back to "
                        f"{os.path.realpath(path)}, which contains it; remove the link"
                    )
                stack.append((path, f"{rel}{name}/", ancestors | {key}))
            elif stat.S_ISREG(st.st_mode):
                digest, fst = _file_digest(path, cache)
                entries.append((os.fsencode(rel + name), digest))
                total += fst.st_size
            else:
                raise InvalidInputError(
                    f"{path} is not a regular file or folder (a FIFO, socket or device); "
                    "move it out of the folder"
                )
    entries.sort()
    h = new_xxh128()
    h.update(b"mlnb-dir-v1\n")
    for rel_bytes, digest in entries:
        h.update(rel_bytes + b"\x00" + digest.encode() + b"\n")
    return Fingerprint(
        hash=spelled(h.digest()),
        kind="directory",
        size_bytes=total,
        details={"path": root, "files": len(entries)},
    )


# ---------------------------------------------------------------- matchers and registration


def _instance_of(module: str, *names: str) -> Callable[[object], bool]:
    def matches(obj: object) -> bool:
        mod = sys.modules.get(module)
        return mod is not None and isinstance(obj, tuple(getattr(mod, n) for n in names))

    return matches


def _is_path(obj: object) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _is_directory(obj: object) -> bool:
    return isinstance(obj, (str, os.PathLike)) and os.path.isdir(obj)


register_hasher("dataframe", _instance_of("pandas", "DataFrame"), dataframe_fingerprint)
register_hasher("series", _instance_of("pandas", "Series"), series_fingerprint)
register_hasher("array", _instance_of("numpy", "ndarray"), ndarray_fingerprint)
register_hasher("arrow", _instance_of("pyarrow", "Table", "RecordBatch"), arrow_fingerprint)
register_hasher("polars", _instance_of("polars", "DataFrame", "Series"), polars_fingerprint)
register_hasher("directory", _is_directory, _directory_fingerprint)
register_hasher("file", _is_path, _file_fingerprint)
register_hasher(
    "bytes", lambda obj: isinstance(obj, (bytes, bytearray, memoryview)), bytes_fingerprint
)
