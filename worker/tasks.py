"""The colorize queue's tasks: expand a job's archive into items, colorize a chunk of items
(interactive), take a turn of the bulk lane (:mod:`worker.scheduling`).

Every task is safe to run twice (messages are acknowledged late and redelivered after a
crash): items are registered once per index, result keys are fixed per item, and an item
already done or failed is never processed or counted again. The work itself lives in
:mod:`worker.expansion` and :mod:`worker.chunk_pipeline`; when a task retries or gives up is
:mod:`worker.retry_policy`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Task, current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from celery.utils.log import get_task_logger

from shared.errors import ColorizeError
from shared.imaging.allocator import keep_image_memory
from shared.logging import bind_log_context
from shared.queue.celery_config import colorizes
from shared.queue.contract import BULK_TURN_TASK, COLORIZE_TASK, EXPAND_TASK, EXPANSION_PRIORITY, QUEUE, settings_of
from worker.context import worker_context
from worker.expansion import EXPAND_LEASE_S, Expander, ExpansionLease, LeaseLost
from worker.retry_policy import countdown_cap_s, give_up_error, may_retry, retry_later
from worker.scheduling import Lane, enqueue_chunks

log = get_task_logger(__name__)


@shared_task(name=EXPAND_TASK, bind=True, max_retries=5)
def expand_job(self: Task[Any, Any], job_id: str) -> None:
    """Split a job's archive into items, storing each input and enqueueing chunks as it goes."""
    ctx = worker_context(self.app)
    job = ctx.jobs.find(job_id)
    if job is None or job.is_terminal or job.expanded:
        return
    bind_log_context(tenant=job.tenant)
    lease = ExpansionLease(ctx.redis, ctx.jobs.keys.job(job_id).expander)
    if not lease.acquire():
        # Another expander holds the job (this message was redelivered while it runs): look
        # again once its lease could have lapsed, in case it died.
        countdown = min(EXPAND_LEASE_S, countdown_cap_s(ctx.settings))
        self.apply_async(args=(job_id,), countdown=countdown, queue=QUEUE, priority=EXPANSION_PRIORITY)
        return
    try:
        ctx.jobs.mark_running(job_id)
        Expander(ctx, job, lease).run()
    except LeaseLost:
        log.warning("another expander took over job %s", job_id)
    except Exception as exc:
        if may_retry(self, exc):
            log.warning("expanding job %s failed (%r); retrying", job_id, exc)
            retry_later(self, exc)
        # Never leave a job running forever: what was registered still gets processed.
        log.exception("expanding job %s failed %d times; giving up", job_id, self.request.retries + 1)
        ctx.jobs.end_expansion(job_id, give_up_error(exc, "the archive could not be expanded"))
    finally:
        lease.release()


@shared_task(name=COLORIZE_TASK, bind=True, max_retries=5)
def colorize_chunk(self: Task[Any, Any], job_id: str, indices: list[int]) -> None:
    """Colorize the chunk's unfinished items (the interactive lane); each item ends done or
    failed on its own."""
    _colorize(self, job_id, indices, Lane.INTERACTIVE)


@shared_task(name=BULK_TURN_TASK, bind=True, max_retries=5)
def bulk_turn(self: Task[Any, Any]) -> None:
    """Colorize the bulk lane's next chunk in turn (the one this task claimed before, when it
    runs again after a crash or a retry)."""
    ctx = worker_context(self.app)
    turn_id = self.request.id
    assert turn_id is not None  # a task being run has its id
    with ctx.metrics.stage("redis"):
        claimed = ctx.bulk.claim(turn_id)
    if claimed is None:
        return  # its chunk was taken by another turn, or handed back whole to the lane
    if not self.request.retries:
        ctx.metrics.observe_stage("queue_wait", time.time() - claimed.enqueued_at)
    bind_log_context(job_id=claimed.job_id)
    _colorize(self, claimed.job_id, claimed.indices, Lane.BULK)
    ctx.bulk.release(turn_id)


def _colorize(task: Task[Any, Any], job_id: str, indices: list[int], lane: Lane) -> None:
    from worker.chunk_pipeline import ChunkRun  # the engine's libraries: only in workers that colorize

    ctx = worker_context(task.app)
    run = ChunkRun(ctx, job_id, may_hand_over=lane == Lane.BULK)
    try:
        run.run(indices)
    except SoftTimeLimitExceeded:
        # Hand what is left to a fresh task; items caught mid-way have used up one attempt.
        remaining = ctx.jobs.unfinished(job_id, indices)
        log.warning("chunk of job %s hit its soft time limit; requeueing %d items", job_id, len(remaining))
        job = run.job or ctx.jobs.find(job_id)
        if remaining and job is not None:
            enqueue_chunks(task.app, ctx.bulk, job, [remaining], lane, first=True)
        return
    except Exception as exc:
        run.forgive_unfinished()
        if may_retry(task, exc):
            log.warning("chunk of job %s failed (%r); retrying", job_id, exc)
            retry_later(task, exc)
        # Never leave items pending forever: the job must still reach a final status.
        log.exception("chunk of job %s failed %d times; failing its items", job_id, task.request.retries + 1)
        run.give_up(indices, give_up_error(exc, "processing failed repeatedly"))
        return
    if run.handed_back and run.job is not None:  # items are handed back only once the job is read
        enqueue_chunks(task.app, ctx.bulk, run.job, [run.handed_back], lane, first=True)


@worker_process_init.connect
def _load_default_model(**_kwargs: Any) -> None:
    """Each pool process of a colorize worker loads the configured model and the image maths as it
    starts."""
    if not colorizes(current_app):
        return
    from shared.colour.lab import warm_up  # numba: only in processes that colorize

    settings = settings_of(current_app)
    keep_image_memory()
    warm_up()  # the image maths' compiled kernels, before the first chunk waits for them
    try:
        engine = worker_context(current_app).engines.get(settings.model)
        log.info("worker process %s ready with model %s on %s", os.getpid(), engine.manifest.name, engine.device)
    except ColorizeError as exc:
        # Stay up: jobs naming an installed model can still run; the others fail per item.
        log.error("could not load the configured model %r: %s", settings.model, exc.message)
