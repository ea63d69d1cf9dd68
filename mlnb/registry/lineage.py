"""Where a model version came from, as one join: version → run → notebook (path, hash,
linearity verdict) → params → input data (fingerprints, schema) → environment → git
commit. ``mlnb model lineage churn@champion`` prints it; ``--format json`` gives
:meth:`Lineage.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlnb.conventions import NOTEBOOK_HASH_TAG
from mlnb.errors import RunNotFoundError
from mlnb.records import ModelVersion, RunRecord, iso
from mlnb.registry.models import _store, parse_model_uri, resolve_version, when

if TYPE_CHECKING:
    from mlnb.tracking.active import StoreLike

__all__ = ["Lineage", "model_lineage"]


@dataclass(frozen=True)
class Lineage:
    """A model version and the run that produced it (None when the run was purged)."""

    uri: str
    version: ModelVersion
    run: RunRecord | None

    def to_dict(self) -> dict[str, Any]:
        v, run = self.version, self.run
        out: dict[str, Any] = {
            "uri": self.uri,
            "model": {
                "name": v.name, "version": v.version, "aliases": list(v.aliases),
                "format": v.format, "flavor": v.flavor, "artifact": v.artifact_path,
                "hash": v.artifact_hash, "size": v.size, "signature": v.signature,
                "registered_at": iso(v.created_at), "registered_by": v.user,
            },
            "run": None,
        }  # fmt: skip
        if run is None:
            return out
        env = run.environment or {}
        git = run.git
        out["run"] = {
            "run_id": run.run_id, "name": run.name, "experiment": run.experiment,
            "status": run.status, "started": iso(run.start_time), "user": run.user,
            "host": run.host,
        }  # fmt: skip
        out["notebook"] = {
            "path": run.notebook or run.source,
            "hash": run.tags.get(NOTEBOOK_HASH_TAG),
            "linearity": run.linearity,
        }
        out["params"] = run.params
        out["data"] = [
            {"name": d.name, "role": d.role, "hash": d.hash, "kind": d.kind, "rows": d.rows,
             "columns": d.columns, "schema": d.schema}
            for d in run.datasets
        ]  # fmt: skip
        out["environment"] = {
            "hash": run.environment_hash,
            "python": env.get("python", {}).get("version"),
            "platform": env.get("os", {}).get("platform"),
            "packages": len(env.get("packages", {})),
        }
        out["git"] = (
            None
            if git is None
            else {"commit": git["commit"], "branch": git["branch"], "dirty": git["dirty"],
                  "remote": git["remote"]}
        )  # fmt: skip
        return out

    def __str__(self) -> str:
        d = self.to_dict()
        m = d["model"]
        tags = f"  @{' @'.join(m['aliases'])}" if m["aliases"] else ""
        lines = [
            f"model     {m['name']}/{m['version']}{tags}  ({m['format']}"
            + (f", {m['flavor']}" if m["flavor"] else "")
            + ")",
            f"  file    {m['artifact']}  sha256 {m['hash'][:12]}…  {m['size']:,} bytes",
            f"  by      {m['registered_by'] or '?'} at {m['registered_at']}",
        ]
        sig = m["signature"] or {}
        if sig.get("inputs"):
            cols = ", ".join(f"{c['name']}:{c['dtype']}" for c in sig["inputs"][:12])
            more = f" (+{len(sig['inputs']) - 12})" if len(sig["inputs"]) > 12 else ""
            lines.append(f"  inputs  {cols}{more}")
        if sig.get("outputs"):
            out = sig["outputs"]
            classes = out.get("classes")
            lines.append(f"  output  {out['kind']}" + (f" {classes}" if classes else ""))
        run = d["run"]
        if run is None:
            lines.append(f"run       {self.version.run_id} (no longer in the store)")
            return "\n".join(lines)
        lines.append(f"run       {run['name']} ({run['run_id'][:8]}) in {run['experiment']}, "
                     f"{run['status']}, started {run['started']}")  # fmt: skip
        nb = d["notebook"]
        if nb["path"]:
            parts = [nb["path"]]
            if nb["hash"]:
                parts.append(f"hash {nb['hash'][:12]}")
            if nb["linearity"]:
                parts.append(f"linearity {nb['linearity']}")
            lines.append("notebook  " + ", ".join(parts))
        if d["params"]:
            shown = ", ".join(f"{k}={v}" for k, v in list(d["params"].items())[:12])
            lines.append(f"params    {shown}")
        for data in d["data"]:
            shape = "" if data["rows"] is None else f", {data['rows']:,} rows"
            lines.append(f"data      {data['name']} ({data['role']}): {data['kind']} "
                         f"{data['hash'].rpartition(':')[2][:12]}{shape}")  # fmt: skip
            if data["schema"]:
                cols = ", ".join(f"{c['name']}:{c['dtype']}" for c in data["schema"][:12])
                lines.append(f"            schema {cols}")
        env = d["environment"]
        if env["hash"]:
            lines.append(f"env       python {env['python']} on {env['platform']}, "
                         f"{env['packages']} packages, {env['hash'][:12]}")  # fmt: skip
        git = d["git"]
        if git is not None:
            dirty = " (dirty)" if git["dirty"] else ""
            lines.append(f"git       {(git['commit'] or '?')[:12]} on {git['branch']}{dirty}")
        return "\n".join(lines)


def model_lineage(uri: str, *, at: Any = None, store: StoreLike | None = None) -> Lineage:
    """Where the version ``uri`` names came from (``mlnb.model_lineage("churn@champion")``):
    its run, notebook, params, input data, environment and git commit."""
    st = _store(store)
    ref = parse_model_uri(uri)
    version = resolve_version(st, ref, at=when(at))
    run = None
    if version.run_id is not None:
        try:
            run = st.get_run(version.run_id)
        except RunNotFoundError:
            run = None
    return Lineage(str(ref), version, run)
