"""The environment a run executes in: Python, OS, hardware, GPUs, packages, and the few
environment variables that change results.

:func:`capture_environment` returns a plain, JSON-safe dict; :func:`environment_hash`
names it by content, so runs in the same environment share one stored snapshot;
:func:`summarize_environment` and :func:`diff_environments` are pure views of snapshots.

The snapshot (format 1) has these keys; parts switched off are absent::

    format           1; bumped when the layout changes
    captured_at      Unix time of the capture (not part of the hash)
    parts            the optional parts captured, sorted
    python           version, implementation, executable, prefix,
                     virtualenv ({"path", "name"} or None), conda_env (name or None)
    os               system, platform, release (kernel), machine
    hardware         cpu_model, cpu_count_logical, cpu_count_physical, cpu_count_usable
                     (CPUs this process may run on), memory_total_bytes       [part "hardware"]
    gpus             [{index, name, memory_total_mb (MiB), driver_version, source}]
                                                                    [part "gpu"]
    packages         {normalized name: version} of every installed distribution
    package_sources  {normalized name: {url, kind, editable, path, vcs, commit, revision}}
                     for distributions installed from a URL, a folder or a VCS
                     (PEP 610 ``direct_url.json``)                             [part "packages"]
    env_vars         {name: value} of the variables in ENV_VARS that are set   [part "env_vars"]

Nothing else from the process environment is read into the snapshot: variables outside
:data:`ENV_VARS` (tokens, keys, passwords) never appear in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import unquote, urlsplit

from mlnb.capture.git import redact_url
from mlnb.conventions import canonical_json
from mlnb.errors import InvalidInputError
from mlnb.records import Environment, OsInfo, PythonInfo

__all__ = [
    "ENV_VARS",
    "FORMAT",
    "PARTS",
    "VOLATILE_KEYS",
    "capture_environment",
    "diff_environments",
    "environment_hash",
    "summarize_environment",
]

FORMAT = 1

#: The optional parts of a snapshot; ``python`` and ``os`` are always captured.
#: ``hardware``: CPU model and counts, memory. ``gpu``: GPUs from ``nvidia-smi`` (or from
#: ``torch`` when it is already imported and has initialized CUDA). ``packages``: every
#: installed distribution and where direct installs came from. ``env_vars``: the allow-list
#: :data:`ENV_VARS`.
PARTS = frozenset({"hardware", "gpu", "packages", "env_vars"})

#: Keys left out of :func:`environment_hash`: they change between identical environments.
VOLATILE_KEYS = frozenset({"captured_at"})

#: The environment variables recorded (when set): the ones known to change what a
#: training run computes or how fast. This is an allow-list; no other variable is read.
ENV_VARS = (
    # Python
    "PYTHONHASHSEED",
    # thread pools of BLAS, OpenMP and friends
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "MKL_THREADING_LAYER",
    "MKL_CBWR",
    "KMP_AFFINITY",
    # which devices, and how CUDA behaves
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    # PyTorch
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_ENABLE_MPS_FALLBACK",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
    # TensorFlow and Keras
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_USE_LEGACY_KERAS",
    "KERAS_BACKEND",
    # JAX / XLA
    "JAX_ENABLE_X64",
    "JAX_PLATFORMS",
    "JAX_DEFAULT_MATMUL_PRECISION",
    "XLA_FLAGS",
    # Hugging Face tokenizers
    "TOKENIZERS_PARALLELISM",
)

NVIDIA_SMI_TIMEOUT_S = 5.0
_NVIDIA_QUERY = [
    "--query-gpu=name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
]
_NORMALIZE = re.compile(r"[-_.]+")


def capture_environment(*, parts: Collection[str] | None = None) -> Environment:
    """A snapshot of the running environment (see the module docstring for its keys).

    ``parts`` chooses the optional parts from :data:`PARTS` (default: all of them); an
    empty collection keeps only ``python`` and ``os``. A part whose source is missing
    (no ``nvidia-smi``, no ``/proc``) is captured as far as it can be; nothing here raises
    for a missing tool. An unknown part name raises :class:`InvalidInputError`.
    """
    chosen = PARTS if parts is None else frozenset(parts)
    unknown = chosen - PARTS
    if unknown:
        raise InvalidInputError(
            f"unknown environment part(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(PARTS))}"
        )
    env: Environment = {
        "format": FORMAT,
        "captured_at": time.time(),
        "parts": sorted(chosen),
        "python": _python(),
        "os": _os(),
    }
    for name, collect in _COLLECTORS.items():
        if name in chosen:
            env.update(collect())  # type: ignore[typeddict-item]  # each part's keys
    return env


def environment_hash(env: Environment) -> str:
    """The sha256 hex digest of the snapshot's canonical JSON, volatile keys left out:
    two captures of the same environment have the same hash."""
    stable = {k: v for k, v in env.items() if k not in VOLATILE_KEYS}
    return hashlib.sha256(canonical_json(stable).encode()).hexdigest()


def summarize_environment(env: Environment) -> dict[str, Any]:
    """``{"python": "3.11.7", "platform": "Linux-6.1-x86_64-with-glibc2.36",
    "packages": 132}``; a value is None when its part was not captured."""
    packages = env.get("packages")
    return {
        "python": (env.get("python") or {}).get("version"),
        "platform": (env.get("os") or {}).get("platform"),
        "packages": len(packages) if isinstance(packages, dict) else None,
    }


def diff_environments(a: Environment, b: Environment) -> dict[str, Any]:
    """What changed from snapshot ``a`` to snapshot ``b``.

    ::

        {"identical": False,
         "python": {"a": "3.10.4", "b": "3.11.7"} or None,
         "packages": {"added": {name: version}, "removed": {name: version},
                      "changed": {name: {"a": version, "b": version}}},
         "changed": {"os.release": {"a": ..., "b": ...},
                     "env_vars.OMP_NUM_THREADS": {"a": None, "b": "4"}, ...}}

    ``changed`` lists every other field that differs, by dotted path (nested dicts are
    walked; lists compare whole; a missing field is None). Volatile keys are ignored.
    """
    pa = a.get("packages") or {}
    pb = b.get("packages") or {}
    packages = {
        "added": {n: pb[n] for n in sorted(pb.keys() - pa.keys())},
        "removed": {n: pa[n] for n in sorted(pa.keys() - pb.keys())},
        "changed": {
            n: {"a": pa[n], "b": pb[n]} for n in sorted(pa.keys() & pb.keys()) if pa[n] != pb[n]
        },
    }
    va = (a.get("python") or {}).get("version")
    vb = (b.get("python") or {}).get("version")
    python = {"a": va, "b": vb} if va != vb else None

    skip = VOLATILE_KEYS | {"packages"}
    fa = _flatten({k: v for k, v in a.items() if k not in skip})
    fb = _flatten({k: v for k, v in b.items() if k not in skip})
    fa.pop("python.version", None)
    fb.pop("python.version", None)
    changed = {
        key: {"a": fa.get(key), "b": fb.get(key)}
        for key in sorted(fa.keys() | fb.keys())
        if fa.get(key) != fb.get(key)
    }
    identical = python is None and not changed and not any(packages.values())
    return {"identical": identical, "python": python, "packages": packages, "changed": changed}


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            out.update(_flatten(item, path + "."))
        else:
            out[path] = item
    return out


# --------------------------------------------------------------------- python and os


def _python() -> PythonInfo:
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "virtualenv": ({"path": sys.prefix, "name": Path(sys.prefix).name} if in_venv else None),
        "conda_env": os.environ.get("CONDA_DEFAULT_ENV") or None,
    }


def _os() -> OsInfo:
    uname = platform.uname()
    return {
        "system": uname.system,
        "platform": platform.platform(),
        "release": uname.release,
        "machine": uname.machine,
    }


# -------------------------------------------------------------------------- hardware


def _hardware() -> dict[str, Any]:
    cpuinfo = _read_text("/proc/cpuinfo")
    model = None
    physical = None
    if cpuinfo:
        model = _cpuinfo_model(cpuinfo)
        physical = _cpuinfo_cores(cpuinfo)
    if not model:
        model = platform.processor() or platform.machine() or None
    memory = _meminfo_total(_read_text("/proc/meminfo"))
    if physical is None or memory is None:
        psutil = _psutil()
        if psutil is not None:
            if physical is None:
                physical = _safely(lambda: psutil.cpu_count(logical=False))
            if memory is None:
                memory = _safely(lambda: int(psutil.virtual_memory().total))
    usable = None
    if hasattr(os, "sched_getaffinity"):
        usable = _safely(lambda: len(os.sched_getaffinity(0)))
    return {
        "hardware": {
            "cpu_model": model,
            "cpu_count_logical": os.cpu_count(),
            "cpu_count_physical": physical,
            "cpu_count_usable": usable,
            "memory_total_bytes": memory,
        }
    }


def _cpuinfo_model(text: str) -> str | None:
    """The first ``model name`` (x86), else ``Hardware`` / ``Processor`` (ARM) line."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields and value.strip():
            fields[key] = value.strip()
        if "model name" in fields:
            break
    for key in ("model name", "Hardware", "Processor", "cpu model", "cpu"):
        if key in fields:
            return fields[key]
    return None


