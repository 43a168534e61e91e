"""Which lane a job's chunks take, and handing chunks to it.

- **interactive**: single images and archives of at most one chunk. Each chunk is a task
  message of its own at the queue's highest priority, taken by the next free pool process;
  a bulk chunk running when one waits hands its process over at its next batch
  (:class:`worker.chunk_pipeline.ChunkRun`), so it waits for at most one batch of bulk work.
- **bulk**: every other archive. Its chunks wait in :class:`shared.jobs.bulk_lane.BulkLane`, where
  tenants, then each tenant's jobs, take turns; the queue holds one turn message per chunk,
  at the lowest priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from celery import Celery

from shared.jobs.bulk_lane import BulkLane
from shared.jobs.records import Job
from shared.queue.contract import enqueue_chunk, enqueue_turns
from shared.settings import Settings


class Lane(StrEnum):
    INTERACTIVE = "interactive"
    BULK = "bulk"


def lane_for(job: Job, settings: Settings) -> Lane:
    """The lane of a job whose items are all registered (the expander decides as it goes)."""
    small = job.source_kind == "image" or (job.expanded and job.total <= settings.chunk_size)
    return Lane.INTERACTIVE if small else Lane.BULK


def enqueue_chunks(
    app: Celery, bulk: BulkLane, job: Job, chunks: Sequence[Sequence[int]], lane: Lane, first: bool = False
) -> None:
    """Hand chunks of ``job`` to ``lane``; ``first``: work handed back, which in the bulk lane
    is the job's next when its turn comes."""
    chunks = [list(chunk) for chunk in chunks if chunk]
    if lane == Lane.INTERACTIVE:
        for chunk in chunks:
            enqueue_chunk(app, job.id, chunk)
        return
    bulk.push(job.tenant, job.id, chunks, first=first)
    enqueue_turns(app, len(chunks))
