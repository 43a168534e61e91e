"""Expanding a job: one pass over its source archive, storing each entry as an item and
enqueueing chunks of them as it goes.

A pass may run again (a redelivered message, a rescued job): items registered by an earlier
pass keep their index and name, and only those still unfinished are enqueued again. One
expander at a time holds a job's :class:`ExpansionLease`.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import redis
from redis.lock import Lock

from shared.archives import OutputNames
from shared.errors import ArchiveLimitExceeded, ColorizeError, CorruptArchive, ItemError, NotFound, QuotaExceeded
from shared.jobs import Job, JobStatus, NewItem
from shared.object_keys import item_input_key
from worker.archive_entries import ArchiveEntry, iter_entries
from worker.celery_app import enqueue_chunk
from worker.context import WorkerContext

# How long an expander's claim on a job lasts without renewal. Short, so that a crashed
# expander holds its job up for seconds: the message redelivered at once when its process
# died waits this long before it may take over.
EXPAND_LEASE_S = 10
# Parallel storage writes of item inputs.
IO_THREADS = 4


class LeaseLost(Exception):
    """Another expander took the job over while this one was stalled past its lease."""


class ExpansionLease:
    """A claim on expanding one job, renewed as the expansion progresses: an expander that
    stops moving (crashed, or stuck) loses it within ``EXPAND_LEASE_S``. A redis-py ``Lock``:
    renewal and release check the holder's token."""

    def __init__(self, client: redis.Redis, key: str, lease_s: float = EXPAND_LEASE_S) -> None:
        self.lease_s = lease_s
        self._lock = Lock(client, key, timeout=lease_s, blocking=False, thread_local=False)
        self._renewed_at = 0.0

    def acquire(self) -> bool:
        if self._lock.acquire(blocking=False):
            self._renewed_at = time.monotonic()
            return True
        return False

    def renew(self) -> None:
        """Reset the lease when a third of it has passed. One that lapsed meanwhile (the
        expander was slow) is taken again if free; LeaseLost if another expander holds it."""
        if time.monotonic() - self._renewed_at < self.lease_s / 3:
            return
        try:
            self._lock.reacquire()
        except redis.exceptions.LockNotOwnedError:
            if not self._lock.acquire(blocking=False):
                raise LeaseLost() from None
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        try:
            self._lock.release()
        except redis.RedisError:
            pass  # lapsed, or Redis is away: the lease ends by itself; raising would replace the task's outcome


@dataclass
class _PendingChunk:
    items: list[NewItem] = field(default_factory=list)
    uploads: list[Future] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)  # indices registered by an earlier pass


class Expander:
    """One pass over a job's source archive."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: ExpansionLease) -> None:
        self.ctx = ctx
        self.job = job
        self.lease = lease
        self.settings = ctx.settings
        # Items below this index were registered by an earlier, interrupted pass.
        self.registered = job.total
        # Allocated for every entry, resumed ones included: the same order gives the same names.
        self.output_names = OutputNames()
        # Set once the tenant's daily image quota runs out: every later entry fails with it.
        self.quota_error: QuotaExceeded | None = None

    def run(self) -> None:
        """Expand the archive to its end, or until the job is canceled; LeaseLost when another
        expander has taken over."""
        error: ColorizeError | None = None
        chunk = _PendingChunk()
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            try:
                with self._open_source() as source:
                    for index, entry in enumerate(iter_entries(source, self.job.source_kind, self.settings.limits)):
                        if self.ctx.jobs.status(self.job.id) != JobStatus.RUNNING:
                            return  # canceled: drop the rest, before it uses up any quota
                        self.lease.renew()
                        self._add_entry(pool, chunk, index, entry)
                        if len(chunk.items) + len(chunk.resumed) >= self.settings.chunk_size:
                            self._flush(chunk)
                            chunk = _PendingChunk()
            except (ArchiveLimitExceeded, CorruptArchive) as exc:
                error = exc  # entries before this point stay valid
            except NotFound:
                error = CorruptArchive("the uploaded source object is missing")
            self._flush(chunk)
        self.ctx.jobs.end_expansion(self.job.id, error)

    def _open_source(self) -> BinaryIO:
        if self.job.source_kind == "zip":
            return self.ctx.storage.open_seekable(self.job.source_key)
        return self.ctx.storage.open_stream(self.job.source_key)

    def _add_entry(self, pool: ThreadPoolExecutor, chunk: _PendingChunk, index: int, entry: ArchiveEntry) -> None:
        name = self.output_names.allocate(entry.path)
        if index < self.registered:
            chunk.resumed.append(index)  # its data is skipped; the archive reader moves past it
            return
        error = entry.error or self._take_image()
        if error is None:
            try:
                data = entry.read()
            except ItemError as exc:
                error = exc
            else:
                key = item_input_key(self.job.tenant, self.job.id, index)
                chunk.uploads.append(pool.submit(self.ctx.storage.put_bytes, key, data))
        chunk.items.append(NewItem(index=index, path=entry.path, output_path=name, size=entry.size, error=error))
        if len(chunk.uploads) >= IO_THREADS * 2:
            chunk.uploads.pop(0).result()

    def _take_image(self) -> QuotaExceeded | None:
        """Count the entry against the tenant's daily image quota; the error it gets when none is left."""
        if self.quota_error is None:
            try:
                self.ctx.quotas.take_image(self.job.tenant)
            except QuotaExceeded as exc:
                self.quota_error = exc
        return self.quota_error

    def _flush(self, chunk: _PendingChunk) -> None:
        """Register the chunk's items and enqueue those to process."""
        for upload in chunk.uploads:
            upload.result()  # inputs are stored before their items become visible to workers
        jobs = self.ctx.jobs
        jobs.add_items(self.job.id, chunk.items)
        for item in chunk.items:
            if item.error is not None:
                self.ctx.metrics.item_registered_failed(item.error.code)
        fresh = [item.index for item in chunk.items if item.error is None]
        todo = fresh + jobs.unfinished(self.job.id, chunk.resumed)
        if todo:
            enqueue_chunk(self.ctx.app, self.job.id, sorted(todo))
