"""Issue 14 item 2: drift from stored profiles and raw data, checked against scipy on
generated data with known shifts, and no false drift on same-distribution samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

import mlnb
from mlnb.capture.profile import profile
from mlnb.checks import stats
from mlnb.checks.drift import compare
from mlnb.checks.sources import Source
from mlnb.cli.app import cli


def frame(n: int, *, seed: int, shift: float = 0.0, p: tuple[float, ...] = (0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, n),
            "k": rng.integers(0, 40, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=list(p)),
        }
    )


# ---------------------------------------------------------------- the statistics vs scipy


@pytest.mark.parametrize("shift", [0.0, 0.2, 1.0])
def test_ks_test_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 700), rng.normal(shift, 1, 400)
    d, p = stats.ks_test(a, b)
    ref = sps.ks_2samp(a, b)
    assert d == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


def test_ks_fallback_without_scipy_is_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy fallback (asymptotic Kolmogorov distribution) when scipy is missing."""
    import sys

    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.1, 1, 2000)
    ref = sps.ks_2samp(a, b, method="asymp")
    monkeypatch.setitem(sys.modules, "scipy", None)
    d, p = stats.ks_test(a, b)
    assert d == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=0.1)  # scipy refines the asymptotic form
    stat, pc = stats.chi2_test([50, 30, 20], [30, 40, 30])
    monkeypatch.delitem(sys.modules, "scipy")
    chi = sps.chi2_contingency(np.array([[50, 30, 20], [30, 40, 30]]), correction=False)
    assert stat == pytest.approx(chi.statistic) and pc == pytest.approx(chi.pvalue, rel=1e-9)


@pytest.mark.parametrize("counts", [([50, 30, 20], [45, 35, 20]), ([500, 10, 3], [300, 200, 13])])
def test_chi2_test_matches_chi2_contingency(counts: tuple[list[int], list[int]]) -> None:
    stat, p = stats.chi2_test(*counts)
    ref = sps.chi2_contingency(np.array(counts), correction=False)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)


def test_chi2_fallback_matches_scipy_over_a_range() -> None:
    for dof in (1, 2, 5, 30):
        for x in (0.01, 0.5, 3.0, 12.0, 80.0):
            assert stats._chi2_sf(x, dof) == pytest.approx(sps.chi2.sf(x, dof), rel=1e-8, abs=1e-14)


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_wasserstein_normalised_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 2, 3000), rng.normal(shift, 2, 2000)
    expected = sps.wasserstein_distance(a, b) / np.std(a)
    assert stats.wasserstein_normalised(a, b) == pytest.approx(expected)


def test_js_distance_matches_scipy_natural_log() -> None:
    p, q = [10, 20, 30, 0], [5, 25, 25, 5]
    assert stats.js_distance(p, q) == pytest.approx(jensenshannon(p, q))
    assert stats.js_distance(p, p) == 0.0


def test_psi_matches_its_definition_with_epsilon_for_empty_bins() -> None:
    r, c = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.25, 0.25, 0.25, 0.25])
    rr = np.maximum(r, 1e-4)
    assert stats.psi(r, c) == pytest.approx(float(np.sum((c - rr) * np.log(c / rr))))
    assert stats.linf(r, c) == (pytest.approx(0.25), 0)


# ---------------------------------------------------------------- drift from profiles


