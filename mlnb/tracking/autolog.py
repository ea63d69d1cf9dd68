"""Automatic logging of scikit-learn fits.

``autolog("sklearn")`` wraps the ``fit`` of every scikit-learn estimator class so that each
*outermost* fit records a run: the estimator's params, fit time, training metrics, the
pickled model and, for parameter searches, the best params and the ``cv_results_`` table.
Fits that happen inside another wrapped fit (a Pipeline's steps, a search's clones, an
ensemble's members) are part of the outer fit and are not recorded on their own. The depth
is counted per thread; a thread started while an outermost fit runs (a joblib worker of a
search with ``n_jobs``) counts as inside that fit.

The original functions live in one registry, ``_originals`` (owner class → its own
``fit``), so ``autolog(disable=True)`` puts back exactly the objects it replaced. Only
classes that define ``fit`` in their own ``__dict__`` are patched: ``GridSearchCV`` is
covered by patching ``BaseSearchCV``, where its ``fit`` lives.

Importing this module is cheap: scikit-learn is imported when autologging is turned on, and
pandas when a search's results are written. Whatever goes wrong while logging is reported
with one warning per fit; it never breaks the user's fit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
import pickle
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlnb.errors import InvalidInputError, MlnbError, MlnbWarning
from mlnb.tracking import fluent as tracking

__all__ = ["SUPPORTED_FRAMEWORKS", "autolog"]

SUPPORTED_FRAMEWORKS = ("sklearn",)
MAX_PARAM_REPR = 250
PICKLE_PROTOCOL = 5
_MARKER = "_mlnb_autolog"


@dataclass(frozen=True)
class _Options:
    log_models: bool


_lock = threading.Lock()  # guards _originals and the patching
_threads_lock = threading.Lock()  # guards _outer_fits
_originals: dict[type, Callable[..., Any]] = {}
_options: _Options | None = None  # None: autologging is off (wrappers left behind pass through)
_depth = threading.local()  # .value: how many wrapped fits this thread is inside
_outer_fits: dict[threading.Thread, set[threading.Thread]] = {}  # thread → threads at its start


def autolog(framework: str = "sklearn", *, disable: bool = False, log_models: bool = True) -> None:
    """Record a run for every outermost ``fit`` of a scikit-learn estimator.

    Inside an active run each fit becomes a nested child run named after the estimator
    class; with no active run it gets a top-level run of its own, finished when ``fit``
    returns (failed if it raises). ``log_models=False`` skips the pickled model.
    ``disable=True`` puts every original ``fit`` back. Calling it again while on only
    changes the options. See docs/autolog.md for what each fit records.
    """
    global _options
    if framework not in SUPPORTED_FRAMEWORKS:
        raise InvalidInputError(
            f"autolog does not support {framework!r}; supported: {', '.join(SUPPORTED_FRAMEWORKS)}"
        )
    if disable:
        with _lock:
            _options = None
            _restore()
        return
    classes = _sklearn_classes()
    with _lock:
        for cls in classes:
            _patch(cls)
        _options = _Options(log_models=log_models)


def _sklearn_classes() -> list[type]:
    """Every public scikit-learn estimator, plus the meta-estimators autolog must see."""
    try:
        from sklearn.model_selection import (  # type: ignore[import-untyped]
            GridSearchCV,
            RandomizedSearchCV,
        )
        from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
        from sklearn.utils import all_estimators  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MlnbError(
            f"autolog('sklearn') needs scikit-learn, which cannot be imported ({exc}); "
            "install it with `pip install scikit-learn`"
        ) from exc
    classes: list[type] = [cls for _, cls in all_estimators()]
    return [*classes, Pipeline, GridSearchCV, RandomizedSearchCV]


def _patch(cls: type) -> None:
    """Wrap the ``fit`` that ``cls`` uses, on the class that defines it (once)."""
    owner = next((k for k in cls.__mro__ if "fit" in k.__dict__), None)
    if owner is None or owner in _originals:
        return
    original = owner.__dict__["fit"]
    if not inspect.isfunction(original) or getattr(original, _MARKER, False):
        return  # a property or descriptor, or already ours (e.g. after a module reload)
    _originals[owner] = original
    type.__setattr__(owner, "fit", _wrap(original))


def _restore() -> None:
    for owner, original in _originals.items():
        current = owner.__dict__.get("fit")
        if getattr(current, _MARKER, False) and getattr(current, "__wrapped__", None) is original:
            type.__setattr__(owner, "fit", original)
        # else someone wrapped ours since: leave theirs; ours passes through while off
    _originals.clear()


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth: int = getattr(_depth, "value", 0)
        options = _options
        if depth or options is None or (_outer_fits and _is_worker_of_a_fit()):
            _depth.value = depth + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                _depth.value = depth
        thread = threading.current_thread()
        with _threads_lock:
            _outer_fits[thread] = set(threading.enumerate())
        _depth.value = 1
        try:
            return _logged_fit(original, self, args, kwargs, options)
        finally:
            _depth.value = 0
            with _threads_lock:
                del _outer_fits[thread]

    setattr(fit, _MARKER, True)
    return fit


def _is_worker_of_a_fit() -> bool:
    """Whether this thread was started while an outermost fit ran in another thread: a
    worker of that fit (joblib's threading backend, ``n_jobs`` of a search), whose fits
    are part of it, however deep its own thread's count is."""
    thread = threading.current_thread()
    with _threads_lock:
        return any(
            owner is not thread and thread not in alive for owner, alive in _outer_fits.items()
        )


# -- one logged fit ------------------------------------------------------------------------------


def _logged_fit(
    original: Callable[..., Any],
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: _Options,
) -> Any:
    problems: list[str] = []
    run = _start(estimator, problems)
    started = time.perf_counter()
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as exc:
        if run is not None:
            _end(run, tracking.status_after(exc), problems)
        if problems:  # a warning turned into an error must not hide the fit's exception
            with contextlib.suppress(Warning):
                _warn(estimator, problems)
        raise
    fit_time = time.perf_counter() - started
    if run is not None:
        try:
            inputs = _fit_inputs(original, estimator, args, kwargs)
            _record(run, estimator, fit_time, inputs, options, problems)
        except Exception as exc:  # _record guards each part; this guards the unforeseen
            problems.append(_describe(exc))
        except BaseException:  # Ctrl-C while logging: do not leave the run active
            _end(run, "killed", problems)
            raise
        _end(run, "finished", problems)
    if problems:
        _warn(estimator, problems)
    return result


def _start(estimator: Any, problems: list[str]) -> tracking.ActiveRun | None:
    """A nested child of the active run, or a new top-level run; with the fit's params."""
    cls = type(estimator)
    tags = {"estimator_class": f"{cls.__module__}.{cls.__qualname__}", "autolog": "sklearn"}
    try:
        parent = tracking.active_run()
        if parent is None and tracking.pending_job_run():
            parent = tracking.start_run()  # the run of an `mlnb run` job: fits nest under it
        if parent is not None and not parent.ended:
            run = tracking.start_run(
                cls.__name__,
                experiment=parent.store.get_run(parent.run_id).experiment,
                tags=tags,
                nested=True,
                parent_run_id=parent.run_id,
                store=parent.store,
                capture=False,  # the parent recorded the environment and git state
            )
        else:
            run = tracking.start_run(cls.__name__, tags=tags)
    except Exception as exc:
        problems.append(f"starting a run: {_describe(exc)}")
        return None
    try:
        run.log_params(_params(estimator))
    except Exception as exc:
        problems.append(f"params: {_describe(exc)}")
    return run


def _params(estimator: Any) -> dict[str, Any]:
    # a search logs its own params: deep ones (estimator__C) are values the grid overrides
    deep = not _is_search(estimator)
    return {key: _param_value(value) for key, value in estimator.get_params(deep=deep).items()}


def _param_value(value: Any) -> Any:
    """str, int, float, bool and None as they are (numpy scalars as the Python scalar);
    anything else (an estimator, a list, a dict) as its ``repr`` cut to 250 characters."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        scalar = item()
        if scalar is None or isinstance(scalar, (str, bool, int, float)):
            return scalar
    return repr(value)[:MAX_PARAM_REPR]


def _is_search(estimator: Any) -> bool:
    """GridSearchCV, RandomizedSearchCV and the other subclasses of BaseSearchCV."""
    try:
        from sklearn.model_selection._search import BaseSearchCV  # type: ignore[import-untyped]
    except ImportError:  # moved: fall back to the two public searches
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

        return isinstance(estimator, (GridSearchCV, RandomizedSearchCV))
    return isinstance(estimator, BaseSearchCV)


def _fit_inputs(
    original: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """``(X, y, sample_weight)`` of a fit call, by the names in the fit's own signature."""
    try:
        sig = inspect.signature(original)
        arguments = sig.bind(estimator, *args, **kwargs).arguments
    except (TypeError, ValueError):
        return (args[0] if args else kwargs.get("X")), kwargs.get("y"), None
    names = [p.name for p in sig.parameters.values() if p.kind in _POSITIONAL][1:3]
    x = arguments.get(names[0]) if names else None
    y = arguments.get(names[1]) if len(names) > 1 else None
    weight = arguments.get("sample_weight")
    for name, value in arguments.items():  # fit(X, y, **params)
        if weight is None and sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            weight = value.get("sample_weight")
    return x, y, weight


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _record(
    run: tracking.ActiveRun,
    estimator: Any,
    fit_time: float,
    inputs: tuple[Any, Any, Any],
    options: _Options,
    problems: list[str],
) -> None:
    """Everything known once the fit returned; each part on its own, so one failure (an
    unpicklable model, say) costs only that part."""
    x, y, weight = inputs
    metrics: dict[str, float] = {"fit_time_s": fit_time}
    tags: dict[str, str] = {}
    params: dict[str, Any] = {}
    if y is not None and hasattr(estimator, "score"):
        by_weight = {} if weight is None else {"sample_weight": weight}
        try:
            metrics["training_score"] = float(estimator.score(x, y, **by_weight))
        except Exception as exc:
            tags["training_score_error"] = type(exc).__name__
        try:
            metrics.update(_training_metrics(estimator, x, y, weight))
        except Exception as exc:
            tags["training_metrics_error"] = type(exc).__name__
    if _is_search(estimator):
        best = getattr(estimator, "best_params_", None)
        if isinstance(best, dict):
            params = {f"best.{key}": _param_value(value) for key, value in best.items()}
        best_score = getattr(estimator, "best_score_", None)
        if isinstance(best_score, numbers.Real):  # numpy floats included
            metrics["best_cv_score"] = float(best_score)
    parts: list[tuple[str, Callable[[], object]]] = [("metrics", lambda: run.log_metrics(metrics))]
    if params:
        parts.append(("best params", lambda: run.log_params(params)))
    if tags:
        parts.append(("tags", lambda: run.set_tags(tags)))
    if isinstance(getattr(estimator, "cv_results_", None), dict):
        parts.append(("cv_results.csv", lambda: _log_cv_results(run, estimator.cv_results_)))
    if options.log_models:
        parts.append(("model.pkl", lambda: _log_model(run, estimator)))
    for what, log in parts:
        try:
            log()
        except Exception as exc:
            problems.append(f"{what}: {_describe(exc)}")


def _training_metrics(estimator: Any, x: Any, y: Any, weight: Any) -> dict[str, float]:
    from sklearn import metrics as skm  # type: ignore[import-untyped]
    from sklearn.base import is_classifier, is_regressor  # type: ignore[import-untyped]

    if is_classifier(estimator):
        predicted = estimator.predict(x)
        return {
            "training_accuracy": skm.accuracy_score(y, predicted, sample_weight=weight),
            "training_f1": skm.f1_score(
                y, predicted, average="weighted", sample_weight=weight, zero_division=0
            ),
        }
    if is_regressor(estimator):
        predicted = estimator.predict(x)
        return {
            "training_r2": skm.r2_score(y, predicted, sample_weight=weight),
            "training_mae": skm.mean_absolute_error(y, predicted, sample_weight=weight),
            "training_rmse": math.sqrt(skm.mean_squared_error(y, predicted, sample_weight=weight)),
        }
    return {}


def _log_cv_results(run: tracking.ActiveRun, cv_results: dict[str, Any]) -> None:
    import pandas as pd

    table = pd.DataFrame(cv_results).to_csv(index=False)
    run.log_artifact(table.encode(), "cv_results.csv")


def _log_model(run: tracking.ActiveRun, estimator: Any) -> None:
    run.log_artifact(pickle.dumps(estimator, protocol=PICKLE_PROTOCOL), "model.pkl")


def _end(run: tracking.ActiveRun, status: str, problems: list[str]) -> None:
    try:
        tracking.end_run(status, run=run)
    except Exception as exc:
        problems.append(f"ending the run: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _warn(estimator: Any, problems: list[str]) -> None:
    warnings.warn(
        f"mlnb autolog could not record all of this {type(estimator).__name__}.fit "
        f"({'; '.join(problems)}); the model is fitted. Turn autologging off with "
        "mlnb.autolog(disable=True) if this persists",
        MlnbWarning,
        stacklevel=4,  # _warn ← _logged_fit ← the fit wrapper ← the user's call
    )
