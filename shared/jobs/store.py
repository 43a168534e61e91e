"""Job, item and attempt state in Redis: records, atomic progress, validated state transitions.

Changes run as the Lua scripts of :mod:`shared.jobs.store_scripts`, one call each, and tell the
listeners (:mod:`shared.jobs.listeners`) what they committed. A chunk's calls follow its batches:
:meth:`JobStore.begin_chunk` starts the job, sorts the chunk's items and counts the first
batch's attempts; :meth:`JobStore.record` stores the outcomes so far, begins the next batch.

Every key carries the job's expiry (``settings.result_ttl_s`` after creation, renewed when
the job finishes); the purge index (:class:`shared.jobs.upkeep.PurgeIndex`) then deletes its
stored objects. Unfinished jobs sit in the stall watch (:class:`shared.jobs.upkeep.StallWatch`)
with the time they count as stalled, put off each time they move. A job is in its tenant's
listing (:class:`shared.jobs.listing.JobListing`) from its creation until it is deleted or purged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from shared.colour.hints import Hint
from shared.errors import ColorizeError, Conflict, NotFound, ProcessingFailed
from shared.ids import new_id
from shared.imaging.output_options import DEFAULT_OUTPUT, OutputOptions
from shared.jobs import store_scripts as job_scripts
from shared.jobs.listeners import JobListener, JobListeners
from shared.jobs.records import (
    Item,
    ItemResult,
    ItemStatus,
    Job,
    JobStatus,
    NewItem,
    decode_item,
    decode_job,
    decode_registered,
    error_json,
    hints_json,
    item_json,
)
from shared.redis_keys import KeyedScript, RedisKeys, job_purge_member
from shared.settings import Settings
from shared.storage.item_inputs import ItemInput

# The error of an item that used up its attempts; the script fills in how many it used.
_EXHAUSTED_FORMAT = error_json(ProcessingFailed("processing crashed or timed out %d times"))


def _exhausted_error(attempts: int) -> ProcessingFailed:
    return ProcessingFailed(f"processing crashed or timed out {attempts} times", attempts=attempts)


@dataclass(frozen=True)
class ChunkStart:
    """A chunk's items as a task starts on them."""

    job: Job | None  # None: the job no longer exists
    fresh: list[int]  # unfinished, never attempted; the first ``begin`` of them are begun
    retried: list[int]  # unfinished, attempted before: in hand when a worker died
    inputs: dict[int, ItemInput] = field(default_factory=dict)  # where those items' bytes are


@dataclass(frozen=True)
class Recorded:
    counted: list[ItemResult]  # results that ended their item (the others had ended before)
    started: list[int]  # items begun: their attempt is counted
    exhausted: list[int]  # items out of attempts, failed instead of begun
    finished: bool  # True for exactly one caller: the one whose change finished the job
    job: Job | None  # the job after the change; None when it no longer exists
    emptied: list[str] = field(default_factory=list)  # input objects no item needs any more