def exact_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    """PSI on the reference's decile bins, computed independently from raw data."""
    cuts = np.unique(np.quantile(ref, np.linspace(0, 1, 11))[1:-1])
    rc = np.bincount(np.searchsorted(cuts, ref, side="right"), minlength=cuts.size + 1)
    cc = np.bincount(np.searchsorted(cuts, cur, side="right"), minlength=cuts.size + 1)
    r, c = np.maximum(rc / rc.sum(), 1e-4), np.maximum(cc / cc.sum(), 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_psi_from_two_stored_profiles_is_close_to_the_exact_psi(shift: float) -> None:
    a, b = frame(20_000, seed=1), frame(20_000, seed=2, shift=shift)
    both = compare(Source("a", stored=profile(a)), Source("b", stored=profile(b)))
    raw_cur = compare(Source("a", stored=profile(a)), Source("b", frame=b))
    truth = exact_psi(a["x"].to_numpy(), b["x"].to_numpy())
    col = {c.column: c for c in both.columns}["x"]
    assert col.method == "psi" and "percentiles" in col.note
    assert {c.column: c for c in raw_cur.columns}["x"].statistic == pytest.approx(truth)
    assert col.statistic == pytest.approx(truth, abs=0.01 + 0.03 * truth)
    assert col.drifted == (shift >= 1.0)


def test_profiles_stored_before_percentiles_still_compare_and_say_so() -> None:
    """Issue 14 item 2: an old profile (no percentiles) falls back to its deciles."""
    a, b = frame(5000, seed=1), frame(5000, seed=2, shift=1.0)
    old = profile(b)
    for s in old["stats"]:
        s.pop("percentiles", None)
    col = compare(Source("a", stored=profile(a)), Source("b", stored=old)).columns[0]
    assert "before percentiles" in col.note
    assert col.statistic == pytest.approx(exact_psi(a["x"].to_numpy(), b["x"].to_numpy()), rel=0.15)


def test_categorical_drift_gives_js_and_the_value_that_moved_most() -> None:
    a = frame(5000, seed=1)
    b = frame(5000, seed=2, p=(0.2, 0.3, 0.5))
    result = compare(Source("a", stored=profile(a)), Source("b", stored=profile(b)))
    col = {c.column: c for c in result.columns}["plan"]
    ra = a["plan"].value_counts().reindex(["basic", "plus", "pro"]).to_numpy()
    rb = b["plan"].value_counts().reindex(["basic", "plus", "pro"]).to_numpy()
    assert col.method == "js" and col.statistic == pytest.approx(jensenshannon(ra, rb))
    assert col.drifted and col.moved == "basic"
    assert col.linf == pytest.approx(abs(ra[0] / ra.sum() - rb[0] / rb.sum()))


def test_raw_data_uses_evidently_auto_choice_by_reference_size() -> None:
    small = compare(Source("a", frame=frame(500, seed=1)), Source("b", frame=frame(500, seed=2)))
    large = compare(Source("a", frame=frame(5000, seed=1)), Source("b", frame=frame(5000, seed=2)))
    assert [c.method for c in small.columns] == ["ks", "ks", "chi2"]
    assert [c.method for c in large.columns] == ["wasserstein", "wasserstein", "js"]
    assert all(c.n_ref == 500 and c.n_cur == 500 for c in small.columns)
    few = frame(5000, seed=1).assign(k=lambda d: d["k"] % 3)  # 3 values: categories
    cols = {c.column: c for c in compare(Source("a", frame=few), Source("b", frame=few)).columns}
    assert cols["k"].method == "js" and cols["k"].moved in (0, 1, 2)
    text = str(small)
    assert "p < 0.05" in text and "500" in text


def test_no_false_drift_on_same_distribution_samples() -> None:
    """Issue 14 item 10: 100 seeded pairs drawn from one distribution, at the default
    thresholds, raw (KS/chi-square at n=500, Wasserstein/JS at n=5000) and from profiles
    (PSI/JS). Column false-positive rates: tests ~5 % by design; dataset drift never."""
    fp = {"raw-small": 0, "raw-large": 0, "profiles": 0}
    columns = {"raw-small": 0, "raw-large": 0, "profiles": 0}
    datasets = dict.fromkeys(fp, 0)
    for seed in range(100):
        cases = {
            "raw-small": (Source("a", frame=frame(500, seed=2 * seed)),
                          Source("b", frame=frame(500, seed=2 * seed + 1))),
            "raw-large": (Source("a", frame=frame(5000, seed=2 * seed)),
                          Source("b", frame=frame(5000, seed=2 * seed + 1))),
            "profiles": (Source("a", stored=profile(frame(5000, seed=2 * seed))),
                         Source("b", stored=profile(frame(5000, seed=2 * seed + 1)))),
        }  # fmt: skip
        for name, (a, b) in cases.items():
            result = compare(a, b)
            fp[name] += len(result.drifted_columns)
            columns[name] += len(result.columns)
            datasets[name] += result.dataset_drift
    rates = {k: fp[k] / columns[k] for k in fp}
    print("false-positive rate per column:", rates, "datasets:", datasets)
    assert rates["raw-large"] == 0 and rates["profiles"] == 0
    assert rates["raw-small"] <= 0.10  # p < 0.05 tests: ~5 % expected
    assert datasets["raw-large"] == datasets["profiles"] == 0 and datasets["raw-small"] <= 3


# ---------------------------------------------------------------- integrity


def test_integrity_checks_against_the_reference() -> None:
    a = frame(1000, seed=1)
    b = frame(1300, seed=2).drop(columns=["k"]).assign(extra=1)
    b.loc[:200, "x"] = np.nan
    b.loc[:3, "plan"] = "gold"
    result = compare(Source("a", stored=profile(a)), Source("b", frame=b))
    checks = {c.name: c for c in result.integrity}
    assert not checks["rows"].passed and "+30.0%" in checks["rows"].message
    assert checks["columns"].details == {"missing": ["k"], "new": ["extra"]}
    assert not checks["missing"].passed and "x" in checks["missing"].message
    assert checks["unseen categories"].details == {"unseen": {"plan": ["gold"]}}
    assert checks["dtypes"].passed
    assert not result.passed


def test_per_column_methods_and_thresholds_override_the_defaults() -> None:
    a, b = frame(5000, seed=1), frame(5000, seed=2, shift=0.3)
    result = compare(Source("a", frame=a), Source("b", frame=b),
                     methods={"x": "psi"}, thresholds={"x": 0.05, "plan": 0.5})  # fmt: skip
    cols = {c.column: c for c in result.columns}
    assert cols["x"].method == "psi" and cols["x"].threshold == 0.05 and cols["x"].drifted
    assert cols["plan"].threshold == 0.5 and cols["k"].method == "wasserstein"
    with pytest.raises(mlnb.MlnbError, match="needs raw data on both sides"):
        compare(Source("a", stored=profile(a)), Source("b", frame=b), methods="ks")


# ---------------------------------------------------------------- runs, checks, CLI


def _two_runs(store: mlnb.Store) -> None:
    for name, shift in (("train-run", 0.0), ("today", 1.0)):
        with mlnb.start_run(name, store=store, capture=False) as r:
            r.log_data(frame(3000, seed=7, shift=shift), name="data")


def test_drift_between_two_runs_records_checks_that_show_and_report(store: mlnb.Store) -> None:
    _two_runs(store)
    result = mlnb.drift("train-run:data", "today", run="today", store=store)
    assert not result.dataset_drift or result.drifted_columns == ["x"]
    assert result.columns[0].drifted and result.columns[0].method == "psi"
    names = [c.name for c in store.get_checks("today")]
    assert {"drift", "drift:x", "integrity:rows"} <= set(names)
    rec = store.get_run("today")
    from mlnb.cli.views import format_run

    assert "drift:x" in format_run(rec)
    report = mlnb.report(["today"], plots=False, store=store)
    assert "drift:x" in report and "psi" in report


def test_cli_data_drift_json_markdown_and_exit_codes(store: mlnb.Store, tmp_path: Path) -> None:
    _two_runs(store)
    runner = CliRunner()
    base = ["--store", str(store.root)]
    out = runner.invoke(cli, [*base, "data", "drift", "--ref", "train-run", "--cur", "today",
                              "--format", "json"])  # fmt: skip
    data = json.loads(out.output)
    assert data["columns"][0]["method"] == "psi" and data["columns"][0]["drifted"]
    assert out.exit_code == (1 if not data["passed"] else 0)
    frame(3000, seed=8).to_csv(tmp_path / "same.csv", index=False)
    out = runner.invoke(cli, [*base, "data", "drift", "--ref", "train-run:data", "--cur",
                              str(tmp_path / "same.csv"), "--format", "md"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert out.output.startswith("### Drift of same.csv") and "| x | psi |" in out.output
    out = runner.invoke(cli, [*base, "data", "drift", "--ref", "train-run:nope", "--cur", "today"])
    assert out.exit_code == 2 and "name one as train-run:NAME with NAME one of data" in out.output
    assert math.isfinite(data["drifted_share"])


def test_report_shows_a_runs_schema_and_drift_checks_together(store: mlnb.Store) -> None:
    """Issue 14 item 7: both write checks of kind ``validation``; the report kept only the
    newest batch per kind, so a drift check hid the schema check run before it."""
    _two_runs(store)
    data = frame(500, seed=3)
    mlnb.validate(data, mlnb.Schema.infer(data), run="today", store=store)
    mlnb.drift("train-run", "today", run="today", store=store)
    report = mlnb.report(["today"], plots=False, store=store)
    assert "schema:x:min" in report and "drift:x" in report
    mlnb.drift("train-run", "today", run="today", store=store)  # a newer drift replaces
    assert mlnb.report(["today"], plots=False, store=store).count("drift:x") == 1


def test_stored_profiles_are_parsed_once_and_a_profile_filled_in_later_is_seen(
    store: mlnb.Store,
) -> None:
    """Parsed profiles are cached per store file and dataset hash; a dataset first logged
    without a profile is not cached, so the profile a later log fills in is read."""
    from mlnb.store.profiles import dataset_profiles

    data = frame(300, seed=4)
    with mlnb.start_run("bare", store=store, capture=False) as r:
        r.log_data(data, name="data", profile=False)
    assert dataset_profiles(store, "bare")[0].profile is None
    with mlnb.start_run("full", store=store, capture=False) as r:
        r.log_data(data, name="data")
    first = dataset_profiles(store, "bare")[0].profile
    assert first is not None and first["rows"] == 300
    assert dataset_profiles(store, "full")[0].profile is first


@pytest.mark.parametrize("n", [1, 2, 7, 1001])
def test_profile_percentiles_are_numpys_quantiles_to_six_digits(n: int) -> None:
    """What PSI from a profile reads the current side's distribution from."""
    x = np.random.default_rng(n).normal(50, 10, n)
    got = profile(pd.DataFrame({"x": x}))["stats"][0]["percentiles"]
    assert got == pytest.approx(np.quantile(x, np.arange(101) / 100), rel=1e-5)
