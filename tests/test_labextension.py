"""The JupyterLab extension's packaging, without a browser (tests/e2e/ drives one)."""

from __future__ import annotations

import json
import re

import pytest

import mlnb
from tests.conftest import REPO

PACKAGE = json.loads((REPO / "labextension" / "package.json").read_text())


def npm_to_pep440(version: str) -> str:
    """The rule of labextension/src/version.ts: `0.1.0-dev.0` → `0.1.0.dev0`."""
    m = re.fullmatch(r"(\d+\.\d+\.\d+)(?:-(dev|alpha|beta|rc)\.?(\d+))?", version)
    assert m, f"labextension/package.json has a version npm and we cannot read: {version}"
    release, pre, n = m.groups()
    if not pre:
        return release
    return release + {"dev": ".dev", "alpha": "a", "beta": "b", "rc": "rc"}[pre] + n


def test_labextension_version_is_mlnb_version() -> None:
    """Issue 13: the frontend's version handshake compares package.json's version with the
    server's `mlnb.__version__`; a release that bumps one and not the other would tell
    every user to upgrade."""
    assert npm_to_pep440(PACKAGE["version"]) == mlnb.__version__


def test_labextension_install_paths_agree() -> None:
    """The npm name is the folder JupyterLab loads the extension from: the wheel's
    shared-data, `_jupyter_labextension_paths` (for `jupyter labextension develop`) and the
    builder's output folder all name the same place."""
    name = PACKAGE["name"]
    assert mlnb._jupyter_labextension_paths() == [{"src": "labextension", "dest": name}]
    assert PACKAGE["jupyterlab"]["outputDir"] == "../mlnb/labextension"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    shared = wheel["targets"]["wheel"]["shared-data"]
    assert shared["mlnb/labextension"] == f"share/jupyter/labextensions/{name}"
    assert shared["labextension/install.json"] == f"share/jupyter/labextensions/{name}/install.json"
    install = json.loads((REPO / "labextension" / "install.json").read_text())
    assert install["packageName"] == "mlnb"
