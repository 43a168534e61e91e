"""The connections one API process shares across requests, kept on the Flask app."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from shared.jobs.hint_maps import HintMaps
from shared.jobs.listing import JobListing
from shared.jobs.store import JobStore
from shared.jobs.upkeep import WorkerHeartbeats
from shared.jobs.uploads import UploadStore
from shared.queue.celery_config import make_celery
from shared.queue.contract import webhook_publisher
from shared.settings import Settings
from shared.storage.destinations import DestinationStore
from shared.storage.object_store import Storage
from shared.tenancy.api_keys import KeyStore
from shared.tenancy.quotas import QuotaStore
from shared.tenancy.storage_quota import StoredBytes
from shared.tenancy.stored_connections import ConnectionStore
from shared.webhooks.events import WebhookNotifier

EXTENSION_KEY = "colorize"


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    listing: JobListing
    uploads: UploadStore
    heartbeats: WorkerHeartbeats
    storage: Storage
    celery: Celery
    keys: KeyStore
    quotas: QuotaStore
    stored: StoredBytes
    connections: ConnectionStore
    destinations: DestinationStore
    hint_maps: HintMaps

    def url(self, path: str) -> str:
        """``path`` as clients should use it: absolute when a public base URL is configured."""
        base = self.settings.public_url
        return base.rstrip("/") + path if base else path

    @classmethod
    def connect(cls, settings: Settings) -> Services:
        if not settings.redis_url:
            raise ValueError("the API needs settings.redis_url (REDIS_URL)")
        client = redis.Redis(connection_pool=connection_pool(settings, settings.redis_url))
        celery = make_celery(settings)
        # A canceled job's completed event is published by the API, every other event by workers.
        notifier = WebhookNotifier(client, settings, webhook_publisher(celery))
        jobs = JobStore(client, settings, listeners=(notifier,))
        return cls(
            settings=settings,
            redis=client,
            jobs=jobs,
            listing=JobListing(client, jobs, namespace=settings.redis_namespace),
            uploads=UploadStore(client, settings),
            heartbeats=WorkerHeartbeats(client, namespace=settings.redis_namespace),
            storage=Storage(settings),
            celery=celery,
            keys=KeyStore(client, namespace=settings.redis_namespace),
            quotas=QuotaStore(client, settings.quotas, jobs),
            stored=StoredBytes(client, settings.quotas, namespace=settings.redis_namespace),
            connections=ConnectionStore(client, settings),
            destinations=DestinationStore(client, settings),
            hint_maps=HintMaps(client, settings),
        )


def connection_pool(settings: Settings, url: str) -> redis.BlockingConnectionPool:
    """Redis connections for the requests of one API process. A request beyond
    ``api_redis_connections`` commands in flight waits for a connection (``api_redis_wait_s`` at
    most) instead of failing at once, as redis-py's default pool does; the wait yields under gevent."""
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.api_redis_connections,
        timeout=settings.api_redis_wait_s,
        socket_timeout=10,
        socket_connect_timeout=5,
    )


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    svc: Services = current_app.extensions[EXTENSION_KEY]
    return svc
