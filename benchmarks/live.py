"""The live section: what a live plot (``mlnb.live``) costs the loop that logs.

    python benchmarks/live.py [--quick] [--out docs/benchmarks.md]

``measure`` + ``render`` make the markdown (``run.py`` writes it between the
``live`` markers); run alone, the script prints it, or writes it into ``--out``. Every
measurement runs in a fresh process of the dev venv (``.venv/``, which has matplotlib and
ipywidgets; else the current interpreter), the same script acting as the worker. The plot
is made with ``LivePlot`` directly (``live()`` would be inactive outside a kernel): the
listener, the drawing thread and the PNG frames are the same, only nothing displays them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from _common import (
    cpu_name,
    fmt_time,
    footer,
    load_average,
    log,
    run_section_worker,
    section_facts,
    section_main,
    table,
    verdict,
)

NAME = "live"
TITLE = "## Live plots (`mlnb.live`)"
TARGET = 0.10  # a live plot may make the logging loop at most 10 % slower
FULL = {"calls": 100_000, "repeats": 31, "train_s": 8.0, "train_repeats": 7, "frames": 20}
QUICK = {"calls": 100_000, "repeats": 7, "train_s": 3.0, "train_repeats": 3, "frames": 8}
WORK_ITERATIONS = 1_000  # pure-Python work per step of the training-like loop
REDRAW_POINTS = 10_000


# ------------------------------------------------------------------------ the worker


def _work() -> int:
    """A step of "training" that holds the GIL throughout: the worst case for a thread
    that draws (numpy or torch would release it for most of a real step)."""
    total = 0
    for j in range(WORK_ITERATIONS):
        total += j * j
    return total


def worker(task: str, cfg: dict) -> dict:
    import mlnb
    from mlnb.notebook.liveplot import LivePlot
    from mlnb.tracking import fluent as tracking

    tracking.set_store(mlnb.Store(Path(tempfile.mkdtemp()) / "store"))
    t0 = time.perf_counter()
    LivePlot(["warmup"], every=60).close()  # imports numpy, matplotlib, PIL, ipywidgets
    first_plot_s = time.perf_counter() - t0
    if task == "loop":
        return {"first_plot_s": first_plot_s, **_tight_loop(cfg)}
    if task == "train":
        return _training_loop(cfg)
    if task == "redraw":
        return _redraw(cfg)
    raise SystemExit(f"unknown task {task!r}")


def _tight_loop(cfg: dict) -> dict:
    """``calls`` log_metric calls in a row: without a listener, with an empty listener
    (what any listener costs: tracking's dispatch), with a live plot. The modes take turns
    (order reversed every repeat) so drift in the machine's load hits all of them."""
    import mlnb
    from mlnb.notebook.liveplot import LivePlot
    from mlnb.tracking import active as tracking_active

    n = cfg["calls"]

    def empty(store: object, rows: object) -> None:
        pass

    modes = ["none", "empty listener", "live plot"]
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    frames, draw_s, create_s = [], [], []
    for rep in range(cfg["repeats"]):
        for mode in modes if rep % 2 == 0 else modes[::-1]:
            run = mlnb.start_run(capture=False)
            plot = None
            if mode == "empty listener":
                tracking_active.add_batch_listener(empty)
            elif mode == "live plot":
                t0 = time.perf_counter()
                plot = LivePlot(["loss"], every=0.5)
                create_s.append(time.perf_counter() - t0)
                f0, d0 = plot.frames, plot.draw_seconds
            mlnb.flush()
            log_metric = mlnb.log_metric
            w0, c0 = time.perf_counter(), time.thread_time()
            for i in range(n):
                log_metric("loss", i * 1e-5)
            c1, w1 = time.thread_time(), time.perf_counter()
            wall[mode].append(w1 - w0)
            cpu[mode].append(c1 - c0)
            if plot is not None:
                frames.append(plot.frames - f0)
                draw_s.append(plot.draw_seconds - d0)
                plot.close()
            tracking_active.remove_batch_listener(empty)
            run.end()
    listener_ns = _listener_cost()
    return {
        "wall": wall,
        "cpu": cpu,
        "frames": frames,
        "draw_s": draw_s,
        "create_s": create_s,
        "listener_ns": listener_ns,
    }


def _listener_cost() -> dict:
    """The listener called directly (timeit), and an empty function for reference."""
    import timeit

    import mlnb
    from mlnb.notebook.liveplot import LivePlot

    def empty(store: object, rows: object) -> None:
        pass

    run = mlnb.start_run(capture=False)
    plot = LivePlot(["loss"], every=60)
    listener = plot._listener
    number = 200_000
    rows = [(run._rowid, "loss", 7, 0.5, 0.0)]  # a batch of one point, as the writer passes
    live = min(timeit.repeat(lambda: listener(run.store, rows), number=number, repeat=7))
    bare = min(timeit.repeat(lambda: empty(run.store, rows), number=number, repeat=7))
    plot.close()
    run.end()
    return {"live": live / number * 1e9, "empty": bare / number * 1e9}


def _training_loop(cfg: dict) -> dict:
    """A loop of ~``train_s`` seconds: each step does pure-Python work and logs two
    metrics; without a plot, with a plot of both that never redraws during the loop (the
    listener's share), and with a live plot (``every=0.5``), taking turns."""
    import mlnb
    from mlnb.notebook.liveplot import LivePlot

    t0 = time.perf_counter()
    for _ in range(200):
        _work()
    per_step = (time.perf_counter() - t0) / 200
    steps = max(100, int(cfg["train_s"] / per_step))
    modes = {"none": None, "listener only": 3600.0, "live plot": 0.5}  # mode -> every
    wall: dict[str, list[float]] = {m: [] for m in modes}
    frames, full, draw_s = [], [], []
    for rep in range(cfg["train_repeats"]):
        for mode in list(modes) if rep % 2 == 0 else list(modes)[::-1]:
            run = mlnb.start_run(capture=False)
            every = modes[mode]
            plot = None if every is None else LivePlot(["loss", "acc"], every=every)
            if plot is not None:
                f0, r0, d0 = plot.frames, plot._renderer.full_redraws, plot.draw_seconds
            mlnb.flush()
            start = time.perf_counter()
            for i in range(steps):
                _work()
                run.log_metric("loss", 1.0 / (i + 1))
                run.log_metric("acc", 1.0 - 1.0 / (i + 1))
            wall[mode].append(time.perf_counter() - start)
            if mode == "live plot":
                frames.append(plot.frames - f0)
                full.append(plot._renderer.full_redraws - r0)
                draw_s.append(plot.draw_seconds - d0)
            if plot is not None:
                plot.close()
            run.end()
    return {
        "steps": steps,
        "step_s": per_step,
        "wall": wall,
        "frames": frames,
        "full": full,
        "draw_s": draw_s,
    }


def _redraw(cfg: dict) -> dict:
    """One frame by itself: the lines over the cached background (most frames) and a full
    redraw (the axes' limits moved), for 1, 2 and 4 keys of 10,000 points each."""
    import matplotlib
    import numpy as np

    from mlnb.notebook.liveplot import Series, _Renderer

    x = np.arange(REDRAW_POINTS, dtype=float)
    y = np.exp(-x / 3000) + np.random.default_rng(0).random(REDRAW_POINTS) * 0.05
    out = {"matplotlib": matplotlib.__version__, "rows": []}
    for n_keys in (1, 2, 4):
        series = [
            Series(f"key{i}", x, y, count=len(x), best=(1.0, 0.5), last=(x[-1], y[-1]))
            for i in range(n_keys)
        ]
        renderer = _Renderer(None)
        png = renderer.render(series, origin=0.0, note="")
        blits, fulls = [], []
        for _ in range(cfg["frames"]):
            t0 = time.perf_counter()
            renderer.render(series, origin=0.0, note="")
            blits.append(time.perf_counter() - t0)
            renderer.background = None  # as after a change of limits
            t0 = time.perf_counter()
            png = renderer.render(series, origin=0.0, note="")
            fulls.append(time.perf_counter() - t0)
        width, height = renderer.canvas.get_width_height()
        out["rows"].append(
            {
                "keys": n_keys,
                "blit_s": statistics.median(blits),
                "full_s": statistics.median(fulls),
                "png_bytes": len(png),
                "size": f"{width}×{height}",
            }
        )
    return out


# ------------------------------------------------------------------ the orchestrator


def _run(task: str, cfg: dict) -> dict:
    return run_section_worker(__file__, task, cfg, timeout=1800)


def measure(quick: bool, profile_dir: Path | None = None) -> dict:
    """Raw results; ``profile_dir`` is accepted for run.py's interface and unused."""
    cfg = QUICK if quick else FULL
    load_start = load_average()
    log(f"live: tight loop, {cfg['repeats']} repeats of {cfg['calls']:,} calls per mode")
    loop = _run("loop", cfg)
    log(f"live: training-like loop, {cfg['train_repeats']} × 3 runs of ~{cfg['train_s']} s")
    train = _run("train", cfg)
    log("live: redraw cost")
    redraw = _run("redraw", cfg)
    return {
        "quick": quick,
        "config": cfg,
        "loop": loop,
        "train": train,
        "redraw": redraw,
        **section_facts(),
        "cpu": cpu_name(),
        "load": [load_start, load_average()],
    }


def _paired_overhead(samples: dict[str, list[float]], mode: str, base: str = "none") -> float:
    """Median over repeats of (time with ``mode`` / time without) - 1: each pair ran
    back to back, so slow phases of the machine cancel out."""
    return statistics.median(a / b for a, b in zip(samples[mode], samples[base], strict=True)) - 1


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def render(res: dict, command: str) -> str:
    loop, train, redraw = res["loop"], res["train"], res["redraw"]
    cfg = res["config"]
    n = cfg["calls"]
    tight = _paired_overhead(loop["wall"], "live plot")
    tight_cpu = _paired_overhead(loop["cpu"], "live plot")
    empty = _paired_overhead(loop["wall"], "empty listener")
    empty_cpu = _paired_overhead(loop["cpu"], "empty listener")
    trained = _paired_overhead(train["wall"], "live plot")
    trained_listener = _paired_overhead(train["wall"], "listener only")
    frames = sum(train["frames"])
    draw_s = sum(train["draw_s"])
    per_frame = draw_s / frames if frames else float("nan")
    with_plot_s = sum(train["wall"]["live plot"])
    out = [TITLE, ""]
    out.append(
        "What attaching a live plot costs the loop that logs. The listener "
        "(`tracking.active.add_batch_listener`) runs in the metric writer thread: it gets each "
        "batch "
        "of points after it is written and appends the watched run's to two lists; "
        "a daemon thread redraws at most every `every` s (0.5 here). Measured in fresh "
        f"processes of `{res['python']}`, after one plot was made and closed (numpy, "
        "matplotlib, PIL and ipywidgets are imported before any timing, as in a notebook)."
    )
    if res["quick"]:
        out += ["", "**Quick run** (`--quick`): fewer repeats; not for the record."]
    out += ["", "### Targets", ""]
    out.append(
        table(
            ["measurement", "target", "result", ""],
            [
                [
                    f"{n:,} `log_metric` calls in a row, live plot attached vs none "
                    f"(wall clock, median of {cfg['repeats']} paired runs)",
                    f"< {TARGET:.0%} slower",
                    _pct(tight),
                    verdict(tight < TARGET),
                ],
                [
                    f"training-like loop: {train['steps']:,} steps of "
                    f"{fmt_time(train['step_s'])} pure-Python work + 2 `log_metric`, "
                    f"plot of both keys vs none (median of {cfg['train_repeats']} pairs)",
                    f"< {TARGET:.0%} slower",
                    _pct(trained),
                    verdict(trained < TARGET),
                ],
            ],
        )
    )
    out += ["", "### The tight loop", ""]
    rows = []
    best_none = min(loop["wall"]["none"])
    for mode in ("none", "empty listener", "live plot"):
        wall = statistics.median(loop["wall"][mode]) / n
        best = min(loop["wall"][mode])
        cpu = statistics.median(loop["cpu"][mode]) / n
        slower = "" if mode == "none" else _pct(_paired_overhead(loop["wall"], mode))
        slower_best = "" if mode == "none" else _pct(best / best_none - 1)
        slower_cpu = "" if mode == "none" else _pct(_paired_overhead(loop["cpu"], mode))
        row = [mode, fmt_time(wall), slower, fmt_time(best / n), slower_best]
        rows.append([*row, fmt_time(cpu), slower_cpu])
    headers = ["attached", "per call: median", "slower", "fastest run", "slower"]
    out.append(table([*headers, "main-thread CPU", "slower"], rows))
    out += [
        "",
        "Medians compare each run with the run next to it; the fastest run of each mode is "
        "the least disturbed by the machine (the other columns are wall clock too, except "
        "main-thread CPU, which leaves out the time spent waiting for the GIL).",
    ]
    ns = loop["listener_ns"]
    out += [
        "",
        f"- The live plot's listener called directly costs {ns['live']:.0f} ns per point "
        f"(an empty Python function with the same arguments: {ns['empty']:.0f} ns). In the "
        f"loop, any listener at all costs {_pct(empty)} wall / {_pct(empty_cpu)} CPU: that "
        "is what a listener costs the loop now that it runs in the writer thread, "
        f"paid before the plot does anything; the plot's own work adds the rest "
        f"({_pct(tight)} wall / {_pct(tight_cpu)} CPU in all).",
        f"- Frames drawn during the {n:,} calls: {sum(loop['frames'])} in "
        f"{len(loop['frames'])} runs (the loop is shorter than `every`); making a plot (one "
        f"frame, a figure, a thread) takes {fmt_time(statistics.median(loop['create_s']))}; "
        f"the first plot of a process also imports matplotlib: "
        f"{fmt_time(loop['first_plot_s'])}.",
        "",
        "### The training-like loop",
        "",
        f"Each step holds the GIL throughout (pure Python), the worst case for a drawing "
        f"thread; a step of numpy or torch releases it for most of its time. The plot drew "
        f"{frames} frames ({sum(train['full'])} with the axes laid out again) in "
        f"{with_plot_s:.1f} s of loops, {fmt_time(per_frame)} of CPU per frame, "
        f"{draw_s / with_plot_s:.1%} of the time. The same plot with no redraw during the "
        f"loop (only the listener at work) made it {_pct(trained_listener)} slower; with "
        f"its frames, {_pct(trained)}.",
        "",
        "### What a redraw costs",
        "",
        f"One frame by itself, {REDRAW_POINTS:,} points per key (median of "
        f"{cfg['frames']}; matplotlib {redraw['matplotlib']}, Agg, PNG by Pillow at "
        "compression level 1). Most frames only draw the lines over a cached background; a "
        "full redraw happens when the axes' limits must move (they grow in steps, so rarely) "
        "or the keys change. After a frame that took *t*, the thread waits at least 20 *t*.",
        "",
    ]
    out.append(
        table(
            ["keys", "image", "lines over the background", "full redraw", "PNG"],
            [
                [
                    str(r["keys"]),
                    r["size"],
                    fmt_time(r["blit_s"]),
                    fmt_time(r["full_s"]),
                    f"{r['png_bytes'] / 1024:.0f} KiB",
                ]
                for r in redraw["rows"]
            ],
        )
    )
    out += [
        "",
        *footer(
            [
                ["CPU", f"{res['cpu']} ({res['cores']} cores)"],
                ["Python", res["python"]],
                ["mlnb", res["source"]],
                ["date", res["date"]],
                ["load average (1/5/15 min) at start", res["load"][0]],
                ["load average (1/5/15 min) at end", res["load"][1]],
            ],
            command,
        ),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return section_main(
        __file__, NAME, measure, render, worker, doc=__doc__, quick_help="fewer repeats", argv=argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
