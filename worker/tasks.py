"""Celery tasks: expand an archive into items, colorize chunks of items, purge expired jobs.

Every task is safe to run twice (messages are acknowledged late and redelivered after a
crash): items are registered once per index, result keys are fixed per item, and an item
already done or failed is never processed or counted again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import redis
from celery import current_app, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from celery.utils.log import get_task_logger

from shared.archives import ArchiveEntry, OutputNames, iter_entries
from shared.errors import (
    ArchiveLimitExceeded,
    ColorizeError,
    CorruptArchive,
    ItemError,
    NotFound,
    ProcessingFailed,
    QuotaExceeded,
    ServiceUnavailable,
)
from shared.imaging import decode_image, encode_jpeg
from shared.logging import bind_log_context
from shared.metrics import WorkerMetrics, queue_depth
from shared.jobs import CANCELED, HEARTBEAT_INTERVAL_S, RUNNING, WORKER_STALE_AFTER_S, Job, JobStore, NewItem
from shared.models import load_manifest
from shared.quotas import QuotaStore
from shared.settings import Settings
from shared.storage import Storage, item_input_key, job_prefix, result_key, upload_key
from shared.webhooks import WebhookNotifier
from worker.celery_app import COLORIZE_TASK, EXPAND_TASK, PURGE_TASK, QUEUE, webhook_publisher
from worker.colorizer import colorize_batch
from worker.engine import Engine

log = get_task_logger(__name__)

# Storage and Redis hiccups: the task is retried later instead of failing its items.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ServiceUnavailable, redis.ConnectionError, redis.TimeoutError)
# Parallel storage transfers (and image decodes/encodes) beside inference in one process.
IO_THREADS = 4
# How long an expander's claim on a job lasts without renewal; a second expander (a message
# redelivered while the first still runs) waits this long before it may take over.
EXPAND_LEASE_S = 60
PURGE_INTERVAL_S = 60
# How often a chunk cut short by a Redis outage tries to give back its items' attempts, and how
# long before its soft time limit it stops trying.
FORGIVE_POLL_S = 0.25
FORGIVE_MARGIN_S = 1.0


# --- per-process resources ----------------------------------------------------------------


class WorkerContext:
    """Connections and loaded models of one worker process (never shared across a fork)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=10)
        self.metrics = WorkerMetrics()
        notifier = WebhookNotifier(self.redis, settings, webhook_publisher(current_app))
        self.jobs = JobStore(self.redis, settings, listeners=(notifier, self.metrics))
        self.quotas = QuotaStore(self.redis, settings.quotas, self.jobs)
        self.storage = Storage(settings)
        self._engines: dict[str, Engine] = {}
        self._engine_lock = threading.Lock()

    def engine(self, model: str) -> Engine:
        """The loaded engine for ``model``, loading it on first use in this process."""
        with self._engine_lock:
            manifest = load_manifest(self.settings.models_dir, model)
            engine = self._engines.get(manifest.name)
            if engine is None:
                started = time.perf_counter()
                engine = Engine.load(manifest, device=self.settings.device, threads=self._engine_threads())
                self.metrics.model_load_seconds.labels(manifest.name, engine.device).observe(time.perf_counter() - started)
                self._engines[manifest.name] = engine
            return engine

    def _engine_threads(self) -> int:
        if self.settings.engine_threads:
            return self.settings.engine_threads
        return max(1, (os.cpu_count() or 1) // self.settings.worker_processes)


_context: WorkerContext | None = None


def worker_context(settings: Settings) -> WorkerContext:
    """This process's context, rebuilt after a fork (connections must not cross processes)."""
    global _context
    if _context is None or _context.pid != os.getpid():
        _context = WorkerContext(settings)
    return _context


def _settings_of(task) -> Settings:
    return task.app.colorize_settings


@worker_process_init.connect
def _load_default_model(**_kwargs) -> None:
    from celery import current_app

    settings: Settings = current_app.colorize_settings
    try:
        engine = worker_context(settings).engine(settings.model)
        log.info("worker process %s ready with model %s on %s", os.getpid(), engine.manifest.name, engine.device)
    except ColorizeError as exc:
        # Stay up: jobs naming an installed model can still run; the others fail per item.
        log.error("could not load the configured model %r: %s", settings.model, exc.message)


# --- expand -------------------------------------------------------------------------------


@shared_task(name=EXPAND_TASK, bind=True, max_retries=5)
def expand_job(self, job_id: str) -> None:
    """Split a job's archive into items, storing each input and enqueueing chunks as it goes."""
    ctx = worker_context(_settings_of(self))
    job = ctx.jobs.find(job_id)
    if job is None or job.is_terminal or job.expanded:
        return
    bind_log_context(tenant=job.tenant)
    lease = ExpandLease(ctx.redis, ctx.jobs.job_key(job_id) + ":expander")
    if not lease.acquire():
        # Another expander holds the job (this message was redelivered while it runs): look
        # again once its lease could have lapsed, in case it died.
        countdown = min(EXPAND_LEASE_S, ctx.settings.visibility_timeout_s // 2)
        self.apply_async(args=(job_id,), countdown=countdown, queue=QUEUE)
        return
    try:
        ctx.jobs.mark_running(job_id)
        Expander(ctx, job, lease, self.app).run()
    except Exception as exc:
        if _may_retry(self, exc):
            log.warning("expanding job %s failed (%r); retrying", job_id, exc)
            _retry_later(self, exc)
        # Never leave a job running forever: what was registered still gets processed.
        log.exception("expanding job %s failed %d times; giving up", job_id, self.request.retries + 1)
        ctx.jobs.end_expansion(job_id, _give_up_error(exc, "the archive could not be expanded"))
    finally:
        lease.release()


def _retry_limit(task, exc: Exception) -> int:
    """Retries allowed for ``exc``: a few for a failure of the task itself, and for storage or
    Redis being away as many as fill ``settings.outage_retry_s`` of backoff: an outage is not
    the items' fault, and the job should complete once the service is back."""
    if not isinstance(exc, TRANSIENT_ERRORS):
        return task.max_retries
    settings = _settings_of(task)
    cap, waited, retries = _backoff_cap(settings), 0.0, 0
    while waited < settings.outage_retry_s:
        waited += min(cap, 2 ** retries)
        retries += 1
    return max(retries, task.max_retries)


def _backoff_cap(settings: Settings) -> int:
    # A retry waits unacknowledged on a worker until its countdown ends: longer than the
    # visibility timeout and the broker would hand it out a second time meanwhile.
    return max(1, min(60, settings.visibility_timeout_s // 2))


def _may_retry(task, exc: Exception) -> bool:
    return task.request.retries < _retry_limit(task, exc)


def _retry_later(task, exc: Exception) -> None:
    """Retry ``task`` after a backoff. When the retry cannot be published (the broker is down as
    well, e.g. Redis restarting), Celery would reject the message without requeueing it and its
    work would be lost: reject it with requeue instead, or, if even that cannot reach the broker,
    leave it unacknowledged for redelivery after the visibility timeout."""
    countdown = min(_backoff_cap(_settings_of(task)), 2 ** task.request.retries)
    try:
        raise task.retry(exc=exc, countdown=countdown, max_retries=_retry_limit(task, exc))
    except Reject as refused:
        log.warning("could not schedule the retry (%r); requeueing the task", refused.reason)
        raise Reject(exc, requeue=True) from refused


def _give_up_error(exc: Exception, message: str) -> ColorizeError:
    if isinstance(exc, TRANSIENT_ERRORS):
        return ServiceUnavailable("storage or the state store stayed unavailable")
    return ProcessingFailed(message)


class ExpandLease:
    """A renewable claim on expanding one job, so redelivered messages do not expand it twice at once."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key
        self._token = uuid.uuid4().hex
        self._renewed_at = 0.0

    def acquire(self) -> bool:
        if self._client.set(self._key, self._token, nx=True, ex=EXPAND_LEASE_S):
            self._renewed_at = time.monotonic()
            return True
        return self._client.get(self._key) == self._token.encode()

    def renew(self) -> None:
        if time.monotonic() - self._renewed_at > EXPAND_LEASE_S / 4:
            self._client.set(self._key, self._token, ex=EXPAND_LEASE_S)
            self._renewed_at = time.monotonic()

    def release(self) -> None:
        try:
            if self._client.get(self._key) == self._token.encode():
                self._client.delete(self._key)
        except redis.RedisError:
            pass  # Redis is away: the lease lapses by itself; raising here would replace the task's outcome


@dataclass
class _PendingChunk:
    items: list[NewItem] = field(default_factory=list)
    uploads: list[Future] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)  # indices registered by an earlier run


class Expander:
    """One pass over a job's source archive."""

    def __init__(self, ctx: WorkerContext, job: Job, lease: ExpandLease, app) -> None:
        self.ctx = ctx
        self.job = job
        self.lease = lease
        self.app = app
        self.settings = ctx.settings
        # Items below this index were registered by an earlier, interrupted run.
        self.registered = job.total
        # Allocated for every entry, resumed ones included: the same order gives the same names.
        self.output_names = OutputNames()
        # Set once the tenant's daily image quota runs out: every later entry fails with it.
        self.quota_error: QuotaExceeded | None = None

    def run(self) -> None:
        jobs, job = self.ctx.jobs, self.job
        error: ColorizeError | None = None
        chunk = _PendingChunk()
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            try:
                with self._open_source() as source:
                    for index, entry in enumerate(iter_entries(source, job.source_kind, self.settings.limits)):
                        if jobs.status(job.id) != RUNNING:
                            return  # canceled: drop the rest
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
        jobs.end_expansion(job.id, error)

    def _open_source(self):
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
            enqueue_chunk(self.app, self.job.id, sorted(todo))


def enqueue_chunk(app, job_id: str, indices: Sequence[int]) -> None:
    app.send_task(COLORIZE_TASK, args=(job_id, list(indices)), queue=QUEUE)


# --- colorize -----------------------------------------------------------------------------


@shared_task(name=COLORIZE_TASK, bind=True, max_retries=5)
def colorize_chunk(self, job_id: str, indices: list[int]) -> None:
    """Colorize the chunk's unfinished items; each item ends done or failed on its own."""
    ctx = worker_context(_settings_of(self))
    run: ChunkRun | None = None
    try:
        job = ctx.jobs.find(job_id)
        if job is None or job.is_terminal:
            return
        bind_log_context(tenant=job.tenant)
        ctx.jobs.mark_running(job_id)
        run = ChunkRun(ctx, job)
        run.run(indices)
    except SoftTimeLimitExceeded:
        # Hand what is left to a fresh task; items caught mid-way have used up one attempt.
        remaining = ctx.jobs.unfinished(job_id, indices)
        log.warning("chunk of job %s hit its soft time limit; requeueing %d items", job_id, len(remaining))
        if remaining:
            enqueue_chunk(self.app, job_id, remaining)
    except Exception as exc:
        if run is not None:
            run.forgive_unfinished()
        if _may_retry(self, exc):
            log.warning("chunk of job %s failed (%r); retrying", job_id, exc)
            _retry_later(self, exc)
        # Never leave items pending forever: the job must still reach a final status.
        log.exception("chunk of job %s failed %d times; failing its items", job_id, self.request.retries + 1)
        error = _give_up_error(exc, "processing failed repeatedly")
        for index in ctx.jobs.unfinished(job_id, indices):
            ctx.jobs.fail_item(job_id, index, error)


@dataclass
class _Loaded:
    index: int
    image: np.ndarray | None = None
    error: ColorizeError | None = None


class ChunkRun:
    """Load, colorize and store the items of one chunk, overlapping storage and codec work with inference."""

    def __init__(self, ctx: WorkerContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job
        self.settings = ctx.settings
        self.begun: list[int] = []  # items whose attempt this run has counted
        # Past this, the soft time limit may strike (it counts from the task's start, a little earlier).
        self.deadline = time.monotonic() + self.settings.task_soft_time_limit_s - FORGIVE_MARGIN_S

    def run(self, indices: Sequence[int]) -> None:
        jobs = self.ctx.jobs
        todo = jobs.unfinished(self.job.id, indices)
        if not todo:
            return
        try:
            engine = self.ctx.engine(self.job.model)
        except ColorizeError as exc:
            for index in todo:
                jobs.fail_item(self.job.id, index, exc)
            return
        previous = jobs.attempts(self.job.id, todo)
        fresh = [index for index, count in zip(todo, previous) if count == 0]
        # Items that were in hand when a worker died run one at a time, after everything else
        # is stored, so a poison item only uses up its own attempts.
        retried = [index for index, count in zip(todo, previous) if count > 0]
        size = self.settings.batch_size
        self._pipeline(engine, [fresh[i : i + size] for i in range(0, len(fresh), size)])
        for index in retried:
            if jobs.status(self.job.id) == CANCELED:
                return
            for item in [self._load(i) for i in self._begin([index])]:
                if self._usable(item):
                    for done_index, image in self._colorize(engine, [item]):
                        self._save(done_index, image)

    def _pipeline(self, engine: Engine, batches: list[list[int]]) -> None:
        """Batches in turn; the next batch loads and the previous one is stored while one is inferred."""
        if not batches:
            return
        jobs = self.ctx.jobs
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            loading = [pool.submit(self._load, i) for i in self._begin(batches[0])]
            saving: list[Future] = []
            for number in range(len(batches)):
                loaded = [f.result() for f in loading]
                if jobs.status(self.job.id) == CANCELED:
                    break
                if number + 1 < len(batches):
                    loading = [pool.submit(self._load, i) for i in self._begin(batches[number + 1])]
                outputs = self._colorize(engine, [item for item in loaded if self._usable(item)])
                for future in saving:
                    future.result()  # at most one batch of results waits in memory
                saving = [pool.submit(self._save, index, image) for index, image in outputs]
            for future in saving:
                future.result()

    def _begin(self, indices: Sequence[int]) -> list[int]:
        """Count an attempt for each item about to be processed; those out of attempts fail instead."""
        started = []
        for index in indices:
            attempts = self.ctx.jobs.record_attempt(self.job.id, index)
            if attempts > self.settings.item_max_attempts:
                outcome = self.ctx.jobs.fail_item(self.job.id, index, ProcessingFailed(
                    f"processing crashed or timed out {attempts - 1} times", attempts=attempts - 1))
                if outcome.counted:
                    # An earlier attempt may have stored the result before it died: a failed
                    # item has none.
                    self.ctx.storage.delete(result_key(self.job.tenant, self.job.id, index))
            else:
                started.append(index)
                self.begun.append(index)
        return started

    def forgive_unfinished(self) -> None:
        """After a failure the task caught (storage or Redis away), give back the attempts of the
        items it left unfinished: they did not crash nor time out. When Redis itself is away this
        waits for it while the chunk's time allows (it usually restarts within seconds);
        otherwise those attempts stay counted, as if the items had crashed."""
        while True:
            try:
                self.ctx.jobs.forgive_attempts(self.job.id, self.ctx.jobs.unfinished(self.job.id, self.begun))
                self.begun = []
                return
            except redis.RedisError:
                if time.monotonic() + FORGIVE_POLL_S > self.deadline:
                    return
                time.sleep(FORGIVE_POLL_S)

    def _input_key(self, index: int) -> str:
        if self.job.source_kind == "image":
            return self.job.source_key
        return item_input_key(self.job.tenant, self.job.id, index)

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
            log.exception("decoding item %s of job %s failed", index, self.job.id, extra=self._about(index))
            return _Loaded(index, error=ProcessingFailed("the image could not be decoded"))

    def _usable(self, item: _Loaded) -> bool:
        if item.error is None:
            return True
        self.ctx.jobs.fail_item(self.job.id, item.index, item.error)
        return False

    def _colorize(self, engine: Engine, items: list[_Loaded]) -> list[tuple[int, np.ndarray]]:
        if not items:
            return []
        temperature = self.job.temperature
        try:
            with self.ctx.metrics.stage("inference"):
                images = colorize_batch(engine, [item.image for item in items], temperature)
            return [(item.index, image) for item, image in zip(items, images)]
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            if len(items) > 1:
                # Find the item that breaks the batch; the others still get their results.
                return [pair for item in items for pair in self._colorize(engine, [item])]
            log.exception("colorizing item %s of job %s failed", items[0].index, self.job.id,
                          extra=self._about(items[0].index))
            self.ctx.jobs.fail_item(self.job.id, items[0].index, ProcessingFailed("the model could not process this image"))
            return []

    def _save(self, index: int, image: np.ndarray) -> None:
        try:
            with self.ctx.metrics.stage("encode"):
                data = encode_jpeg(image, self.settings.jpeg_quality)
        except Exception:
            log.exception("encoding item %s of job %s failed", index, self.job.id, extra=self._about(index))
            self.ctx.jobs.fail_item(self.job.id, index, ProcessingFailed("the result could not be encoded"))
            return
        # One PUT: the result object appears whole or not at all, and a redo overwrites it.
        with self.ctx.metrics.stage("storage_put"):
            self.ctx.storage.put_bytes(result_key(self.job.tenant, self.job.id, index), data, content_type="image/jpeg")
        self.ctx.jobs.complete_item(self.job.id, index)

    def _about(self, index: int) -> dict[str, object]:
        # Log fields for one item: the chunk's I/O threads do not see the task's log context.
        return {"job_id": self.job.id, "item": index, "tenant": self.job.tenant}


# --- expiry -------------------------------------------------------------------------------


@shared_task(name=PURGE_TASK, bind=True)
def purge_expired(self) -> int:
    """Delete the stored objects of expired jobs and uploads; returns how many were purged."""
    ctx = worker_context(_settings_of(self))
    return purge_due(ctx.jobs, ctx.storage)


def purge_due(jobs: JobStore, storage: Storage) -> int:
    purged = 0
    while targets := jobs.lease_due_purges():
        for target in targets:
            if target.kind == "job":
                storage.delete_prefix(job_prefix(target.tenant, target.id))
            else:
                key = upload_key(target.tenant, target.id)
                if target.multipart_id:
                    try:
                        storage.abort_multipart(key, target.multipart_id)
                    except ColorizeError:
                        pass  # already completed or aborted
                storage.delete_prefix(key)
            jobs.forget_purge(target)
            purged += 1
    return purged


def rescue_stalled(jobs: JobStore, app, settings: Settings) -> list[str]:
    """Enqueue again the outstanding work of jobs that have stopped moving while no task waits in
    the queue; returns their ids.

    Celery's Redis transport pops a message, then records it as unacknowledged in a second
    command: a broker crash (or a worker killed) between the two loses the message, and no
    visibility timeout brings it back. Running a chunk twice is harmless (items finish once, and
    their results are overwritten with the same bytes), so the rescue errs on the side of
    enqueueing.
    """
    if queue_depth(jobs.redis, QUEUE) > 0:
        return []  # a job waiting behind others has not stalled
    rescued = []
    for job_id in jobs.lease_stalled():
        job = jobs.find(job_id)
        if job is None or job.is_terminal:
            jobs.forget_active(job_id)
            continue
        if not job.expanded:
            app.send_task(EXPAND_TASK, args=(job_id,), queue=QUEUE)  # resumes after what it registered
        else:
            todo = jobs.unfinished(job_id, range(job.total))
            for start in range(0, len(todo), settings.chunk_size):
                enqueue_chunk(app, job_id, todo[start:start + settings.chunk_size])
        log.warning("job %s has not moved for %d s with nothing queued: its work is enqueued again",
                    job_id, settings.stall_after_s)
        rescued.append(job_id)
    return rescued


# --- worker lifecycle ---------------------------------------------------------------------


class Housekeeper(threading.Thread):
    """In a worker's main process: records its heartbeat (for /readyz), rescues stalled jobs (a
    worker that colorizes) and purges expired jobs."""

    def __init__(self, app, settings: Settings, colorizes: bool = True) -> None:
        super().__init__(name="colorize-housekeeper", daemon=True)
        self.app = app
        self.settings = settings
        self.colorizes = colorizes
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()

    def run(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
        jobs = JobStore(client, self.settings)
        storage = Storage(self.settings)
        last_purge = 0.0
        while not self.stopping.is_set():
            try:
                if self.colorizes:
                    jobs.record_heartbeat(self.worker_name, WORKER_STALE_AFTER_S)
                    rescue_stalled(jobs, self.app, self.settings)
                if time.monotonic() - last_purge > PURGE_INTERVAL_S:
                    last_purge = time.monotonic()
                    purged = purge_due(jobs, storage)
                    if purged:
                        log.info("purged %d expired jobs and uploads", purged)
            except Exception:
                log.exception("housekeeping failed; retrying")
            self.stopping.wait(HEARTBEAT_INTERVAL_S)
        try:
            jobs.forget_worker(self.worker_name)
        except redis.RedisError:
            pass


_housekeeper: Housekeeper | None = None


@worker_ready.connect
def _start_housekeeping(sender=None, **_kwargs) -> None:
    global _housekeeper
    # Readiness counts workers that colorize; one serving only webhooks does not.
    consumes = sender.app.amqp.queues.consume_from
    _housekeeper = Housekeeper(sender.app, sender.app.colorize_settings, colorizes=not consumes or QUEUE in consumes)
    _housekeeper.start()


@worker_shutdown.connect
def _stop_housekeeping(**_kwargs) -> None:
    if _housekeeper is not None:
        _housekeeper.stopping.set()
        _housekeeper.join(timeout=5)
