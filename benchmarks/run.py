"""Run mlnb's benchmarks and write their sections of ``docs/benchmarks.md``.

    python benchmarks/run.py [--quick] [--out docs/benchmarks.md] [--section foundation]

The first run creates ``.bench-venv/`` (git-ignored) with ``pip install -e . mlflow``:
MLflow is what mlnb is compared with, never a dependency of mlnb. Every measurement then
runs in a fresh process of that venv, so both tools use the same interpreter.

Each section is a module here with ``NAME = "..."``, ``measure(quick[, profile_dir])``
and ``render(results, command)``, found automatically (see ``discover``). Its markdown goes
between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``; the rest of the file
is left alone, so sections can be refreshed one at a time.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import shlex
import sys
from pathlib import Path

from _common import BENCH_DIR, REPO, ensure_venv, log, write_section

FIRST = ["foundation"]  # run order: these first, then the others by name


def discover() -> dict[str, str]:
    """Section name -> module: every ``benchmarks/*.py`` (not ``_*``, ``run``, ``*_worker``)
    that assigns ``NAME = "..."`` at top level. Found by reading the source, so a section is
    imported only when it runs (a half-written one cannot break the others)."""
    found = {}
    for path in sorted(BENCH_DIR.glob("*.py")):
        stem = path.stem
        if stem.startswith("_") or stem == "run" or stem.endswith("_worker"):
            continue
        m = re.search(r'^NAME = "([A-Za-z0-9_-]+)"', path.read_text(), re.MULTILINE)
        if m:
            found[m.group(1)] = stem
    return dict(sorted(found.items(), key=lambda kv: (kv[0] not in FIRST, kv[0])))


AVAILABLE = discover()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, ~2 minutes")
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown file"
    )
    parser.add_argument(
        "--section", choices=sorted(AVAILABLE), action="append", help="default: all of them"
    )
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument(
        "--profile-dir", type=Path, help="save cProfile stats of the mlnb measurements here"
    )
    args = parser.parse_args(argv)

    ensure_venv()
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        args.profile_dir = args.profile_dir.resolve()

    shown = ["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]
    command = shlex.join(shown)
    raw = {}
    for name in args.section or list(AVAILABLE):
        section = importlib.import_module(AVAILABLE[name])
        log(f"section {name}{' (quick)' if args.quick else ''}")
        kwargs = {"quick": args.quick}
        if "profile_dir" in inspect.signature(section.measure).parameters:
            kwargs["profile_dir"] = args.profile_dir
        results = section.measure(**kwargs)
        raw[name] = results
        write_section(args.out, name, section.render(results, command))
        log(f"wrote section {name} of {args.out}")
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
