"""The model registry: register a model (object or file) as a numbered version of a name,
point aliases at versions (append-only history), load a version by URI.

``mlnb://NAME@ALIAS``, ``mlnb://NAME/3`` and ``mlnb://NAME`` (the newest version) name a
version; MLflow's ``models:/NAME@ALIAS`` and ``models:/NAME/3`` and the bare ``NAME@ALIAS``
are accepted too. A model file is an artifact of the run that produced it (content-
addressed), its hash is checked before every load, and formats that run code on load
need ``trust=True`` (:mod:`mlnb.registry.formats`). docs/registry.md tells the story.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlnb.errors import InvalidInputError, ModelIntegrityError
from mlnb.records import AliasEvent, ModelVersion
from mlnb.registry import formats
from mlnb.store import hashing
from mlnb.store import models as table
from mlnb.store.liveness import HOST
from mlnb.store.runs import current_user

if TYPE_CHECKING:
    from mlnb.store import Store
    from mlnb.tracking.active import StoreLike

__all__ = [
    "ModelRef",
    "delete_model_alias",
    "get_model_version",
    "load_model",
    "model_history",
    "models",
    "parse_model_uri",
    "register_model",
    "set_model_alias",
]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RESERVED_ALIASES = ("latest",)
_URI = re.compile(r"(?:mlnb://|models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))?")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI: the name and either an alias or a version (neither: newest)."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        return self.name if self.version is None else f"{self.name}/{self.version}"


def check_name(name: str, what: str = "model name") -> str:
    """A model name or alias: letters, digits, ``.``, ``_``, ``-`` (no ``@`` or ``/``,
    which URIs use); an alias is not a number (``NAME/3`` names a version)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInputError(
            f"bad {what} {name!r}: use letters, digits, '.', '_' and '-' (up to 128, starting "
            "with a letter or digit)"
        )
    if what == "alias" and (name.isdigit() or name in RESERVED_ALIASES):
        raise InvalidInputError(
            f"bad alias {name!r}: an alias is not a number, nor {', '.join(RESERVED_ALIASES)} "
            "(those name versions)"
        )
    return name


def parse_model_uri(uri: str) -> ModelRef:
    """``mlnb://churn@champion`` → ``ModelRef("churn", alias="champion")``; also
    ``mlnb://churn/3``, ``models:/churn@champion`` (MLflow's), ``churn@champion``,
    ``churn`` (the newest version), ``churn@latest``."""
    match = _URI.fullmatch(uri.strip()) if isinstance(uri, str) else None
    if match is None:
        raise InvalidInputError(
            f"bad model URI {uri!r}: expected mlnb://NAME@ALIAS, mlnb://NAME/VERSION or "
            "mlnb://NAME (e.g. mlnb://churn@champion, mlnb://churn/3)"
        )
    name = check_name(match["name"])
    alias = match["alias"]
    if alias == "latest":
        return ModelRef(name)
    if alias is not None:
        check_name(alias, "alias")
    version = int(match["version"]) if match["version"] else None
    return ModelRef(name, alias, version)


def _store(store: StoreLike | None, *, create: bool = False) -> Store:
    from mlnb.tracking.active import resolve_store

    return resolve_store(store, create=create)


def resolve_version(st: Store, ref: ModelRef, *, at: float | None = None) -> ModelVersion:
    """The version a reference names (an alias now, or at Unix time ``at``)."""
    version = ref.version
    if ref.alias is not None:
        version = table.resolve_alias(st.file, ref.name, ref.alias, at=at)
    return table.get_version(st.file, ref.name, version)


def get_model_version(
    uri: str, version: int | None = None, *, store: StoreLike | None = None
) -> ModelVersion:
    """The version ``uri`` names (``"churn@champion"``, ``"churn/3"``, or ``"churn"`` with
    ``version=3``); MLflow's ``get_model_version`` / ``get_model_version_by_alias``."""
    ref = parse_model_uri(uri)
    if version is not None:
        ref = ModelRef(ref.name, None, version)
    return resolve_version(_store(store), ref)


def models(*, store: StoreLike | None = None) -> list[dict[str, Any]]:
    """Every registered model: name, number of versions, newest version, aliases."""
    return table.list_models(_store(store).file)


def versions(name: str, *, store: StoreLike | None = None) -> list[ModelVersion]:
    """Every version of a model, newest first."""
    return table.list_versions(_store(store).file, check_name(name))


