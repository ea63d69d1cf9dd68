"""Issue 10 item 9: plots read down-sampled series from SQL, so a run with millions of steps
costs a report or a compare view seconds and megabytes, not minutes and gigabytes.

These tests are not timed (benchmarks/histories.py measures the 10 M-step run); they check
what the down-sampling must keep — the lowest and highest point of every bucket, hence the
true best whichever way is better, the first and the true last point — and that it bounds
the number of points.
"""

from __future__ import annotations

import math
import random

import pytest

import mlnb
from mlnb.errors import InvalidInputError
from mlnb.store import metrics as store_metrics
from mlnb.store import runs as store_runs
from tests.reliability.conftest import integrity_ok, row_counts

N = 50_000
SPIKE, DIP, GAP = 12_345, 33_333, 40_000


def value(step: int) -> float:
    """A noisy decreasing loss with one spike, one dip and one NaN."""
    if step == SPIKE:
        return 50.0
    if step == DIP:
        return -3.0
    if step == GAP:
        return math.nan
    return 1.0 / (1 + step / 1000) + random.Random(step).uniform(-0.01, 0.01)


def long_run(store: mlnb.Store, n: int = N, *, every: int = 1, name: str = "long") -> str:
    """A finished run whose `loss` has a point every `every` steps (written in bulk)."""
    run = store.create_run(name=name, experiment="long")
    rowid, _ = store_runs.run_rowid(store.file, run)
    store_metrics.insert_metrics(
        store.file, [(rowid, "loss", s, value(s), 1.7e9 + s) for s in range(0, n * every, every)]
    )
    store.set_status(run, "finished", end_time=1.7e9 + n * every)
    return run


def test_downsampled_history_keeps_extremes_first_last_and_bounds_the_points(
    store: mlnb.Store,
) -> None:
    """Issue 10 item 9: what a plot reads of a long series keeps min, max, last and best."""
    other = long_run(store, 100, name="other")
    before = row_counts(store.db_path, other)
    run = long_run(store)
    sample = store.downsampled_history(run, "loss", max_points=500)
    points = sample.points
    assert sample.count == N
    assert 100 <= len(points) <= 500
    steps = [p[0] for p in points]
    assert steps == sorted(set(steps))  # by step, each once
    assert points[0] == (0, value(0), 1.7e9)
    assert points[-1] == (N - 1, value(N - 1), 1.7e9 + N - 1)  # the true last point
    assert (SPIKE, 50.0, 1.7e9 + SPIKE) in points  # the best of an accuracy-like key
    assert (DIP, -3.0, 1.7e9 + DIP) in points  # the best of a loss-like key
    for step, v, ts in points:  # real points, not averages
        assert ts == 1.7e9 + step
        assert v == value(step) or (math.isnan(v) and step == GAP)
    full = store.history(run, "loss")
    width = math.ceil(N / ((500 - 2) // 2))
    for start in range(0, N, width):  # every bucket shows its lowest and highest value
        bucket = [v for s, v, _ in full[start : start + width] if not math.isnan(v)]
        shown = {v for s, v, _ in points if start <= s < start + width}
        assert min(bucket) in shown and max(bucket) in shown
    assert row_counts(store.db_path, other) == before
    assert integrity_ok(store.db_path)


def test_downsampled_history_of_a_short_or_sparse_series_is_the_series(store: mlnb.Store) -> None:
    """Issue 10 item 9: up to max_points nothing is dropped; sparse steps bucket by step."""
    short = long_run(store, 300, name="short")
    sample = store.downsampled_history(short, "loss", max_points=300)
    assert sample.points == store.history(short, "loss") and sample.count == 300
    sparse = long_run(store, 5_000, every=1_000_003, name="sparse")
    sample = store.downsampled_history(sparse, "loss", max_points=100)
    assert sample.count == 5_000 and len(sample.points) <= 100
    assert sample.points[-1][0] == 4_999 * 1_000_003
    assert store.downsampled_history(short, "missing").points == []
    with pytest.raises(InvalidInputError, match="max_points"):
        store.downsampled_history(short, "loss", max_points=3)
    assert integrity_ok(store.db_path)


def test_compare_curves_read_down_sampled_series_with_the_true_best(store: mlnb.Store) -> None:
    """Issue 10 item 9: `compare(...).to_html` read every point of every series (25 s and
    4.4 GB on 10 M steps); its curves now hold a bounded sample with the true best."""
    run = long_run(store)
    comparison = mlnb.compare([run], store=store, widget=False)
    (curve,) = comparison.curve_panels()["loss"]
    assert len(curve.x) <= 2_000
    assert curve.best == (float(DIP), -3.0)  # loss: lower is better
    assert (curve.x[-1], curve.y[-1]) == (float(N - 1), value(N - 1))
    steps, values, seconds = comparison.histories([run], ["loss"])[(run, "loss")]
    assert len(steps) == len(values) == len(seconds) <= 2_000
    assert integrity_ok(store.db_path)


def test_live_plot_of_a_long_finished_run_counts_every_point(store: mlnb.Store) -> None:
    """Issue 10 item 9: `mlnb.live` of a finished run loads a bounded sample from SQL (it
    read every point before), and must still say how many points the series has and which
    are its best and last."""
    from mlnb.notebook.liveplot import LivePlot

    with mlnb.start_run(capture=False) as run:
        for step in range(N):
            run.log_metric("loss", value(step), step=step)
    plot = LivePlot(["loss"], run=run, max_points=1_000)
    series = plot.series["loss"]
    assert series.count == N and len(series.x) <= 1_000
    assert series.best == (float(DIP), -3.0) and series.last == (float(N - 1), value(N - 1))
    assert integrity_ok(store.db_path)
