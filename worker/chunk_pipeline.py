"""Colorizing one chunk: load, colorize and store its items, overlapping storage and codec work
with inference, each item ending done or failed on its own.

The job store hears from a chunk a number of times that follows its batches, never its items:
:meth:`~shared.job_store.JobStore.begin_chunk` as it starts (which also begins the first batch),
then before each later inference one :meth:`~shared.job_store.JobStore.record` of what has
ended so far, which begins the following batch and returns the job's status (the cancel
check), and one at the end. Before the last batch that call is made only when something has
ended meanwhile: outcomes reach the store before the next inference, which may crash the
process and would otherwise cost their items another attempt.
Items that were in hand when a worker died run one at a time after the rest, each begun only
when the one before has ended, so a poison item uses up its own attempts and nobody else's.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from shared.errors import ColorizeError, ItemError, NotFound, ProcessingFailed
from shared.imaging import DecodeCost, decode_cost, decode_image, encode_jpeg
from shared.jobs import ItemResult, Job
from shared.logging import bind_log_context
from shared.memory_budget import MemoryBudget
from shared.object_keys import item_input_key, result_key
from worker.batching import memory_batches
from worker.colorizer import colorize_batch
from worker.context import WorkerContext
from worker.engine import Engine
from worker.retry_policy import TRANSIENT_ERRORS

log = get_task_logger(__name__)

# Parallel storage transfers (and image decodes/encodes) beside inference in one process.
IO_THREADS = 4
# Bytes read from the start of each input to learn, from its header, what decoding it takes.
HEADER_BYTES = 256 * 1024
# How often a chunk cut short by a Redis outage tries to give back its items' attempts, and how
# long before its soft time limit it stops trying.
FORGIVE_POLL_S = 0.25
FORGIVE_MARGIN_S = 1.0


@dataclass
class _Loaded:
    index: int
    image: np.ndarray | None = None
    error: ColorizeError | None = None


class ChunkRun:
    """One task's run over a chunk of a job's items."""

    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.settings = ctx.settings
        self.job: Job | None = None
        self.begun: list[int] = []  # items whose attempt this run has counted
        self.outcomes: list[ItemResult] = []  # items ended since the store last heard
        self.stopped = False  # the job has ended (canceled): drop the rest
        # Past this, the soft time limit may strike (it counts from the task's start, a little earlier).
        self.deadline = time.monotonic() + self.settings.task_soft_time_limit_s - FORGIVE_MARGIN_S

    def run(self, indices: Sequence[int]) -> None:
        start = self.ctx.jobs.begin_chunk(self.job_id, indices, begin=self.settings.batch_size)
        self.job = start.job
        if self.job is None or self.job.is_terminal:
            return
        bind_log_context(tenant=self.job.tenant)
        self.begun += start.fresh[:self.settings.batch_size]
        try:
            self._process(start.fresh, start.retried)
        except BaseException:
            self._record_quietly()  # what is already stored counts, however the chunk stops
            raise
        if self.outcomes:
            self._record()

    def give_up(self, indices: Sequence[int], error: ColorizeError) -> None:
        """Fail the chunk's unfinished items: the job must still reach a final status."""
        self.ctx.jobs.record(self.job_id, [ItemResult.failed(index, error) for index in indices])

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
        """Tell the store the outcomes so far and begin ``begin``; returns the items begun."""
        recorded = self.ctx.jobs.record(self.job_id, self.outcomes, begin)
        self.outcomes = []
        self.begun += recorded.started
        for index in recorded.exhausted:
            # An earlier attempt may have stored the result before it died: a failed item has none.
            self.ctx.storage.delete(result_key(self.job.tenant, self.job_id, index))
        self.stopped = recorded.job is None or recorded.job.is_terminal
        return recorded.started

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
            engine = self.ctx.engines.get(self.job.model)
        except ColorizeError as exc:
            self.outcomes += [ItemResult.failed(index, exc) for index in fresh + retried]
            return
        self._pipeline(engine, self._batches(fresh))
        self._one_at_a_time(engine, retried)

    def _batches(self, fresh: list[int]) -> list[list[int]]:
        """The fresh items in batches within the memory budget, from their headers."""
        if len(fresh) <= 1:
            return [fresh] if fresh else []
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            costs = list(pool.map(self._decode_cost, fresh))
        return memory_batches(fresh, costs, MemoryBudget.of(self.settings.limits), self.settings.batch_size)

    def _decode_cost(self, index: int) -> DecodeCost | None:
        """What decoding an item takes, from the start of its input; None when that cannot tell."""
        try:
            with self.ctx.storage.open_stream(self._input_key(index)) as stream:
                head = stream.read(HEADER_BYTES)
            return decode_cost(head, self.settings.limits)
        except TRANSIENT_ERRORS:
            raise
        except Exception:  # unreadable here is for loading to report, with the item's attempt counted
            return None

    def _pipeline(self, engine: Engine, batches: list[list[int]]) -> None:
        """Batches in turn; the next batch loads and the previous one is stored while one is
        inferred. The chunk began its first ``batch_size`` items, which may span batches."""
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            loading = [pool.submit(self._load, i) for i in batches[0]]
            saving: list[Future] = []
            for number in range(len(batches)):
                loaded = [f.result() for f in loading]
                following = batches[number + 1] if number + 1 < len(batches) else []
                if following or self.outcomes:
                    self._record(begin=[i for i in following if i not in self.begun])
                    loading = [pool.submit(self._load, i) for i in following if i in self.begun]
                if self.stopped:
                    break
                outputs = self._colorize(engine, [item for item in loaded if self._usable(item)])
                self.outcomes += [future.result() for future in saving]  # one batch of results waits at most
                saving = [pool.submit(self._save, index, image) for index, image in outputs]
            self.outcomes += [future.result() for future in saving]

    def _one_at_a_time(self, engine: Engine, retried: Sequence[int]) -> None:
        for index in retried:
            started = self._record(begin=[index])
            if self.stopped:
                return
            for item in [self._load(i) for i in started]:
                if self._usable(item):
                    self.outcomes += [self._save(i, image) for i, image in self._colorize(engine, [item])]

    def _input_key(self, index: int) -> str:
        if self.job.source_kind == "image":
            return self.job.source_key
        return item_input_key(self.job.tenant, self.job_id, index)

    def _load(self, index: int) -> _Loaded:
        try:
            with self.ctx.metrics.stage("storage_get"):
                data = self.ctx.storage.get_bytes(self._input_key(index))
            with self.ctx.metrics.stage("decode"):
                return _Loaded(index, image=decode_image(data, self.settings.limits))
        except ItemError as exc:
            return _Loaded(index, error=exc)
        except NotFound:
            return _Loaded(index, error=ProcessingFailed("the item's input object is missing"))
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.exception("decoding item %s of job %s failed", index, self.job_id, extra=self._about(index))
            return _Loaded(index, error=ProcessingFailed("the image could not be decoded"))

    def _usable(self, item: _Loaded) -> bool:
        if item.error is None:
            return True
        self.outcomes.append(ItemResult.failed(item.index, item.error))
        return False

    def _colorize(self, engine: Engine, items: list[_Loaded]) -> list[tuple[int, np.ndarray]]:
        if not items:
            return []
        try:
            with self.ctx.metrics.stage("inference"):
                images = colorize_batch(engine, [item.image for item in items], self.job.temperature)
            return [(item.index, image) for item, image in zip(items, images)]
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            if len(items) > 1:
                # Find the item that breaks the batch; the others still get their results.
                return [pair for item in items for pair in self._colorize(engine, [item])]
            log.exception("colorizing item %s of job %s failed", items[0].index, self.job_id,
                          extra=self._about(items[0].index))
            error = ProcessingFailed("the model could not process this image")
            self.outcomes.append(ItemResult.failed(items[0].index, error))
            return []

    def _save(self, index: int, image: np.ndarray) -> ItemResult:
        try:
            with self.ctx.metrics.stage("encode"):
                data = encode_jpeg(image, self.settings.jpeg_quality)
        except Exception:
            log.exception("encoding item %s of job %s failed", index, self.job_id, extra=self._about(index))
            return ItemResult.failed(index, ProcessingFailed("the result could not be encoded"))
        # One PUT: the result object appears whole or not at all, and a redo overwrites it.
        with self.ctx.metrics.stage("storage_put"):
            self.ctx.storage.put_bytes(result_key(self.job.tenant, self.job_id, index), data, content_type="image/jpeg")
        return ItemResult.done(index)

    def _about(self, index: int) -> dict[str, object]:
        # Log fields for one item: the chunk's I/O threads do not see the task's log context.
        return {"job_id": self.job_id, "item": index, "tenant": self.job.tenant}
