"""The model behind ``mlnb serve``: one reference to the loaded version, replaced whole
when the alias moves.

The alias is read on the event loop (:meth:`ModelHolder.follow`), not on a thread of its
own: under saturating load a second thread waits for the GIL at each of the read's SQLite
calls (the interpreter's switch interval, 5 ms, each time), which made a two-query read
take 0.2-0.6 s and a move take over 2 s to be served. On the loop it takes well under a
millisecond; only the load and warm-up of a new version run on a worker thread.

A request reads :attr:`ModelHolder.current` once and predicts with what it got, so a swap
never changes the model under a request in flight (the old model lives until the last
request holding it ends). A new version is loaded, hash-verified and warmed (one
prediction, on the last request's inputs when there was one) before the reference is
replaced; a version that fails to load or to warm is not swapped in — the old one keeps
serving, and the failure is kept (``last_error``) for ``/version`` and the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlnb.errors import MlnbError
from mlnb.records import ModelVersion
from mlnb.registry.formats import deserialise
from mlnb.registry.models import ModelRef, resolve_version, verified_file
from mlnb.serving.protocol import Signature

if TYPE_CHECKING:
    import pandas as pd

    from mlnb.store import Store

log = logging.getLogger("mlnb.serve")

POLL_S = 0.5  # how often the alias is read (one indexed SQLite read)
RETRY_FAILED_S = 30.0  # a version that failed to load is tried again after this long


@dataclass(frozen=True)
class Served:
    """A loaded version: what requests predict with."""

    version: ModelVersion
    model: Any
    signature: Signature
    takes_params: bool
    loaded_at: float = field(default_factory=time.time)


def _takes_params(model: Any) -> bool:
    import inspect

    try:
        return "params" in inspect.signature(model.predict).parameters
    except (TypeError, ValueError, AttributeError):
        return False


class ModelHolder:
    """Holds the served version of ``ref`` and follows it (an alias, or the newest
    version when ``ref`` names no version) from a daemon thread."""

    def __init__(self, store: Store, ref: ModelRef, *, trust: bool = False,
                 poll_s: float = POLL_S) -> None:  # fmt: skip
        self.store = store
        self.ref = ref
        self.trust = trust
        self.poll_s = poll_s
        self.current: Served | None = None
        self.last_error: dict[str, Any] | None = None
        self.swaps = 0
        self.load_failures = 0
        self.last_inputs: pd.DataFrame | None = None  # warms the next version
        self._failed: dict[int, float] = {}  # version -> when it failed
        self._listeners: list[Any] = []

    @property
    def follows(self) -> bool:
        """Whether the served version can change (an alias, or "the newest")."""
        return self.ref.version is None

    def on_change(self, listener: Any) -> None:
        """Call ``listener(served)`` after each swap (metrics)."""
        self._listeners.append(listener)

    def load(self, version: ModelVersion) -> Served:
        """Load, verify and warm ``version`` (raises on any failure; nothing swapped)."""
        path = verified_file(self.store, version)
        what = f"model {version.name}/{version.version}"
        model = deserialise(path, version.format, trust=self.trust, what=what)
        if not callable(getattr(model, "predict", None)):
            raise MlnbError(f"{what} has no predict() (a {type(model).__name__}); mlnb serve "
                            "serves models with a predict method")  # fmt: skip
        served = Served(version, model, Signature.of(version.signature), _takes_params(model))
        self._warm(served)
        return served

    def _warm(self, served: Served) -> None:
        """One prediction before the version takes requests: on the last request's inputs
        (a failure there means it cannot serve what the old one did: not swapped in), else
        on a row of zeros and empty strings (a failure there is only logged)."""
        frame = self.last_inputs
        if frame is not None and list(frame.columns) == list(served.signature.columns):
            served.model.predict(frame)
            return
        if not served.signature.columns:
            return
        import pandas as pd

        row = {c: [_zero(t)] for c, t in zip(served.signature.columns, served.signature.dtypes,
                                               strict=True)}  # fmt: skip
        try:
            served.model.predict(pd.DataFrame(row))
        except Exception as exc:  # a model may refuse made-up values; real ones come later
            log.info("warm-up of %s on a made-up row failed (%s); serving it anyway",
                     served.version.uri, exc)  # fmt: skip

    def start(self) -> Served:
        """Load the version ``ref`` names now (raises when it cannot: the service does
        not start without a model). :meth:`follow` keeps it current."""
        version = resolve_version(self.store, self.ref)
        self.current = self.load(version)
        return self.current

    async def follow(self) -> None:
        """Every ``poll_s`` seconds until cancelled: read the alias here, on the event
        loop (one indexed read), and load and swap in a new version on a worker thread."""
        import anyio

        if not self.follows:
            return
        while True:
            await anyio.sleep(self.poll_s)
            try:
                version = self.due()
            except Exception as exc:  # the store unreadable for a moment: keep serving
                log.warning("cannot read %s from the store: %s", self.ref, exc)
                continue
            if version is None:
                continue
            try:  # an error here must not end the service (it would take down the loop)
                await anyio.to_thread.run_sync(self.swap, version)
            except Exception as exc:
                log.error("swapping in %s failed: %s (still serving the previous version)",
                          version.uri, exc)  # fmt: skip

    def check(self) -> bool:
        """Swap in the version ``ref`` names now if it changed (loaded and warmed
        first); returns whether a swap happened."""
        version = self.due()
        return version is not None and self.swap(version)

    def due(self) -> ModelVersion | None:
        """The version to swap in: the one ``ref`` names now when it differs from the one
        served and did not fail to load in the last ``RETRY_FAILED_S`` seconds."""
        try:
            version = resolve_version(self.store, self.ref)
        except MlnbError as exc:  # the alias was removed: keep serving what we have
            self._fail(None, f"{self.ref} cannot be resolved: {exc}")
            return None
        current = self.current
        if current is not None and version.version == current.version.version:
            return None
        failed_at = self._failed.get(version.version)
        if failed_at is not None and time.time() - failed_at < RETRY_FAILED_S:
            return None
        return version

    def swap(self, version: ModelVersion) -> bool:
        """Load and warm ``version``, then make it the one requests use; on any failure
        keep the current one and record why. Returns whether it was swapped in."""
        current = self.current
        started = time.perf_counter()
        try:
            served = self.load(version)
        except Exception as exc:
            self._failed[version.version] = time.time()
            self.load_failures += 1
            self._fail(version.version, f"{type(exc).__name__}: {exc}")
            return False
        self.current = served  # one reference: requests after this line use the new version
        self.swaps += 1
        self._failed.pop(version.version, None)
        self.last_error = None
        log.warning("now serving %s (was version %s; loaded in %.2f s)", version.uri,
                    current.version.version if current else None,
                    time.perf_counter() - started)  # fmt: skip
        for listener in self._listeners:
            listener(served)
        return True

    def _fail(self, version: int | None, message: str) -> None:
        if self.last_error and self.last_error.get("message") == message:
            return
        serving = self.current.version.version if self.current else None
        self.last_error = {"version": version, "message": message, "at": time.time(),
                           "still_serving": serving}  # fmt: skip
        log.error("not swapping in %s version %s: %s (still serving version %s)",
                  self.ref.name, version, message, serving)  # fmt: skip


def _zero(dtype: str) -> Any:
    if dtype.startswith(("int", "uint", "float")):
        return 0
    if dtype == "bool":
        return False
    return ""