def _signature(
    st: Store, run_id: str, model: Any, input_example: Any, signature: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Input columns and dtypes and the output: as given, else from ``input_example``,
    else from the run's training data (its input dataset ``train``, else its only input
    dataset with a schema)."""
    if signature is not None:
        return dict(signature)
    inputs: list[Any] | None = None
    source = None
    if input_example is not None:
        from mlnb.capture.fingerprints import fingerprint

        inputs, source = fingerprint(input_example).schema, "input_example"
    else:
        datasets = [
            d for d in st.get_run(run_id).datasets if d.role == "input" and d.schema is not None
        ]
        chosen = [d for d in datasets if d.name == "train"] or (datasets[:1] if len(datasets) == 1
                                                                 else [])  # fmt: skip
        if chosen:
            inputs, source = chosen[0].schema, f"dataset {chosen[0].name!r} of the run"
    outputs: dict[str, Any] | None = None
    classes = getattr(model, "classes_", None)
    if classes is not None:
        outputs = {"kind": "class", "classes": [_plain(c) for c in list(classes)[:100]]}
    elif model is not None and hasattr(model, "predict"):
        outputs = {"kind": "prediction"}
    if inputs is None and outputs is None:
        return None
    return {"inputs": inputs, "outputs": outputs, "source": source}


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def register_model(
    name: str,
    model_or_path: Any,
    *,
    run: str | None = None,
    format: str | None = None,
    input_example: Any = None,
    signature: Mapping[str, Any] | None = None,
    description: str | None = None,
    store: StoreLike | None = None,
) -> ModelVersion:
    """Register a model as the next version of ``name`` (created on its first version):
    ``mlnb.register_model("churn", clf)`` inside a run, or ``register_model("churn",
    "model.skops", run="3f2a")``. MLflow's ``register_model``, with the name first.

    ``model_or_path`` is a model object (scikit-learn estimators are saved with skops when
    it is installed, anything else with pickle) or a model file (format by suffix:
    ``.skops``, ``.pkl``, ``.joblib``, else an opaque ``file``). The file becomes an
    artifact of ``run`` (default: the active run) — ``models/NAME/vN/...``. The signature
    (input columns and dtypes, output) is ``signature``, else read from
    ``input_example``, else from the run's input dataset ``train``. Returns the
    :class:`~mlnb.records.ModelVersion`; no alias moves (``set_model_alias``)."""
    check_name(name)
    st = _store(store, create=True)
    if run is None:
        from mlnb.tracking.active import active_run

        active = active_run()
        if active is None:
            raise InvalidInputError(
                "register_model needs the run that produced the model: call it inside a run "
                "(mlnb.start_run, %track start) or pass run=RUN"
            )
        st, run_id = active.store, active.run_id
    else:
        run_id = st.resolve_run_id(run)
    model = None
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise InvalidInputError(f"cannot register {path}: no such file")
        fmt = formats.format_of_file(path, format)
        file_name = formats.FILE_NAMES.get(fmt, path.name) if fmt != "file" else path.name
        source: str | os.PathLike[str] | bytes = path
        flavor = None
    else:
        model = model_or_path
        data, file_name, fmt = formats.serialise(model, format)
        source, flavor = data, formats.flavor_of(model)
    sig = _signature(st, run_id, model, input_example, signature)
    st.file.check_writable()
    digest, size = st.contents.put(source)
    return table.create_version(
        st.file, name, run_id=run_id, file_name=file_name, artifact_hash=digest, size=size,
        format=fmt, flavor=flavor, signature=sig, description=description, user=current_user(),
    )  # fmt: skip


def verified_file(st: Store, version: ModelVersion) -> Path:
    """The path of a version's file, after checking its bytes against the stored hash."""
    path = st.contents.path(version.artifact_hash)
    what = f"model {version.name}/{version.version}"
    if not path.is_file():
        raise ModelIntegrityError(
            f"the file of {what} ({version.artifact_hash[:12]}…) is missing from {path.parent}; "
            "restore the store's artifacts folder from a backup, or register the model again"
        )
    actual = hashing.hash_file(path)
    if actual != version.artifact_hash:
        raise ModelIntegrityError(
            f"the file of {what} does not match its stored hash (expected "
            f"{version.artifact_hash[:12]}…, the file hashes to {actual[:12]}…): it changed "
            "after it was registered; nothing was loaded"
        )
    return path


