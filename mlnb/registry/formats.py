"""How a model becomes a file and back: the formats of the registry, and what each can
promise (docs/registry.md, "Formats and trust").

- ``skops`` (scikit-learn estimators and pipelines, when skops is installed): loading
  reads a description of the objects and rebuilds only types on an allow-list; a file
  naming any other type is refused unless ``trust=True``. It does not run code the file
  carries.
- ``pickle`` / ``joblib`` (anything else, or a file with that suffix): loading runs
  whatever code the file says, so it is refused unless ``trust=True``.
- ``file`` (any other file registered by path): never deserialised; loading returns the
  verified file's path.

Every format is checked against its SHA-256 before anything reads it. Pure of the store:
the registry hands paths in and gets objects or bytes back. skops, joblib and pickle are
imported inside the functions.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from mlnb.errors import InvalidInputError, ModelIntegrityError

FORMATS = ("skops", "pickle", "joblib", "file")
SAFE_FORMATS = ("skops", "file")
SUFFIXES = {".skops": "skops", ".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib"}
FILE_NAMES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}


def has_skops() -> bool:
    """Whether skops can be imported (the ``mlnb[models]`` extra)."""
    import importlib.util

    return importlib.util.find_spec("skops") is not None


def flavor_of(model: Any) -> str:
    """What a model is, as ``module.Class`` (``sklearn.pipeline.Pipeline``)."""
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}"


def is_sklearn(model: Any) -> bool:
    return type(model).__module__.startswith("sklearn.")


def serialise(model: Any, format: str | None) -> tuple[bytes, str, str]:
    """A model object as ``(bytes, file name, format)``. Default format: skops for a
    scikit-learn estimator when skops is installed, else pickle (loadable only with
    ``trust=True``)."""
    if format is None:
        format = "skops" if is_sklearn(model) and has_skops() else "pickle"
    if format == "skops":
        if not has_skops():
            raise InvalidInputError(
                "format 'skops' needs skops: pip install 'mlnb[models]' (or skops)"
            )
        import skops.io

        try:
            data = skops.io.dumps(model)
        except (TypeError, NotImplementedError) as exc:
            raise InvalidInputError(
                f"skops cannot save a {flavor_of(model)} ({exc}); register it with "
                "format='pickle' (loading it then needs trust=True)"
            ) from None
    elif format == "pickle":
        import pickle

        data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    elif format == "joblib":
        import joblib

        buf = io.BytesIO()
        joblib.dump(model, buf)
        data = buf.getvalue()
    else:
        raise InvalidInputError(
            f"cannot save an object as {format!r}: use one of skops, pickle, joblib"
        )
    return data, FILE_NAMES[format], format


def format_of_file(path: Path, format: str | None) -> str:
    """The format of a model file: as given, else by its suffix, else ``file``."""
    if format is not None:
        if format not in FORMATS:
            raise InvalidInputError(f"unknown model format {format!r}: use one of {FORMATS}")
        return format
    return SUFFIXES.get(path.suffix.lower(), "file")


def deserialise(path: Path, format: str, *, trust: bool, what: str) -> Any:
    """The model in a verified file. Formats that can run code on load are refused
    without ``trust`` (``ModelIntegrityError`` says why and what to do)."""
    if format == "file":
        return path
    if format == "skops":
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        if untrusted and not trust:
            raise ModelIntegrityError(
                f"{what} names types skops does not trust by default "
                f"({', '.join(untrusted[:5])}); nothing was loaded. Check them, then load "
                "with trust=True"
            )
        return skops.io.load(path, trusted=untrusted or None)
    if not trust:
        raise ModelIntegrityError(
            f"{what} is a {format} file: loading it runs whatever code it holds, so it is "
            "loaded only with trust=True, when you trust whoever registered it. "
            "Register scikit-learn models in the skops format (pip install 'mlnb[models]') "
            "to load them without trust"
        )
    if format == "pickle":
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)  # trust=True was given
    import joblib

    return joblib.load(os.fspath(path))
