"""Expanding a job: one pass over its source archive, registering each entry as an item and
enqueueing chunks of them as it goes.

Nothing is stored per item. A zip member is registered with where it lies in the source
object, from which its chunk reads it by range. A tar's entries, which can only be read in
one pass, are checked to start like an image (and to be within the size limits) before they
are kept; those of a chunk are then stored back to back as one input object, which goes once
all its items have ended (:mod:`shared.storage.item_inputs`).

A source by reference (:mod:`shared.storage.sources`) is expanded the same way: its objects or URLs
are the entries (:mod:`worker.reference_entries`), each registered with its reference as its
input and read by the worker that processes it.

Each item is registered with the colour hints the job's hint map gives its path
(:mod:`shared.jobs.hint_maps`: the request's map over the archive's own ``hints.json``,
:mod:`worker.archive_hints`); the map's paths that no entry has are recorded in the job.

Chunks are registered and enqueued in order, each while the next is read. A job whose whole
archive fits in one chunk takes the interactive lane, any other the bulk lane
(:mod:`worker.scheduling`).

A pass may run again (a redelivered message, a rescued job): items registered by an earlier
pass keep their index and name, and only those still unfinished are enqueued again. One
expander at a time holds a job's :class:`ExpansionLease`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

import redis
from redis.lock import Lock

from shared.colour.hint_rules import HintMap
from shared.colour.model_manifests import load_manifest
from shared.errors import (
    ArchiveLimitExceeded,
    ColorizeError,
    CorruptArchive,
    InvalidHintsFile,
    ItemError,
    NotFound,
    QuotaExceeded,
    SourceForbidden,
    SourceNotFound,
    SourceUnreachable,
)
from shared.jobs.entry_names import OutputNames
from shared.jobs.hint_maps import merged
from shared.jobs.records import Job, JobStatus, NewItem
from shared.jobs.source_kinds import REFERENCE_KIND
from shared.storage.item_inputs import ItemInput
from shared.storage.object_keys import input_object_key, input_object_name, inputs_prefix
from shared.storage.sources import decode_source
from worker.archive_entries import ArchiveEntry, iter_entries
from worker.archive_hints import HINTS_FILE, archive_hints, unused_hint_file
from worker.context import WorkerContext
from worker.reference_entries import reference_entries
from worker.scheduling import Lane, enqueue_chunks

# How long an expander's claim on a job lasts without renewal. Short, so that a crashed
# expander holds its job up for seconds: the message redelivered at once when its process
# died waits this long before it may take over.
EXPAND_LEASE_S = 10
# A tar chunk's input object is stored once it holds this much, however few its items: the
# expander holds at most one being filled and one being stored.
CHUNK_INPUT_BYTES = 32 * 1024**2


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
    resumed: list[int] = field(default_factory=list)  # indices registered by an earlier pass
    data: list[bytes] = field(default_factory=list)  # tar: the kept entries' bytes, back to back
    kept: dict[int, tuple[int, int]] = field(default_factory=dict)  # index -> offset, length in ``data``
    stored_bytes: int = 0

    def full(self, chunk_size: int) -> bool:
        return len(self.items) + len(self.resumed) >= chunk_size or self.stored_bytes >= CHUNK_INPUT_BYTES

    def keep(self, index: int, data: bytes) -> None:
        """Add an entry's bytes to the chunk's input object."""
        self.kept[index] = (self.stored_bytes, len(data))
        self.data.append(data)
        self.stored_bytes += len(data)

    def object_name(self) -> str:
        return input_object_name(min(self.kept), max(self.kept))

    def registered_items(self) -> list[NewItem]:
        """The items, those kept with where they are in the chunk's input object."""
        if not self.kept:
            return self.items
        name = self.object_name()
        return [
            item
            if item.index not in self.kept
            else dataclasses.replace(item, input=ItemInput(name, *self.kept[item.index]))
            for item in self.items
        ]


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
        self.output_names = OutputNames(job.output.extension)
        # Set once the tenant's daily image quota runs out: every later entry fails with it.
        self.quota_error: QuotaExceeded | None = None
        self.flushed = 0  # chunks handed on so far
        self.takes_hints = load_manifest(self.settings.models_dir, job.model).hints
        self.hints: HintMap = {}  # by item path: the archive's hints.json, the request's map over it
        self.hinted: set[str] = set()  # paths of the map that an entry has

    def run(self) -> None:
        """Expand the archive to its end, or until the job is canceled; LeaseLost when another
        expander has taken over."""
        error: ColorizeError | None = None
        chunk = _PendingChunk()
        try:
            self.hints = self._hint_map()
        except InvalidHintsFile as exc:
            self.ctx.jobs.end_expansion(self.job.id, exc)  # before any image counts against the quota
            return
        with self.ctx.metrics.stage("expansion"), ThreadPoolExecutor(max_workers=1) as flusher:
            flushing: Future[None] | None = None
            try:
                with self._open_source() as source:
                    for index, entry in enumerate(self._entries(source)):
                        if self.ctx.jobs.status(self.job.id) != JobStatus.RUNNING:
                            self._canceled(flushing)
                            return  # drop the rest, before it uses up any quota
                        self.lease.renew()
                        if chunk.full(self.settings.chunk_size):
                            # Only now: a job whose archive ends here is one chunk, and interactive.
                            flushing = self._flush_behind(flusher, flushing, chunk)
                            chunk = _PendingChunk()
                        self._add_entry(chunk, index, entry)
            except (ArchiveLimitExceeded, CorruptArchive, SourceNotFound, SourceForbidden, SourceUnreachable) as exc:
                error = exc  # entries before this point stay valid
            except NotFound:
                error = CorruptArchive("the uploaded source object is missing")
            if flushing is not None:
                flushing.result()
            self._flush(chunk, last=True)
        unmatched = set(self.hints) - self.hinted
        if unmatched:
            self.ctx.hint_maps.record_unmatched(self.job.id, sorted(unmatched))
        self.ctx.jobs.end_expansion(self.job.id, error)
        self.ctx.hint_maps.forget(self.job.id)

    def _hint_map(self) -> HintMap:
        """The request's map over the archive's hints.json (:mod:`worker.archive_hints`)."""
        requested = self.ctx.hint_maps.get(self.job.id)
        if self.job.source_kind == REFERENCE_KIND or not self.takes_hints:
            return requested
        return merged(archive_hints(self._open_source, self.job.source_kind, self.settings.limits), requested)

    def _open_source(self) -> BinaryIO:
        if self.job.source_kind == "zip":
            return self.ctx.storage.open_seekable(self.job.source_key)
        return self.ctx.storage.open_stream(self.job.source_key)

    def _entries(self, source: BinaryIO) -> Iterator[ArchiveEntry]:
        """The archive's entries; for a source by reference, the objects or URLs it names."""
        if self.job.source_kind == REFERENCE_KIND:
            reference = decode_source(source.read())
            return reference_entries(reference, self.job.tenant, self.ctx.references, self.settings.limits)
        return self._items_of(iter_entries(source, self.job.source_kind, self.settings.limits))

    def _items_of(self, entries: Iterator[ArchiveEntry]) -> Iterator[ArchiveEntry]:
        """The entries that are items: hints.json is the archive's map for a model that takes hints."""
        for entry in entries:
            if entry.path == HINTS_FILE and entry.error is None:
                if self.takes_hints:
                    continue
                entry = unused_hint_file(entry, self.job.model)
            yield entry

    def _add_entry(self, chunk: _PendingChunk, index: int, entry: ArchiveEntry) -> None:
        name = self.output_names.allocate(entry.path)
        hints = self.hints.get(entry.path, ())
        if entry.path in self.hints:  # an empty list too: it names the item, to take back its hints.json's
            self.hinted.add(entry.path)
        if index < self.registered:
            chunk.resumed.append(index)  # its data is skipped; the archive reader moves past it
            return
        error = entry.error or self._take_image()
        if error is None and entry.location is None:
            try:
                chunk.keep(index, entry.read(image_only=True))  # tar: read now or never
            except ItemError as exc:
                error = exc
        chunk.items.append(
            NewItem(
                index=index,
                path=entry.path,
                output_path=name,
                size=entry.size,
                error=error,
                input=entry.location if error is None else None,
                hints=hints,
            )
        )

    def _take_image(self) -> QuotaExceeded | None:
        """Count the entry against the tenant's daily image quota; the error it gets when none is left."""
        if self.quota_error is None:
            try:
                self.ctx.quotas.take_image(self.job.tenant)
            except QuotaExceeded as exc:
                self.quota_error = exc
        return self.quota_error

    def _flush_behind(
        self, flusher: ThreadPoolExecutor, flushing: Future[None] | None, chunk: _PendingChunk
    ) -> Future[None]:
        """Flush ``chunk`` while the next one is read, once the one before has been flushed
        (items are registered in order: a later pass resumes after the registered ones)."""
        if flushing is not None:
            flushing.result()
        return flusher.submit(self._flush, chunk, False)

    def _flush(self, chunk: _PendingChunk, last: bool) -> None:
        """Store the chunk's input object, then register its items and enqueue those to process."""
        if chunk.kept:
            key = input_object_key(self.job.tenant, self.job.id, chunk.object_name())
            self.ctx.storage.put_bytes(key, b"".join(chunk.data))  # before its items become visible to workers
        jobs = self.ctx.jobs
        jobs.add_items(self.job.id, chunk.registered_items())
        for item in chunk.items:
            if item.error is not None:
                self.ctx.metrics.item_registered_failed(item.error.code)
        fresh = [item.index for item in chunk.items if item.error is None]
        todo = sorted(fresh + jobs.unfinished(self.job.id, chunk.resumed))
        lane = Lane.INTERACTIVE if last and self.flushed == 0 else Lane.BULK
        self.flushed += 1
        enqueue_chunks(self.ctx.app, self.ctx.bulk, self.job, [todo], lane)

    def _canceled(self, flushing: Future[None] | None) -> None:
        """The job was canceled: the input objects stored so far are not needed."""
        if flushing is not None:
            flushing.exception()  # wait; whatever it stored goes now
        if self.job.source_kind != "zip":
            self.ctx.storage.delete_prefix(inputs_prefix(self.job.tenant, self.job.id))
