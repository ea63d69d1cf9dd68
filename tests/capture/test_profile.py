"""Profiles: exact statistics on small frames, JSON-safe, bounded in size."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlnb.capture import profile as profile_module
from mlnb.capture.profile import MAX_COLUMN_BYTES, profile
from mlnb.errors import InvalidInputError


def stats(df: Any, **kw: Any) -> dict[str, dict[str, Any]]:
    result = profile(df, **kw)
    return {str(c["name"]): c for c in result["stats"]}


def test_profile_layout() -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})
    result = profile(df)
    assert result["format"] == 1
    assert (result["kind"], result["rows"], result["columns"]) == ("dataframe", 2, 2)
    assert result["schema"] == [
        {"name": "x", "dtype": "float64"},
        {"name": "s", "dtype": "str"},
    ]
    assert [c["name"] for c in result["stats"]] == ["x", "s"]


def test_numeric_statistics_are_exact() -> None:
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, np.nan])
    col = stats(pd.DataFrame({"x": x}))["x"]
    data = x[~np.isnan(x)]
    assert col["kind"] == "numeric"
    assert (col["count"], col["nulls"], col["distinct"], col["infinite"]) == (10, 1, 7, 0)
    assert col["distinct_estimated"] is False
    assert (col["min"], col["max"]) == (1.0, 9.0)
    assert col["mean"] == pytest.approx(3.9)
    assert col["std"] == pytest.approx(float(np.std(data, ddof=1)))
    expected = {f"p{q}": float(np.percentile(data, q)) for q in (1, 5, 25, 50, 75, 95, 99)}
    assert col["quantiles"] == pytest.approx(expected)
    assert col["quantiles"]["p50"] == 3.5
    edges = np.quantile(data, np.linspace(0, 1, 11))
    assert col["histogram"]["edges"] == pytest.approx(list(edges))
    assert col["histogram"]["counts"] == list(np.histogram(data, bins=edges)[0])
    assert sum(col["histogram"]["counts"]) == 10


def test_stored_edges_bin_new_data_like_the_profile_did() -> None:
    rng = np.random.default_rng(7)
    data = rng.standard_normal(10_000)
    hist = stats(pd.DataFrame({"x": data}))["x"]["histogram"]
    counts, _ = np.histogram(data, bins=np.array(hist["edges"]))
    assert list(counts) == hist["counts"]
    assert all(990 <= c <= 1010 for c in hist["counts"])  # deciles: ~1000 each


def test_integer_columns() -> None:
    col = stats(pd.DataFrame({"i": [1, 2, 2, 3, 3, 3]}))["i"]
    assert (col["min"], col["max"]) == (1, 2 + 1)
    assert isinstance(col["min"], int)
    assert col["domain"] == [[1, 1], [2, 2], [3, 3]]
    assert col["mean"] == pytest.approx(14 / 6)
    wide = stats(pd.DataFrame({"i": np.arange(1000)}))["i"]
    assert "domain" not in wide and wide["distinct"] == 1000


def test_infinities_are_counted_and_left_out_of_the_statistics() -> None:
    col = stats(pd.DataFrame({"x": [1.0, np.inf, -np.inf, 3.0, np.inf]}))["x"]
    assert (col["count"], col["infinite"], col["distinct"]) == (5, 3, 4)
    assert (col["min"], col["max"], col["mean"]) == (1.0, 3.0, 2.0)


def test_nullable_numeric_and_boolean() -> None:
    df = pd.DataFrame(
        {
            "n": pd.array([1, None, 3], dtype="Int64"),
            "b": pd.array([True, None, True], dtype="boolean"),
            "plain": [True, False, False],
        }
    )
    s = stats(df)
    assert (s["n"]["count"], s["n"]["nulls"], s["n"]["mean"]) == (2, 1, 2.0)
    assert (s["b"]["kind"], s["b"]["true"], s["b"]["false"], s["b"]["nulls"]) == (
        "boolean",
        2,
        0,
        1,
    )
    assert (s["plain"]["true"], s["plain"]["false"], s["plain"]["distinct"]) == (1, 2, 2)


def test_strings_top_domain_and_lengths() -> None:
    values = ["b", "a", "b", None, "ccc", "b", "a", "ünï"]
    col = stats(pd.DataFrame({"s": values}))["s"]
    assert (col["kind"], col["count"], col["nulls"], col["distinct"]) == ("string", 7, 1, 4)
    assert col["top"] == [["b", 3], ["a", 2], ["ccc", 1], ["ünï", 1]]
    assert col["domain"] == [["a", 2], ["b", 3], ["ccc", 1], ["ünï", 1]]
    assert col["length"] == {"min": 1, "max": 3}


def test_python_and_arrow_string_storage_give_the_same_profile() -> None:
    pytest.importorskip("pyarrow")
    values = ["x", None, "yy", "x"]
    python = pd.Series(values, dtype=pd.StringDtype("python", na_value=np.nan), name="s")
    arrow = pd.Series(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan), name="s")
    assert profile(python)["stats"] == profile(arrow)["stats"]


def test_top_keeps_twenty_and_domain_only_up_to_a_hundred_values() -> None:
    values = [f"v{i:03d}" for i in range(150) for _ in range(i % 7 + 1)]
    col = stats(pd.DataFrame({"s": values}))["s"]
    assert col["distinct"] == 150
    assert len(col["top"]) == 20
    assert all(count == 7 for _, count in col["top"])
    assert col["domain"] is None
    small = stats(pd.DataFrame({"s": values[:200]}))["s"]
    assert small["domain"] is not None and len(small["domain"]) == small["distinct"]


def test_categorical() -> None:
    cat = pd.Categorical(["lo", "hi", "lo", None], categories=["lo", "mid", "hi"], ordered=True)
    col = stats(pd.DataFrame({"c": cat}))["c"]
    assert (col["kind"], col["count"], col["nulls"], col["distinct"]) == ("categorical", 3, 1, 2)
    assert (col["ordered"], col["categories"]) == (True, 3)
    assert col["top"] == [["lo", 2], ["hi", 1]]
    assert col["domain"] == [["hi", 1], ["lo", 2]]


def test_datetimes_and_timedeltas() -> None:
    df = pd.DataFrame(
        {
            "t": pd.to_datetime(
                ["2024-03-01", None, "2023-12-31T23:59:59", "2024-03-01"], format="ISO8601"
            ),
            "tz": pd.date_range("2024-01-01", periods=4, freq="D", tz="Europe/Paris"),
            "d": pd.to_timedelta([1, 90, None, 5], unit="s"),
        }
    )
    s = stats(df)
    assert (s["t"]["kind"], s["t"]["count"], s["t"]["nulls"], s["t"]["distinct"]) == (
        "datetime",
        3,
        1,
        2,
    )
    assert (s["t"]["min"], s["t"]["max"]) == ("2023-12-31T23:59:59", "2024-03-01T00:00:00")
    assert s["tz"]["min"] == "2024-01-01T00:00:00+01:00"
    assert (s["d"]["kind"], s["d"]["min"], s["d"]["max"]) == (
        "timedelta",
        "P0DT0H0M1S",
        "P0DT0H1M30S",
    )


def test_all_null_and_empty_columns() -> None:
    df = pd.DataFrame(
        {
            "f": [np.nan, np.nan],
            "s": pd.Series([None, None], dtype="str"),
            "o": pd.Series([None, None], dtype=object),
            "t": pd.to_datetime([None, None]),
            "c": pd.Categorical([None, None], categories=["a"]),
        }
    )
    for frame in (df, df.iloc[:0]):
        result = profile(frame)
        json.dumps(result, allow_nan=False)
        for col in result["stats"]:
            assert col["count"] == 0
            assert col["distinct"] == 0
            assert col["nulls"] == len(frame)
        s = {c["name"]: c for c in result["stats"]}
        assert s["f"]["min"] is None and s["f"]["histogram"] is None
        assert s["s"]["top"] == [] and s["s"]["length"] is None
        assert s["t"]["min"] is None
    assert profile(pd.DataFrame())["stats"] == []


def test_mixed_object_columns_keep_types_apart() -> None:
    values = [1, "1", 1.0, True, None, [2, 1], {"b": 1, "a": 2}, {"a": 2, "b": 1}, np.nan]
    col = stats(pd.DataFrame({"o": pd.Series(values, dtype=object)}))["o"]
    assert (col["kind"], col["count"], col["nulls"]) == ("object", 7, 2)
    assert col["distinct"] == 6
    top = dict((json.dumps(v), c) for v, c in col["top"])
    assert top['"{\\"a\\":2,\\"b\\":1}"'] == 2
    assert top["1"] == 1 and top['"1"'] == 1 and top["true"] == 1 and top["1.0"] == 1


def test_object_columns_of_strings_are_strings() -> None:
    col = stats(pd.DataFrame({"o": pd.Series(["a", None, "bb"], dtype=object)}))["o"]
    assert (col["kind"], col["dtype"], col["length"]) == ("string", "object", {"min": 1, "max": 2})


def test_profile_round_trips_through_strict_json() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "f": rng.standard_normal(100),
            "i": rng.integers(0, 5, 100).astype(np.int32),
            "s": rng.choice(["a", "b", None], 100),
            "t": pd.date_range("2020-01-01", periods=100, freq="h"),
            "c": pd.Categorical(rng.choice(["x", "y"], 100)),
            "inf": [np.inf] * 100,
            "u": np.arange(100, dtype=np.uint8),
            "f32": rng.standard_normal(100).astype(np.float32),
        }
    )
    result = profile(df)
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result


def test_each_column_stays_under_the_size_bound() -> None:
    long_values = [f"{i:03d}" + "ж" * 5000 for i in range(100)]
    df = pd.DataFrame({"long": long_values * 3, "wide": [f"v{i}" * 300 for i in range(300)]})
    result = profile(df)
    for col in result["stats"]:
        assert len(json.dumps(col)) <= MAX_COLUMN_BYTES
        assert col["values_truncated"] is True
        assert col["distinct"] in (100, 300)
    s = {c["name"]: c for c in result["stats"]}
    assert s["long"]["length"] == {"min": 5003, "max": 5003}
    assert s["long"]["top"], "the most frequent values survive, shortened"


def test_distinct_is_estimated_above_the_limit() -> None:
    n_distinct = 30_000
    values = pd.Series([f"id{i}" for i in range(n_distinct)] * 2 + ["hot"] * 500)
    col = stats(pd.DataFrame({"s": values}), distinct_limit=20_000)["s"]
    assert col["distinct_estimated"] is True and col["top_estimated"] is True
    assert col["distinct"] == pytest.approx(n_distinct + 1, rel=0.05)
    assert col["top"][0] == ["hot", 500]
    assert col["count"] == 2 * n_distinct + 500
    exact = stats(pd.DataFrame({"s": values}))["s"]
    assert exact["distinct"] == n_distinct + 1 and exact["distinct_estimated"] is False


def test_long_columns_with_few_values_stay_exact() -> None:
    values = pd.Series(["a", "b", None, "c"] * 5_000)
    col = stats(pd.DataFrame({"s": values}), distinct_limit=1_000)["s"]
    assert (col["distinct"], col["distinct_estimated"], col["nulls"]) == (3, False, 5_000)
    assert col["domain"] == [["a", 5_000], ["b", 5_000], ["c", 5_000]]
    numbers = stats(pd.DataFrame({"x": np.arange(50_000) % 777}), distinct_limit=1_000)["x"]
    assert (numbers["distinct"], numbers["distinct_estimated"]) == (777, False)


def test_hyperloglog_estimate_is_close() -> None:
    registers = np.zeros(1 << profile_module.HLL_BITS, np.uint8)
    keys = np.array([f"k{i}" for i in range(200_000)], dtype=object)
    profile_module._hll_add(registers, pd.util.hash_array(keys))
    assert profile_module._hll_estimate(registers) == pytest.approx(200_000, rel=0.03)
    small = np.zeros(1 << profile_module.HLL_BITS, np.uint8)
    profile_module._hll_add(small, pd.util.hash_array(keys[:50]))
    assert profile_module._hll_estimate(small) == 50


def test_series_and_arrays() -> None:
    s = profile(pd.Series([1, 2, 3], name="n"))
    assert (s["kind"], s["columns"], s["schema"]) == (
        "series",
        1,
        [{"name": "n", "dtype": "int64"}],
    )
    assert profile(pd.Series([1.0]))["schema"][0]["name"] is None
    a = profile(np.arange(6, dtype=float).reshape(3, 2))
    assert (a["kind"], a["rows"], a["columns"]) == ("array", 3, 2)
    assert [c["name"] for c in a["stats"]] == [0, 1]
    assert a["stats"][1]["max"] == 5.0


def test_profile_refuses_other_types_and_bad_limits() -> None:
    with pytest.raises(InvalidInputError, match="cannot profile a dict"):
        profile({"a": [1]})
    with pytest.raises(InvalidInputError, match="distinct_limit"):
        profile(pd.DataFrame({"a": [1]}), distinct_limit=0)


def test_profile_does_not_change_the_frame() -> None:
    df = pd.DataFrame({"x": [3.0, np.nan, 1.0], "s": ["b", None, "a"]})
    before = df.copy()
    profile(df)
    pd.testing.assert_frame_equal(df, before)


def test_profile_on_several_threads_equals_the_profile_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large frame's columns are profiled on several threads (numpy's sort releases the
    GIL; it halved a 1 M x 50 profile here): the result is the same, column for column."""
    import numpy as np
    import pandas as pd

    from mlnb.capture import profile as profiling

    rng = np.random.default_rng(3)
    n = 120_000
    df = pd.DataFrame({
        "f": rng.standard_normal(n), "i": rng.integers(0, 50, n),
        "s": rng.choice(["a", "b", "c"], n), "c": pd.Categorical(rng.choice(["x", "y"], n)),
        "b": rng.random(n) < 0.2, "t": pd.to_datetime(rng.integers(0, 10**7, n), unit="s"),
        "g": rng.exponential(size=n), "h": rng.integers(0, 10**6, n),
        "j": rng.standard_normal(n), "k": rng.standard_normal(n),
    })  # fmt: skip
    assert n * df.shape[1] >= profiling.PARALLEL_CELLS
    threaded = profiling.profile(df)
    monkeypatch.setattr(profiling, "PROFILE_THREADS", 1)
    assert profiling.profile(df) == threaded
