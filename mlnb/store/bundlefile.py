"""Runs as one file: :func:`write_bundle` packs runs into a zip archive (``mlnb export -o
runs.mlnb``), :func:`read_bundle` imports one (``mlnb import runs.mlnb``).

The archive holds, in this order:

- ``runs/<run_id>.json``: one run's rows, as :func:`mlnb.store.transfer.export_rows`
  reads them (params, every metric point with its step and timestamp, tags, checks,
  artifacts' rows, datasets and their profiles, the environment, git state, cell
  lineage: every run-linked table of the schema), and the hashes of its contents;
- ``blobs/<sha256>``: each artifact's content once, however many runs refer to it;
- ``models.json``: the registry rows that travel with the runs (their model versions,
  those models, their alias history: :mod:`mlnb.store.bundlemodels`), if any;
- ``manifest.json``, written last: the format and its version, the schema the runs were
  read with, the run ids in order, and each file's size and SHA-256.

Why a zip: the standard library writes and reads it member by member, so an export holds
one run's rows in memory at a time and copies contents in 1 MiB chunks (a bundle of 10 M
points never sits in memory whole), and any tool lists it. An import reads one run at a
time too, and streams contents over 16 MiB into the store instead of reading them whole.
The file appears under its name only when it is complete (written beside it, then
renamed): a killed export leaves no half bundle (the next export to that name removes
what it left beside it).

Reading trusts nothing: the manifest must name exactly the members the archive holds,
each member must hash to the manifest's SHA-256, and every run goes through
:func:`~mlnb.store.transfer.import_run`'s checks. All runs are checked against the store
first (reads only); a conflict with what the store holds is refused, naming every run
and what differs, before anything is written. Then each run is imported in its own
transaction, so a kill leaves each run whole or absent, and importing again resumes:
runs already in are no-ops and contents already in the store are neither read from the
file nor written again (a large artifact copied before the kill is not copied twice).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from mlnb.errors import BundleError
from mlnb.store import hashing
from mlnb.store.bundlemodels import check_models, export_models, import_models
from mlnb.store.core import Store
from mlnb.store.liveness import writer_dead, writer_tag
from mlnb.store.transfer import RUN_ID, blob_file, check_import, export_rows, import_run

__all__ = ["FILE_FORMAT", "FILE_VERSION", "ImportResult", "read_bundle", "write_bundle"]

FILE_FORMAT = "mlnb-bundle"
FILE_VERSION = 1
MANIFEST = "manifest.json"
MODELS = "models.json"
CHUNK = 2**20
LARGE = 16 * 2**20  # bytes: a content this large is streamed, never read into memory
MAX_MANIFEST = 256 * 2**20  # bytes: a manifest of a million runs is far below


@dataclass
class ImportResult:
    """What an import did: run ids added (new to the store), updated (gained rows) and
    unchanged (already whole); with ``dry_run``, what it would do."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    model_rows: int = 0  # registered models, versions and alias events added
    dry_run: bool = False


