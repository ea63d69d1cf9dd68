"""Bad input raises an ``MlnbError`` that says what to change, never a raw exception.

Issue 10 item 12: ``log_metric(k, 10**400)`` raised ``OverflowError``; a lone surrogate
(``"\\ud800"``) in a tag, param or filter raised ``UnicodeEncodeError``; a filter of 5,000
flat ``and`` terms raised ``StoreError("Expression tree is too large")`` from SQLite.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import mlnb
from mlnb.errors import InvalidInputError, MlnbError, QuerySyntaxError
from mlnb.store import Store, query
from tests.reliability.conftest import integrity_ok, make_bystander, row_counts

LONE = "\ud800"
BAD_INPUT: dict[str, tuple[Callable[[Store, str], object], str]] = {
    "metric value 10**400": (
        lambda st, run: mlnb.log_metric("loss", 10**400),
        "beyond the largest float",
    ),
    # a param int of more digits than str() converts raised ValueError (found at stop 19)
    "param value of 5,000 digits": (
        lambda st, run: mlnb.log_param("seed", 10**5000),
        "log it as a string",
    ),
    "params value of 5,000 digits": (
        lambda st, run: mlnb.log_params({"a": 1, "seed": 10**5000}),
        "log it as a string",
    ),
    "tag value": (lambda st, run: st.set_tags(run, {"note": f"a{LONE}b"}), "lone surrogate"),
    "tag key": (lambda st, run: st.set_tags(run, {f"k{LONE}": "v"}), "lone surrogate"),
    "param value": (lambda st, run: st.log_params(run, {"p": LONE}), "lone surrogate"),
    "run name": (lambda st, run: st.create_run(name=f"run{LONE}"), "lone surrogate"),
    "experiment": (lambda st, run: st.create_run(experiment=LONE), "lone surrogate"),
    "filter": (lambda st, run: st.search_runs(f"tags.note = '{LONE}'"), "lone surrogate"),
    "order_by": (lambda st, run: st.search_runs(order_by=f"params.`{LONE}`"), "lone surrogate"),
    "run reference": (lambda st, run: st.get_run(f"x{LONE}"), "lone surrogate"),
    "21 nested NOTs": (  # SQLite's parser stack overflowed (a StoreError) from 21
        lambda st, run: st.search_runs("not " * 21 + "metrics.loss > 0"),
        "nested more than 20 levels",
    ),
    "5,000 and-terms": (
        lambda st, run: st.search_runs(" and ".join(["metrics.loss > 0"] * 5_000)),
        f"at most {query.MAX_CONDITIONS} conditions",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_raises_a_typed_error_that_says_what_to_change(store: Store, case: str) -> None:
    """Issue 10 item 12: each of these raised a raw exception (OverflowError,
    UnicodeEncodeError) or SQLite's "Expression tree is too large"; now each is an
    ``MlnbError`` subclass whose message says what to change, and nothing is written."""
    db = store.db_path
    assert db is not None
    bystander = make_bystander(store)
    before = row_counts(db, bystander)
    run = mlnb.start_run("target", capture=False)
    target_before = row_counts(db, run.run_id)
    runs_before = store.info()["counts"]["runs"]
    call, says = BAD_INPUT[case]
    with pytest.raises(MlnbError) as caught:
        call(store, run.run_id)
    assert says in str(caught.value), str(caught.value)
    if "surrogate" in says:
        assert isinstance(caught.value, (InvalidInputError, QuerySyntaxError))
        assert "remove it" in str(caught.value)
    mlnb.flush()
    assert row_counts(db, run.run_id) == target_before
    assert store.info()["counts"]["runs"] == runs_before
    assert integrity_ok(db)
    assert row_counts(db, bystander) == before


def test_a_filter_at_the_condition_limit_still_runs(store: Store) -> None:
    """Issue 10 item 12: the limits (conditions, nesting) are checked before SQL is built
    and are low enough that a filter at both of them still compiles to SQL that SQLite
    takes (its expression depth and its parser stack)."""
    with mlnb.start_run("one") as run:
        run.log_metric("loss", 1.0)
    flat = " and ".join(["metrics.loss > 0"] * query.MAX_CONDITIONS)
    assert store.search_runs(flat)["name"] == ["one"]
    deep = (  # as deep as the parser allows (20 levels), each NOT costing SQLite two more
        "not " * 17
        + "("
        + " or ".join(["metrics.loss < 0"] * (query.MAX_CONDITIONS - 1))
        + ")"
        + " and metrics.loss > 0"
    )
    assert store.search_runs(f"not ({deep})")["name"] == []
    with pytest.raises(QuerySyntaxError, match=f"at most {query.MAX_CONDITIONS} conditions") as e:
        query.parse_filter(flat + " and metrics.loss > 0")
    assert e.value.position == len(flat) + len(" and ")  # the first condition too many
    assert len(str(e.value)) < 600  # the message shows the part around it, not 9,000 chars


def test_an_int_param_beyond_a_float_is_kept_whole(store: Store) -> None:
    """Found at stop 19: ``log_param("seed", 10**400)`` raised OverflowError (its number
    for numeric filters did not fit a float). It is stored as its exact digits, read back
    as the same int, and compared as text by filters."""
    with mlnb.start_run("big", capture=False) as run:
        mlnb.log_param("seed", 10**400)
        mlnb.log_params({"other": -(10**309), "small": 3})
    params = store.get_run(run.run_id).params
    assert params == {"seed": 10**400, "other": -(10**309), "small": 3}
    assert store.search_runs("params.small > 2")["name"] == ["big"]
