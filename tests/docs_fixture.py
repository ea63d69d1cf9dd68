"""The project the docs' examples run in (tests/test_docs_examples.py): a store with the
runs, experiments, names and ids the docs use, and the notebooks and files they name.

The fixture adapts to the docs: when a page names a run, a key or a file, it exists here.
Runs are real (fitted by scikit-learn on generated churn data and on its bundled digits,
logged with mlnb's API, one job run by the runner); only the few runs the docs call by id
get that id. Try an example by hand::

    python -m tests.docs_fixture /tmp/docs-project
    cd /tmp/docs-project && MLNB_STORE=.mlnb mlnb runs
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Run first in each page's kernel: what the examples assume the reader already has and the
# docs name without defining. Nothing of mlnb (pages import what they use).
PRELUDE = '''\
"""What the docs' examples assume you have: `train_df` (a churn table), `X_train`,
`y_train`, `predictions`, `batches` with `train_step(x, y)` and `evaluate()`, a figure `fig`.
No module names leak into the examples: a block that forgets an import fails."""


def _what_the_reader_has():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from tests.docs_fixture import churn_table

    train_df = churn_table(600, seed=1)
    X_train, y_train = train_df.drop(columns=["plan", "churned"]), train_df["churned"]
    predictions = pd.DataFrame({"customer": train_df.index, "churn_probability": 0.2})
    batches = [(X_train[i : i + 200], y_train[i : i + 200]) for i in range(0, 600, 200)]
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.plot([0, 0.1, 0.3, 1], [0, 0.7, 0.9, 1])
    return train_df, X_train, y_train, predictions, batches, fig


train_df, X_train, y_train, predictions, batches, fig = _what_the_reader_has()
del _what_the_reader_has
_steps = 0


def train_step(x, y):
    """One step of your training loop: returns the batch's loss."""
    global _steps
    _steps += 1
    return 1.0 / (1.0 + 0.1 * _steps)


def evaluate():
    """Your evaluation: returns an accuracy."""
    return 0.91
