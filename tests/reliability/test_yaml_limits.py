"""Issue 10 item 8: YAML a user hands to mlnb (parameter files, ``-y``, grid files, ``-g
NAME=[...]``) is read with limits, so a few hundred bytes cannot cost minutes and gigabytes.

The command-line tests run ``mlnb`` as a subprocess with its address space capped and a
timeout: before the fix a billion-laughs file made ``mlnb run`` work for 120 s and reach
3.8 GB, so there the cap or the timeout ends it and the test fails instead of the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlnb.errors import InputLimitError, InvalidInputError
from mlnb.jobs.grid import load_grid_file, parse_grid_arg
from mlnb.jobs.yamlinput import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES, load_yaml
from mlnb.store import Store
from tests.reliability.conftest import integrity_ok

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "job_train.ipynb"

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, in 700 bytes.
BILLION_LAUGHS = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


def _capped() -> None:  # runs in the child: 2 GB of address space at most
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


def run_mlnb(store: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mlnb", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_capped,
    )
    return proc, time.perf_counter() - start


def assert_nothing_written(store: Path) -> None:
    """The refusal came before any run: no store yet, or one with no runs that is intact."""
    if (store / "mlnb.db").exists():
        assert integrity_ok(store / "mlnb.db")
        with Store(store) as st:
            assert st.search_runs()["run_id"] == []


def test_load_yaml_refuses_a_billion_laughs_at_once() -> None:
    """Issue 10 item 8: aliases are counted as the values they stand for."""
    start = time.perf_counter()
    with pytest.raises(InputLimitError, match=f"{MAX_YAML_VALUES:,} values"):
        load_yaml(BILLION_LAUGHS, source="the parameters file bomb.yaml")
    assert time.perf_counter() - start < 1.0


def test_load_yaml_refuses_an_alias_inside_its_own_anchor() -> None:
    """Issue 10 item 8: a value that contains itself is infinite once expanded."""
    with pytest.raises(InputLimitError, match="contains itself"):
        load_yaml("a: &a [1, *a]", source="-y")


def test_load_yaml_refuses_deep_nesting_with_a_typed_error() -> None:
    """Issue 10 item 8: deep nesting raised a raw RecursionError."""
    with pytest.raises(InputLimitError, match=f"nested more than {MAX_YAML_DEPTH} levels"):
        load_yaml("[" * 5000 + "]" * 5000, source="-y")


def test_load_yaml_refuses_text_over_the_size_cap() -> None:
    """Issue 10 item 8: the size cap is named in the message."""
    with pytest.raises(InputLimitError, match="KiB"):
        load_yaml("x: " + "1" * MAX_YAML_BYTES, source="-y")


def test_load_yaml_reads_anchors_and_merge_keys_within_the_limits() -> None:
    """What the limits must not refuse: ordinary anchors, aliases and merge keys."""
    text = "base: &b {lr: 0.1, depth: 3}\nrun: {<<: *b, depth: 5}\nagain: *b\n"
    assert load_yaml(text, source="-y") == {
        "base": {"lr": 0.1, "depth": 3},
        "run": {"lr": 0.1, "depth": 5},
        "again": {"lr": 0.1, "depth": 3},
    }
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_yaml("a: [", source="-y")


def test_grid_file_and_grid_arg_refuse_alias_bombs(tmp_path: Path) -> None:
    """Issue 10 item 8: `mlnb sweep --from-file bomb.yaml` reached 6.6 GB."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    with pytest.raises(InputLimitError, match=str(bomb)):
        load_grid_file(bomb)
    big = tmp_path / "big.yaml"
    big.write_text("lr: [" + "0.1, " * (MAX_YAML_BYTES // 5) + "0.2]\n")
    with pytest.raises(InputLimitError, match="KiB"):
        load_grid_file(big)
    inline = "[" + ", ".join(["&a [1,2,3,4,5,6,7,8,9]"] + ["*a"] * 20_000) + "]"
    with pytest.raises(InputLimitError, match="-g lr"):
        parse_grid_arg(f"lr={inline}")


def test_run_refuses_a_bomb_parameters_file_with_exit_2(tmp_path: Path) -> None:
    """Issue 10 item 8: `mlnb run -f bomb.yaml` ran 120 s and reached 3.8 GB."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    store = tmp_path / "store"
    proc, seconds = run_mlnb(store, "run", str(NOTEBOOK), "-f", str(bomb))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"more than {MAX_YAML_VALUES:,} values" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 10  # a fresh interpreter included; the refusal itself takes ms
    assert_nothing_written(store)


def test_sweep_refuses_a_bomb_grid_file_with_exit_2(tmp_path: Path) -> None:
    """Issue 10 item 8: `mlnb sweep --from-file bomb.yaml --random 2` reached 6.6 GB."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    store = tmp_path / "store"
    args = ["sweep", str(NOTEBOOK), "--from-file", str(bomb), "--random", "2"]
    proc, seconds = run_mlnb(store, *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"more than {MAX_YAML_VALUES:,} values" in proc.stderr and str(bomb) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 10
    assert_nothing_written(store)
