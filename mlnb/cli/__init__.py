"""The ``mlnb`` command: the click app lives in :mod:`mlnb.cli.app`.

``main`` is the console script's entry point (``mlnb = "mlnb.cli:main"``); it imports the
app when called, so this package costs nothing to import.
"""

from __future__ import annotations


def main() -> None:
    """Run the ``mlnb`` command line."""
    from mlnb.cli.app import main as run

    run()
