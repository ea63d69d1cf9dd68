"""Jobs the lab panel starts: ``mlnb run NOTEBOOK`` as a child process of the server, one per
job, tracked by its process; its progress comes from the file the job's engine keeps
(``$MLNB_JOB_PROGRESS``, see ``mlnb.jobs.engine.Progress``): the run id once the run row
exists, then the code cells done, their number and the cell running.

Jobs live as long as the server: a restarted server forgets them (their runs stay in the
store). Nothing here touches the store; the handlers read runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlnb.conventions import ENV_JOB_PROGRESS, ENV_STORE, EXIT_OK
from mlnb.errors import InvalidInputError

MAX_JOBS_KEPT = 200  # finished jobs beyond this many are forgotten, oldest first
ERROR_TAIL = 4_000  # characters of a failed job's output kept as its error


@dataclass
class Job:
    """One ``mlnb run`` started by the server."""

    job_id: str
    path: str  # as the client gave it: relative to the server's root
    process: subprocess.Popen[bytes]
    folder: Path  # the job's progress file and output log
    started: float = field(default_factory=time.time)
    final: dict[str, Any] | None = None  # the report once the process ended (folder removed)

    @property
    def progress_file(self) -> Path:
        return self.folder / "progress.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "output.log"


class JobManager:
    """Starts ``mlnb run`` processes writing to the server's store and reports on them."""

    def __init__(self, *, store_dir: Path) -> None:
        self.store_dir = store_dir
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(
        self,
        notebook: Path,
        *,
        shown_path: str,
        parameters: dict[str, Any],
        experiment: str | None,
    ) -> Job:
        """Run ``notebook`` (an absolute path the caller has checked) with ``parameters``
        as a new run, in ``experiment`` if given; returns at once."""
        import yaml

        if not isinstance(parameters, dict) or not all(isinstance(k, str) for k in parameters):
            raise InvalidInputError("parameters must be an object of names to values")
        if experiment is not None and not isinstance(experiment, str):
            raise InvalidInputError("experiment must be a string or null")
        job_id = uuid.uuid4().hex
        folder = Path(tempfile.mkdtemp(prefix=f"mlnb-server-job-{job_id[:8]}-"))
        # YAML keeps each value's type exactly (JSON-ish values; a string stays a string)
        args = [sys.executable, "-m", "mlnb", "run", str(notebook)]
        if parameters:
            args += ["--parameters-yaml", yaml.safe_dump(parameters)]
        if experiment:
            args += ["--experiment", experiment]
        env = {
            **os.environ,
            ENV_STORE: str(self.store_dir),
            ENV_JOB_PROGRESS: str(folder / "progress.json"),
        }
        with open(folder / "output.log", "wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=notebook.parent,
                env=env,
                start_new_session=True,  # a Ctrl-C of the server does not kill the job
            )
        job = Job(job_id, shown_path, process, folder)
        with self._lock:
            self._jobs[job_id] = job
            self._forget_old()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def status(self, job: Job) -> dict[str, Any]:
        """The job as ``GET jobs/{id}`` reports it (see docs/jupyterlab.md). Once the
        process has ended, the report is kept and the job's folder removed."""
        if job.final is not None:
            return dict(job.final)
        code = job.process.poll()
        progress = _read_json(job.progress_file)
        run_id = progress.get("run_id")
        if code is None:
            status = "running" if run_id else "starting"
        else:
            status = "finished" if code == EXIT_OK else "failed"
        error = None
        if status == "failed":
            error = _tail(job.log_file) or f"mlnb run exited with code {code}"
        report = {
            "job_id": job.job_id,
            "path": job.path,
            "status": status,
            "exit_code": code,
            "run_id": run_id,
            "cells_done": int(progress.get("cells_done") or 0),
            "cells_total": int(progress.get("cells_total") or 0),
            "current_cell": progress.get("current_cell"),
            "error": error,
            "output_path": None,
        }
        if code is not None:
            job.final = dict(report)
            shutil.rmtree(job.folder, ignore_errors=True)
        return report

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.process.poll() is not None]
        for job in sorted(done, key=lambda j: j.started)[: max(0, len(self._jobs) - MAX_JOBS_KEPT)]:
            del self._jobs[job.job_id]
            shutil.rmtree(job.folder, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(path: Path) -> str:
    try:
        text = path.read_bytes()[-ERROR_TAIL:].decode("utf-8", "replace")
    except OSError:
        return ""
    return text.strip()