def load_model(
    uri: str, *, trust: bool = False, at: Any = None, store: StoreLike | None = None
) -> Any:
    """The model ``uri`` names, loaded: ``mlnb.load_model("mlnb://churn@champion")``. Its
    file is checked against the stored hash first. skops files load without running code
    the file carries (unknown types refused); pickle and joblib files run code on load
    and need ``trust=True``; other files come back as their verified path. ``at`` (a
    datetime, ISO date or Unix time) resolves an alias as it was then."""
    st = _store(store)
    version = resolve_version(st, parse_model_uri(uri), at=when(at))
    path = verified_file(st, version)
    return formats.deserialise(
        path, version.format, trust=trust, what=f"model {version.name}/{version.version}"
    )


def when(at: Any) -> float | None:
    """A moment as Unix time: a datetime, an ISO date/time (``2026-03-03``: the end of
    that day, UTC), or a number."""
    if at is None or isinstance(at, (int, float)):
        return None if at is None else float(at)
    if isinstance(at, _dt.datetime):
        return at.timestamp() if at.tzinfo else at.replace(tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(at, _dt.date):
        at = at.isoformat()
    if isinstance(at, str):
        text = at.strip()
        try:
            if len(text) == 10:  # a day: what served during it, i.e. at its end
                day = _dt.date.fromisoformat(text)
                end = _dt.datetime.combine(day, _dt.time.max, tzinfo=_dt.timezone.utc)
                return end.timestamp()
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
            return moment.timestamp()
    raise InvalidInputError(
        f"bad time {at!r}: give an ISO date or time (2026-03-03, 2026-03-03T14:00Z), a "
        "datetime or Unix seconds"
    )


def set_model_alias(
    name: str,
    alias: str,
    version: int,
    *,
    reason: str | None = None,
    store: StoreLike | None = None,
) -> AliasEvent:
    """Point ``name@alias`` at ``version`` (MLflow's ``set_registered_model_alias``), and
    record who, when, from which version and ``reason`` in the alias history. No gate:
    ``mlnb.promote`` moves an alias only when a gate passes."""
    check_name(name)
    check_name(alias, "alias")
    return table.move_alias(
        _store(store).file, name, alias, int(version), reason=reason or "manual",
        user=current_user(), host=HOST,
    )  # fmt: skip


def delete_model_alias(
    name: str, alias: str, *, reason: str | None = None, store: StoreLike | None = None
) -> AliasEvent:
    """Remove ``name@alias`` (MLflow's ``delete_registered_model_alias``); the history
    keeps the removal."""
    st = _store(store)
    table.resolve_alias(st.file, check_name(name), alias)  # an unknown alias is an error
    return table.move_alias(st.file, name, alias, None, reason=reason or "manual",
                            user=current_user(), host=HOST)  # fmt: skip


def rollback_alias(
    name: str, alias: str, *, reason: str | None = None, store: StoreLike | None = None
) -> AliasEvent:
    """Point ``name@alias`` back at the version it pointed at before its last move
    (``--previous``); refused when it has no earlier version."""
    st = _store(store)
    events = table.alias_history(st.file, check_name(name), alias=alias)
    if not events:
        table.resolve_alias(st.file, name, alias)  # raises with the aliases there are
    last = events[-1]
    if last.previous_version is None:
        raise InvalidInputError(
            f"{name}@{alias} has no earlier version to go back to (it was first set to "
            f"version {last.version})"
        )
    return table.move_alias(
        st.file, name, alias, last.previous_version, expect=last.version,
        reason=reason or f"rollback to version {last.previous_version}", user=current_user(),
        host=HOST,
    )  # fmt: skip


def model_history(
    name: str, *, alias: str | None = None, at: Any = None, store: StoreLike | None = None
) -> list[AliasEvent]:
    """Every move of ``name``'s aliases (or of ``alias``), oldest first; with ``at``, up
    to that moment, so the last event per alias says what it pointed at then."""
    return table.alias_history(_store(store).file, check_name(name), alias=alias, at=when(at))


def versions_of_run(st: Store, run_id: str) -> list[ModelVersion]:
    """The registered versions a run produced."""
    return table.versions_of_run(st.file, run_id)
