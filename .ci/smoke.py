"""Smoke test of a plain install: what `pip install mlnb` (no extras) must be able to do.

`make smoke` installs the package from this tree, not editable and without extras, into a
fresh venv and runs this script with that venv's Python, in an empty folder. Users do not
install our test extras (pyarrow, scikit-learn, polars...), so everything here goes through
the public surface only, as a user would:

1. a DataFrame with text logged with `mlnb.log_data` (pandas 3 without pyarrow);
2. `%track` magics in a real Jupyter kernel (executed with nbclient);
3. `mlnb run` of a small notebook with a parameters cell;
4. `mlnb runs`, `compare(...).to_html(...)` and `mlnb report` (HTML and Markdown);
5. JupyterLab sees the prebuilt labextension, enabled and OK (no Node on the user's side),
   and the server extension enabled.

Each step prints one line; the first failure raises with what it saw.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
STARTED = time.perf_counter()


def step(text: str) -> None:
    print(f"smoke {time.perf_counter() - STARTED:5.1f}s  {text}", flush=True)


def mlnb_cli(*args: str) -> str:
    """Run the installed `mlnb` program; its stdout, or an error with everything it said."""
    proc = subprocess.run([str(BIN / "mlnb"), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"mlnb {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """Write a notebook of ``(tag, source)`` code cells (tag "" for none)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for tag, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tag:
            cell.metadata["tags"] = [tag]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def check_plain_install() -> None:
    import mlnb

    here = Path(mlnb.__file__).resolve()
    assert Path(sys.prefix).resolve() in here.parents, f"mlnb comes from {here}, not the venv"
    extras = [m for m in ("pyarrow", "sklearn", "polars", "pytest") if importlib.util.find_spec(m)]
    assert not extras, f"not a plain install: {extras} can be imported"
    step(f"plain install of mlnb {mlnb.__version__} in {sys.prefix}")


def check_log_data_with_text() -> None:
    import pandas as pd

    import mlnb

    frame = pd.DataFrame({"city": ["Oslo", "Rome", None, "Lisbon"], "n": [1, 2, 3, 4]})
    with mlnb.start_run("api", experiment="smoke"):
        mlnb.log_params({"lr": 0.1, "model": "logreg"})
        for loss in (0.9, 0.5, 0.3):
            mlnb.log_metric("loss", loss)
        mlnb.log_metric("accuracy", 0.88)
        ref = mlnb.log_data(frame, "cities")
    stats = {s["name"]: s for s in (mlnb.get_run("api").datasets[0].profile or {})["stats"]}
    assert stats["city"]["length"] == {"min": 4, "max": 6}, stats["city"]
    step(f"log_data of a {frame['city'].dtype!s} column without pyarrow: {ref.hash[:16]}")


def check_magics_in_a_kernel(work: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    import mlnb

    path = notebook(
        work / "magics.ipynb",
        [
            ("", "%load_ext mlnb"),
            (
                "",
                "import pandas as pd\n"
                "df = pd.DataFrame({'word': ['a', 'bb', None], 'x': [1, 2, 3]})",
            ),
            ("", "%track start magics --experiment smoke"),
            ("", "%track param C=1.0 penalty=l2"),
            ("", "%track data df"),
            ("", "acc = 0.91\n%track metric acc"),
            ("", "%track end"),
        ],
    )
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    run = mlnb.get_run("magics")
    assert run.status == "finished", run.status
    assert run.params == {"C": 1.0, "penalty": "l2"}, run.params
    assert run.metrics["acc"] == 0.91, run.metrics
    assert [d.name for d in run.datasets] == ["df"], run.datasets
    step(f"%track magics in a real kernel: run {run.run_id[:8]} ({run.linearity})")


def check_mlnb_run(work: Path) -> None:
    path = notebook(
        work / "train.ipynb",
        [
            ("parameters", "lr = 0.1\nepochs = 2"),
            (
                "",
                "import mlnb\n"
                "for epoch in range(epochs):\n"
                "    mlnb.log_metric('loss', 1 / (epoch + 1 + lr))",
            ),
            ("", "mlnb.log_metric('accuracy', 0.8 + lr)"),
        ],
    )
    out = mlnb_cli("run", str(path), str(work / "train-out.ipynb"), "-p", "lr", "0.15",
                   "--name", "job", "--experiment", "smoke")  # fmt: skip
    import mlnb

    run = mlnb.get_run("job")
    assert run.status == "finished" and run.params["lr"] == 0.15, (run.status, run.params, out)
    assert abs(run.metrics["accuracy"] - 0.95) < 1e-9, run.metrics
    step(f"mlnb run of a notebook with parameters: run {run.run_id[:8]} {run.status}")


def check_readers(work: Path) -> None:
    import mlnb

    listed = json.loads(mlnb_cli("runs", "-e", "smoke", "--format", "json"))
    assert sorted(r["name"] for r in listed) == ["api", "job", "magics"], listed
    table = mlnb_cli("runs")
    assert "job" in table and "magics" in table, table
    step(f"mlnb runs lists {len(listed)} runs")

    html_path = work / "compare.html"
    mlnb.compare("metrics.accuracy > 0", widget=False).to_html(html_path)
    page = html_path.read_text(encoding="utf-8")
    assert "job" in page and "api" in page and "<img" in page, page[:500]
    step(f"compare().to_html: {html_path.stat().st_size} bytes")

    for fmt in ("html", "md"):
        report = work / f"report.{fmt}"
        mlnb_cli("report", "job", "--vs", "api", "--format", fmt, "-o", str(report))
        text = report.read_text(encoding="utf-8")
        assert "accuracy" in text, text[:500]
        step(f"mlnb report --format {fmt}: {report.stat().st_size} bytes")


def check_jupyter_extensions() -> None:
    """The wheel put the labextension where JupyterLab looks and enabled the server
    extension: both listings say so (they print to stderr)."""
    proc = subprocess.run([str(BIN / "jupyter"), "labextension", "list"],
                          capture_output=True, text=True)  # fmt: skip
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # colours
    line = next((s for s in listing.splitlines() if "mlnb-labextension" in s), "")
    assert "enabled" in line and "OK" in line, f"jupyter labextension list:\n{listing}"
    step(f"jupyter labextension list: {' '.join(line.split())}")
    if importlib.util.find_spec("mlnb.server") is None:
        return  # the server extension is not in this tree yet
    proc = subprocess.run([str(BIN / "jupyter"), "server", "extension", "list"],
                          capture_output=True, text=True)  # fmt: skip
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    line = next((s for s in listing.splitlines() if s.split()[:1] == ["mlnb"]), "")
    assert "enabled" in line and "OK" in listing, f"jupyter server extension list:\n{listing}"
    step(f"jupyter server extension list: {' '.join(line.split())}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlnb-smoke-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        os.environ["MLNB_STORE"] = str(work / ".mlnb")
        check_plain_install()
        check_log_data_with_text()
        check_magics_in_a_kernel(work)
        check_mlnb_run(work)
        check_readers(work)
        check_jupyter_extensions()
    step("all passed")


if __name__ == "__main__":
    main()
