"""Request metrics for Prometheus, labelled by route template, never by the raw path.

BentoML's own HTTP metrics label every request by its raw path before any route or key is
checked, so each distinct URL a client invents keeps a labelled series in the worker for good
(about 26 KB a path). The service turns them off (:mod:`serving.runtime`) and counts here
instead: the label is one of the service's routes, or ``other`` for every path it does not
serve, so the number of series is fixed however many paths clients try.

Under ``bentoml serve`` each worker writes its values to BentoML's multiprocess directory
(``PROMETHEUS_MULTIPROC_DIR``) and ``/metrics`` adds up every worker's, the way
``prometheus_client`` documents for multi-process servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

OTHER_ROUTE = "other"
NAMESPACE = "crm_intel"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """Counts and times requests by (route, method, status class)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, routes: Iterable[str]):
        self.routes = frozenset(routes)
        # prometheus_client chooses where values live once, when it is imported: files in
        # PROMETHEUS_MULTIPROC_DIR if that was set then (under ``bentoml serve``), else memory
        self.multiprocess = values.ValueClass is not values.MutexValue and bool(
            os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        )
        self.registry = CollectorRegistry()
        if self.multiprocess:
            # values live in the directory's files; this registry only reads them all back
            multiprocess.MultiProcessCollector(self.registry)
        own = None if self.multiprocess else self.registry
        self.requests = Counter(
            "requests",
            "HTTP requests answered, by route template, method and status class",
            ("route", "method", "status"),
            namespace=NAMESPACE,
            registry=own,
        )
        self.duration = Histogram(
            "request_duration_seconds",
            "Time from the request's arrival to its last response byte, by route template",
            ("route",),
            namespace=NAMESPACE,
            buckets=BUCKETS,
            registry=own,
        )

    def route_label(self, path: str) -> str:
        """``path`` when it is one of the service's routes, else ``other``."""
        return path if path in self.routes else OTHER_ROUTE

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        """One answered request (``status`` 0: none was sent, the client went away)."""
        route = self.route_label(path)
        method = method if method in ("GET", "POST", "HEAD") else "other"
        self.requests.labels(route, method, f"{status // 100}xx").inc()
        self.duration.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        """The text format ``/metrics`` answers with."""
        return generate_latest(self.registry)


_PROCESS_METRICS: dict[frozenset[str], RequestMetrics] = {}


def process_metrics(routes: Iterable[str]) -> RequestMetrics:
    """The process's one :class:`RequestMetrics` for ``routes``: every layer that counts
    requests in a server process shares it (two objects would each keep their own copy of the
    same series)."""
    key = frozenset(routes)
    if key not in _PROCESS_METRICS:
        _PROCESS_METRICS[key] = RequestMetrics(key)
    return _PROCESS_METRICS[key]
