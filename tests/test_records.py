"""The records of ``mlnb.records`` as a notebook shows them: a one-line repr that says what
the record is, and a small HTML table with every text escaped. Issue 11 item 11: a
``DatasetRef`` returned by ``%track data`` filled the cell's output with its schema."""

from __future__ import annotations

from typing import Any

import pytest

import mlnb
from mlnb.capture.fingerprints import Fingerprint
from mlnb.records import Artifact, CheckRecord, DatasetRef, Metric, RunRecord
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs

HASH = "3f2a91c0d4e5b6a7" * 2
SCHEMA = [{"name": f"col{i}", "dtype": "int64"} for i in range(40)]


def dataset(name: str = "train_df") -> DatasetRef:
    return DatasetRef(
        name=name, role="input", hash=HASH, kind="dataframe", rows=12_000, columns=40,
        size_bytes=3_840_000, schema=SCHEMA, sampled=False, details={"index": "RangeIndex"},
        profile={"col0": {"mean": 1.0}},
    )  # fmt: skip


def check(name: str = "metrics.acc >= 0.9") -> CheckRecord:
    return CheckRecord(kind="gate", name=name, passed=False, value=0.8765, threshold=0.9,
                       comparator=">=", message="0.8765 is below 0.9")  # fmt: skip


def stored_run(store: mlnb.Store, name: str = "train") -> RunRecord:
    """A run read back from a real store, with the many fields a real run has."""
    rid = store.create_run(name=name, experiment="churn", tags={"team": "vision"})
    store.log_params(rid, {f"p{i}": i for i in range(30)})
    rowid, _ = store_runs.run_rowid(store.file, rid)
    store_metrics.insert_metrics(
        store.file, [(rowid, "acc", s, 0.5 + s / 10, 1.7e9 + s) for s in range(4)]
    )
    fp = Fingerprint(hash=HASH, kind="dataframe", rows=12_000, columns=40, schema=SCHEMA)
    store.log_dataset(rid, fp, name="train_df", role="input")
    store.set_status(rid, "finished")
    return store.get_run(rid)


def records(store: mlnb.Store) -> dict[str, Any]:
    return {
        "run": stored_run(store),
        "dataset": dataset(),
        "artifact": Artifact("model/weights.bin", HASH, 2_500_000, "file", 1.7e9),
        "metric": Metric("val_loss", 0.123456789, 7, 1.7e9),
        "check": check(),
    }


@pytest.mark.parametrize("kind", ["run", "dataset", "artifact", "metric", "check"])
def test_record_repr_is_one_short_line(store: mlnb.Store, kind: str) -> None:
    text = repr(records(store)[kind])
    assert "\n" not in text and len(text) <= 100, text
    assert text.startswith(f"<{type(records(store)[kind]).__name__} ") and text.endswith(">")
    assert "schema" not in text and "profile" not in text and "details" not in text


def test_record_reprs_say_what_the_record_is(store: mlnb.Store) -> None:
    r = records(store)
    run = r["run"]
    assert repr(run) == (
        f"<RunRecord train {run.run_id[:8]} finished in churn: 30 params, 1 metric, 1 dataset>"
    )
    assert repr(r["dataset"]) == (
        f"<DatasetRef train_df input dataframe 12,000 rows × 40 columns {HASH[:12]}>"
    )
    assert repr(r["artifact"]) == f"<Artifact model/weights.bin file 2.5 MB {HASH[:12]}>"
    assert repr(r["metric"]) == "<Metric val_loss=0.123457 step 7>"
    assert repr(r["check"]) == "<CheckRecord gate metrics.acc >= 0.9: FAIL (0.8765)>"


@pytest.mark.parametrize("kind", ["run", "dataset", "artifact", "metric", "check"])
def test_record_repr_html_is_a_small_table(store: mlnb.Store, kind: str) -> None:
    page = records(store)[kind]._repr_html_()
    assert page.startswith("<table class='mlnb-record'>") and page.endswith("</table>")
    assert page.count("<tr>") <= 40  # small: no schema of 40 columns, no profile
    assert "col39" not in page


def test_record_repr_html_escapes_every_text(store: mlnb.Store) -> None:
    evil = "<img src=x onerror=alert(1)>"
    shown = [
        stored_run(store, name=evil),
        dataset(name=evil),
        Artifact(evil, HASH, 10, "file", 1.7e9),
        Metric(evil, 1.0, 0, 1.7e9),
        check(name=evil),
    ]
    for record in shown:
        page = record._repr_html_()
        assert "<img" not in page, type(record).__name__
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
