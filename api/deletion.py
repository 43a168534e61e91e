"""Deleting a job: its work stopped, its state gone from Redis, its objects gone from storage.

The steps, in order: a job still queued or running is canceled (the cancel of
``POST /v1/jobs/{id}/cancel``), so its tasks stop at their next check; then its records leave
Redis at once (state, listing, stall watch), after which no task can record anything for it
(every job script ignores a job without its record) and every read answers 404; then its
stored objects (source, tar inputs, results) are deleted and its storage quota released.
Only our store is touched: a source by reference (its stored document goes, the tenant's
objects or URLs it names stay) and a destination (what was written there stays; only the
record of where it is goes, with the job's other keys) are the tenant's own.

A task already in hand may still store a result or an input object after that. A chunk that
does deletes the job's objects again, and releases its bytes, as soon as its next record finds
the job gone (``worker/chunk_pipeline.py``): seconds after the deletion. In case that task dies
first, the purge index is also told to delete them once ``settings.stall_after_s`` has passed,
by when every task that began before the deletion has ended or been killed
(``task_time_limit_s``), and that purge releases what such a task counted to the quota.
"""

from __future__ import annotations

import time
from contextlib import suppress

from api.services import Services
from shared.errors import Conflict, NotFound
from shared.storage.object_keys import job_prefix
from shared.tenancy.storage_quota import job_owner


def delete_job(svc: Services, job_id: str, tenant: str) -> None:
    """Delete the tenant's job; NotFound when it has none by that id (deleted before included)."""
    job = svc.jobs.get(job_id, tenant)
    if not job.is_terminal:
        with suppress(Conflict, NotFound):  # it ended (or went) meanwhile: nothing left to stop
            svc.jobs.cancel(job_id)
    if not svc.jobs.delete(job, purge_again_at=time.time() + svc.settings.stall_after_s):
        raise NotFound(f"no job with id {job_id!r}", job_id=job_id)  # a concurrent deletion won
    svc.quotas.forget_job(tenant, job_id)
    prefix = job_prefix(tenant, job_id)
    svc.storage.delete_prefix(prefix)
    if not job.source_key.startswith(prefix):
        svc.storage.delete(job.source_key)  # a presigned upload, which only this job may use
    svc.stored.release(tenant, job_owner(job_id))
