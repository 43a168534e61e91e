"""What one worker process holds: its settings, Redis connection, stores (jobs, quotas, the bulk
lane, jobs' destinations), the broker's queues, storage, reads by reference and metrics.

Built once per process (:func:`worker_context`) and rebuilt after a fork: connections must
not cross processes. Models load on first use (:attr:`WorkerContext.engines`), so a worker
that only delivers webhooks never loads the colorize pipeline.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

import redis
from celery import Celery

from shared.jobs.bulk_lane import BulkLane
from shared.jobs.hint_maps import HintMaps
from shared.jobs.store import JobStore
from shared.metrics import WorkerMetrics
from shared.queue.broker_queues import broker_queues
from shared.queue.contract import settings_of, webhook_publisher
from shared.settings import Settings
from shared.storage.destinations import DestinationStore
from shared.storage.object_store import Storage
from shared.tenancy.quotas import QuotaStore
from shared.tenancy.storage_quota import StoredBytes
from shared.tenancy.stored_connections import ConnectionStore
from shared.webhooks.events import WebhookNotifier
from worker.destination_writes import ManifestWriter
from worker.reference_reader import ReferenceReader

if TYPE_CHECKING:
    from worker.engine_cache import EngineCache


class WorkerContext:
    """Connections and stores of one worker process (never shared across a fork)."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app  # publishes the tasks this worker's work leads to
        self.pid = os.getpid()
        if not settings.redis_url:
            raise ValueError("workers need settings.redis_url (REDIS_URL)")
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
        self.metrics = WorkerMetrics()
        notifier = WebhookNotifier(self.redis, settings, webhook_publisher(app))
        # Sources and destinations by reference: tenants' connections, jobs' destinations.
        self.references = ReferenceReader(ConnectionStore(self.redis, settings), settings)
        self.destinations = DestinationStore(self.redis, settings)
        self.hint_maps = HintMaps(self.redis, settings)  # archives' and sources' hints by item path
        manifests = ManifestWriter(self.destinations, self.references, JobStore(self.redis, settings))
        self.jobs = JobStore(self.redis, settings, listeners=(notifier, self.metrics, manifests))
        self.quotas = QuotaStore(self.redis, settings.quotas, self.jobs)
        self.bulk = BulkLane(self.redis, settings.result_ttl_s, namespace=settings.redis_namespace)
        self.queues = broker_queues(settings)  # what waits ahead of a bulk chunk
        self.storage = Storage(settings)
        # Counts results against the tenant's storage quota.
        self.stored = StoredBytes(self.redis, settings.quotas, namespace=settings.redis_namespace)

    @cached_property
    def engines(self) -> EngineCache:
        """The models this process has loaded."""
        from worker.engine_cache import EngineCache  # the inference libraries: only where chunks are colorized

        return EngineCache(self.settings, self.metrics)


_context: WorkerContext | None = None


def worker_context(app: Celery) -> WorkerContext:
    """This process's context, rebuilt after a fork (connections must not cross processes)."""
    global _context
    if _context is None or _context.pid != os.getpid():
        _context = WorkerContext(settings_of(app), app)
    return _context