'''

# A stand-in for a training notebook: the parameters the docs' jobs and sweeps pass, a
# simulated loss curve, an accuracy; no imports beyond mlnb, so a job takes a kernel's start.
TRAIN_CELLS = [
    ("markdown", "# Train (a stand-in: a simulated loss curve, so a job is quick)"),
    (
        "parameters",
        'lr = 0.1  # learning rate\nepochs = 3\ndepth = 3  # tree depth\nmodel = "logreg"',
    ),
    (
        "code",
        "import mlnb\n\n"
        "loss = 1.0\n"
        "for epoch in range(epochs):\n"
        "    loss *= 1 - min(lr * 5, 0.5)\n"
        '    mlnb.log_metric("loss", loss)\n'
        'mlnb.log_metric("acc", round(0.9 + 0.08 * (1 - loss) + 0.001 * depth, 4))',
    ),
]

GRID_YAML = "lr: [0.001, 0.01, 0.1]\ndepth: [3, 5, 8]\n"
TRAIN_PY = (
    "import mlnb\n\n"
    'with mlnb.start_run("train.py", experiment="scripts"):\n'
    '    mlnb.log_metric("acc", 0.9)\n'
)

# the ids the docs call runs by (the rest are random, as any run's)
ID_LOGREG = "3f2a91c0" + "5be94c2d8e4f4a1b9d0c7e6f"
ID_OTTER = "9b1c4e7a" + "0d2f4b6c8a1e3f5d7b9c0a2e"
ID_R1 = "1a2b3c4d" + "5e6f4a8b9c0d1e2f3a4b5c6d"
ID_JOB = "6465a35f" + "c1d24e0b8a7f4c3d9e2b1a0f"


def churn_table(n: int, *, seed: int) -> Any:
    """A generated customer table: age, tenure, monthly fee, support calls, plan, and
    whether the customer churned (mostly decided by tenure, fee and calls)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    tenure = rng.integers(1, 72, n)
    calls = rng.poisson(1.5, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    fee = 20 + 15 * (plan == "plus") + 35 * (plan == "pro") + 0.1 * age + rng.normal(0, 2.5, n)
    logit = 1.5 - 0.08 * tenure + 0.03 * (fee - 40) + 0.9 * calls
    churned = (rng.random(n) < 1 / (1 + np.exp(-3 * logit))).astype(int)
    return pd.DataFrame(
        {
            "age": age,
            "tenure_months": tenure,
            "monthly_fee": fee.round(2),
            "support_calls": calls,
            "plan": plan,
            "churned": churned,
        }
    )


def build(folder: Path) -> Path:
    """Build the project in ``folder`` in a fresh interpreter (the store's writer threads
    and sklearn stay out of the caller); returns ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLNB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.docs_fixture", str(folder)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the docs project failed:\n{proc.stdout}{proc.stderr}")
    return folder


def _write_files(folder: Path) -> None:
    import pickle
    import shutil

    import nbformat

    nb = nbformat.v4.new_notebook()
    for kind, source in TRAIN_CELLS:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for path in ("train.ipynb", "demo.ipynb", "notebooks/train.ipynb", "nb/train.ipynb"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / path)
    # docs/continuous-training.md retrains the repository's own example notebook
    shutil.copy(REPO / "notebooks" / "ct_train.ipynb", folder / "notebooks" / "ct_train.ipynb")
    (folder / "grid.yaml").write_text(GRID_YAML)
    (folder / "train.py").write_text(TRAIN_PY)
    (folder / "data" / "images").mkdir(parents=True)
    churn_table(200, seed=2).to_parquet(folder / "data" / "raw.parquet")
    for i in range(3):
        (folder / "data" / "images" / f"{i}.png").write_bytes(bytes([i]) * 64)
    (folder / "outputs").mkdir()
    (folder / "outputs" / "metrics.json").write_text('{"acc": 0.91}\n')
    (folder / "model.pkl").write_bytes(pickle.dumps({"coef": [0.1, 0.2]}))


def _fixed_id_run(st: Any, run_id: str, name: str, experiment: str, **kw: Any) -> Any:
    """A run under an id the docs use: created with it, then logged to with the API."""
    import mlnb

    st.create_run(run_id=run_id, name=name, experiment=experiment, **kw)
    return mlnb.start_run(run_id=run_id, store=st)


def _churn_runs(st: Any) -> None:
    """Experiment churn: a baseline, two SGD-trained logistic models whose loss and
    accuracy are logged per epoch (runs 3f2a… and brave-otter-417), and three SVCs."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.metrics import accuracy_score, f1_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    import mlnb

    table = churn_table(1000, seed=0)
    train, test = train_test_split(table, test_size=0.3, random_state=0)
    features = ["age", "tenure_months", "monthly_fee", "support_calls"]
    scaler = StandardScaler().fit(train[features])
    xtr, xte = scaler.transform(train[features]), scaler.transform(test[features])
    ytr, yte = train["churned"], test["churned"]

    with mlnb.start_run("baseline", experiment="churn", tags={"team": "growth"}, store=st) as r:
        clf = LogisticRegression(C=1.0).fit(xtr, ytr)
        r.log_params({"model": "logreg", "C": 1.0, "penalty": "l2"})
        r.log_metrics(
            {"acc": accuracy_score(yte, clf.predict(xte)), "f1": f1_score(yte, clf.predict(xte))}
        )
        r.log_metric("loss", log_loss(ytr, clf.predict_proba(xtr)))

    for run_id, name, lr, optimizer in (
        (ID_LOGREG, "logreg", 0.001, "sgd"),
        (ID_OTTER, "brave-otter-417", 0.01, "adam"),
    ):
        with _fixed_id_run(st, run_id, name, "churn", tags={"team": "growth"}) as r:
            r.log_params({"model": "logreg", "C": 1.0, "penalty": "l2", "epochs": 8})
            r.log_params({"lr": lr, "optimizer": optimizer})
            r.log_data(train, name="train")
            r.log_data(test, name="test")
            sgd = SGDClassifier(loss="log_loss", learning_rate="constant", eta0=lr, random_state=0)
            for epoch in range(8):
                sgd.partial_fit(xtr, ytr, classes=[0, 1])
                loss = log_loss(ytr, sgd.predict_proba(xtr))
                r.log_metrics(
                    {"loss": loss, "acc": accuracy_score(yte, sgd.predict(xte))}, step=epoch
                )
            r.log_metric("f1", f1_score(yte, sgd.predict(xte)))

    for c in (0.5, 1.0, 2.0):
        with mlnb.start_run(f"svc-C{c}", experiment="churn", store=st) as r:
            svc = make_pipeline(StandardScaler(), SVC(C=c)).fit(train[features], ytr)
            pred = svc.predict(test[features])
            r.log_params({"model": "svc", "C": c, "kernel": "rbf"})
            r.log_metrics({"acc": accuracy_score(yte, pred), "f1": f1_score(yte, pred)})


def _mnist_runs(st: Any) -> None:
    """Experiment mnist: small multi-layer perceptrons on scikit-learn's 8x8 digits (its
    bundled MNIST), loss, val_loss, acc and val_acc per epoch."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    import mlnb

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16, y, test_size=0.25, random_state=0)
    for name, optimizer, lr in (
        ("mlp-adam", "adam", 0.01),
        ("mlp-adam-slow", "adam", 0.001),
        ("mlp-sgd", "sgd", 0.1),
    ):
        with mlnb.start_run(name, experiment="mnist", tags={"team": "vision"}, store=st) as r:
            r.log_params({"model": "mlp", "optimizer": optimizer, "lr": lr, "batch size": 64})
            mlp = MLPClassifier(
                (32,), solver=optimizer, learning_rate_init=lr, batch_size=64, random_state=0
            )
            for epoch in range(6):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    mlp.partial_fit(xtr, ytr, classes=list(range(10)))
                val = {
                    "val_loss": log_loss(yva, mlp.predict_proba(xva)),
                    "val_acc": mlp.score(xva, yva),
                }
                r.log_metrics({"loss": mlp.loss_, "acc": mlp.score(xtr, ytr), **val}, step=epoch)


def _ci_runs(st: Any) -> None:
    """Experiment ci: the same churn model trained nightly on more and more rows (r1, r2,
    r3, then nightly, the best), with acc, f1, loss and the rmse of a monthly-fee model;
    docs/ci.md gates nightly against them."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_squared_error

    import mlnb

    test = churn_table(2000, seed=9)
    features = ["age", "tenure_months", "monthly_fee", "support_calls"]
    fee_features = ["age", "tenure_months", "support_calls"]
    plans = ["basic", "plus", "pro"]

    def fee_x(df: Any) -> Any:
        return df[fee_features].assign(**{p: (df["plan"] == p).astype(int) for p in plans})

    for i, (name, rows) in enumerate((("r1", 20), ("r2", 40), ("r3", 60), ("nightly", 3000))):
        train = churn_table(rows, seed=10 + i)
        run = (
            _fixed_id_run(st, ID_R1, name, "ci")
            if name == "r1"
            else mlnb.start_run(name, experiment="ci", store=st)
        )
        with run as r:
            clf = LogisticRegression(max_iter=1000).fit(train[features], train["churned"])
            reg = LinearRegression().fit(fee_x(train), train["monthly_fee"])
            pred = clf.predict(test[features])
            rmse = mean_squared_error(test["monthly_fee"], reg.predict(fee_x(test))) ** 0.5
            r.log_params({"model": "logreg", "rows": rows})
            metrics = {
                "acc": accuracy_score(test["churned"], pred),
                "f1": f1_score(test["churned"], pred),
                "loss": log_loss(test["churned"], clf.predict_proba(test[features])),
                "rmse": rmse,
            }
            r.log_metrics(metrics)


def _check_ci_story(st: Any) -> None:
    """docs/ci.md's gates of nightly pass on this store (its shell examples run with -e)."""
    import mlnb

    checks = [
        dict(metrics=["acc>=0.9"]),
        dict(metrics=["acc>=0.9", "loss<0.4"], vs="latest"),
        dict(metrics=["acc"], vs="best", min_rel=0.01),
        dict(metrics=["rmse<=3"], vs="1a2b3c4d", min_abs=0.05),
    ]
    for kw in checks:
        result = mlnb.gate("nightly", kw.pop("metrics"), store=st, record=False, **kw)
        assert result.passed, f"the ci experiment no longer tells docs/ci.md's story:\n{result}"


def _job_run(folder: Path, st: Any) -> None:
    """Run 6465a35f…: a job of train.ipynb, for docs/reproduce.md."""
    import mlnb

    result = mlnb.run_notebook(
        folder / "train.ipynb", experiment="jobs", run_id=ID_JOB, store=st, progress_bar=False
    )
    assert result.ok, result


def main(folder: Path) -> None:
    import shutil

    import mlnb
    from mlnb.tracking import fluent as tracking

    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)  # runs record this folder, not the repository, as their place
    _write_files(folder)
    st = mlnb.Store(folder / ".mlnb")
    tracking.set_store(st)
    _churn_runs(st)
    _mnist_runs(st)
    _ci_runs(st)
    _job_run(folder, st)
    mlnb.flush()
    _check_ci_story(st)
    tracking.set_store(None)
    st.close()
    (folder / "laptop").mkdir()  # docs/jobs.md moves a run from laptop/.mlnb
    shutil.copytree(folder / ".mlnb", folder / "laptop" / ".mlnb")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
