"""A plain install works: what ``pip install mlnb`` (no extras) gives is enough for what the
docs promise. The full check is the smoke lane (``make smoke``, ``.ci/smoke.py``), which
installs the package without extras into a fresh venv; these tests pin the defects it found
at the cheapest layer that is still real."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import mlnb
from mlnb.capture.fingerprints import fingerprint
from mlnb.store import Store
from tests.conftest import run_python
from tests.reliability.conftest import integrity_ok, row_counts

# A pandas that cannot import pyarrow, as on a plain install: pandas decides at import time.
_WITHOUT_PYARROW = """
import json, sys
sys.modules["pyarrow"] = None  # `import pyarrow` now raises ImportError
import pandas as pd
import mlnb
from mlnb.capture.fingerprints import fingerprint

frame = pd.DataFrame({
    "city": ["Oslo", "Rome", None, "Lisbon"],
    "code": pd.array(["a", "bb", pd.NA, "dddd"], dtype=pd.StringDtype("python")),
    "n": [1, 2, 3, 4],
})
with mlnb.start_run("plain") as run:
    ref = mlnb.log_data(frame, "cities")
stats = {s["name"]: s for s in mlnb.get_run(run.run_id).datasets[0].profile["stats"]}
print(json.dumps({"dtype": str(frame["city"].dtype), "hash": ref.hash, "run": run.run_id,
                  "lengths": {c: stats[c]["length"] for c in ("city", "code")}}))
"""


def test_log_data_profiles_text_columns_without_pyarrow(tmp_path: Path) -> None:
    """Issue 10 item 14: with pandas 3 a string column has ``__arrow_array__`` even when
    pyarrow is absent, and ``log_data`` then crashed importing pyarrow.compute — every
    plain install that logged a DataFrame with text hit it."""
    store_dir = tmp_path / "store"
    with Store(store_dir) as st, mlnb.start_run("unrelated", store=st) as other:
        mlnb.log_param("lr", 0.1)
        mlnb.log_metric("acc", 0.9)
    before = row_counts(store_dir / "mlnb.db", other.run_id)

    proc = run_python(_WITHOUT_PYARROW, env={"MLNB_STORE": str(store_dir)})
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["dtype"] == "str"  # pandas 3's default string dtype, python storage
    assert out["lengths"] == {"city": {"min": 4, "max": 6}, "code": {"min": 1, "max": 4}}
    # The same frame with pyarrow (this venv has it) fingerprints the same: storage is not data
    frame = pd.DataFrame(
        {
            "city": ["Oslo", "Rome", None, "Lisbon"],
            "code": pd.array(["a", "bb", pd.NA, "dddd"], dtype=pd.StringDtype("python")),
            "n": [1, 2, 3, 4],
        }
    )
    assert fingerprint(frame).hash == out["hash"]
    assert integrity_ok(store_dir / "mlnb.db")
    assert row_counts(store_dir / "mlnb.db", other.run_id) == before
