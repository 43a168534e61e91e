"""The API's own measurements: every request timed and counted, jobs counted as they are created.

Installed first on the app (``api/app.py``), so that requests refused by later checks are
measured too; ``GET /metrics`` (``api/routes/metrics_routes.py``) serves what
:func:`metrics_registry` collects.
"""

from __future__ import annotations

import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry

from shared.metrics import ApiMetrics, QueueDepthCollector, enable_multiprocess, exposition_registry
from shared.queue.broker_queues import broker_queues
from shared.queue.contract import QUEUE, WEBHOOK_QUEUE
from shared.settings import Settings

METRICS_KEY = "colorize.metrics"
REGISTRY_KEY = "colorize.metrics_registry"
# Requests that matched no route share one label, so unknown paths cannot grow the series;
# methods outside this set share one too, so any token a client sends as its method cannot either.
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def install_metrics(app: Flask, settings: Settings) -> None:
    """Measure every request of ``app``, and gather the figures that ``/metrics`` exposes."""
    if settings.metrics_dir is not None:
        enable_multiprocess(settings.metrics_dir, clean=False)  # the deployment empties it at start
    own = CollectorRegistry()
    app.extensions[METRICS_KEY] = ApiMetrics(own)
    queues = QueueDepthCollector(broker_queues(settings).waiting, (QUEUE, WEBHOOK_QUEUE))
    app.extensions[REGISTRY_KEY] = exposition_registry(settings, [queues], own)
    app.before_request(_start_timer)
    app.after_request(_observe)


def api_metrics() -> ApiMetrics:
    """The current app's measurements."""
    metrics: ApiMetrics = current_app.extensions[METRICS_KEY]
    return metrics


def metrics_registry() -> CollectorRegistry:
    """What a scrape of the current app reads: the queues' depths, and its own measurements (every
    process's, where metrics are multiprocess)."""
    registry: CollectorRegistry = current_app.extensions[REGISTRY_KEY]
    return registry


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in KNOWN_METHODS else OTHER_METHOD
        api_metrics().observe_request(method, route, response.status_code, time.perf_counter() - started)
    return response
