"""The git state of a working directory: commit, branch, remote, and what is uncommitted.

:func:`capture_git` runs the ``git`` command line (four or five short calls at once:
root, status, remotes, the tracked files for the cache below, and the diff only when
something is modified). It returns ``None``
outside a repository or when git is not installed, and never prompts, takes a lock or
contacts a remote.

The uncommitted diff is returned as raw ``bytes`` (it may hold binary patches): it is not
JSON, and the caller stores it as an artifact and keeps only its hash, size and truncation
flag in the git table. Everything else in the result is JSON-safe.

A tree nobody changed is answered without git: each answer is kept with the ``lstat`` of
what git looked at (HEAD, the branch's ref, the index, the config, every tracked file and
``.gitignore``, the folders that hold tracked or untracked files). The next call in the
same folder that finds all of those unchanged returns it again (~1 ms instead of ~10 ms
for three git processes); anything changed, and git is asked again. An answer is kept only
when none of those files changed in the second before git was asked (a write in the same
clock tick would not move an mtime), and never for trees with submodules, more than
:data:`MAX_CACHED_FILES` files, or ``GIT_DIR`` / ``GIT_WORK_TREE`` / ``GIT_INDEX_FILE`` set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MAX_CACHED_FILES",
    "MAX_DIFF_BYTES",
    "MAX_UNTRACKED",
    "TIMEOUT_S",
    "capture_git",
    "redact_url",
]

MAX_DIFF_BYTES = 1_000_000
MAX_UNTRACKED = 1000
TIMEOUT_S = 10.0
MAX_CACHED_FILES = 5000  # above this, stat-ing every file costs about what git does
_QUIET_NS = 1_000_000_000  # what changed this close to a snapshot may change unseen
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")

# Environment of every git call: no optional locks (so a capture never blocks the user's
# own git commands), never ask for a password, messages in English.
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
# Options that keep user configuration (external diff tools, textconv filters, colour,
# diff.noprefix, diff.submodule) out of what we record, so that ``git apply`` takes it.
_DIFF_OPTIONS = [
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--submodule=short",
]
_CHUNK = 1 << 16
_WEB_SCHEMES = re.compile(r"^([a-z0-9.-]+\+)?(https?|ftps?)$")


def _may_be_in_repository(start: Path) -> bool:
    """Whether a ``.git`` (folder or file) is in ``start`` or above it, or git is pointed
    elsewhere by ``GIT_DIR``: a few ``stat`` calls spare the ~3 ms of starting git outside
    any repository (most runs of scripts in temporary or data folders)."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
        return True
    folder = start.absolute()
    for candidate in (folder, *folder.parents):
        if os.path.exists(os.path.join(candidate, ".git")):
            return True
    return False


