"""Runs and registered models between an mlnb store and an MLflow tracking server, both
ways, through MLflow's own client (``mlflow.tracking.MlflowClient``, the REST API).

:func:`mlflow_push` sends runs (params, metrics with their steps and times, tags,
artifacts, status, start and end times) and the registered versions they produced, with
their aliases. :func:`mlflow_pull` brings an MLflow server's runs (and the versions and
aliases whose files came with them) into a store. Both are idempotent and resumable:

- A pushed run carries the tag ``mlnb.source.run_id`` from the call that creates it, so
  the next push finds it (one search per experiment) and sends only what the server
  lacks: params and tags by key, metric points by (key, step, timestamp), artifacts by
  path and size. The status and end time go last, so a push killed half-way leaves a
  ``RUNNING`` run that the next push completes. After a complete push of an ended run the
  local run gets the tag ``mlnb.mlflow.run_id``.
- A pulled run keeps its id: the mlnb run it came from (``mlnb.source.run_id``), else the
  MLflow run id itself (32 hex digits, as mlnb's). It is written as one bundle
  (:func:`mlnb.store.transfer.import_run`: checked whole, one transaction, additive), so
  a pull killed half-way stored whole runs only, and pulling again adds what is missing
  and changes nothing else: a key the store already has is left as it is.

What does not travel: MLflow keeps times in milliseconds (a round trip rounds them), one
value per metric step in mlnb (a pull keeps the newest point of a step), a model alias's
history (MLflow keeps only where it points now), and mlnb's environment, git, data and
lineage records (they stay in the store).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.conventions import MLFLOW_RUN_TAG, SOURCE_RUN_TAG, SOURCE_TAG_PREFIX
from mlnb.errors import (
    InvalidInputError,
    MlnbError,
    ModelNotFoundError,
    TrackingServerError,
)
from mlnb.registry import formats
from mlnb.registry.models import check_name, set_model_alias
from mlnb.store import hashing
from mlnb.store import inputs as validation
from mlnb.store import models as model_table
from mlnb.store.transfer import RUN_ID, blank_bundle, export_run, import_run
from mlnb.tracking.active import resolve_store

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = ["TransferReport", "client_for", "mlflow_pull", "mlflow_push", "mlnb_run_id"]

PARAM_TYPES_TAG = f"{SOURCE_TAG_PREFIX}param_types"  # {key: type} of params that are not str
STATUS_TAG = f"{SOURCE_TAG_PREFIX}status"  # an mlnb status MLflow has no word for (crashed)
VERSION_TAG = f"{SOURCE_TAG_PREFIX}version"  # a model version's number in mlnb
FORMAT_TAG = f"{SOURCE_TAG_PREFIX}format"
FLAVOR_TAG = f"{SOURCE_TAG_PREFIX}flavor"
SIGNATURE_TAG = f"{SOURCE_TAG_PREFIX}signature"
RUN_NAME_TAG = "mlflow.runName"  # MLflow's own tags that mlnb keeps as columns
PARENT_TAG = "mlflow.parentRunId"

# MLflow's limits on one log_batch request (mlflow.utils.validation)
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000

TO_MLFLOW = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED",
             "crashed": "FAILED", "running": "RUNNING", "queued": "SCHEDULED"}  # fmt: skip
FROM_MLFLOW = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass
class TransferReport:
    """What a push or a pull did: counts per kind of thing sent (or stored), and the run
    ids it mapped (mlnb id → MLflow id)."""

    direction: str
    uri: str
    runs: int = 0  # runs sent or stored (new or completed)
    unchanged: int = 0  # runs that were already complete there
    skipped: list[str] = field(default_factory=list)  # what was left out, and why
    params: int = 0
    metrics: int = 0
    tags: int = 0
    artifacts: int = 0
    versions: int = 0
    aliases: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        verb = "pushed to" if self.direction == "push" else "pulled from"
        lines = [
            f"{self.runs} run(s) {verb} {self.uri} ({self.unchanged} already up to date): "
            f"{self.params} params, {self.metrics} metric points, {self.tags} tags, "
            f"{self.artifacts} artifacts, {self.versions} model versions, "
            f"{self.aliases} aliases"
        ]
        lines += [f"skipped: {why}" for why in self.skipped]
        return "\n".join(lines)


# -- the client --------------------------------------------------------------------------------


def client_for(uri: str) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` (tracking and registry). An ``http(s)`` server is
    asked for ``/health`` first, with a 5 s timeout, so an unreachable one fails at once
    (the client itself retries for minutes) and nothing is half-sent."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingServerError(
            "talking to an MLflow server needs the MLflow client: pip install 'mlnb[mlflow]'"
        ) from None
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingServerError(
                f"cannot reach the MLflow server at {uri} ({reason}); nothing was sent. Check "
                "that it runs (mlflow server …) and try again"
            ) from None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _server_errors(uri: str, doing: str) -> Any:
    """A context manager turning the client's errors into ``TrackingServerError``."""
    from mlflow.exceptions import MlflowException

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            with _quiet():
                yield
        except MlflowException as exc:
            raise TrackingServerError(
                f"the MLflow server at {uri} refused {doing}: {exc.message}; what was done "
                "before stays, and running it again resumes"
            ) from None
        except OSError as exc:  # requests' connection errors are OSErrors
            raise TrackingServerError(
                f"lost the MLflow server at {uri} during {doing}: {exc}; what was done before "
                "stays, and running it again resumes"
            ) from None

    return guard()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No run URLs printed to stdout, no download progress bars (MLflow's own switches;
    a value the user set is kept)."""
    switches = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # fmt: skip
    added = [name for name in switches if name not in os.environ]
    os.environ.update({name: switches[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list[Run]:
    out: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        out.extend(page)
        token = page.token
        if not token:
            return out


def _all_files(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    """Every artifact file of a run, by path, with its size."""
    out: dict[str, int] = {}
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(_all_files(client, run_id, info.path))
        else:
            out[info.path] = int(info.file_size or 0)
    return out


# -- push --------------------------------------------------------------------------------------


def mlflow_push(
    uri: str,
    filter: str | None = None,
    *,
    run_ids: Sequence[str] | None = None,
    store: StoreLike | None = None,
) -> TransferReport:
    """Push the store's runs that match ``filter`` (the query language of docs/query.md;
    default: every run not deleted), or the runs ``run_ids``, to the MLflow server at
    ``uri``, with the registered versions they produced and those models' aliases.

    Idempotent and resumable: what the server has is not sent again, and a push killed
    half-way is completed by the next one. Experiments are matched by name (created when
    missing). Raises ``TrackingServerError`` when the server cannot be reached (nothing
    sent) or refuses a request (what was sent stays)."""
    st = resolve_store(store, create=False)
    ids = st.run_ids(filter) if run_ids is None else [st.resolve_run_id(r) for r in run_ids]
    client = client_for(uri)
    report = TransferReport("push", uri)
    bundles = sorted(
        (export_run(st, run_id) for run_id in ids), key=lambda b: b["run"]["start_time"]
    )
    experiments: dict[str, tuple[str, dict[str, str]]] = {}
    with _server_errors(uri, "the push"):
        for bundle in bundles:  # oldest first: a parent is there before its children
            name = bundle["experiment"]
            if name not in experiments:
                experiments[name] = _experiment(client, name)
            experiment_id, known = experiments[name]
            run_id = bundle["run"]["run_id"]
            target = known.get(run_id) or _pulled_from(client, bundle)
            parent = bundle["run"]["parent_run_id"]
            mlflow_id = _push_run(
                client, experiment_id, bundle, target,
                report.run_ids.get(parent or "") or known.get(parent or ""), report,
            )  # fmt: skip
            known[run_id] = report.run_ids[run_id] = mlflow_id
            if bundle["run"]["status"] not in ("running", "queued"):  # ended: complete
                tags = {t["key"]: t["value"] for t in bundle["tags"]}
                if tags.get(MLFLOW_RUN_TAG) != mlflow_id:
                    st.set_tags(run_id, {MLFLOW_RUN_TAG: mlflow_id}, check_state=False)
        _push_models(client, st, report)
    return report


def _experiment(client: MlflowClient, name: str) -> tuple[str, dict[str, str]]:
    """The id of the experiment ``name`` on the server (created if missing), and the runs
    there that came from mlnb: mlnb run id → MLflow run id."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name), {}
    runs = _all_runs(client, found.experiment_id, f"tags.`{SOURCE_RUN_TAG}` LIKE '%'")
    return found.experiment_id, {r.data.tags[SOURCE_RUN_TAG]: r.info.run_id for r in runs}


