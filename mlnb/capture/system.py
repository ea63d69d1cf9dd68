"""System metrics sampled while a run is active (opt-in).

A :class:`SystemSampler` owns one daemon thread that, every ``interval`` seconds, measures
the machine and hands a ``{metric key: value}`` dict to a callback (the run's
``log_metrics``). Metric keys::

    system/cpu_percent            whole machine, since the previous sample      (psutil)
    system/memory_percent         memory in use, of the total                  (psutil)
    system/memory_used_gb         memory in use (total - available), in GiB    (psutil)
    system/process_rss_gb         resident memory of this process, in GiB       (psutil)
    system/gpu{i}/utilization     percent, per GPU                         (nvidia-smi)
    system/gpu{i}/memory_used_gb  GiB, per GPU                             (nvidia-smi)

GiB are 2**30 bytes. A source that is missing is skipped: without psutil only GPU metrics
are sampled, without ``nvidia-smi`` only the others; ``nvidia-smi`` is given up after it
fails three times in a row. Nothing here raises into the user's process.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from mlnb.errors import InvalidInputError

__all__ = ["SystemSampler"]

GIB = float(1 << 30)
NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_SMI_MAX_FAILURES = 3
JOIN_TIMEOUT_S = 10.0
_NVIDIA_QUERY = [
    "--query-gpu=utilization.gpu,memory.used",
    "--format=csv,noheader,nounits",
]


class SystemSampler:
    """Calls ``log(metrics)`` every ``interval`` seconds from a daemon thread.

    ``start()`` begins sampling (the first sample comes one interval later, so that CPU
    use covers a whole interval); ``stop()`` ends it and waits for the thread. Both may be
    called more than once. If ``log`` raises, sampling stops and the exception is kept in
    :attr:`error` (it usually means the run has ended).
    """

    def __init__(self, log: Callable[[dict[str, float]], None], interval: float = 5.0) -> None:
        if not interval > 0:
            raise InvalidInputError(
                f"interval must be a positive number of seconds, got {interval!r}"
            )
        self.log = log
        self.interval = float(interval)
        self.error: BaseException | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._psutil: Any = None
        self._cpu_last = (0.0, 0.0)
        self._process: Any = None
        self._nvidia_smi: str | None = None
        self._gpu_failures = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Begin sampling in a daemon thread; does nothing if already sampling."""
        with self._lock:
            if self.running:
                return
            self._stop = threading.Event()
            self._open_sources()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name="mlnb-system-metrics", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread (at most a few seconds); idempotent."""
        with self._lock:
            self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)

    def __enter__(self) -> SystemSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sample(self) -> dict[str, float]:
        """One measurement now (what the thread logs each interval)."""
        metrics: dict[str, float] = {}
        self._sample_psutil(metrics)
        self._sample_gpus(metrics)
        return metrics

    def _open_sources(self) -> None:
        if self._psutil is None:
            try:
                import psutil  # type: ignore[import-untyped]

                self._process = psutil.Process()
                self._cpu_last = _cpu_busy_total(psutil.cpu_times())
                self._psutil = psutil
            except Exception:  # psutil missing or unusable here: sample the rest
                self._psutil = None
        self._nvidia_smi = shutil.which("nvidia-smi")
        self._gpu_failures = 0

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            metrics = self.sample()
            if not metrics or stop.is_set():
                continue
            try:
                self.log(metrics)
            except Exception as exc:  # the run is gone or the callback is broken: stop
                self.error = exc
                stop.set()
                return
            self.samples += 1

    def _sample_psutil(self, metrics: dict[str, float]) -> None:
        psutil = self._psutil
        if psutil is None:
            return
        try:
            # from our own baseline, not psutil.cpu_percent(), whose baseline is shared
            # with any other caller in the process
            busy, total = _cpu_busy_total(psutil.cpu_times())
            last_busy, last_total = self._cpu_last
            self._cpu_last = (busy, total)
            if total > last_total:
                share = (busy - last_busy) / (total - last_total)
                metrics["system/cpu_percent"] = round(min(max(share, 0.0), 1.0) * 100, 1)
            memory = psutil.virtual_memory()
            metrics["system/memory_percent"] = float(memory.percent)
            metrics["system/memory_used_gb"] = (memory.total - memory.available) / GIB
            metrics["system/process_rss_gb"] = self._process.memory_info().rss / GIB
        except Exception:  # e.g. /proc unreadable in a sandbox; keep what was measured
            pass

    def _sample_gpus(self, metrics: dict[str, float]) -> None:
        exe = self._nvidia_smi
        if exe is None:
            return
        try:
            proc = subprocess.run(
                [exe, *_NVIDIA_QUERY],
                capture_output=True,
                text=True,
                timeout=min(NVIDIA_SMI_TIMEOUT_S, max(self.interval, 1.0)),
                stdin=subprocess.DEVNULL,
                check=False,
            )
            ok = proc.returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        gpus = _parse_gpu_usage(proc.stdout) if ok else {}
        if not gpus:
            self._gpu_failures += 1
            if self._gpu_failures >= NVIDIA_SMI_MAX_FAILURES:
                self._nvidia_smi = None
            return
        self._gpu_failures = 0
        metrics.update(gpus)


def _cpu_busy_total(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs, counted as psutil.cpu_percent counts them:
    guest time is already inside user time, and idle and iowait are not busy."""
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    busy = total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)
    return busy, total


def _parse_gpu_usage(text: str) -> dict[str, float]:
    """Metrics from ``nvidia-smi --query-gpu=utilization.gpu,memory.used
    --format=csv,noheader,nounits`` (memory in MiB); ``[N/A]`` fields are skipped."""
    metrics: dict[str, float] = {}
    for i, line in enumerate(row for row in text.splitlines() if row.strip()):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 2:
            continue
        utilization, memory = (_float(f) for f in fields)
        if utilization is not None:
            metrics[f"system/gpu{i}/utilization"] = utilization
        if memory is not None:
            metrics[f"system/gpu{i}/memory_used_gb"] = memory * (1 << 20) / GIB
    return metrics


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
