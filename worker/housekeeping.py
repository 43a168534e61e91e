"""Housekeeping in every worker's main process: its heartbeat (for ``/readyz``), the rescue of
stalled jobs (workers that colorize) and the purge of expired jobs' and uploads' objects.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from celery.utils.log import get_task_logger

from shared.errors import ColorizeError
from shared.jobs.bulk_lane import BulkLane
from shared.jobs.listing import JobListing
from shared.jobs.store import JobStore
from shared.jobs.upkeep import HEARTBEAT_INTERVAL_S, WORKER_STALE_AFTER_S, PurgeIndex, StallWatch, WorkerHeartbeats
from shared.queue.broker_queues import BrokerQueues, broker_queues
from shared.queue.celery_config import colorizes
from shared.queue.contract import QUEUE, enqueue_expansion, settings_of
from shared.settings import Settings
from shared.storage.object_keys import job_prefix, upload_key
from shared.storage.object_store import Storage
from shared.tenancy.storage_quota import StoredBytes
from worker.scheduling import Lane, enqueue_chunks, lane_for

if TYPE_CHECKING:
    from celery.worker.consumer import Consumer

log = get_task_logger(__name__)

PURGE_INTERVAL_S = 60


def purge_due(purges: PurgeIndex, storage: Storage, stored: StoredBytes, listing: JobListing) -> int:
    """Delete the stored objects of expired (or deleted) jobs and of expired uploads, take the
    jobs out of their tenants' listings, and release what their tenants' storage quota counted
    for them; returns how many owners were purged."""
    purged = 0
    while targets := purges.lease_due():
        for target in targets:
            if target.kind == "job":
                storage.delete_prefix(job_prefix(target.tenant, target.id))
                listing.remove(target.tenant, target.id)
            else:
                key = upload_key(target.tenant, target.id)
                if target.multipart_id:
                    try:
                        storage.abort_multipart(key, target.multipart_id)
                    except ColorizeError:
                        pass  # already completed or aborted
                storage.delete_prefix(key)
            stored.release(target.tenant, f"{target.kind}:{target.id}")
            purges.forget(target)
            purged += 1
    return purged


def rescue_stalled(
    jobs: JobStore, stalls: StallWatch, bulk: BulkLane, queues: BrokerQueues, app: Celery, settings: Settings
) -> list[str]:
    """Enqueue again the outstanding work of jobs that have stopped moving while no task waits in
    the queue, in the job's lane (a bulk job's waiting chunks are replaced); returns their ids.

    Celery's Redis transport pops a message, then records it as unacknowledged in a second
    command: a broker crash (or a worker killed) between the two loses the message, and no
    visibility timeout brings it back. RabbitMQ keeps what it confirmed, but a message can still
    be lost with a broker's disk, or purged by an operator; the rescue covers both brokers. Running a chunk twice is harmless (items finish once, and
    their results are overwritten with the same bytes), so the rescue errs on the side of
    enqueueing.
    """
    if queues.waiting(QUEUE) > 0:
        return []  # a job waiting behind others has not stalled
    rescued = []
    for job_id in stalls.lease_stalled():
        job = jobs.find(job_id)
        if job is None or job.is_terminal:
            stalls.forget(job_id)
            continue
        if not job.expanded:
            enqueue_expansion(app, job_id)  # resumes after what it registered
        else:
            todo = jobs.unfinished(job_id, range(job.total))
            chunks = [todo[start : start + settings.chunk_size] for start in range(0, len(todo), settings.chunk_size)]
            lane = lane_for(job, settings)
            if lane == Lane.BULK:
                bulk.forget(job.tenant, job_id)  # chunks left without a turn; the new ones cover them
            enqueue_chunks(app, bulk, job, chunks, lane)
        log.warning(
            "job %s has not moved for %d s with nothing queued: its work is enqueued again",
            job_id,
            settings.stall_after_s,
        )
        rescued.append(job_id)
    return rescued


class Housekeeper(threading.Thread):
    """The housekeeping loop of one worker, in a thread of its main process."""

    def __init__(self, app: Celery, settings: Settings, colorizes: bool = True) -> None:
        super().__init__(name="colorize-housekeeper", daemon=True)
        self.app = app
        self.settings = settings
        self.colorizes = colorizes
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()

    def run(self) -> None:
        if not self.settings.redis_url:
            raise ValueError("workers need settings.redis_url (REDIS_URL)")
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        jobs = JobStore(client, self.settings)
        namespace = self.settings.redis_namespace
        stalls = StallWatch(client, self.settings.stall_after_s, namespace=namespace)
        heartbeats = WorkerHeartbeats(client, namespace=namespace)
        purges = PurgeIndex(client, namespace=namespace)
        bulk = BulkLane(client, self.settings.result_ttl_s, namespace=namespace)
        queues = broker_queues(self.settings)
        storage = Storage(self.settings)
        stored = StoredBytes(client, self.settings.quotas, namespace=namespace)
        listing = JobListing(client, jobs, namespace=namespace)
        last_purge = 0.0
        while not self.stopping.is_set():
            try:
                if self.colorizes:
                    heartbeats.record(self.worker_name, WORKER_STALE_AFTER_S)
                    rescue_stalled(jobs, stalls, bulk, queues, self.app, self.settings)
                if time.monotonic() - last_purge > PURGE_INTERVAL_S:
                    last_purge = time.monotonic()
                    purged = purge_due(purges, storage, stored, listing)
                    if purged:
                        log.info("purged %d expired jobs and uploads", purged)
            except Exception:
                log.exception("housekeeping failed; retrying")
            self.stopping.wait(HEARTBEAT_INTERVAL_S)
        try:
            heartbeats.forget(self.worker_name)
        except redis.RedisError:
            pass


_housekeeper: Housekeeper | None = None


@worker_ready.connect
def _start_housekeeping(sender: Consumer, **_kwargs: Any) -> None:
    global _housekeeper
    # Readiness counts workers that colorize; one serving only webhooks does not.
    _housekeeper = Housekeeper(sender.app, settings_of(sender.app), colorizes=colorizes(sender.app))
    _housekeeper.start()


@worker_shutdown.connect
def _stop_housekeeping(**_kwargs: Any) -> None:
    if _housekeeper is not None:
        _housekeeper.stopping.set()
        _housekeeper.join(timeout=5)
