"""Content hashes for artifacts: SHA-256 from the standard library (~1 GiB/s here,
collision-resistant, present everywhere), so identical files are stored once.

Data fingerprints (xxh3-128, chosen by measurement) live in :mod:`mlnb.capture.fingerprints`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
ALGORITHM = "sha256"
DIGEST = re.compile(r"[0-9a-f]{64}")  # what hash_bytes and hash_file return


def is_digest(text: object) -> bool:
    """Whether ``text`` is a hex digest as this module makes them (64 lowercase hex)."""
    return isinstance(text, str) and DIGEST.fullmatch(text) is not None


def hash_bytes(data: bytes) -> str:
    """Hex digest of a byte string."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """Hex digest of a file, streamed in constant memory."""
    with open(path, "rb") as fh:
        return hash_stream(fh)


def hash_stream(fh: BinaryIO) -> str:
    """Hex digest of everything left in a binary stream."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := fh.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
    return h.hexdigest()


def copy_and_hash(src: str | os.PathLike[str] | BinaryIO, dst: Path) -> tuple[str, int]:
    """Copy a file (or what is left in a binary stream) to ``dst`` while hashing it: one
    read of the source, in chunks."""
    h = hashlib.sha256()
    size = 0
    opened: BinaryIO = open(src, "rb") if isinstance(src, (str, os.PathLike)) else src  # noqa: SIM115
    with opened as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
    return h.hexdigest(), size