def _member_writer(
    archive: zipfile.ZipFile, name: str, files: dict[str, dict[str, Any]], *, compress: bool
) -> Callable[[Iterator[bytes]], None]:
    def write(chunks: Iterator[bytes]) -> None:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        digest, size = hashlib.sha256(), 0
        with archive.open(info, "w", force_zip64=True) as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        files[name] = {"size": size, "sha256": digest.hexdigest()}

    return write


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def write_bundle(store: Store, run_ids: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """Write the runs ``run_ids`` of ``store`` into the bundle file ``path`` (replaced
    only once the new one is complete); returns its path."""
    target = Path(path).expanduser()
    ids = list(dict.fromkeys(store.resolve_run_id(ref) for ref in run_ids))
    _remove_dead_partials(target)
    partial = target.with_name(f".{target.name}.{writer_tag()}-partial")
    files: dict[str, dict[str, Any]] = {}
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
            written: set[str] = set()
            for run_id in ids:
                rows, hashes = export_rows(store, run_id)
                rows["blobs"] = hashes
                text = json.dumps(rows, separators=(",", ":")).encode()
                member = _member_writer(archive, f"runs/{run_id}.json", files, compress=True)
                member(iter([text]))
                for digest in hashes:
                    if digest not in written:
                        source = blob_file(store, digest)
                        member = _member_writer(archive, f"blobs/{digest}", files, compress=False)
                        member(_file_chunks(source))
                        written.add(digest)
            registry = export_models(store, ids)
            if registry["versions"]:
                member = _member_writer(archive, MODELS, files, compress=True)
                member(iter([json.dumps(registry, separators=(",", ":")).encode()]))
            manifest = {
                "format": FILE_FORMAT,
                "version": FILE_VERSION,
                "schema": store.file.read(store.file.applied_migrations),
                "created_at": time.time(),
                "runs": ids,
                "files": files,
            }
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


def _remove_dead_partials(target: Path) -> None:
    """Remove what exports killed before they finished left beside ``target`` (their
    process is gone)."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*-partial"):
        if writer_dead(leftover.name.removeprefix(f".{target.name}.")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _refuse(path: Path, message: str) -> BundleError:
    return BundleError(f"{path}: {message}; nothing was imported")


def _manifest(path: Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise _refuse(path, "not an mlnb bundle file (no manifest.json)") from None
    if info.file_size > MAX_MANIFEST:
        raise _refuse(path, f"manifest.json is larger than {MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except ValueError:
        raise _refuse(path, "manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FILE_FORMAT:
        raise _refuse(path, "not an mlnb bundle file (manifest format is not mlnb-bundle)")
    if manifest.get("version") != FILE_VERSION:
        raise _refuse(
            path,
            f"bundle file version {manifest.get('version')!r:.20}, this mlnb reads version "
            f"{FILE_VERSION}; export it again or upgrade mlnb",
        )
    files, runs = manifest.get("files"), manifest.get("runs")
    if not isinstance(files, dict) or not isinstance(runs, list):
        raise _refuse(path, "manifest.json lacks its files or runs")
    members = {name for name in archive.namelist() if name != MANIFEST}
    if members != files.keys():
        odd = sorted(members ^ files.keys())[0]
        raise _refuse(path, f"member {odd!r:.100} is in the archive or the manifest, not both")
    for run_id in runs:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise _refuse(path, f"manifest run {run_id!r:.80} is not a run id")
        if f"runs/{run_id}.json" not in files:
            raise _refuse(path, f"run {run_id[:8]} is listed but its rows are not in the file")
    for name, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise _refuse(path, f"manifest entry of {name!r:.100} has no sha256")
    return manifest


def _read_member(path: Path, archive: zipfile.ZipFile, name: str, expected: str) -> bytes:
    """A member's bytes, refused unless they hash to the manifest's SHA-256."""
    data = archive.read(name)
    if hashlib.sha256(data).hexdigest() != expected:
        raise _refuse(path, f"{name} is damaged: it does not match the manifest's SHA-256")
    return data


def _bundles(
    path: Path, archive: zipfile.ZipFile, store: Store, *, write: bool
) -> Iterator[tuple[dict[str, Any], dict[str, int]]]:
    """Each run of the file as a bundle for :func:`import_run`, one at a time, with the
    contents the store holds (hash -> size) that its ``blobs`` leave out: those already
    in the store (an interrupted import resumes without copying them again), and large
    ones, which are hashed as a stream (``write``: streamed into the store) rather than
    read into memory."""
    manifest = _manifest(path, archive)
    files = manifest["files"]
    for run_id in manifest["runs"]:
        name = f"runs/{run_id}.json"
        text = _read_member(path, archive, name, files[name]["sha256"])
        try:
            bundle = json.loads(text)
        except ValueError:
            raise _refuse(path, f"{name} is not JSON") from None
        hashes = bundle.get("blobs") if isinstance(bundle, dict) else None
        if not isinstance(hashes, list) or not all(map(hashing.is_digest, hashes)):
            raise _refuse(path, f"{name} does not list its contents' hashes")
        blobs, held = {}, {}
        for digest in hashes:
            member = f"blobs/{digest}"
            if member not in files:
                raise _refuse(path, f"run {run_id[:8]} refers to content {digest} not in the file")
            if files[member]["sha256"] != digest:
                raise _refuse(path, f"{member} is listed with another SHA-256 than its name")
            have = store.artifact_file(digest)
            if have.is_file():
                held[digest] = have.stat().st_size
            elif archive.getinfo(member).file_size > LARGE:
                held[digest] = _stream_member(path, archive, member, store if write else None)
            else:
                blobs[digest] = _read_member(path, archive, member, digest)
        bundle["blobs"] = blobs
        run = bundle.get("run")
        if not isinstance(run, dict) or run.get("run_id") != run_id:
            raise _refuse(path, f"{name} holds another run than its name says")
        yield bundle, held


def _stream_member(path: Path, archive: zipfile.ZipFile, member: str, store: Store | None) -> int:
    """A large content member checked against its name in chunks, and with ``store``
    copied into it (written before its run's rows, so a refusal after it leaves an
    unreferenced file that `mlnb gc` removes); returns its size."""
    digest = member.removeprefix("blobs/")
    with cast(BinaryIO, archive.open(member)) as stream:
        if store is None:
            got, size = hashing.hash_stream(stream), archive.getinfo(member).file_size
        else:
            got, size = store.contents.put(stream)
    if got != digest:
        raise _refuse(path, f"{member} is damaged: it does not match the manifest's SHA-256")
    return size


def read_bundle(
    store: Store, path: str | os.PathLike[str], *, dry_run: bool = False
) -> ImportResult:
    """Import the bundle file ``path`` into ``store``: every run is checked first (the
    file's hashes, each run's rows, conflicts with the store), then each is imported in
    its own transaction. A conflict raises :class:`BundleError` naming every run that
    conflicts and how, with nothing written."""
    source = Path(path).expanduser()
    result = ImportResult(dry_run=dry_run)
    try:
        archive_file: IO[bytes] = source.open("rb")
    except OSError as exc:
        raise BundleError(f"cannot read bundle file {source}: {exc.strerror}") from None
    with archive_file, _zip(source, archive_file) as archive:
        conflicts, changes = [], {}
        for bundle, held in _bundles(source, archive, store, write=False):
            run_id = bundle["run"]["run_id"]
            try:
                changes[run_id] = check_import(store, bundle, held=held)
            except BundleError as exc:  # ParamConflictError is one too
                conflicts.append(f"run {run_id[:8]}: {exc}".removesuffix("; nothing was imported"))
        registry = _registry(source, archive)
        if registry is not None:
            try:
                result.model_rows = import_models(store, registry, dry_run=True)
            except BundleError as exc:
                conflicts.append(str(exc).removesuffix("; nothing was imported"))
        if conflicts:
            shown = "\n  ".join(conflicts[:20]) + ("\n  …" if len(conflicts) > 20 else "")
            raise BundleError(
                f"{len(conflicts)} run(s) of {source} conflict with {store.location}; "
                f"nothing was imported:\n  {shown}"
            )
        known = set(store.file.read(_known(list(changes))))
        for bundle, held in _bundles(source, archive, store, write=True) if not dry_run else ():
            import_run(store, bundle, held=held)
        if registry is not None and not dry_run:  # after the runs its versions come from
            result.model_rows = import_models(store, registry)
    for run_id, count in changes.items():
        bucket = (
            result.unchanged if not count else result.updated if run_id in known else result.added
        )
        bucket.append(run_id)
    return result


def _registry(path: Path, archive: zipfile.ZipFile) -> dict[str, Any] | None:
    """The registry rows of the file (``models.json``), checked; ``None`` if it has none."""
    manifest = _manifest(path, archive)
    if MODELS not in manifest["files"]:
        return None
    text = _read_member(path, archive, MODELS, manifest["files"][MODELS]["sha256"])
    try:
        data = json.loads(text)
    except ValueError:
        raise _refuse(path, f"{MODELS} is not JSON") from None
    try:
        return check_models(data, manifest["runs"])
    except BundleError as exc:
        raise _refuse(path, str(exc).removesuffix("; nothing was imported")) from None


def _known(run_ids: list[str]) -> Callable[[Any], list[str]]:
    def read(c: Any) -> list[str]:
        found: list[str] = []
        for start in range(0, len(run_ids), 500):
            part = run_ids[start : start + 500]
            sql = f"SELECT run_id FROM runs WHERE run_id IN ({', '.join('?' * len(part))})"
            found += [row[0] for row in c.execute(sql, part)]
        return found

    return read


@contextlib.contextmanager
def _zip(path: Path, file: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise _refuse(path, "not an mlnb bundle file (not a zip archive)") from None
    with archive:
        yield archive
