"""The Jupyter server extension of mlnb: a JSON API under ``{base_url}/mlnb/api/`` that the
JupyterLab panel reads (runs, one run, metric series, comparisons, notebook parameters,
jobs, artifacts). docs/jupyterlab.md describes the endpoints and their shapes.

Importing this package is cheap: tornado and jupyter_server load when Jupyter loads the
extension (:func:`_load_jupyter_server_extension`). Installing mlnb enables it
(``etc/jupyter/jupyter_server_config.d/mlnb.json``); Jupyter finds it through
``mlnb._jupyter_server_extension_points``, which points here.
"""

from __future__ import annotations

from typing import Any

API_VERSION = 1  # bumped when a response shape changes; the lab panel checks it

__all__ = ["API_VERSION"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "mlnb.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register mlnb's routes with the running Jupyter server."""
    from mlnb.server.app import load
    from mlnb.server.handlers import ROUTES

    load(serverapp, ROUTES, api_version=API_VERSION)