def capture_git(
    path: str | os.PathLike[str] | None = None,
    *,
    max_diff_bytes: int = MAX_DIFF_BYTES,
    max_untracked: int = MAX_UNTRACKED,
    timeout: float = TIMEOUT_S,
) -> dict[str, Any] | None:
    """The git state of the repository containing ``path`` (default: the working directory).

    Returns ``None`` when ``path`` is not inside a work tree or ``git`` is not on PATH.
    Otherwise a dict with:

    ``root``
        the top folder of the work tree.
    ``commit``
        the full sha of HEAD; ``None`` in a repository without commits.
    ``branch``
        the current branch; ``None`` when HEAD is detached.
    ``remote``, ``remote_name``
        the URL of ``origin`` (else of the first remote) with credentials removed (see
        :func:`redact_url`), and that remote's name; both ``None`` without remotes.
    ``dirty``
        True when tracked files are modified, staged, deleted or in conflict. Untracked
        files alone do not make a tree dirty; they are listed separately.
    ``diff``
        ``bytes``: ``git diff HEAD --binary`` (staged and unstaged changes of tracked files;
        ``git apply`` reproduces them), at most ``max_diff_bytes`` of it. Empty when clean.
        In a repository without commits, the tracked files against the empty tree.
    ``diff_bytes``
        the full size of that diff, even when truncated (``None`` if git failed).
    ``diff_truncated``
        True when ``diff`` holds only the first ``max_diff_bytes``.
    ``untracked``, ``untracked_count``
        paths (relative to ``root``, sorted) of untracked files that are not ignored, at most
        ``max_untracked`` of them, and how many there are in all.
    ``errors``
        messages of git calls that failed or timed out; what they would have told is left
        at its empty value. Usually ``[]``.

    Each git call is limited to ``timeout`` seconds.
    """
    git = shutil.which("git")
    if git is None:
        return None
    start = Path(path) if path is not None else Path.cwd()
    if start.is_file():
        start = start.parent
    if not start.is_dir() or not _may_be_in_repository(start):
        return None
    cacheable = not any(os.environ.get(name) for name in _GIT_LOCATION_VARS)
    key = (str(start.absolute()), max_diff_bytes, max_untracked)
    if cacheable:
        hit = _cache.get(key)
        if hit is not None and _stamps(hit.paths) == hit.stamps:
            return _copy(hit.state)
    asked_at = time.time_ns()
    runner = _Git(git, timeout)
    # The questions are independent: ask them at once (git's start-up dominates each,
    # and the run waits for the answers). Porcelain paths are relative to the work tree's
    # top whatever the folder git is started in.
    top_call = runner.start(
        start, ["rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"]
    )
    status_call = runner.start(
        start, ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"]
    )
    remotes_call = runner.start(start, ["config", "-z", "--get-regexp", r"^remote\..*\.url$"])
    files_call = runner.start(start, ["ls-files", "-z", "--stage"]) if cacheable else None
    top = runner.finish(top_call)
    status = runner.finish(status_call)
    remotes = runner.finish(remotes_call, ok=(0, 1))
    files = runner.finish(files_call) if files_call is not None else None
    if top is None or not top.strip():
        return None
    where = os.fsdecode(top).splitlines()
    root = where[0]

    state: dict[str, Any] = {
        "root": root,
        "commit": None,
        "branch": None,
        "remote": None,
        "remote_name": None,
        "dirty": False,
        "diff": b"",
        "diff_bytes": 0,
        "diff_truncated": False,
        "untracked": [],
        "untracked_count": 0,
        "errors": runner.errors,
    }
    untracked: list[str] = []
    if status is not None:
        commit, branch, dirty, untracked = _parse_status(status)
        untracked.sort()
        state.update(
            commit=commit,
            branch=branch,
            dirty=dirty,
            untracked=untracked[: max(max_untracked, 0)],
            untracked_count=len(untracked),
        )
    if remotes:
        name, url = _pick_remote(remotes)
        state.update(remote=redact_url(url) if url is not None else None, remote_name=name)

    if state["dirty"]:
        if state["commit"] is not None:
            args = ["diff", "HEAD", *_DIFF_OPTIONS]
        else:  # no HEAD yet: the tracked files against the empty tree
            empty = runner.run(root, ["hash-object", "-t", "tree", "--stdin"])
            base = empty.decode().strip() if empty else "--cached"
            args = ["diff", base, *_DIFF_OPTIONS]
        diff, size = runner.stream(root, args, max_diff_bytes)
        state.update(diff=diff, diff_bytes=size, diff_truncated=size is None or size > len(diff))
    if files is not None and status is not None and not runner.errors and len(where) == 3:
        common = os.path.join(start, where[2])  # relative to the folder git ran in
        paths = _watched(root, where[1], common, files, untracked)
        if paths is not None:
            stamps = _stamps(paths)
            # A write after git looked sets an mtime to "now": it shows unless the old
            # mtime was already "now" (the same clock tick), hence the quiet second.
            newest = max((s[0] for s in stamps if s is not None), default=0)
            if newest < asked_at - _QUIET_NS:
                with _cache_lock:
                    _cache[key] = _Cached(paths, stamps, _copy(state))
    return state


class _Cached(NamedTuple):
    paths: tuple[str, ...]
    stamps: list[tuple[int, ...] | None]
    state: dict[str, Any]


_cache: dict[tuple[str, int, int], _Cached] = {}
_cache_lock = threading.Lock()


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    """A copy whose lists the caller may change without changing the cache."""
    return {k: list(v) if isinstance(v, list) else v for k, v in state.items()}


def _stamps(paths: tuple[str, ...]) -> list[tuple[int, ...] | None]:
    """What ``lstat`` says of each path (mtime first; None if absent). ctime is kept
    because no tool can set it back: an edit that restores mtime and size still moves it."""
    out: list[tuple[int, ...] | None] = []
    for path in paths:
        try:
            st = os.lstat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode))
    return out


def _watched(
    root: str, git_dir: str, common_dir: str, files: bytes, untracked: list[str]
) -> tuple[str, ...] | None:
    """The paths whose ``lstat`` decides whether an answer still holds, or None when the
    tree must not be cached (a submodule, whose inside a stat does not show; too many)."""
    paths = [os.path.join(git_dir, "HEAD"), os.path.join(git_dir, "index")]
    paths += [os.path.join(common_dir, name) for name in ("config", "packed-refs", "info/exclude")]
    try:
        head = Path(git_dir, "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None
    if head.startswith("ref: "):
        paths.append(os.path.join(common_dir, head[len("ref: ") :]))
    folders = {""}
    tracked = [entry for entry in files.split(b"\0") if entry]
    if len(tracked) + len(untracked) > MAX_CACHED_FILES:
        return None
    for entry in tracked:
        mode, _, rest = entry.partition(b" ")
        if mode == b"160000":
            return None
        name = os.fsdecode(rest.partition(b"\t")[2])
        paths.append(os.path.join(root, name))
        folders.update(_parents(name))
    for name in untracked:
        folders.update(_parents(name))
        if name.rsplit("/", 1)[-1] == ".gitignore":  # edited in place, it moves no folder
            paths.append(os.path.join(root, name))
    paths += [os.path.join(root, folder) for folder in sorted(folders)]
    return tuple(paths)


def _parents(name: str) -> list[str]:
    """The folders above a work-tree path: ``a/b/c.py`` -> ``a/b``, ``a``."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def redact_url(url: str) -> str:
    """A remote or download URL without credentials.

    For http(s) and ftp(s) URLs, also ``git+https`` and the like, the whole user-info part
    goes: ``https://user:token@host/x.git`` and ``https://token@host/x.git`` both become
    ``https://host/x.git``. Other URLs (``ssh://git@host/x``) keep their user name and lose
    only a password. scp-like ``git@host:x.git`` and local paths are returned unchanged.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    if _WEB_SCHEMES.match(parts.scheme.lower()):
        netloc = host
    else:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc))


