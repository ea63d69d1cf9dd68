"""Is a run's process still alive? A running process holds an exclusive ``flock`` on
``<store>/locks/<run_id>.lock`` and stamps a heartbeat; on the same host a free lock means
the process died (seen at once, while a paused process keeps its lock), elsewhere a stale
heartbeat does.

Is the writer of a temporary file alive? Its name carries the writer's tag (``writer_tag``:
pid, the process's start time, and the host), so a file left by a killed writer can be
removed at once, and a pid reused by another process does not keep it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import socket
from pathlib import Path

from mlnb.errors import StoreReadOnlyError

HOST = socket.gethostname()
HOST_TAG = hashlib.blake2s(HOST.encode(), digest_size=4).hexdigest()  # 8 hex, for file names
HEARTBEAT_INTERVAL_S = 30.0
STALE_AFTER_S = 300.0  # a run on another host with no heartbeat for this long has crashed


def lock_path(locks_dir: Path, run_id: str) -> Path:
    """The lock file of a run."""
    return locks_dir / f"{run_id}.lock"


def acquire_run_lock(locks_dir: Path, run_id: str) -> int:
    """Hold the run's lock file for as long as this process runs it; returns the fd.
    A folder this process cannot write raises ``StoreReadOnlyError``."""
    try:
        locks_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(locks_dir, run_id), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise StoreReadOnlyError(
            f"cannot create the run's lock file in {locks_dir} ({exc.strerror}): the store is "
            "read-only here. Set MLNB_STORE (or --store) to a writable folder"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_run_lock(locks_dir: Path, run_id: str, fd: int) -> None:
    """Give up the run's lock file (after its status has been written)."""
    with contextlib.suppress(OSError):
        lock_path(locks_dir, run_id).unlink()
    with contextlib.suppress(OSError):
        os.close(fd)


def run_lock_held(locks_dir: Path, run_id: str) -> bool:
    """Whether some process on this host holds the run's lock (i.e. is alive)."""
    try:
        fd = os.open(lock_path(locks_dir, run_id), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


_TAGGED = re.compile(r"(\d+)-(\d+)-([0-9a-f]{8})-")
_own_tag: tuple[int, str] = (0, "")


def _start_token(pid: int) -> str | None:
    """When the process ``pid`` started, in hundredths of a second (None: no such process)."""
    import psutil

    try:
        return str(round(psutil.Process(pid).create_time() * 100))
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:  # e.g. access denied: it exists
        return ""


def writer_tag() -> str:
    """This process as the writer of a temporary file: ``<pid>-<start>-<host>``."""
    global _own_tag
    pid = os.getpid()
    if _own_tag[0] != pid:  # computed once per process (again after fork)
        _own_tag = (pid, f"{pid}-{_start_token(pid) or 0}-{HOST_TAG}")
    return _own_tag[1]


def writer_dead(tagged: str) -> bool:
    """Whether ``tagged`` (text that starts with a ``writer_tag()`` and a ``-``) names a
    writer that is dead: no process with its pid and start time runs on this host. Text
    without a tag, and other hosts' writers, are not judged (False)."""
    found = _TAGGED.match(tagged)
    if found is None or found.group(3) != HOST_TAG:
        return False
    token = _start_token(int(found.group(1)))
    return token is None or token not in ("", found.group(2))