def _cpuinfo_cores(text: str) -> int | None:
    """Physical cores: distinct (physical id, core id) pairs; None when not listed."""
    cores: set[tuple[str, str]] = set()
    package = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id" and package is not None:
            cores.add((package, value.strip()))
        elif not line.strip():
            package = None
    return len(cores) or None


def _meminfo_total(text: str | None) -> int | None:
    if not text:
        return None
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


# ------------------------------------------------------------------------------- gpu


def _gpu() -> dict[str, Any]:
    gpus = _nvidia_smi_gpus()
    if gpus is None:
        gpus = _torch_gpus()
    return {"gpus": gpus or []}


def _nvidia_smi_gpus() -> list[dict[str, Any]] | None:
    """GPUs listed by ``nvidia-smi``; None when it is not installed or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, *_NVIDIA_QUERY],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return _parse_nvidia_smi_gpus(proc.stdout)


def _parse_nvidia_smi_gpus(text: str) -> list[dict[str, Any]]:
    """Rows of ``nvidia-smi --query-gpu=name,memory.total,driver_version
    --format=csv,noheader,nounits`` as dicts."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rsplit(",", 2)]
        if len(fields) != 3:
            continue
        name, memory, driver = fields
        gpus.append(
            {
                "index": len(gpus),
                "name": name,
                "memory_total_mb": _number(memory),
                "driver_version": driver or None,
                "source": "nvidia-smi",
            }
        )
    return gpus


