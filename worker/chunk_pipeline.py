"""Colorizing one chunk: load, colorize and store its items, overlapping storage and codec work
with inference, each item ending done or failed on its own.

The job store hears from a chunk a number of times that follows its batches, never its items:
:meth:`~shared.jobs.store.JobStore.begin_chunk` as it starts (which also begins the first batch), then before
each later inference one :meth:`~shared.jobs.store.JobStore.record` of what has ended so far, which begins the
following batch and returns the job's status (the cancel check), and one at the end. Before the last batch that
call is made only when something has ended meanwhile: outcomes reach the store before the next inference, which
may crash the process and would otherwise cost their items another attempt. The results' bytes are counted in
the tenant's storage quota (:class:`~shared.tenancy.storage_quota.StoredBytes`) in the same rhythm, in one call
just before the record of their outcomes. Items that were in hand when a worker died run one at a time after the
rest, each begun only when the one before has ended, so a poison item uses up its own attempts and nobody
else's.

A group of ``batch_size`` items is read together (:class:`worker.item_reader.BatchInputs`: one ranged GET where
they lie close), then decoded and colorized in batches whose pixels and decoding memory, read from the fetched
headers, fit the worker's memory budget for the job's output format (:mod:`worker.batching`). Items read by
reference (URLs, a tenant's bucket) are read ahead instead, ``batch_size`` at a time, and colorized in batches
of those that have arrived (:mod:`worker.arrivals`): a slow source holds its own item alone. An image's metadata
is read as it is decoded, the last moment its bytes are held, and its result written as the job asks, with that
metadata and the provenance, hints counted (:mod:`worker.result_writes`); a hint model's single image keeps its
likely colours beside it (:mod:`worker.likely_colour_grids`). Input objects are deleted as soon as the store
reports that none of their items is unfinished, and all of a job's once it finishes or is canceled. A record
that finds the job gone (deleted while the chunk ran) has the chunk delete what the job's prefix holds again and
release its quota: late results last one batch. A job with a destination has each result written there too, or
only there (:mod:`worker.destination_writes`), at output paths read once per chunk, as are the items' own hints
where they may have some (:func:`worker.chunk_items.chunk_records`). A bulk chunk (``may_hand_over``) gives its
process up before a batch when interactive work or an expansion waits: the items it has not begun are handed
back (:attr:`ChunkRun.handed_back`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from shared.colour.colorizer import colorize_batch
from shared.colour.engine import Engine
from shared.errors import ColorizeError, ItemError, NotFound, ProcessingFailed
from shared.imaging.decoding import decode_image
from shared.imaging.memory_budget import MemoryBudget
from shared.imaging.metadata import read_metadata
from shared.jobs.records import ItemResult, Job, JobStatus
from shared.jobs.store import Recorded
from shared.logging import bind_log_context
from shared.storage.item_inputs import ItemInput
from shared.storage.object_keys import input_object_key, inputs_prefix, job_prefix, result_key
from shared.tenancy.storage_quota import job_owner
from worker.arrivals import Arrivals
from worker.batching import memory_batches, sized_item
from worker.chunk_items import ColorizedItem, LoadedItem, SavedItem, chunk_records
from worker.context import WorkerContext
from worker.destination_writes import job_destination
from worker.item_reader import BatchInputs
from worker.likely_colour_grids import likely_colours_of
from worker.reference_reader import read_result
from worker.result_writes import ResultWriter
from worker.retry_policy import TRANSIENT_ERRORS

log = get_task_logger(__name__)

# Parallel storage transfers and image decodes beside inference in one process, and the
# encodes and result uploads: apart, so loaders waiting for memory never hold up the stores
# that free it.
LOAD_THREADS = 4
SAVE_THREADS = 2
# How often a chunk cut short by a Redis outage tries to give back its items' attempts, and how
# long before its soft time limit it stops trying.
FORGIVE_POLL_S = 0.25
FORGIVE_MARGIN_S = 1.0


class ChunkRun:
    """One task's run over a chunk of a job's items."""

    def __init__(self, ctx: WorkerContext, job_id: str, may_hand_over: bool = False) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.settings = ctx.settings
        self.may_hand_over = may_hand_over
        self.job: Job | None = None
        self.begun: list[int] = []  # items whose attempt this run has counted
        self.outcomes: list[ItemResult] = []  # items ended since the store last heard
        self.unrecorded_bytes = 0  # what their results stored, not yet counted in the tenant's quota
        self.stopped = False  # the job has ended (canceled): drop the rest
        self.handed_back: list[int] = []  # unfinished items left for a later chunk
        self.inputs: dict[int, ItemInput] = {}  # where the chunk's items' bytes are
        self.results: ResultWriter | None = None  # stores the results, once the job is read
        # Past this, the soft time limit may strike (it counts from the task's start, a little earlier).
        self.deadline = time.monotonic() + self.settings.task_soft_time_limit_s - FORGIVE_MARGIN_S

    @property
    def _job(self) -> Job:
        """The job whose items are being processed (read as the run begins)."""
        if self.job is None:
            raise RuntimeError(f"job {self.job_id} has not been read")
        return self.job

    @property
    def _results(self) -> ResultWriter:
        if self.results is None:
            raise RuntimeError(f"job {self.job_id} has not been read")
        return self.results

    def run(self, indices: Sequence[int]) -> None:
        with self.ctx.metrics.stage("redis"):
            start = self.ctx.jobs.begin_chunk(self.job_id, indices, begin=self.settings.batch_size)
        self.job = start.job
        if self.job is None or self.job.is_terminal:
            if self.job is not None and self.job.status == JobStatus.CANCELED:
                self._drop_inputs(self.job)
            return
        self.inputs = start.inputs
        destination = job_destination(self.ctx.destinations, self.ctx.references, self.job)
        with self.ctx.metrics.stage("redis"):
            registered = chunk_records(self.ctx.jobs, self.job, start.fresh + start.retried, destination is not None)
        settings, timed = self.settings, self.ctx.metrics.stage
        self.results = ResultWriter(self.ctx.storage, self.job, settings.jpeg_quality, timed, destination, registered)
        bind_log_context(tenant=self.job.tenant)
        self.begun += start.fresh[: self.settings.batch_size]
        try:
            self._process(start.fresh, start.retried)
        except BaseException:
            self._record_quietly()  # what is already stored counts, however the chunk stops
            raise
        if self.outcomes:
            self._record()

    def give_up(self, indices: Sequence[int], error: ColorizeError) -> None:
        """Fail the chunk's unfinished items: the job must still reach a final status."""
        self._tidy(self.ctx.jobs.record(self.job_id, [ItemResult.failed(index, error) for index in indices]))

    def forgive_unfinished(self) -> None:
        """After a failure the task caught (storage or Redis away), give back the attempts of the
        items it left unfinished: they did not crash nor time out. When Redis itself is away this
        waits for it while the chunk's time allows (it usually restarts within seconds);
        otherwise those attempts stay counted, as if the items had crashed."""
        while self.begun:
            try:
                self.ctx.jobs.forgive_attempts(self.job_id, self.begun)
                self.begun = []
            except redis.RedisError:
                if time.monotonic() + FORGIVE_POLL_S > self.deadline:
                    return
                time.sleep(FORGIVE_POLL_S)

    # --- store calls ----------------------------------------------------------------------

    def _record(self, begin: Sequence[int] = ()) -> list[int]:
        """Tell the store the outcomes so far and begin ``begin``; returns the items begun.
        Their results' bytes are counted first: should the record fail, the quota errs high."""
        with self.ctx.metrics.stage("redis"):
            if self.unrecorded_bytes:
                self.ctx.stored.add(self._job.tenant, job_owner(self.job_id), self.unrecorded_bytes)
                self.unrecorded_bytes = 0
            recorded = self.ctx.jobs.record(self.job_id, self.outcomes, begin)
        if recorded.job is None and self.outcomes:
            self._discard_late_results()
        self.outcomes = []
        self.begun += recorded.started
        self._tidy(recorded)
        self.stopped = recorded.job is None or recorded.job.is_terminal
        return recorded.started

    def _tidy(self, recorded: Recorded) -> None:
        """Delete what the items that ended no longer need."""
        job = recorded.job or self.job
        if job is None:
            return  # the job has expired: the purge deletes its objects
        for index in recorded.exhausted:
            # An earlier attempt may have stored the result before it died: a failed item has none.
            self.ctx.storage.delete(result_key(job.tenant, self.job_id, index, job.output.format))
        for name in recorded.emptied:
            self.ctx.storage.delete(input_object_key(job.tenant, self.job_id, name))
        if recorded.finished or job.status == JobStatus.CANCELED:
            self._drop_inputs(job)

    def _discard_late_results(self) -> None:
        """The job went (deleted, or expired) while this chunk ran: what it stored since, after
        the deletion emptied the job's prefix, is deleted now, and released from the tenant's
        storage quota (this chunk counted it just before finding the job gone)."""
        job = self._job
        self.ctx.storage.delete_prefix(job_prefix(job.tenant, self.job_id))
        self.ctx.stored.release(job.tenant, job_owner(self.job_id))

    def _drop_inputs(self, job: Job) -> None:
        """Every input object of the job, which has ended (also any a crash left behind)."""
        if job.source_kind in ("tar", "tar.gz"):
            self.ctx.storage.delete_prefix(inputs_prefix(job.tenant, self.job_id))

    def _record_quietly(self) -> None:
        if not self.outcomes:
            return
        try:
            self._record()
        except (redis.RedisError, ColorizeError) as exc:
            # Their results are stored; unrecorded, the items are simply done again.
            log.warning("could not record %d outcomes of job %s (%r)", len(self.outcomes), self.job_id, exc)

    # --- processing -----------------------------------------------------------------------

    def _process(self, fresh: list[int], retried: list[int]) -> None:
        try:
            engine = self.ctx.engines.get(self._job.model)
        except ColorizeError as exc:
            self.outcomes += [ItemResult.failed(index, exc) for index in fresh + retried]
            return
        size = self.settings.batch_size
        if fresh and all((where := self.inputs.get(i)) is not None and where.reference for i in fresh):
            self._by_arrival(engine, fresh)
        else:
            self._pipeline(engine, [fresh[i : i + size] for i in range(0, len(fresh), size)])
        if self.handed_back:
            self.handed_back += retried
            return
        self._one_at_a_time(engine, retried)

    def _pipeline(self, engine: Engine, groups: list[list[int]]) -> None:
        """Groups of ``batch_size`` items in turn, the first begun with the chunk: each group's
        bytes are read together while the group before is processed; a group is decoded and
        colorized in batches within the memory budget (``worker.batching``), the next batch
        decoding and the one before being stored while one is inferred."""
        if not groups:
            return
        budget = MemoryBudget.of(self.settings.limits, self._job.output)
        with ThreadPoolExecutor(LOAD_THREADS) as loaders, ThreadPoolExecutor(SAVE_THREADS) as savers:
            fetching = loaders.submit(self._fetch, groups[0])
            saving: list[Future[SavedItem]] = []
            for number in range(len(groups)):
                if number and self._hand_over(groups[number], [i for group in groups[number + 1 :] for i in group]):
                    break
                fetched = [item for item in fetching.result() if self._usable(item)]
                following = groups[number + 1] if number + 1 < len(groups) else []
                if following or self.outcomes:
                    fetching = loaders.submit(self._fetch, self._record(begin=following))
                if self.stopped:
                    break
                batches = memory_batches(fetched, [item.cost for item in fetched], budget, self.settings.batch_size)
                decoding = [loaders.submit(self._decode, item) for item in batches[0]] if batches else []
                for step in range(len(batches)):
                    loaded = [future.result() for future in decoding]
                    if step + 1 < len(batches):
                        decoding = [loaders.submit(self._decode, item) for item in batches[step + 1]]
                    outputs = self._colorize(engine, [item for item in loaded if self._usable(item)])
                    self._collect(future.result() for future in saving)  # one batch of results waits at most
                    saving = [savers.submit(self._results.save, engine, output) for output in outputs]
            self._collect(future.result() for future in saving)

    def _by_arrival(self, engine: Engine, fresh: list[int]) -> None:
        """Items read by reference, in batches of those whose bytes have arrived: the first
        ``batch_size`` were begun with the chunk and are read at once, and each record before a
        batch begins as many more as the batches before left room for, read as it returns.
        Before waiting for a source, the results stored so far are recorded."""
        size, budget = self.settings.batch_size, MemoryBudget.of(self.settings.limits, self._job.output)
        unbegun = fresh[size:]
        arrivals = Arrivals(self._start_read, self._arrived, budget, size)
        with arrivals, ThreadPoolExecutor(LOAD_THREADS) as loaders, ThreadPoolExecutor(SAVE_THREADS) as savers:
            arrivals.add(fresh[:size])
            saving: list[Future[SavedItem]] = []
            first = True
            while arrivals.unfinished or unbegun:
                if not first and self._hand_over(arrivals.unfinished, unbegun):
                    break
                first = False
                if not arrivals.ready:
                    self._collect(future.result() for future in saving)
                    saving = []
                room = size - len(arrivals.unfinished)
                following, unbegun = unbegun[:room], unbegun[room:]
                if following or self.outcomes:
                    arrivals.add(self._record(begin=following))
                if self.stopped:
                    break
                with self.ctx.metrics.stage("storage_get"):
                    fetched = [item for item in arrivals.take() if self._usable(item)]
                loaded = [item for item in loaders.map(self._decode, fetched) if self._usable(item)]
                outputs = self._colorize(engine, loaded)
                self._collect(future.result() for future in saving)  # one batch of results waits at most
                saving = [savers.submit(self._results.save, engine, output) for output in outputs]
            self._collect(future.result() for future in saving)

    def _hand_over(self, begun: Sequence[int], unbegun: Sequence[int]) -> bool:
        """Whether to give the process to interactive work waiting: ``begun`` were begun with the
        batch before and never ran, so their attempts are given back; both are handed back."""
        if not self.may_hand_over:
            return False
        with self.ctx.metrics.stage("redis"):
            if not self.ctx.queues.ahead_of_bulk_waiting():
                return False
            if begun:
                self.ctx.jobs.forgive_attempts(self.job_id, begun)
        forgiven = set(begun)
        self.begun = [index for index in self.begun if index not in forgiven]
        self.handed_back = [*begun, *unbegun]
        return True

    def _one_at_a_time(self, engine: Engine, retried: Sequence[int]) -> None:
        for index in retried:
            started = self._record(begin=[index])
            if self.stopped:
                return
            for item in [self._decode(fetched) for fetched in self._fetch(started)]:
                if self._usable(item):
                    self._collect(self._results.save(engine, output) for output in self._colorize(engine, [item]))

    def _fetch(self, indices: Sequence[int]) -> list[LoadedItem]:
        """The items' bytes, read together, each with what decoding it will take (its header)."""
        batch = BatchInputs(
            self.ctx.storage,
            self._job,
            {i: self.inputs.get(i) for i in indices},
            self.settings.limits,
            timed=self.ctx.metrics.stage,
            references=self.ctx.references,
        )
        return [self._sized(index, partial(batch.read, index)) for index in indices]

    def _start_read(self, index: int) -> Future[bytes]:
        return self.ctx.references.submit(self._job.tenant, self.inputs[index].reference or "")

    def _arrived(self, index: int, read: Future[bytes]) -> LoadedItem:
        return self._sized(index, partial(read_result, read, self.inputs[index].reference or ""))

    def _sized(self, index: int, read: Callable[[], bytes]) -> LoadedItem:
        """The item's bytes from ``read``, with what decoding them takes; or the item's error."""
        return self._loaded(index, lambda: sized_item(index, read(), self.settings.limits, self._job.output))

    def _decode(self, item: LoadedItem) -> LoadedItem:
        if item.error is not None:
            return item  # its read failed: that error is its outcome, not a failed decode
        data, item.data = item.data, None  # the encoded bytes are not kept beside the image

        def decoded() -> LoadedItem:
            if data is None:
                raise ValueError(f"item {item.index} has no bytes to decode")
            with self.ctx.metrics.stage("decode"):
                image = decode_image(data, self.settings.limits)
                # Read while the bytes are at hand; they go with this frame.
                return LoadedItem(item.index, image=image, metadata=read_metadata(data))

        return self._loaded(item.index, decoded)

    def _loaded(self, index: int, load: Callable[[], LoadedItem]) -> LoadedItem:
        """What ``load`` gives, or the item's error: reading or decoding failed for it alone."""
        try:
            return load()
        except ItemError as exc:
            return LoadedItem(index, error=exc)
        except NotFound:
            return LoadedItem(index, error=ProcessingFailed("the item's input object is missing"))
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.exception("decoding item %s of job %s failed", index, self.job_id, extra=self._about(index))
            return LoadedItem(index, error=ProcessingFailed("the image could not be decoded"))

    def _usable(self, item: LoadedItem) -> bool:
        if item.error is None:
            return True
        self.outcomes.append(ItemResult.failed(item.index, item.error))
        return False

    def _colorize(self, engine: Engine, items: list[LoadedItem]) -> list[ColorizedItem]:
        if not items:
            return []
        try:
            with self.ctx.metrics.stage("inference"):
                hints = [self._results.hints(item.index) for item in items]
                images = colorize_batch(engine, [i.decoded() for i in items], self._job.temperature, hints)
                likely = [likely_colours_of(engine, self._job, i.decoded(), h) for i, h in zip(items, hints)]
            return [ColorizedItem(i.index, image, i.metadata, g) for i, image, g in zip(items, images, likely)]
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            if len(items) > 1:
                # Find the item that breaks the batch; the others still get their results.
                return [pair for item in items for pair in self._colorize(engine, [item])]
            log.exception(
                "colorizing item %s of job %s failed", items[0].index, self.job_id, extra=self._about(items[0].index)
            )
            error = ProcessingFailed("the model could not process this image")
            self.outcomes.append(ItemResult.failed(items[0].index, error))
            return []

    def _collect(self, saved: Iterable[SavedItem]) -> None:
        """Outcomes of stored results, to be recorded (and their bytes counted) together."""
        for item in saved:
            self.outcomes.append(item.outcome)
            self.unrecorded_bytes += item.stored_bytes

    def _about(self, index: int) -> dict[str, object]:
        # Log fields for one item: the chunk's I/O threads do not see the task's log context.
        return {"job_id": self.job_id, "item": index, "tenant": self._job.tenant}
