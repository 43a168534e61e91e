"""A tenant's jobs, newest first, a page at a time: the listing behind ``GET /v1/jobs``.

Each tenant has a sorted set of its job ids by creation time. The job store adds a job to it
as it records the job and takes it out when the job is deleted; the purge of an expired job
takes it out here. A member whose job has expired but not yet been purged is skipped (and
removed) as a page meets it.

Pages are cut by an opaque cursor: the creation time and id of the last job a page covered.
Jobs created in the same instant are ordered by id, so a cursor names one place exactly, and
jobs created while a client pages through never shift the pages it has still to read.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from redis import Redis

from shared.errors import InvalidRequest
from shared.jobs.records import Job, JobStatus
from shared.jobs.store import JobStore
from shared.redis_keys import NAMESPACE, RedisKeys

# Members read from Redis per round trip while a page is filled.
READ_BATCH = 100
# Members a page may pass over (filtered out or gone) before it is answered short, with a cursor
# to go on from: a filter that matches little never makes one request read a whole listing.
MAX_EXAMINED = 1000


@dataclass(frozen=True)
class Cursor:
    """A place in a listing: the page that follows starts after this job."""

    created_at: float
    job_id: str

    def encode(self) -> str:
        text = f"{self.created_at!r}/{self.job_id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor of a ``next_cursor`` token; InvalidRequest for anything else."""
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            created, job_id = text.split("/", 1)
            created_at = float(created)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("'cursor' is not a cursor this API gave out (next_cursor)", field="cursor") from None
        if not job_id or not math.isfinite(created_at):
            raise InvalidRequest("'cursor' is not a cursor this API gave out (next_cursor)", field="cursor")
        return cls(created_at, job_id)


@dataclass(frozen=True)
class JobFilter:
    status: JobStatus | None = None
    created_after: float | None = None  # unix time, exclusive
    created_before: float | None = None  # unix time, exclusive


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next: Cursor | None  # None: this page reached the end


class JobListing:
    """Every tenant's jobs by creation time."""

    def __init__(self, redis: Redis, jobs: JobStore, namespace: str = NAMESPACE) -> None:
        self.redis = redis
        self.jobs = jobs
        self.keys = RedisKeys(namespace)

    def remove(self, tenant: str, job_id: str) -> None:
        self.redis.zrem(self.keys.tenant_jobs(tenant), job_id)

    def page(self, tenant: str, limit: int, after: Cursor | None = None, where: JobFilter = JobFilter()) -> JobPage:
        """Up to ``limit`` of the tenant's jobs that match ``where``, newest first, starting after
        ``after``. A page may hold fewer than ``limit`` jobs and still have a next one, when it
        passed over ``MAX_EXAMINED`` jobs that did not match."""
        key = self.keys.tenant_jobs(tenant)
        high, low = _score_range(after, where)
        found: list[Job] = []
        examined: Cursor | None = None  # the last member looked at
        offset = 0
        while len(found) <= limit:
            if offset >= MAX_EXAMINED and examined is not None:
                return JobPage(found, examined)
            members: list[tuple[bytes, float]] = self.redis.zrevrangebyscore(
                key, high, low, start=offset, num=READ_BATCH, withscores=True
            )  # type: ignore[assignment]  # redis-py types a synchronous client's reply as maybe awaitable
            if not members:
                return JobPage(found, None)
            offset += len(members)
            places = [Cursor(float(score), member.decode()) for member, score in members]
            places = [place for place in places if not _covered(place, after)]
            gone = []
            for place, job in zip(places, self.jobs.find_many([place.job_id for place in places])):
                if job is None:
                    gone.append(place.job_id)
                elif where.status is None or job.status == where.status:
                    found.append(job)
                    if len(found) > limit:
                        break
                examined = place
            if gone:
                self.redis.zrem(key, *gone)
        last = found[limit - 1]
        return JobPage(found[:limit], Cursor(last.created_at, last.id))


def _score_range(after: Cursor | None, where: JobFilter) -> tuple[str, str]:
    """ZREVRANGEBYSCORE's max and min for the page: the cursor's own time is included (jobs of
    the same instant after it in id order are still to come)."""
    high = "+inf"
    if where.created_before is not None:
        high = f"({where.created_before!r}"
    if after is not None and (where.created_before is None or after.created_at < where.created_before):
        high = repr(after.created_at)
    low = "-inf" if where.created_after is None else f"({where.created_after!r}"
    return high, low


def _covered(place: Cursor, after: Cursor | None) -> bool:
    """Whether an earlier page covered ``place``: within one instant, ids come in reverse order."""
    if after is None:
        return False
    return place.created_at > after.created_at or (
        place.created_at == after.created_at and place.job_id >= after.job_id
    )