class _Git:
    """Runs git commands with our environment and timeout, collecting failures."""

    def __init__(self, git: str, timeout: float) -> None:
        self.git = git
        self.timeout = timeout
        self.env = {**os.environ, **_GIT_ENV}
        self.errors: list[str] = []

    def run(self, cwd: str | Path, args: list[str], *, ok: tuple[int, ...] = (0,)) -> bytes | None:
        """Stdout of ``git args`` in ``cwd``, or None (and an error noted) if it failed."""
        return self.finish(self.start(cwd, args), ok=ok)

    def start(self, cwd: str | Path, args: list[str]) -> tuple[list[str], Any]:
        """Start ``git args`` in ``cwd`` without waiting (:meth:`finish` collects it)."""
        try:
            proc = subprocess.Popen(
                [self.git, *args],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            return args, exc
        return args, proc

    def finish(self, call: tuple[list[str], Any], *, ok: tuple[int, ...] = (0,)) -> bytes | None:
        """Stdout of a call from :meth:`start`, or None (and an error noted) if it failed."""
        args, proc = call
        if isinstance(proc, OSError):
            self.errors.append(f"git {args[0]} could not run: {proc}")
            return None
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.errors.append(f"git {args[0]} timed out after {self.timeout:g} s")
            return None
        if proc.returncode not in ok:
            message = err.decode(errors="replace").strip().splitlines()
            self.errors.append(
                f"git {args[0]} failed ({proc.returncode}): {message[0] if message else ''}"
            )
            return None
        return bytes(out)

    def stream(self, cwd: str | Path, args: list[str], limit: int) -> tuple[bytes, int | None]:
        """The first ``limit`` bytes of the output of ``git args`` and its full size,
        counted without keeping the rest in memory. The size is None if git failed."""
        limit = max(limit, 0)
        try:
            proc = subprocess.Popen(
                [self.git, *args],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            self.errors.append(f"git {args[0]} could not run: {exc}")
            return b"", None
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(self.timeout, kill)
        timer.daemon = True
        timer.start()
        kept: list[bytes] = []
        size = 0
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(_CHUNK):
                if size < limit:
                    kept.append(chunk[: limit - size])
                size += len(chunk)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.stdout is not None:
                proc.stdout.close()
        head = b"".join(kept)
        if code != 0:
            self.errors.append(
                f"git {args[0]} timed out after {self.timeout:g} s"
                if timed_out.is_set()
                else f"git {args[0]} failed ({code})"
            )
            return head, None
        return head, size


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, list[str]]:
    """(commit, branch, dirty, untracked) from ``git status --porcelain=v2 --branch -z``."""
    commit: str | None = None
    branch: str | None = None
    dirty = False
    untracked: list[str] = []
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if entry.startswith(b"# branch.oid "):
            oid = entry[len(b"# branch.oid ") :].decode()
            commit = None if oid == "(initial)" else oid
        elif entry.startswith(b"# branch.head "):
            head = entry[len(b"# branch.head ") :].decode(errors="replace")
            branch = None if head == "(detached)" else head
        elif entry.startswith(b"? "):
            untracked.append(entry[2:].decode("utf-8", "backslashreplace"))
        elif entry[:2] in (b"1 ", b"u "):
            dirty = True
        elif entry.startswith(b"2 "):  # rename or copy: the original path follows
            dirty = True
            i += 1
    return commit, branch, dirty, untracked


def _pick_remote(out: bytes) -> tuple[str | None, str | None]:
    """(name, url) of ``origin``, else of the first remote, from ``git config -z``."""
    remotes: list[tuple[str, str]] = []
    for item in out.split(b"\0"):
        if not item:
            continue
        key, _, value = item.decode(errors="replace").partition("\n")
        name = key[len("remote.") : -len(".url")]
        remotes.append((name, value))
    if not remotes:
        return None, None
    for name, url in remotes:
        if name == "origin":
            return name, url
    return remotes[0]
