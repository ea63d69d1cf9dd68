"""Content-addressed files: each distinct content is kept once, named by its SHA-256, in
``<store>/artifacts/<first two hex digits>/<hash>``. Rows in the ``artifacts`` table refer
to contents by hash; this module only knows files: where a content lives (never outside
the folder), how it gets there, and which files of a logged folder may be read.

A file is first written to ``<store>/artifacts/.tmp-<writer tag>-<random>`` and renamed into
place; the tag names the writing process (pid, start time, host), so the temporary file of
a writer killed mid-copy is removed as soon as the store is opened again."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mlnb.errors import InvalidInputError
from mlnb.store import hashing
from mlnb.store.liveness import writer_dead, writer_tag

GRACE_S = 3600.0  # files younger than this are never swept: a writer may be about to refer
TEMP_PREFIX = ".tmp-"  # then the writer's tag (mlnb.store.liveness.writer_tag) and a random part


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """The files to store for a logged folder, as ``(relative POSIX name, path to read)``
    sorted by name. A symbolic link to a file inside the folder is read as that file. A
    link that leads out of the folder, to a folder, or nowhere is refused
    (:class:`InvalidInputError` naming it): logging a folder never copies a file from
    elsewhere (``shadow -> /etc/shadow``) and never loops. FIFOs, sockets and devices are
    skipped."""
    root = folder.resolve()

    def unreadable(err: OSError) -> None:
        raise InvalidInputError(f"cannot log folder {folder}: cannot read {err.filename}: "
                                f"{err.strerror}")  # fmt: skip

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        for entry in (*dirnames, *filenames):
            path = here / entry
            rel = path.relative_to(root).as_posix()
            if not path.is_symlink():
                if path.is_file():
                    found.append((rel, path))
                continue  # a folder (walked next) or a special file
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):  # RuntimeError: a loop, before Python 3.13
                problem = f"is broken (it points to {os.readlink(path)})"
            else:
                if not target.is_relative_to(root):
                    problem = f"points outside the folder (to {target})"
                elif target.is_dir():
                    problem = "points to a folder"
                elif target.is_file():
                    found.append((rel, target))
                    continue
                else:
                    continue  # a link to a special file inside the folder
            raise InvalidInputError(
                f"cannot log folder {folder}: the symbolic link {rel!r} {problem}. Links are "
                "followed only to files inside the folder: copy the file in, or log it (or "
                "the folder it points to) on its own"
            )
    return sorted(found)


class ContentStore:
    """A folder of files addressed by content hash."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, digest: str) -> Path:
        """Where the content with this hash lives: always inside the folder, because a
        hash that is not a SHA-256 hex digest (``../../etc/passwd``) is refused."""
        if not hashing.is_digest(digest):
            raise InvalidInputError(
                f"artifact hash {digest!r} is not a SHA-256 hex digest, so it names no file "
                f"in {self.folder}; the row that holds it is damaged (delete its run)"
            )
        return self.folder / digest[:2] / digest

    def put(self, source: str | os.PathLike[str] | bytes | BinaryIO) -> tuple[str, int]:
        """Store a file's (or bytes', or a binary stream's) content; returns ``(hash,
        size)``. Written to a temporary file and renamed into place, so a reader never sees
        half a file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{writer_tag()}-", dir=self.folder)
        tmp = Path(tmp_name)
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                data = bytes(source)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                digest, size = hashing.hash_bytes(data), len(data)
            else:
                os.close(fd)
                digest, size = hashing.copy_and_hash(source, tmp)
            final = self.path(digest)
            if final.exists():
                os.utime(final)  # a fresh mtime keeps sweep() from racing this reference
                tmp.unlink()
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
            return digest, size
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def remove_dead_temporaries(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove the temporary files whose writer is dead (killed mid-``put``); returns
        ``(files, bytes)``. Cheap: one listing of the top folder, where they live."""
        removed = freed = 0
        try:
            entries = os.scandir(self.folder)
        except FileNotFoundError:
            return 0, 0
        with entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(TEMP_PREFIX) or not writer_dead(name[len(TEMP_PREFIX) :]):
                    continue
                try:
                    size = entry.stat().st_size
                    if not dry_run:
                        os.unlink(entry.path)
                except FileNotFoundError:  # another process removed it first
                    continue
                removed += 1
                freed += size
        return removed, freed

    def files(self) -> Iterator[Path]:
        """Every stored file (and leftover temporary file)."""
        if self.folder.exists():
            yield from (p for p in self.folder.rglob("*") if p.is_file())

    def total_bytes(self) -> int:
        """Disk space the contents take."""
        return sum(p.stat().st_size for p in self.files())

    def sweep(self, keep: set[str], *, dry_run: bool = False) -> tuple[int, int]:
        """Remove files whose hash is not in ``keep`` and that are older than an hour;
        returns ``(files, bytes)`` removed (or that would be)."""
        removed = freed = 0
        cutoff = time.time() - GRACE_S
        for path in self.files():
            if path.name in keep:
                continue
            stat = path.stat()
            if stat.st_mtime > cutoff:
                continue
            removed += 1
            freed += stat.st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        return removed, freed