def _pulled_from(client: MlflowClient, bundle: dict[str, Any]) -> str | None:
    """The MLflow run a run was pulled from (or last pushed to), if the server has it."""
    tags = {t["key"]: t["value"] for t in bundle["tags"]}
    mlflow_id = tags.get(MLFLOW_RUN_TAG)
    if mlflow_id is None:
        return None
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(mlflow_id)
    except MlflowException:
        return None  # another server's run
    return str(mlflow_id)


def _push_run(
    client: MlflowClient,
    experiment_id: str,
    bundle: dict[str, Any],
    target: str | None,
    parent: str | None,
    report: TransferReport,
) -> str:
    """Send one run; returns its MLflow id. Only what the server lacks is sent, and the
    status last."""
    from mlflow.entities import Metric, Param, RunTag

    run = bundle["run"]
    run_id = run["run_id"]
    params = {p["key"]: p["value"] for p in bundle["params"]}
    for key, value in params.items():
        if len(value) > MAX_PARAM_LENGTH:
            raise TrackingServerError(
                f"param {key!r} of run {run_id[:8]} is {len(value)} characters long; MLflow "
                f"keeps at most {MAX_PARAM_LENGTH}. Nothing of this run was sent"
            )
    tags = {t["key"]: t["value"] for t in bundle["tags"] if not t["key"].startswith("mlnb.mlflow.")}
    tags[SOURCE_RUN_TAG] = run_id
    tags[RUN_NAME_TAG] = run["name"]
    types = {p["key"]: p["type"] for p in bundle["params"] if p["type"] != "str"}
    typed = json.dumps(types, sort_keys=True)
    if types and len(typed) <= MAX_TAG_LENGTH:
        tags[PARAM_TYPES_TAG] = typed
    elif types:
        report.skipped.append(
            f"run {run_id[:8]}: the types of its {len(types)} non-text params do not fit in "
            f"one MLflow tag ({MAX_TAG_LENGTH} characters); a pull reads them back as text"
        )
    if run["status"] == "crashed":
        tags[STATUS_TAG] = "crashed"
    if parent is not None:
        tags[PARENT_TAG] = parent
    if target is None:
        created = client.create_run(
            experiment_id,
            start_time=_ms(run["start_time"]),
            tags={SOURCE_RUN_TAG: run_id},
            run_name=run["name"],
        )
        target = created.info.run_id
        remote, fresh = created, True
    else:
        remote, fresh = client.get_run(target), False
    sent = 0
    new_params = []
    for key, value in params.items():
        there = remote.data.params.get(key)
        if there is None:
            new_params.append(Param(key, value))
        elif there != value:
            raise TrackingServerError(
                f"param {key!r} of run {run_id[:8]} is {there!r:.80} on the server but "
                f"{value!r:.80} here; params are immutable, so the run was not pushed further"
            )
    for chunk in _chunks(new_params, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(target, params=chunk)
    new_tags = [RunTag(k, v) for k, v in tags.items() if remote.data.tags.get(k) != v]
    for chunk in _chunks(new_tags, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(target, tags=chunk)
    have: dict[str, set[tuple[int, int | None]]] = {}
    for key in set(remote.data.metrics) & {m["key"] for m in bundle["metrics"]}:
        have[key] = {(m.step, m.timestamp) for m in client.get_metric_history(target, key)}
    new_metrics = [
        Metric(
            m["key"],
            math.nan if m["value"] is None else m["value"],
            round(m["timestamp"] * 1000),
            m["step"],
        )
        for m in bundle["metrics"]
        if (m["step"], _ms(m["timestamp"])) not in have.get(m["key"], ())
    ]
    for chunk in _chunks(new_metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(target, metrics=chunk)
    files = {} if fresh else _all_files(client, target)
    new_files = [a for a in bundle["artifacts"] if files.get(a["path"]) != a["size"]]
    if new_files:
        with tempfile.TemporaryDirectory(prefix="mlnb-push-") as tmp:
            for art in new_files:
                path = Path(art["path"])
                local = Path(tmp) / art["hash"] / path.name
                local.parent.mkdir(exist_ok=True)
                local.write_bytes(bundle["blobs"][art["hash"]])
                folder = path.parent.as_posix()
                client.log_artifact(target, str(local), None if folder == "." else folder)
    status = TO_MLFLOW[run["status"]]
    end = _ms(run["end_time"])
    if status in TERMINAL:
        if remote.info.status != status or remote.info.end_time != end or fresh:
            client.set_terminated(target, status, end_time=end)
            sent += 1
    elif remote.info.status != status:
        client.update_run(target, status)
        sent += 1
    sent += len(new_params) + len(new_tags) + len(new_metrics) + len(new_files)
    report.params += len(new_params)
    report.tags += len(new_tags)
    report.metrics += len(new_metrics)
    report.artifacts += len(new_files)
    if sent or fresh:
        report.runs += 1
    else:
        report.unchanged += 1
    return target


def _push_models(client: MlflowClient, st: Store, report: TransferReport) -> None:
    """The registered versions the pushed runs produced, and the aliases of their models
    that point at versions the server has."""
    from mlflow.exceptions import MlflowException

    pushed: dict[tuple[str, int], str] = {}  # (name, mlnb version) -> MLflow version
    names: set[str] = set()
    for run_id in report.run_ids:
        for version in model_table.versions_of_run(st.file, run_id):
            names.add(version.name)
    for name in sorted(names):
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name)
        there = {
            (mv.run_id, mv.tags.get(VERSION_TAG)): mv.version
            for mv in client.search_model_versions(f"name='{name}'")
        }
        for version in sorted(model_table.list_versions(st.file, name), key=lambda v: v.version):
            mlflow_run = report.run_ids.get(version.run_id or "")
            if mlflow_run is None:
                continue
            key = (mlflow_run, str(version.version))
            if key not in there:
                tags = {VERSION_TAG: str(version.version), FORMAT_TAG: version.format}
                if version.flavor:
                    tags[FLAVOR_TAG] = version.flavor
                if version.signature is not None:
                    tags[SIGNATURE_TAG] = json.dumps(version.signature, sort_keys=True)
                artifact_uri = client.get_run(mlflow_run).info.artifact_uri
                created = client.create_model_version(
                    name, f"{artifact_uri}/{version.artifact_path}", run_id=mlflow_run,
                    tags=tags, description=version.description,
                )  # fmt: skip
                there[key] = created.version
                report.versions += 1
            pushed[(name, version.version)] = str(there[key])
        aliases = client.get_registered_model(name).aliases
        for model in model_table.list_models(st.file):
            if model["name"] != name:
                continue
            for alias, number in model["aliases"].items():
                mlflow_version = pushed.get((name, number))
                if mlflow_version is not None and str(aliases.get(alias)) != mlflow_version:
                    client.set_registered_model_alias(name, alias, mlflow_version)
                    report.aliases += 1


# -- pull --------------------------------------------------------------------------------------


def mlnb_run_id(run: Run) -> str:
    """The mlnb id of an MLflow run: the mlnb run it was pushed from, else its own id
    when it is 32 hex digits (MLflow's are), else one derived from it."""
    source = run.data.tags.get(SOURCE_RUN_TAG, "")
    if RUN_ID.fullmatch(source):
        return source
    if RUN_ID.fullmatch(run.info.run_id):
        return str(run.info.run_id)
    return uuid.uuid5(uuid.NAMESPACE_URL, f"mlflow-run:{run.info.run_id}").hex


def mlflow_pull(
    uri: str, *, experiment: str | None = None, store: StoreLike | None = None
) -> TransferReport:
    """Pull the runs of the MLflow server at ``uri`` (of ``experiment``, default: every
    experiment) into the store, with the registered versions whose file is an artifact of
    a pulled run and their models' aliases. Runs still ``RUNNING`` or ``SCHEDULED`` there
    are left out (pull again when they end).

    Each run is stored whole in one transaction under a stable id (:func:`mlnb_run_id`),
    so an interrupted pull stored whole runs only, and pulling again changes nothing but
    adding what the server gained: a param, metric step, tag or artifact the store
    already has is left as it is (a param with another value is refused,
    ``ParamConflictError``)."""
    client = client_for(uri)
    st = resolve_store(store, create=True)
    report = TransferReport("pull", uri)
    with _server_errors(uri, "the pull"):
        if experiment is not None:
            found = client.get_experiment_by_name(experiment)
            if found is None:
                names = sorted(e.name for e in client.search_experiments())
                raise TrackingServerError(
                    f"the MLflow server at {uri} has no experiment {experiment!r} (it has: "
                    f"{', '.join(names) or 'none'})"
                )
            experiments = [found]
        else:
            experiments = list(client.search_experiments())
        fetched: list[tuple[str, Run]] = []
        for exp in experiments:
            fetched += [(exp.name, run) for run in _all_runs(client, exp.experiment_id)]
        ids = {run.info.run_id: mlnb_run_id(run) for _, run in fetched}
        for experiment_name, run in fetched:
            mlnb_id = ids[run.info.run_id]
            status = run.data.tags.get(STATUS_TAG) or FROM_MLFLOW.get(run.info.status)
            if status is None:
                report.skipped.append(
                    f"run {run.info.run_id[:8]} is {run.info.status} on the server; pull again "
                    "when it has ended"
                )
                continue
            report.run_ids[mlnb_id] = run.info.run_id
            _pull_run(client, st, experiment_name, run, mlnb_id, status, ids, report)
        _pull_models(client, st, report)
    return report


def _pull_run(
    client: MlflowClient,
    st: Store,
    experiment: str,
    run: Run,
    mlnb_id: str,
    status: str,
    ids: dict[str, str],
    report: TransferReport,
) -> None:
    """Store one MLflow run: as a new run, or by adding what the store's copy lacks."""
    before = (report.params, report.tags, report.metrics, report.artifacts)
    known = st.run_status(mlnb_id) is not None
    if known:
        bundle = export_run(st, mlnb_id)
    else:
        bundle = blank_bundle(st, mlnb_id, experiment)
        tags = run.data.tags
        parent = tags.get(PARENT_TAG)
        name = run.info.run_name or tags.get(RUN_NAME_TAG) or run.info.run_id[:8]
        bundle["run"].update(
            name=name,
            status=status,
            start_time=(run.info.start_time or 0) / 1000,
            end_time=None if run.info.end_time is None else run.info.end_time / 1000,
            user=run.info.user_id or None,
            parent_run_id=None
            if parent is None
            else ids.get(parent, parent if RUN_ID.fullmatch(parent) else None),
        )
    when = bundle["run"]["end_time"] or bundle["run"]["start_time"]
    have_params = {p["key"] for p in bundle["params"]}
    types = json.loads(run.data.tags.get(PARAM_TYPES_TAG, "{}"))
    for key, text in run.data.params.items():
        if key in have_params:
            continue
        encoded = validation.encode_param(key, text)
        if types.get(key, "str") != "str":
            try:
                again = validation.encode_param(key, validation.decode_param(text, types[key]))
            except (ValueError, InvalidInputError):
                again = encoded
            encoded = again if again[0] == text else encoded
        value, type_, number = encoded
        bundle["params"].append({"key": key, "value": value, "type": type_, "value_num": number})
        report.params += 1
    have_tags = {t["key"] for t in bundle["tags"]}
    tags = {
        k: v
        for k, v in run.data.tags.items()
        if not k.startswith(SOURCE_TAG_PREFIX) and k not in (RUN_NAME_TAG, PARENT_TAG)
    }
    if SOURCE_RUN_TAG not in run.data.tags:
        tags[MLFLOW_RUN_TAG] = run.info.run_id
    for key, value in tags.items():
        if key not in have_tags:
            bundle["tags"].append({"key": key, "value": value})
            report.tags += 1
    have_steps = {(m["key"], m["step"]) for m in bundle["metrics"]}
    for key in run.data.metrics:
        newest: dict[int, Any] = {}
        for point in client.get_metric_history(run.info.run_id, key):
            old = newest.get(point.step)
            if old is None or point.timestamp >= old.timestamp:
                newest[point.step] = point
        for step, point in sorted(newest.items()):
            if (key, step) in have_steps:
                continue
            when_ = point.timestamp / 1000
            bundle["metrics"].append(
                {"key": key, "step": step, "value": point.value, "timestamp": when_}
            )
            report.metrics += 1
    have_files = {a["path"] for a in bundle["artifacts"]}
    wanted = [path for path in _all_files(client, run.info.run_id) if path not in have_files]
    if wanted:
        with tempfile.TemporaryDirectory(prefix="mlnb-pull-") as tmp:
            for path in wanted:
                local = client.download_artifacts(run.info.run_id, path, tmp)
                data = Path(local).read_bytes()
                digest = hashing.hash_bytes(data)
                bundle["blobs"][digest] = data
                row = {"path": path, "hash": digest, "size": len(data), "kind": "file"}
                bundle["artifacts"].append({**row, "created_at": when})
                report.artifacts += 1
    if known and (report.params, report.tags, report.metrics, report.artifacts) == before:
        report.unchanged += 1
        return
    import_run(st, bundle)
    report.runs += 1


def _pull_models(client: MlflowClient, st: Store, report: TransferReport) -> None:
    """The MLflow versions whose file is an artifact of a pulled run become versions here
    (once: a version of the name with the same run and file is that version), and the
    aliases of those models follow the server."""
    by_mlflow = {mlflow_id: mlnb_id for mlnb_id, mlflow_id in report.run_ids.items()}
    token = None
    models = []
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        models += list(page)
        token = page.token
        if not token:
            break
    for model in models:
        name = model.name
        mapped: dict[str, int] = {}  # MLflow version -> mlnb version
        for mv in sorted(
            client.search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version)
        ):
            run_id = by_mlflow.get(mv.run_id or "")
            if run_id is None or mv.run_id is None:
                continue
            artifact_uri = client.get_run(mv.run_id).info.artifact_uri
            source = mv.source or ""
            path = source[len(artifact_uri) + 1 :] if source.startswith(artifact_uri) else ""
            art = next((a for a in st.get_run(run_id).artifacts if a.path == path), None)
            if art is None:
                report.skipped.append(
                    f"model {name} version {mv.version}: its source {mv.source} is not one "
                    "file of a pulled run (an MLflow model folder is not registered here)"
                )
                continue
            try:
                check_name(name)
                existing = model_table.list_versions(st.file, name)
            except ModelNotFoundError:
                existing = []
            except InvalidInputError as exc:
                report.skipped.append(f"model {name}: {exc}")
                break
            same = [v for v in existing if v.run_id == run_id and v.artifact_hash == art.hash]
            if same:
                mapped[str(mv.version)] = same[0].version
                continue
            tags = mv.tags
            signature = json.loads(tags[SIGNATURE_TAG]) if SIGNATURE_TAG in tags else None
            fmt = tags.get(FORMAT_TAG) or formats.format_of_file(Path(path), None)
            created = model_table.create_version(
                st.file, name, run_id=run_id, file_name=Path(path).name,
                artifact_hash=art.hash, size=art.size, format=fmt,
                flavor=tags.get(FLAVOR_TAG), signature=signature,
                description=mv.description or None, user=mv.user_id or None,
            )  # fmt: skip
            mapped[str(mv.version)] = created.version
            report.versions += 1
        if not mapped:
            continue
        listed = model_table.list_models(st.file)
        here: dict[str, int] = next((m["aliases"] for m in listed if m["name"] == name), {})
        for alias, mlflow_version in client.get_registered_model(name).aliases.items():
            version = mapped.get(str(mlflow_version))
            if version is None or here.get(alias) == version:
                continue
            try:
                set_model_alias(name, alias, version, reason=f"pulled from {report.uri}", store=st)
            except MlnbError as exc:
                report.skipped.append(f"alias {name}@{alias}: {exc}")
                continue
            report.aliases += 1
