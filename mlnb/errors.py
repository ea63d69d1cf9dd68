"""The one exception family of mlnb.

Every error that library code raises on purpose is an :class:`MlnbError`; its message says
what happened and what to do. Adapters translate at their edge: the CLI prints the message
and exits non-zero, the magics raise ``UsageError``, the server answers a JSON error.

::

    MlnbError
    ├── StoreError                  the store cannot be opened or used
    │   ├── StoreNotFoundError      a read found no store (says where it looked)
    │   ├── StoreCorruptError       the file is not an mlnb store (left untouched)
    │   ├── StoreVersionError       written by a newer mlnb (upgrade hint)
    │   ├── StoreReadOnlyError      the store's directory or file cannot be written
    │   └── StoreFullError          the disk holding the store is full (queued points wait)
    ├── RunNotFoundError            no run has that id (or prefix)
    │   └── AmbiguousRunIdError     a prefix matches several runs
    ├── ExperimentNotFoundError     no experiment has that name (lists the experiments)
    ├── RunStateError               e.g. logging to a finished run
    ├── InvalidInputError           a bad key, value, step or param (nothing written)
    │   ├── ParamConflictError      a param logged again with a different value
    │   ├── BundleError             a run bundle that is malformed, damaged, or conflicts
    │   │                           with the run already in the store (nothing imported)
    │   ├── InputLimitError         input over a size or complexity limit (names the limit)
    │   ├── PredictionInputError    a request to ``mlnb serve`` that is malformed or does not
    │   │                           fit the model's signature (has .field and .status)
    │   └── SchemaError             a data schema file that does not parse or holds an
    │                               unknown rule (has .line and .column when known)
    ├── QuerySyntaxError            a filter or order_by that does not parse (has .position)
    ├── ModelNotFoundError          no registered model, version or alias of that name
    ├── ModelIntegrityError         a model file whose hash does not match, or an unsafe
    │                               format loaded without trust=True
    ├── AliasMovedError             an alias moved while a promotion was decided
    ├── RetrainBusyError            another retrain of the model holds its lock
    ├── NoServedDataError           a monitor window holds no served inputs of the model
    ├── TrackingServerError         an MLflow server could not be reached or refused a
    │                               request (what was sent stays; pushing again resumes)
    ├── MissingExtraError           an optional part of mlnb needs a package that is not
    │                               installed (names the extra: pip install 'mlnb[X]')
    ├── CaptureError                a job's kernel could not record its environment or git
    │                               state (the run's mlnb.warning tag says why)
    └── SweepFailedError            no child of a sweep finished (has .result)

    UserWarning
    └── MlnbWarning                 every warning mlnb emits, e.g. a filter key no run has

Filter warnings with ``warnings.filterwarnings("ignore", category=mlnb.MlnbWarning)``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AliasMovedError",
    "AmbiguousRunIdError",
    "BundleError",
    "CaptureError",
    "ExperimentNotFoundError",
    "InputLimitError",
    "InvalidInputError",
    "MissingExtraError",
    "MlnbError",
    "MlnbWarning",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "NoServedDataError",
    "ParamConflictError",
    "PredictionInputError",
    "QuerySyntaxError",
    "RetrainBusyError",
    "RunNotFoundError",
    "RunStateError",
    "SchemaError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "SweepFailedError",
    "TrackingServerError",
]


class MlnbError(Exception):
    """Base class of every error mlnb raises deliberately."""


class StoreError(MlnbError):
    """The store cannot be opened or used."""


class StoreNotFoundError(StoreError, LookupError):
    """A read found no store; the message says where it looked and that the first run
    creates one. Reads never create a store."""


class StoreCorruptError(StoreError):
    """The database file is not an mlnb store; it was not modified."""


class StoreVersionError(StoreError):
    """The store was written by a newer version of mlnb."""


class StoreReadOnlyError(StoreError):
    """The store's directory or database file cannot be written."""


class StoreFullError(StoreError):
    """The disk (or quota) holding the store is full; nothing of the failed write was stored."""


class RunNotFoundError(MlnbError, LookupError):
    """No run matches the given id or prefix."""


class AmbiguousRunIdError(RunNotFoundError):
    """A run id prefix matches more than one run."""


