"""Prometheus metrics of the API and the workers (``prometheus_client``).

API (``GET /metrics``)::

    colorize_http_requests_total{method, route, status}       requests answered
    colorize_http_request_duration_seconds{method, route}     time to the response (histogram)
    colorize_jobs_created_total{source_kind}                   jobs accepted (image | zip | tar | tar.gz | reference)
    colorize_queue_depth{queue}                                messages waiting in a Celery queue,
                                                               read from the broker at scrape time

Workers (``COLORIZE_WORKER_METRICS_PORT``, served by the main process)::

    colorize_items_processed_total                             items done
    colorize_items_failed_total{code}                          items failed, by error code
    colorize_stage_duration_seconds{stage}                     queue_wait | expansion | storage_get |
                                                               decode | inference | encode |
                                                               storage_put | redis (histogram)
    colorize_model_load_duration_seconds{model, device}        model loads (histogram)
    colorize_webhook_deliveries_total{event, outcome}          attempts: delivered | failed | refused
    colorize_webhook_delivery_duration_seconds{event}          one attempt (histogram)

Prefork pool processes (and gunicorn workers) each count on their own; with a
``PROMETHEUS_MULTIPROC_DIR`` (``settings.metrics_dir``) they write to files there and the
exporter adds them up (prometheus_client's multiprocess mode). Metrics are created per
process and registered with a registry of their own, never the library's global one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis

from shared.jobs.listeners import JobListener
from shared.jobs.records import ItemResult, ItemStatus, Job
from shared.settings import Settings

# prometheus_client reads this variable itself, in every process that records metrics.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Per chunk item: decode (zip members unpacked too), inference, encode, storage_get (a batch's
# reads), storage_put (one result), redis (job store and lane calls of chunks); per task:
# queue_wait (from enqueue to start); per job: expansion (one pass over the archive).
# Other stages may be recorded by the image code (e.g. lab, join).
STAGES = ("queue_wait", "expansion", "storage_get", "decode", "inference", "encode", "storage_put", "redis")
# kombu's Redis transport keeps a queue's priority levels in lists named queue + SEP + level.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_LEVELS = (3, 6, 9)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


# --- multiprocess mode --------------------------------------------------------------------


def enable_multiprocess(directory: Path, clean: bool) -> None:
    """Record this process's metrics (and its children's) in ``directory``.

    Must run before the process creates its first metric. ``clean``: remove what an earlier
    run left there (only the process that owns the directory, at its start, may do so).
    """
    if clean and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    # The library picks its value store when first imported; pick again now that it is set.
    values.ValueClass = values.get_value_class()


def multiprocess_enabled() -> bool:
    return getattr(values.ValueClass, "_multiprocess", False)


def exposition_registry(
    settings: Settings, collectors: Iterable[Collector] = (), own: CollectorRegistry | None = None
) -> CollectorRegistry:
    """The registry a scrape reads: every process's files in multiprocess mode, else ``own``."""
    if settings.metrics_dir is not None and multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(settings.metrics_dir))
    else:
        registry = own or CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


# --- API ----------------------------------------------------------------------------------


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "colorize_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.request_seconds = Histogram(
            "colorize_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs_created = Counter("colorize_jobs_created", "Jobs accepted.", ["source_kind"], registry=registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)


def priority_list(queue: str, level: int, key_prefix: str = "") -> str:
    """The broker list holding a queue's messages of one priority level (0: the queue's name);
    ``key_prefix``: the broker's (``Settings.redis_key_prefix``)."""
    return f"{key_prefix}{queue}{_PRIORITY_SEP}{level}" if level else f"{key_prefix}{queue}"


def queue_depth(redis: Redis, queue: str, key_prefix: str = "") -> int:
    """Messages waiting in a Celery queue on the Redis broker, every priority level included."""
    pipe = redis.pipeline(transaction=False)
    for level in (0, *_PRIORITY_LEVELS):
        pipe.llen(priority_list(queue, level, key_prefix))
    return sum(pipe.execute())


class QueueDepthCollector(Collector):
    """``colorize_queue_depth``, read from the broker at each scrape: ``depth(queue)`` counts the
    messages waiting in one (``shared.queue.broker_queues``, on either broker)."""

    def __init__(self, depth: Callable[[str], int], queues: Iterable[str]) -> None:
        self.depth = depth
        self.queues = tuple(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("colorize_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"])
        for queue in self.queues:
            gauge.add_metric([queue], self.depth(queue))
        yield gauge

    def describe(self) -> list[GaugeMetricFamily]:
        # Without this the registry would collect (and so reach the broker) when registering it.
        return [GaugeMetricFamily("colorize_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"])]


# --- workers ------------------------------------------------------------------------------


class WorkerMetrics(JobListener):
    """The metrics one worker process records; counts items as the job store reports them (once each)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.items_processed = Counter("colorize_items_processed", "Items colorized and stored.", registry=registry)
        self.items_failed = Counter(
            "colorize_items_failed", "Items failed, by error code.", ["code"], registry=registry
        )
        self.stage_seconds = Histogram(
            "colorize_stage_duration_seconds",
            "Time spent per processing stage.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.model_load_seconds = Histogram(
            "colorize_model_load_duration_seconds",
            "Time to load a model.",
            ["model", "device"],
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "colorize_webhook_deliveries", "Webhook delivery attempts.", ["event", "outcome"], registry=registry
        )
        self.webhook_seconds = Histogram(
            "colorize_webhook_delivery_duration_seconds",
            "Time of one webhook delivery attempt.",
            ["event"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as one run of a processing stage (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(name).observe(time.perf_counter() - started)

    def observe_stage(self, name: str, seconds: float) -> None:
        """One run of a stage timed elsewhere (a wait that began in another process)."""
        self.stage_seconds.labels(name).observe(max(0.0, seconds))

    def job_started(self, job: Job) -> None:
        pass

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        for result in results:
            if result.status == ItemStatus.DONE:
                self.items_processed.inc()
            else:
                self.items_failed.labels(result.error.code if result.error is not None else "unknown").inc()

    def job_finished(self, job: Job) -> None:
        pass

    def item_registered_failed(self, error_code: str) -> None:
        """An item that failed as the archive was read (never reaches a chunk)."""
        self.items_failed.labels(error_code).inc()


def prepare_worker_metrics(settings: Settings) -> Path | None:
    """In a worker's main process, before the pool starts: the multiprocess directory its
    processes share (None when worker metrics are off)."""
    if not settings.worker_metrics_port:
        return None
    directory = settings.metrics_dir or Path(tempfile.mkdtemp(prefix="colorize-metrics-"))
    enable_multiprocess(directory, clean=True)
    return directory


def serve_worker_metrics(settings: Settings, directory: Path) -> None:
    """Serve every pool process's metrics over HTTP from the worker's main process."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    start_http_server(settings.worker_metrics_port, registry=registry)
