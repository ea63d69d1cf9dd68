"""``/metrics`` of ``mlnb serve``: Prometheus text from prometheus-client (in the
``mlnb[serve]`` extra). Without it the service runs and ``/metrics`` says what to install.

Metrics are per process (``--workers K`` gives K registries; the scrape sees the worker
that answered it): requests by route and status, a latency histogram, the served version,
swaps and failed loads, and the prediction log's written and dropped counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's counters (no-ops when prometheus-client is not installed)."""

    def __init__(self, gauges: Callable[[], dict[str, float]]) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            self.available = False
            return
        self.available = True
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "mlnb_serve_requests", "Requests answered, by route and HTTP status",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = prom.Histogram(
            "mlnb_serve_request_duration_seconds", "Time to answer a request, by route",
            ["route"], buckets=BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._gauges = gauges
        self.state = prom.Gauge("mlnb_serve_state", "The served model's state",
                                ["what"], registry=self.registry)  # fmt: skip
        self._children: dict[tuple[str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        if not self.available:
            return
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, str(status))
        child.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = self.latency.labels(route)
        timer.observe(seconds)

    def render(self) -> bytes:
        for what, value in self._gauges().items():
            self.state.labels(what).set(value)
        data: bytes = self._prom.generate_latest(self.registry)
        return data
