"""pytest-jupyter's fixtures and async-test hooks for the tests in this folder only.

``pytest_plugins = ["pytest_jupyter.jupyter_server"]`` would register them for the whole
session: its autouse fixtures (an event loop, a ``ServerApp`` cleanup) then ran around every
test of the suite. Imported into this conftest, fixtures and hooks apply here alone.
"""

from pytest_jupyter.jupyter_server import *  # noqa: F403