def _torch_gpus() -> list[dict[str, Any]] | None:
    """GPUs as seen by ``torch``, only when the user's code has already imported it and
    initialized CUDA: importing torch takes seconds, and asking an uninitialized torch
    creates a CUDA context (GPU memory, and it breaks later ``fork()``)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        if not cuda.is_initialized():
            return None
        gpus = []
        for i in range(cuda.device_count()):
            props = cuda.get_device_properties(i)
            gpus.append(
                {
                    "index": i,
                    "name": str(props.name),
                    "memory_total_mb": int(props.total_memory) // (1024 * 1024),
                    "driver_version": None,
                    "source": "torch",
                }
            )
        return gpus
    except Exception:  # torch's CUDA layer can fail in many ways; the GPU list is optional
        return None


# -------------------------------------------------------------------------- packages


def _packages() -> dict[str, Any]:
    from importlib.metadata import distributions

    packages: dict[str, str] = {}
    sources: dict[str, dict[str, Any]] = {}
    for dist in distributions():  # in sys.path order: the first one found is the one used
        try:
            name, version, direct_url = _dist_facts(dist)
        except (OSError, UnicodeDecodeError):
            continue
        if not name:
            continue
        key = _NORMALIZE.sub("-", name).lower()
        if key in packages:
            continue
        packages[key] = version or ""
        if direct_url:
            source = _source(direct_url)
            if source is not None:
                sources[key] = source
    return {
        "packages": dict(sorted(packages.items())),
        "package_sources": dict(sorted(sources.items())),
    }


def _dist_facts(dist: Any) -> tuple[str | None, str | None, str | None]:
    """Name, Version and ``direct_url.json`` text of a distribution.

    Parsing the whole METADATA with ``dist.metadata`` (an email parser) costs over 1 ms per
    distribution; here only the header lines up to Name and Version are read. The common
    case, a ``*.dist-info`` / ``*.egg-info`` folder, is read directly; anything else goes
    through the public ``read_text``.
    """
    where = getattr(dist, "_path", None)
    if isinstance(where, PurePath):
        folder = os.fspath(where)
        for filename in ("METADATA", "PKG-INFO"):
            try:
                with open(os.path.join(folder, filename), encoding="utf-8", errors="replace") as fh:
                    name, version = _headers(fh)
            except (FileNotFoundError, NotADirectoryError):
                continue
            return name, version, _read_text(os.path.join(folder, "direct_url.json"))
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("") or ""
    name, version = _headers(text.splitlines())
    return name, version, dist.read_text("direct_url.json")


def _headers(lines: Iterable[str]) -> tuple[str | None, str | None]:
    name = version = None
    for line in lines:
        if not line.strip():
            break  # end of the headers; the long description follows
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name is not None and version is not None:
            break
    return name, version


def _source(text: str) -> dict[str, Any] | None:
    """Where a distribution came from, from its PEP 610 ``direct_url.json``."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    url = redact_url(data["url"])
    source: dict[str, Any] = {"url": url, "kind": "archive", "editable": False}
    if isinstance(data.get("dir_info"), dict):
        source["editable"] = bool(data["dir_info"].get("editable", False))
        source["kind"] = "editable" if source["editable"] else "directory"
    vcs = data.get("vcs_info")
    if isinstance(vcs, dict):
        source["kind"] = "vcs"
        source["vcs"] = vcs.get("vcs")
        source["commit"] = vcs.get("commit_id")
        if vcs.get("requested_revision"):
            source["revision"] = vcs["requested_revision"]
    if url.startswith("file:"):
        path = unquote(urlsplit(url).path)
        if re.match(r"^/[A-Za-z]:", path):  # file:///C:/x on Windows
            path = path[1:]
        source["path"] = path
    return source


# -------------------------------------------------------------------------- env vars


def _env_vars() -> dict[str, Any]:
    return {"env_vars": {name: os.environ[name] for name in ENV_VARS if name in os.environ}}


_COLLECTORS: dict[str, Callable[[], dict[str, Any]]] = {
    "hardware": _hardware,
    "gpu": _gpu,
    "packages": _packages,
    "env_vars": _env_vars,
}


# ---------------------------------------------------------------------------- helpers


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return psutil


def _safely(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # an optional fact; a broken psutil or syscall leaves it None
        return None


def _number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value