class ExperimentNotFoundError(MlnbError, LookupError):
    """No experiment has the given name; the message lists the experiments there are."""


class RunStateError(MlnbError):
    """The run is in a state that does not allow the operation (e.g. it has finished)."""


class InvalidInputError(MlnbError, ValueError):
    """A key, value, step or parameter was rejected; nothing was written."""


class ParamConflictError(InvalidInputError):
    """A param was logged again with a different value (params are immutable)."""


class BundleError(InvalidInputError):
    """A run bundle (mlnb.store.transfer) was refused: a field of the wrong type or format, a
    blob that does not match its hash, or a row that would change what the store already
    holds. Nothing was imported: no row and no artifact file."""


class InputLimitError(InvalidInputError):
    """Input over one of mlnb's limits on size or complexity (a YAML file that expands to
    too many values, say); the message names the limit. Nothing was read or written."""


class PredictionInputError(InvalidInputError):
    """A prediction request that cannot be served: a malformed body (``status`` 400) or
    inputs that do not fit the model's signature — a missing column, a value of the wrong
    type (422). ``field`` names the part of the request at fault (``"dataframe_split.data"``,
    ``"age"``), when there is one; the service answers it as a JSON error."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        self.field = field
        self.status = status
        super().__init__(message)


class SchemaError(InvalidInputError):
    """A data schema (docs/validation.md) that does not parse or holds a rule mlnb does not
    know. ``line`` and ``column`` (1-based) say where in the file, when known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        super().__init__(message)


class QuerySyntaxError(MlnbError, ValueError):
    """A filter or order_by expression does not parse.

    ``position`` is the 0-based character offset of the offending token, and the message
    ends with the expression and a caret under that position.
    """

    def __init__(self, message: str, text: str = "", position: int = 0) -> None:
        self.text = text
        self.position = position
        self.reason = message
        if text:
            shown, caret = text, position
            if len(text) > 120:  # a long filter: the part around the position
                start = max(0, min(position - 60, len(text) - 120))
                shown = ("..." if start else "") + text[start : start + 120]
                shown += "..." if start + 120 < len(text) else ""
                caret = position - start + (3 if start else 0)
            message = f"{message} at position {position}\n  {shown}\n  {' ' * caret}^"
        super().__init__(message)


class MissingExtraError(MlnbError):
    """An optional part of mlnb needs a package that is not installed (pandera for
    ``Schema.to_pandera``); the message names the extra that brings it, e.g.
    ``pip install 'mlnb[pandera]'``. Nothing was read or written."""


class CaptureError(MlnbError):
    """A headless job's kernel could not record what a run records about itself (its
    environment, its git state) or store what the notebook logged at its end; the job goes
    on, and the run's ``mlnb.warning`` tag says why."""


class SweepFailedError(MlnbError):
    """No child of a sweep finished, so the sweep has no result to use.

    Raised by :func:`mlnb.sweep` after every run is recorded (nothing is left ``queued``
    or ``running``); ``result`` is the :class:`~mlnb.jobs.sweeps.SweepResult` it would have
    returned, with each child's status and error.
    """

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


class MlnbWarning(UserWarning):
    """A warning from mlnb: something worked, but probably not as meant (a filter key that
    no run has, a capture that could not be recorded). Every warning mlnb emits is one."""


class ModelNotFoundError(MlnbError, LookupError):
    """No registered model, version or alias matches; the message names the close ones."""


class ModelIntegrityError(MlnbError):
    """A model file cannot be loaded safely: its bytes do not match the stored hash, or
    its format runs arbitrary code on load and ``trust=True`` was not given."""


class AliasMovedError(MlnbError):
    """An alias moved while a promotion was being decided (another promoter won); nothing
    changed. Promote again: the gate then runs against the new target."""


class TrackingServerError(MlnbError):
    """An MLflow tracking server could not be reached, or refused a request, during a push
    or a pull (mlnb.interop). What was sent stays there and what was received is stored;
    running the push or pull again resumes where it stopped."""


class RetrainBusyError(MlnbError):
    """Another retrain of the same model holds its lock (``--no-wait``: exit 75)."""


class NoServedDataError(MlnbError):
    """``mlnb monitor``'s window holds no served inputs of the model (nothing recorded)."""
