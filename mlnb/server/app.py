"""What the extension holds while the server runs (its options, the store, the jobs) and
how it is loaded: the routes of ``handlers.ROUTES`` under ``{base_url}/mlnb/api/``."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jupyter_server.utils import url_path_join
from traitlets import Unicode
from traitlets.config import Configurable

from mlnb.errors import StoreNotFoundError
from mlnb.server.jobs import JobManager
from mlnb.store import Store, find_store_dir
from mlnb.store.core import DB_FILENAME

API_PREFIX = "mlnb/api"
SETTINGS_KEY = "mlnb"  # the ServerState in the tornado settings
READ_THREADS = 2  # store reads run off the event loop, on this many threads


class Mlnb(Configurable):  # type: ignore[misc]
    """Options of mlnb's server extension (``c.Mlnb.store = "/path/to/.mlnb"`` in
    ``jupyter_server_config.py``, or ``--Mlnb.store=...`` on the command line)."""

    store = Unicode(
        None,
        allow_none=True,
        config=True,
        help=(
            "The mlnb store the lab panel shows and jobs write to (its folder or .db file). "
            "Default: $MLNB_STORE, else the nearest .mlnb/ from the server's root "
            "directory upwards, else <root_dir>/.mlnb (created by the first run)."
        ),
    )


class ServerState:
    """The extension's state: where the store is, the store once it exists (reads never
    create it), the root directory jobs are confined to, the jobs started here, and the
    threads store reads run on."""

    def __init__(self, *, root_dir: str, store_path: str | None, api_version: int) -> None:
        self.api_version = api_version
        self.root_dir = Path(root_dir).expanduser().resolve()
        # the root as given too: runs record their notebook's absolute path unresolved
        given = Path(os.path.abspath(Path(root_dir).expanduser()))
        self.roots = tuple(dict.fromkeys([self.root_dir, given]))
        target = Path(store_path).expanduser() if store_path else find_store_dir(self.root_dir)
        self.store_path = target.absolute()
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="mlnb-server")
        self.jobs = JobManager(store_dir=self.store_path)

    @property
    def db_file(self) -> Path:
        """The store's database file (``store_path`` names it or its folder)."""
        return self.store_path if self.store_path.suffix == ".db" else self.store_path / DB_FILENAME

    def store(self) -> Store:
        """The store, opened on first use; ``StoreNotFoundError`` while there is none yet
        (asked again on the next request, so the first job's store is picked up)."""
        with self._lock:
            if self._store is None:
                self._store = Store(self.store_path, create=False)
            return self._store

    def store_or_none(self) -> Store | None:
        try:
            return self.store()
        except StoreNotFoundError:
            return None


def load(serverapp: Any, routes: Sequence[tuple[str, Any]], *, api_version: int) -> None:
    """Read the options, build the state and register ``routes`` (patterns relative to
    ``{base_url}/mlnb/api/``) with ``serverapp``."""
    config = Mlnb(parent=serverapp)
    state = ServerState(
        root_dir=serverapp.root_dir, store_path=config.store, api_version=api_version
    )
    web_app = serverapp.web_app
    web_app.settings[SETTINGS_KEY] = state
    base = url_path_join(web_app.settings["base_url"], API_PREFIX)
    web_app.add_handlers(
        ".*$", [(url_path_join(base, pattern), handler) for pattern, handler in routes]
    )
    serverapp.log.info(
        "mlnb %s: API at %s, store %s", package_version(), base, os.fspath(state.store_path)
    )


def package_version() -> str:
    """mlnb's version (the lab panel compares it with its own)."""
    from mlnb import __version__

    return str(__version__)