class JobStore:
    """Jobs, their items and the items' processing attempts, in one Redis database."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        namespace: str | None = None,
        listeners: Sequence[JobListener] = (),
    ) -> None:
        """``namespace``: of the keys; None: ``settings.redis_namespace``. ``listeners``: told of
        every change this store commits, for as long as it lives."""
        self.redis = redis
        self.settings = settings
        self._listeners = JobListeners(listeners)
        self.keys = RedisKeys(settings.redis_namespace if namespace is None else namespace)
        self._clock = clock

        def script(body: str) -> KeyedScript:
            return KeyedScript(redis, job_scripts.KEY_NAMES, body)

        self._mark_running = script(job_scripts.MARK_RUNNING)
        self._begin_chunk = script(job_scripts.BEGIN_CHUNK)
        self._record = script(job_scripts.RECORD)
        self._forgive = script(job_scripts.FORGIVE)
        self._add_items = script(job_scripts.ADD_ITEMS)
        self._end_expansion = script(job_scripts.END_EXPANSION)
        self._set_status = script(job_scripts.SET_STATUS)

    @property
    def listeners(self) -> tuple[JobListener, ...]:
        return self._listeners.members

    def _run(self, script: KeyedScript, job_id: str, *args: Any) -> Any:
        common = [repr(self._clock()), self.settings.result_ttl_s, self.settings.stall_after_s, job_id]
        return script(job_scripts.script_keys(self.keys, job_id), [*common, *args])

    # jobs

    def create_job(
        self,
        *,
        tenant: str,
        model: str,
        temperature: float | None,
        source_kind: str,
        source_key: str,
        source_filename: str | None = None,
        job_id: str | None = None,
        single_item: NewItem | None = None,
        callback_url: str | None = None,
        webhook_events: Sequence[str] = (),
        output: OutputOptions = DEFAULT_OUTPUT,
        hints: Sequence[Hint] = (),
    ) -> Job:
        """Record a queued job. ``single_item``: a one-image job, registered and expanded at once."""
        if ":" in tenant:
            raise ValueError("tenant names may not contain ':'")
        job_id = job_id or new_id()
        now = self._clock()
        expires_at = now + self.settings.result_ttl_s
        fields: dict[FieldT, EncodableT] = {
            "id": job_id,
            "tenant": tenant,
            "status": JobStatus.QUEUED,
            "model": model,
            "temperature": "" if temperature is None else repr(float(temperature)),
            "source_filename": source_filename or "",
            "source_kind": source_kind,
            "source_key": source_key,
            "total": 0,
            "done": 0,
            "failed": 0,
            "expanded": "0",
            "created_at": repr(now),
            "expires_at": repr(expires_at),
            "callback_url": callback_url or "",
            "webhook_events": ",".join(webhook_events),
            "hints": hints_json(hints) if hints else "",
            # Read into this mapping's wider key and value types.
            **{name: value for name, value in output.record_fields().items()},
        }
        record = self.keys.job(job_id).record
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(record, mapping=fields)
        pipe.expireat(record, int(expires_at) + 1)
        pipe.zadd(self.keys.purge, {job_purge_member(tenant, job_id): expires_at})
        pipe.zadd(self.keys.active, {job_id: now + self.settings.stall_after_s})
        pipe.zadd(self.keys.tenant_jobs(tenant), {job_id: now})
        pipe.execute()
        if single_item is not None:
            self.add_items(job_id, [single_item])
            self.end_expansion(job_id)
        return self.get(job_id)

    def find(self, job_id: str) -> Job | None:
        # The service's Redis clients answer bytes (they are made without decode_responses).
        fields = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys.job(job_id).record))
        return decode_job(fields) if fields else None

    def find_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Each job, in order; None for one that does not exist (or has expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id).record)
        return [decode_job(fields) if fields else None for fields in pipe.execute()]

    def get(self, job_id: str, tenant: str | None = None) -> Job:
        """The job, or NotFound (also when it belongs to another tenant)."""
        job = self.find(job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return job

    def status(self, job_id: str) -> JobStatus | None:
        return self.statuses([job_id])[0]

    def statuses(self, job_ids: Sequence[str]) -> list[JobStatus | None]:
        """The status of each job; None for one that does not exist (or has expired)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id).record, "status")
        return [JobStatus(value.decode()) if value is not None else None for value in pipe.execute()]

    def expiry(self, job_id: str) -> float | None:
        """When the job's records expire; None when it has already."""
        value = self.redis.hget(self.keys.job(job_id).record, "expires_at")
        return float(value) if value is not None else None

    def mark_running(self, job_id: str) -> bool:
        """queued -> running; False when the job was not queued (already running, or ended).
        Every call counts as the job moving: its tasks call it as they start."""
        result = self._run(self._mark_running, job_id)
        if result is None:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        started, fields = result
        if started:
            self._listeners.job_started(_job(fields))
        return bool(started)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job not yet finished; Conflict when it had already ended."""
        result = self._run(self._set_status, job_id, JobStatus.CANCELED)
        if result is None:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        changed, previous, fields = result
        if not changed:
            status = previous.decode()
            raise Conflict(f"job {job_id} has already ended ({status})", status=status)
        job = _job(fields)
        self._listeners.job_finished(job)
        return job

    def delete(self, job: Job, purge_again_at: float) -> bool:
        """Remove every record of the job (its destination's too), its place in the stall watch
        and in its tenant's listing, at once; False when it was gone already. No job script brings
        a deleted job back (each ignores a job without its record); the purge index is told to delete the job's
        stored objects (again) at ``purge_again_at``, after any task still in hand has stored what
        it was storing."""
        keys = self.keys.job(job.id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(*keys.every, self.keys.job_destination(job.id))
        pipe.zrem(self.keys.active, job.id)
        pipe.zrem(self.keys.tenant_jobs(job.tenant), job.id)
        pipe.zadd(self.keys.purge, {job_purge_member(job.tenant, job.id): purge_again_at})
        deleted = pipe.execute()[0]
        return bool(deleted)

    # items

    def add_items(self, job_id: str, items: Sequence[NewItem]) -> int:
        """Register items (idempotent per index; an item with an error fails at once) with where
        their bytes are; returns how many were new. An item's input record goes when it ends,
        and so does the count of an input object's items (:attr:`Recorded.emptied`)."""
        if not items:
            return 0
        args: list[Any] = [len(items)]
        for item in items:
            args += [
                item.index,
                item_json(item),
                error_json(item.error) if item.error is not None else "",
                item.input.encode() if item.input is not None else "",
            ]
        result = self._run(self._add_items, job_id, *args)
        if result is None:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return int(result)

    def end_expansion(self, job_id: str, error: ColorizeError | None = None) -> bool:
        """Mark the item list complete (``error``: why expansion stopped early); True if this finished the job."""
        code, message = (error.code, error.message) if error else ("", "")
        result = self._run(self._end_expansion, job_id, code, message)
        if result is None:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        finished, fields = result
        if finished:
            self._listeners.job_finished(_job(fields))
        return bool(finished)

    def unfinished(self, job_id: str, indices: Iterable[int]) -> list[int]:
        """Those of ``indices`` that are registered and neither done nor failed."""
        indices = list(indices)
        if not indices:
            return []
        keys = self.keys.job(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keys.items, [str(i) for i in indices])
        pipe.hmget(keys.statuses, [str(i) for i in indices])
        records, statuses = pipe.execute()
        return [i for i, record, status in zip(indices, records, statuses) if record is not None and status is None]

    def items(self, job_id: str, offset: int, limit: int) -> list[Item]:
        """Items ``offset`` .. ``offset + limit - 1`` in index order (those registered so far)."""
        indices = [str(i) for i in range(offset, offset + limit)]
        if not indices:
            return []
        keys = self.keys.job(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.record, "status")
        pipe.hmget(keys.items, indices)
        pipe.hmget(keys.statuses, indices)
        pipe.hmget(keys.errors, indices)
        job_status, records, statuses, errors = pipe.execute()
        canceled = job_status == JobStatus.CANCELED.encode()
        result = []
        for index, record, status, error in zip(indices, records, statuses, errors):
            if record is None:
                break
            result.append(decode_item(int(index), record, status, error, canceled))
        return result

    def registered(self, job_id: str, indices: Sequence[int]) -> dict[int, NewItem]:
        """Each registered item of ``indices`` as registered (output path, hints), in one read."""
        records = self.redis.hmget(self.keys.job(job_id).items, [str(i) for i in indices]) if indices else []
        return {i: decode_registered(i, record) for i, record in zip(indices, records) if record is not None}

    def item(self, job_id: str, index: int) -> Item:
        found = self.items(job_id, index, 1) if index >= 0 else []
        if not found:
            raise NotFound(f"job {job_id} has no item {index}", job_id=job_id, index=index)
        return found[0]

    def done_items(self, job_id: str, batch: int = 1000) -> Iterable[Item]:
        """Every done item in index order, read ``batch`` at a time."""
        total = int(self.redis.hget(self.keys.job(job_id).record, "total") or 0)
        for start in range(0, total, batch):
            for item in self.items(job_id, start, batch):
                if item.status == ItemStatus.DONE:
                    yield item

    # processing

    def begin_chunk(self, job_id: str, indices: Sequence[int], begin: int) -> ChunkStart:
        """Start a task on a chunk: the job moves to running (and counts as moving), its
        unfinished items are sorted into fresh and retried, and the attempts of the first
        ``begin`` fresh ones are counted; with where their bytes are. A job that has ended gets
        no attempts."""
        result = self._run(self._begin_chunk, job_id, begin, *indices)
        if result is None:
            return ChunkStart(job=None, fresh=[], retried=[])
        started, fresh, retried, fields, inputs = result
        job = _job(fields)
        if started:
            self._listeners.job_started(job)
        located = {int(index): ItemInput.decode(record.decode()) for index, record in zip(inputs[0::2], inputs[1::2])}
        return ChunkStart(job=job, fresh=_ints(fresh), retried=_ints(retried), inputs=located)

    def record(self, job_id: str, results: Sequence[ItemResult], begin: Sequence[int] = ()) -> Recorded:
        """Store item outcomes, each counted only the first time an item ends, and count an
        attempt for each unfinished item of ``begin``; one past ``settings.item_max_attempts``
        fails instead (its earlier attempts crashed or timed out). Nothing is begun for a job
        that has ended, and one call may finish the job."""
        args: list[Any] = [self.settings.item_max_attempts, _EXHAUSTED_FORMAT, len(results)]
        for result in results:
            args += [result.index, result.status, error_json(result.error) if result.error is not None else ""]
        args += list(begin)
        counted, started, exhausted, finished, fields, emptied = self._run(self._record, job_id, *args)
        by_index = {result.index: result for result in results}
        ended = [by_index[int(index)] for index in counted]
        exhausted_pairs = _ints(exhausted)
        exhausted_indices = exhausted_pairs[0::2]
        ended += [
            ItemResult.failed(index, _exhausted_error(used))
            for index, used in zip(exhausted_indices, exhausted_pairs[1::2])
        ]
        job = _job(fields) if fields else None
        if job is not None:
            if ended:
                self._listeners.items_finished(job, ended)
            if finished:
                self._listeners.job_finished(job)
        return Recorded(
            counted=ended,
            started=_ints(started),
            exhausted=exhausted_indices,
            finished=bool(finished),
            job=job,
            emptied=[name.decode() for name in emptied],
        )

    def forgive_attempts(self, job_id: str, indices: Iterable[int]) -> None:
        """Take back the last attempt of each of ``indices`` still unfinished, ended by a failure
        the worker caught and survived (storage or Redis away): attempts count crashes and
        time-outs of the item, not outages. All or none, so a caller may repeat it after a
        connection error."""
        self._run(self._forgive, job_id, *indices)

    def attempts(self, job_id: str, indices: Iterable[int]) -> list[int]:
        """Processing attempts started so far for each of ``indices``."""
        fields = [str(i) for i in indices]
        if not fields:
            return []
        return [int(v or 0) for v in self.redis.hmget(self.keys.job(job_id).attempts, fields)]


def _job(fields: list[bytes]) -> Job:
    """A job from a script's HGETALL reply (field, value, field, value, ...)."""
    return decode_job(dict(zip(fields[0::2], fields[1::2])))


def _ints(values: list[bytes | int]) -> list[int]:
    return [int(v) for v in values]
